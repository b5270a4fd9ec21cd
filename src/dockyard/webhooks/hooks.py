"""Webhooks in the registry's hook seam (filled in with the feature)."""

from __future__ import annotations

from dockyard.db.engine import Database
from dockyard.registry.hooks import NoHooks
from dockyard.settings import Settings


class RegistryHooks(NoHooks):
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
