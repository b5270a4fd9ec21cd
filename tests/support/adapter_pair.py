"""Two Dockyards on loopback: A, the registry, and B, serving its built-in scanner adapter
with OSV records for ``scanner_images`` loaded (the tests of scanning end to end)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from tests.support import scanner_images as images
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.server import DockyardServer


@contextlib.contextmanager
def adapter_pair(
    database: str, workdir: Path, prefix: str, key: str
) -> Iterator[tuple[DockyardServer, DockyardServer]]:
    """(A, B) on ``database`` (``sqlite`` or ``postgresql``); B's adapter wants ``key``."""
    loopback = {"DOCKYARD_EGRESS_ALLOW_LOOPBACK": "true", "DOCKYARD_JOB_POLL_SECONDS": "0.2"}
    adapter_env = {
        **loopback,
        "DOCKYARD_SCANNER_ADAPTER_ENABLED": "true",
        "DOCKYARD_SCANNER_ADAPTER_API_KEY": key,
    }
    osv = workdir / "records.json"
    osv.write_text(json.dumps(images.osv_records(prefix)))
    with contextlib.ExitStack() as stack:
        urls: list[str | None] = [None, None]
        if database == "postgresql":
            admin = postgres_admin_url()
            urls = [stack.enter_context(temporary_database(admin, migrated=True)) for _ in "ab"]
        a = stack.enter_context(DockyardServer(database_url=urls[0], env=loopback, disposable=True))
        b = stack.enter_context(
            DockyardServer(database_url=urls[1], env=adapter_env, disposable=True)
        )
        b.cli("vulndb", "import", str(osv))
        yield a, b
