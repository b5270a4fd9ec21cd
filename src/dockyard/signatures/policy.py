"""Content trust as a pull policy (``registry/pull_policy.py``).

With ``enable_content_trust_cosign`` (cosign) or ``enable_content_trust`` (Notation)
on, a manifest GET/HEAD is served only when the artifact has a signature accessory of
that kind — Harbor's rule, Harbor's refusal (``412 PROJECTPOLICYVIOLATION``, "The image
is not signed by cosign."). When the project trusts keys of that kind, the signature
must also verify against them: the pull reads the stored verdict in the same statement.

Let through without a signature, as Harbor does: a pull by the scanner's credential
(``scanner-pull``), a signing client reading what it will sign (``signer_pull``: a caller
who may push the repository, with a cosign/notation/dockyard-sign User-Agent, unless
``content_trust_signer_pull`` is off) and a pull of a signature itself (verifiers read
it). The children of a signed index are checked on their own, as Harbor checks them
(``docs/signatures.md``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from dockyard.errors import PolicyViolationError
from dockyard.registry.pull_policy import ManifestPullCheck
from dockyard.signatures import repository as repo
from dockyard.signatures.service import SignatureChecker

_REASONS_SHOWN = 3


class ContentTrustPolicy:
    switches: tuple[str, ...] = tuple(repo.FLAG_OF_KIND.values())

    def __init__(self, checker: SignatureChecker) -> None:
        self.checker = checker

    async def check_pull(self, conn: AsyncConnection, pull: ManifestPullCheck) -> None:
        if pull.scanner_pull or pull.signer_pull:
            return
        state = await repo.trust_state(conn, pull.repository, pull.digest)
        if state is None or not state.kinds or state.is_signature:
            return
        for kind in repo.KINDS:
            found = state.kinds.get(kind)
            if found is None:
                continue
            if not found.signed:
                raise PolicyViolationError(f"The image is not signed by {kind}.")
            if found.key_set_version is None or found.verified:
                continue
            # No verified verdict stored: compute the missing ones once (bounded), keep
            # them, and decide; the next pull reads them.
            verdicts = await self.checker.settle(state.artifact_id, kind)
            if any(v.verified for v in verdicts):
                continue
            reasons = "; ".join(f"{v.digest[:19]}…: {v.reason}" for v in verdicts[:_REASONS_SHOWN])
            raise PolicyViolationError(
                f"The image is not signed by {kind} with a key the project trusts"
                + (f" ({reasons})." if reasons else ".")
            )
