"""The scheduled refresh of the OSV database: ``VULNDB_REFRESH``.

With ``vulndb_refresh_cron`` and ``vulndb_refresh_urls`` set, each start of the server puts
one schedule in place (``sync_schedule``); each run imports every URL as ``dockyard vulndb
import`` would. Downloading and parsing run in a worker thread, batches are written from the
job's event loop, so the server's requests go on meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError

from dockyard.db.engine import Database
from dockyard.errors import BadRequestError, ConfigurationError
from dockyard.jobs import schedules
from dockyard.jobs import service as jobs_service
from dockyard.jobs.runner import JobContext, JobType, PermanentJobError
from dockyard.settings import Settings

from . import vulndb
from .osv import OsvRecord

VENDOR_TYPE = "VULNDB_REFRESH"
_QUEUE_DEPTH = 2 * vulndb.BATCH
_END = object()


async def _items_off_loop(source: str) -> tuple[asyncio.Queue[object], threading.Thread]:
    """A queue the parsed records of ``source`` arrive in, read and parsed by a thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(_QUEUE_DEPTH)

    def produce() -> None:
        try:
            for where, doc in vulndb.iter_source(source):
                parsed = vulndb.parse_item(where, doc)
                asyncio.run_coroutine_threadsafe(queue.put(parsed), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(_END), loop).result()
        except BaseException as exc:
            asyncio.run_coroutine_threadsafe(queue.put(exc), loop).result()

    thread = threading.Thread(target=produce, name="vulndb-refresh", daemon=True)
    thread.start()
    return queue, thread


async def import_source_off_loop(db: Database, source: str) -> vulndb.ImportResult:
    queue, thread = await _items_off_loop(source)
    result = vulndb.ImportResult()
    batch: list[OsvRecord] = []
    while True:
        item = await queue.get()
        if item is _END:
            break
        if isinstance(item, BaseException):
            if isinstance(item, vulndb.SourceError):
                raise item
            raise vulndb.SourceError(f"{source}: {item}") from item
        result.read += 1
        if isinstance(item, vulndb.Skipped):
            result.skip(item.where, item.why)
            continue
        assert isinstance(item, OsvRecord)
        batch.append(item)
        if len(batch) >= vulndb.BATCH:
            await vulndb.write_batch(db, batch, result)
            batch = []
    if batch:
        await vulndb.write_batch(db, batch, result)
    await asyncio.to_thread(thread.join)
    return result


async def refresh(ctx: JobContext) -> Mapping[str, Any] | None:
    urls = ctx.params.get("urls")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise PermanentJobError("the refresh has no list of URLs")
    totals: dict[str, int] = {"read": 0, "inserted": 0, "updated": 0, "skipped": 0}
    for url in urls:
        ctx.log(f"importing {url}")
        try:
            result = await import_source_off_loop(ctx.env.db, url)
        except vulndb.SourceError as exc:
            raise RuntimeError(str(exc)) from None  # retried: the server may be back later
        ctx.log(
            f"{url}: {result.read} records read, {result.inserted} new, {result.updated} "
            f"updated, {result.unchanged} unchanged, {result.skipped} skipped"
        )
        for reason in result.reasons:
            ctx.log(f"skipped {reason}")
        for key in totals:
            totals[key] += getattr(result, key)
    return totals


async def sync_schedule(db: Database, settings: Settings) -> None:
    """Put the refresh schedule the settings ask for in place (or remove it). Writes only
    when that changes something, so a start on a full disk is not refused for it."""
    async with db.read() as session:
        existing = await schedules.find_schedule(session, VENDOR_TYPE)
        current = (existing.cron, existing.params) if existing is not None else None
    if not settings.vulndb_refresh_cron:
        if current is not None:
            async with db.write() as session:
                await schedules.remove_schedule(session, VENDOR_TYPE)
        return
    try:
        cron = schedules.validate_cron(settings.vulndb_refresh_cron)
    except BadRequestError as exc:
        raise ConfigurationError(f"vulndb_refresh_cron: {exc.message}") from None
    params = {"urls": list(settings.vulndb_refresh_urls)}
    if current == (cron, jobs_service.dumps(params)):
        return
    try:
        async with db.write() as session:
            await schedules.set_schedule(
                session, VENDOR_TYPE, schedules.CronSpec("Custom", cron), params
            )
    except IntegrityError:
        pass  # another node starting at the same moment put the same schedule in place


job_types: list[JobType] = [JobType(VENDOR_TYPE, refresh)]
