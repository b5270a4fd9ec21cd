"""Failed-login throttling, kept in the database so that every worker and node counts alike.

Two counters over a sliding window (5 minutes):

- failures of one account from one address: beyond ``limit``, that account is
  refused *from that address* until the oldest failure leaves the window. The
  owner signing in from anywhere else is not affected, so nobody can lock an
  account from outside; and since a refused attempt is not counted, an attacker
  cannot stretch the wait beyond one window either.
- failures from one address over all accounts: beyond ``address_limit``, the
  address is refused (password spraying across many accounts).

A successful login clears its account's failures from its address.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from sqlalchemy import and_, case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.iam.models import LoginFailure

WINDOW_SECONDS = 300.0
_ACCOUNT_MAX = 255
_ADDRESS_MAX = 64


@dataclass(frozen=True, slots=True)
class ThrottleState:
    retry_after: int
    """Seconds until a login may be tried again (0: now)."""
    pair_failures: int
    """Recent failures of this account from this address."""


class LoginThrottle:
    def __init__(
        self, limit: int, address_limit: int | None = None, window: float = WINDOW_SECONDS
    ) -> None:
        self.limit = limit
        self.address_limit = address_limit if address_limit is not None else 5 * limit
        self.window = window

    async def check(self, session: AsyncSession, account: str, address: str) -> ThrottleState:
        """How long ``account`` must wait before logging in from ``address``."""
        account, address = account[:_ACCOUNT_MAX], address[:_ADDRESS_MAX]
        now = time.time()
        is_pair = LoginFailure.account == account
        row = (
            await session.execute(
                select(
                    func.count(),
                    func.min(LoginFailure.failed_at),
                    func.sum(case((is_pair, 1), else_=0)),
                    func.min(case((is_pair, LoginFailure.failed_at), else_=None)),
                ).where(
                    and_(
                        LoginFailure.address == address, LoginFailure.failed_at > now - self.window
                    )
                )
            )
        ).one()
        total, oldest, pair, pair_oldest = int(row[0]), row[1], int(row[2] or 0), row[3]
        wait = 0.0
        if pair >= self.limit and pair_oldest is not None:
            wait = max(wait, float(pair_oldest) + self.window - now)
        if total >= self.address_limit and oldest is not None:
            wait = max(wait, float(oldest) + self.window - now)
        retry_after = min(math.ceil(wait), math.ceil(self.window)) if wait > 0 else 0
        return ThrottleState(retry_after, pair)

    async def failed(self, session: AsyncSession, account: str, address: str) -> None:
        """Count one failure (and drop failures that have left the window)."""
        now = time.time()
        await session.execute(
            delete(LoginFailure).where(LoginFailure.failed_at <= now - self.window)
        )
        session.add(
            LoginFailure(
                account=account[:_ACCOUNT_MAX], address=address[:_ADDRESS_MAX], failed_at=now
            )
        )

    async def succeeded(self, session: AsyncSession, account: str, address: str) -> None:
        await session.execute(
            delete(LoginFailure).where(
                LoginFailure.account == account[:_ACCOUNT_MAX],
                LoginFailure.address == address[:_ADDRESS_MAX],
            )
        )
