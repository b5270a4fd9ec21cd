"""What a login needs to know of an account, whichever kind it is (user or robot)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.iam.policy import Principal


@dataclass(frozen=True, slots=True)
class AccountLogin:
    """An account found by its login name, before its secret is checked."""

    principal: Principal
    stored_hash: str
    """The stored hash of the account's password or secret ("" when it has none)."""
    verify: Callable[[str, str], bool]
    """``verify(stored_hash, offered)``: the (possibly slow) check of the offered secret."""
    refusal: str | None = None
    """Why a correct secret must still be refused (robot disabled or expired), else None."""

    @property
    def credential_fingerprint(self) -> str:
        """Changes whenever the password or secret does (a new hash has a new salt)."""
        return hashlib.sha256(self.stored_hash.encode()).hexdigest()[:24]
