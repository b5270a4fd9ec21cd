"""The retention part of ``/api/v2.0`` (filled in with the feature)."""

from __future__ import annotations

from dockyard.http.api import Operation

operations: list[Operation] = []
