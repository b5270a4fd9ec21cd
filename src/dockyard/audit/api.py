"""``/api/v2.0`` endpoints of this domain (see ``dockyard.http.api``)."""

from __future__ import annotations

from dockyard.http.api import Operation

operations: list[Operation] = []
