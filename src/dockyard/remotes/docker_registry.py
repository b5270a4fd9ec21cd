"""``docker-registry``: any registry speaking the distribution API (CNCF distribution,
zot, …), with no auth, Basic, or the Docker token flow. Without a ``_catalog`` the
remote's repositories cannot be listed and are named instead (``RemoteUnsupported``)."""

from __future__ import annotations

from dockyard.remotes.distribution import DistributionAdapter


class DockerRegistryAdapter(DistributionAdapter):
    """Everything is the distribution API's; see ``distribution.py``."""
