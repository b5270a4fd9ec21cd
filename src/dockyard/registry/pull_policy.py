"""The one pull-policy seam: what a manifest GET/HEAD asks before it serves.

Content trust (``signatures/policy.py``) and vulnerability prevention
(``scan/policy.py``) are policies. The registry knows none by name: ``create_app``
hands the service the policies in order, and ``/v2/``'s manifest handler asks them through
``RegistryService.check_pull`` once it knows which manifest it is about to serve.

The contract that keeps pulls fast: a policy names its **switches** (the project
metadata that turn it on, such as ``prevent_vul``), and the manifest lookup itself says,
in the same statement, whether any of them is ``"true"`` in the artifact's project
(``registry/repository.py``, ``manifest_pull_lookups``): a policy whose switches are all
off is not asked, so a pull in a project with every policy off costs no statement beyond
the lookup, and there is no cache to go stale on another node. A policy that is asked
answers from stored rows with **one indexed statement** on the connection it is given,
and refuses by raising ``PolicyViolationError`` (Harbor's ``412
PROJECTPOLICYVIOLATION``). It never reads blobs or calls out on a pull it lets through
on the common path; work that must be done before a row exists is the policy's own
bounded slow path (see ``docs/signatures.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["ManifestPullCheck", "PullPolicies", "PullPolicy"]


@dataclass(frozen=True, slots=True)
class ManifestPullCheck:
    """A manifest about to be served."""

    repository: str
    digest: str
    reference: str
    """The tag or digest the client asked for."""
    scanner_pull: bool = False
    """The caller's token grants ``scanner-pull`` on the repository: Harbor's scanner
    credential, which every pull policy lets through. The token service grants that
    action to no account; only the short-lived token a scan job signs for its adapter
    names it (``scan/jobs.py``)."""
    signer_pull: bool = False
    """A signing client reading what it will sign: a caller who may push the repository
    with a User-Agent naming a signer (Harbor's exemption, for content trust only;
    ``content_trust_signer_pull``)."""


class PullPolicy(Protocol):
    """One policy of the seam."""

    switches: tuple[str, ...]
    """Project metadata names that turn the policy on (value ``"true"``); while none of
    them is on in the artifact's project, the seam does not ask it."""

    async def check_pull(self, conn: AsyncConnection, pull: ManifestPullCheck) -> None:
        """Raise ``PolicyViolationError`` to refuse; one indexed statement on ``conn``."""


class PullPolicies:
    """The policies in order; the first refusal wins."""

    def __init__(self, policies: Sequence[PullPolicy] = ()) -> None:
        self.policies = tuple(policies)
        self.switches = tuple(tuple(policy.switches) for policy in self.policies)
        """Per policy, in order, its switches (what the manifest lookup reads)."""

    def __bool__(self) -> bool:
        return bool(self.policies)

    async def check(
        self, conn: AsyncConnection, pull: ManifestPullCheck, on: Sequence[bool] | None = None
    ) -> None:
        """Ask the policies in order; ``on`` (per policy, as read with the manifest):
        whether one of its switches is on. Without it every policy is asked."""
        for index, policy in enumerate(self.policies):
            if on is None or on[index]:
                await policy.check_pull(conn, pull)
