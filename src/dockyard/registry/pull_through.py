"""The pull-through seam: what ``/v2/`` asks before it serves from, or writes into, a
repository that may belong to a proxy cache project.

The registry knows no upstream. ``create_app`` hands the service a ``PullThrough``
(``proxy/cache.py``); the manifest and blob handlers ask it first. For a repository of an
ordinary project each call answers from a short-lived in-memory lookup and does nothing.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["PullThrough"]


class PullThrough(Protocol):
    async def manifest(self, repository: str, reference: str) -> None:
        """Make the local copy of ``reference`` current (fetch it, move the tag), or leave
        the cached copy when the upstream fails and the project serves from cache; raise
        an ``AppError`` when nothing can be served."""

    async def blob(self, repository: str, digest: str) -> None:
        """Make the blob present locally (fetched from the upstream and verified) when the
        repository is in a proxy cache project and does not hold it yet."""

    async def refuse_write(self, repository: str) -> None:
        """Raise ``DeniedError`` when the repository is in a proxy cache project."""
