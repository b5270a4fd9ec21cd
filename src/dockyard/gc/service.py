"""Online garbage collection: mark and sweep over the database while the registry serves.

One run (a job, ``GARBAGE_COLLECTION``) goes through these phases, each resumable
from the task's checkpoint and idempotent when repeated:

1. ``untagged`` (with ``delete_untagged``): artifacts without a tag, pushed before the
   cut-off, that no index lists and that are no accessory of a live artifact, go
   through the registry's removal path (hooks: quota release, audit, webhooks),
   index parents before their children, subjects before their accessories.
2. ``mark``: collectable blobs (no artifact needs them, untouched since the cut-off)
   get status ``delete`` and a new version.
3. ``sweep``: per batch, one short transaction claims the blobs still marked with
   that version and still collectable (status ``deleting``); their bytes are deleted
   by a thread pool of ``workers``; a second short transaction deletes the rows still
   ``deleting`` with their links, refunds the projects' quotas and adds the counts to
   the execution (so counts and deletions commit together).
4. ``uploads``: upload sessions idle since before the cut-off (at least
   ``UPLOAD_MIN_AGE``): row first, then the partial object.
5. ``orphans``: blob files no row names, older than ``UPLOAD_MIN_AGE`` and the
   window (left by crashes between bytes and rows), each claimed with a ``deleting``
   row before its bytes go; then partial uploads no session names, as old.

The registry's side of the race is in ``registry/service.py``: every path that links
or vouches for an existing blob touches it (status back to ``none``, ``update_time``
now) in the transaction that links it, and refuses a blob already ``deleting``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.db.base import utcnow
from dockyard.db.engine import Database, sqlite_file
from dockyard.db.sweep_hold import SweepTurn, sweep_turn
from dockyard.errors import BadRequestError, ManifestReferencedError
from dockyard.gc import repository as repo
from dockyard.jobs import service as jobs
from dockyard.jobs.models import Execution
from dockyard.jobs.runner import JobContext, JobStopped, PermanentJobError
from dockyard.registry import repository as registry_repo
from dockyard.registry.hooks import SYSTEM_ACTOR
from dockyard.registry.service import RegistryService
from dockyard.storage import Storage, blob_key
from dockyard.storage.base import ObjectInfo
from dockyard.storage.filesystem import FilesystemStorage
from dockyard.storage.layout import upload_id_of_key
from dockyard.system import readonly

JOB_TYPE = "GARBAGE_COLLECTION"
MAX_WORKERS = 10
MAX_WINDOW_HOURS = 24 * 365
UPLOAD_MIN_AGE = timedelta(minutes=10)
"""Upload sessions and unnamed blob files younger than this are never collected,
whatever the window: a push may be between its requests (window ``0`` included)."""
_CHECKPOINT_SECONDS = 1.0
_ARTIFACTS_PER_TRANSACTION = 50
COUNTERS = (
    "purged_blobs",
    "purged_manifests",
    "freed_space",
    "deleted_artifacts",
    "purged_uploads",
    "purged_orphans",
)

PHASES = ("untagged", "mark", "sweep", "uploads", "orphans", "done")


@dataclass(frozen=True, slots=True)
class GcParams:
    delete_untagged: bool = False
    dry_run: bool = False
    workers: int = 1
    time_window: float = 2.0
    """Hours: blobs touched more recently are kept."""

    def as_dict(self) -> dict[str, Any]:
        window: float | int = self.time_window
        if float(window).is_integer():
            window = int(window)
        return {
            "delete_untagged": self.delete_untagged,
            "dry_run": self.dry_run,
            "workers": self.workers,
            "time_window": window,
        }


def parse_params(raw: Mapping[str, Any] | None, default_window: float) -> GcParams:
    """Harbor's GC ``parameters``; anything out of range is a ``BadRequestError``."""
    raw = dict(raw or {})
    unknown = sorted(set(raw) - {"delete_untagged", "dry_run", "workers", "time_window"})
    if unknown:
        raise BadRequestError(f"unknown GC parameter {unknown[0][:64]!r}")

    def flag(name: str) -> bool:
        value = raw.get(name, False)
        if not isinstance(value, bool):
            raise BadRequestError(f"{name} must be true or false")
        return value

    workers = raw.get("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise BadRequestError(f"workers must be an integer from 1 to {MAX_WORKERS}")
    if not 1 <= workers <= MAX_WORKERS:
        raise BadRequestError(f"workers must be from 1 to {MAX_WORKERS}, not {workers}")
    window = raw.get("time_window", default_window)
    if isinstance(window, bool) or not isinstance(window, int | float):
        raise BadRequestError("time_window must be a number of hours (0 or more)")
    if not 0 <= window <= MAX_WINDOW_HOURS:
        raise BadRequestError(f"time_window must be from 0 to {MAX_WINDOW_HOURS} hours")
    return GcParams(flag("delete_untagged"), flag("dry_run"), workers, float(window))


# --- starting a run --------------------------------------------------------------------


async def running_execution(session: AsyncSession) -> Execution | None:
    latest = await jobs.latest_execution(session, JOB_TYPE)
    if latest is not None and latest.status not in jobs.FINAL_STATUSES:
        return latest
    return None


async def start(
    session: AsyncSession, params: GcParams, trigger: str = jobs.MANUAL
) -> Execution | None:
    """Enqueue a run; ``None`` when one is already pending or running (one at a time)."""
    if await running_execution(session) is not None:
        return None
    attrs: dict[str, Any] = params.as_dict()
    return await jobs.enqueue(
        session,
        JOB_TYPE,
        trigger=trigger,
        extra_attrs=attrs,
        tasks=[jobs.TaskSpec(params=attrs, max_attempts=3)],
    )


# --- one run ---------------------------------------------------------------------------


class _Run:
    def __init__(self, ctx: JobContext, params: GcParams) -> None:
        self.ctx = ctx
        self.params = params
        self.db: Database = ctx.env.db
        self.storage: Storage = ctx.env.storage
        progress = dict(ctx.progress or {})
        self.now = utcnow()
        if "cutoff" in progress:
            self.cutoff = datetime.fromisoformat(progress["cutoff"])
            self.started = datetime.fromisoformat(progress["started"])
        else:
            self.started = self.now
            self.cutoff = self.now - timedelta(hours=params.time_window)
        # Upload sessions and nameless files: at least UPLOAD_MIN_AGE old.
        self.old_cutoff = min(self.cutoff, self.started - UPLOAD_MIN_AGE)
        self.phase: str = progress.get("phase", PHASES[0])
        self.resumed_in: str | None = progress.get("phase")
        """The phase a retried run resumes in (``None`` on a first attempt)."""
        self.after: int = int(progress.get("after", 0))
        self._last_checkpoint = time.monotonic()
        self.totals: dict[str, int] = {}

    def _progress(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "started": self.started.isoformat(),
            "phase": self.phase,
            "after": self.after,
        }

    async def checkpoint(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_checkpoint < _CHECKPOINT_SECONDS:
            return
        self._last_checkpoint = time.monotonic()
        await self.ctx.checkpoint(progress=self._progress(), extra_attrs=dict(self.totals))

    async def enter(self, phase: str) -> None:
        self.phase, self.after = phase, 0
        await self.checkpoint(force=True)

    async def add(self, session: AsyncSession, counts: dict[str, int]) -> None:
        totals = await repo.add_to_execution(session, self.ctx.execution_id, counts)
        self.totals = {k: int(totals.get(k, 0)) for k in COUNTERS}

    # --- real run ---------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self.ctx.log(
            f"garbage collection: delete_untagged={self.params.delete_untagged} "
            f"workers={self.params.workers} time_window={self.params.time_window}h "
            f"cut-off {self.cutoff.isoformat()}"
            + (" (resumed at " + self.phase + ")" if self.ctx.progress else "")
        )
        self.ctx.log(f"workers: {self.params.workers}")  # Harbor's wording; clients grep it
        async with self.db.write() as session:
            await self.add(session, dict.fromkeys(COUNTERS, 0))
        steps = {
            "untagged": self.delete_untagged,
            "mark": self.mark,
            "sweep": self.sweep,
            "uploads": self.purge_uploads,
            "orphans": self.purge_orphans,
        }
        for index, phase in enumerate(PHASES[:-1]):
            if PHASES.index(self.phase) > index:
                continue
            began = time.monotonic()
            await steps[phase]()
            self.ctx.log(f"phase {phase} took {time.monotonic() - began:.2f}s")
            await self.enter(PHASES[index + 1])
        self.ctx.log(_summary(self.totals))
        return dict(self.totals)

    async def delete_untagged(self) -> None:
        if not self.params.delete_untagged:
            return
        registry = self.ctx.env.registry
        async with self.db.read() as session:
            rounds = _untagged_rounds(await repo.untagged_artifacts(session, self.cutoff))
        deleted = 0
        for ids in rounds:
            for start in range(0, len(ids), _ARTIFACTS_PER_TRANSACTION):
                chunk = ids[start : start + _ARTIFACTS_PER_TRANSACTION]
                async with self.db.write() as session:
                    gone = await _remove_untagged(session, registry, chunk)
                    await self.add(session, {"deleted_artifacts": gone})
                deleted += gone
                await self.checkpoint()
        self.ctx.log(f"deleted {deleted} untagged artifacts")

    async def mark(self) -> None:
        marked = eligible_manifests = eligible_blobs = 0
        while True:
            async with self.db.read() as session:
                page = await repo.collectable_page(session, self.cutoff, self.after)
            if not page:
                break
            manifests = sum(1 for r in page if r.is_manifest)
            eligible_manifests += manifests
            eligible_blobs += len(page) - manifests
            async with self.db.write() as session:
                marked += await repo.mark(session, [r.id for r in page], self.cutoff)
            self.after = page[-1].id
            await self.checkpoint()
        self.ctx.log(_eligible(eligible_blobs, eligible_manifests))
        self.ctx.log(f"marked {marked} blobs as deletion candidates")

    async def sweep(self) -> None:
        """Claim a batch, delete its bytes, delete its rows. The bytes of one batch are
        deleted (in threads) while the next batch is claimed (on the loop)."""
        database_file = sqlite_file(self.db.url)
        turns: list[SweepTurn] = []
        try:
            await self._sweep_batches(database_file, turns)
        finally:
            for turn in turns:  # a failed batch must not keep a backup waiting
                turn.release()
        async with self.db.write() as session:
            kept = await repo.unmark_all(session)
        if kept:
            self.ctx.log(f"{kept} marked blobs were touched by pushes meanwhile and kept")
        self.ctx.log(
            f"deleted {self.totals.get('purged_blobs', 0)} blobs and "
            f"{self.totals.get('purged_manifests', 0)} manifests"
        )
        self.ctx.log(  # Harbor's wording
            f"{self.totals.get('purged_blobs', 0)} blobs and "
            f"{self.totals.get('purged_manifests', 0)} manifests are actually deleted"
        )

    async def _sweep_batches(self, database_file: str | None, turns: list[SweepTurn]) -> None:
        # A batch is claimed and its bytes deleted while the one before it is purged, so
        # the checkpoint (``self.after``) moves only when a batch's rows are gone: a
        # resumed run reads again from there, and finds the claimed batches.
        deleting: tuple[list[repo.BlobRow], asyncio.Future[None], SweepTurn, int] | None = None
        cursor = self.after
        while True:
            async with self.db.read() as session:
                page = await repo.marked_page(session, cursor)
            doomed: list[repo.BlobRow] = []
            # Held from the claim until the batch's bytes are gone, so that a backup
            # never copies from a snapshot a blob this batch deletes (db/sweep_hold.py).
            turn = await sweep_turn(database_file)
            turns.append(turn)
            if page:
                marked = [r for r in page if r.status == registry_repo.BLOB_MARKED]
                async with self.db.write() as session:
                    doomed = await repo.claim(session, marked, self.cutoff)
                doomed += [r for r in page if r.status == registry_repo.BLOB_DELETING]
                cursor = page[-1].id
            started = asyncio.ensure_future(
                _delete_bytes(self.storage, [r.digest for r in doomed], self.params.workers)
            )
            if deleting is not None:
                await self._purge(*deleting)
            deleting = (doomed, started, turn, cursor)
            if not page:
                await self._purge(*deleting)
                break

    async def _purge(
        self,
        rows: list[repo.BlobRow],
        bytes_gone: asyncio.Future[None],
        turn: SweepTurn,
        end: int,
    ) -> None:
        """Once a claimed batch's bytes are gone, its rows go (and its counts with them);
        ``end`` (the batch's last row id) is then where a resumed run starts."""
        try:
            await bytes_gone
        finally:
            turn.release()
        if rows:
            async with self.db.write() as session:
                gone = await repo.purge(session, rows)
                await self.add(session, _blob_counts(gone))
        self.after = end
        await self.checkpoint()

    async def purge_uploads(self) -> None:
        now = utcnow()
        while True:
            async with self.db.read() as session:
                stale = await repo.stale_uploads(session, self.old_cutoff, now)
            if not stale:
                break
            async with self.db.write() as session:
                gone = await repo.delete_stale_uploads(
                    session, [upload_id for upload_id, _ in stale], self.old_cutoff, now
                )
                await self.add(session, {"purged_uploads": len(gone)})
            for _, state in gone:
                await self.storage.abort(jobs.loads(state))
            await self.checkpoint()

    async def purge_orphans(self) -> None:
        """Blob files no row names, claimed through the database before their bytes go:
        per batch, insert a ``deleting`` row for each digest that still has no row (a
        push that adopts a file holds a row first, so the insert skips it), delete the
        claimed files, then the claims (with the counts). See docs/gc.md."""
        if self.resumed_in == "orphans":
            await self._finish_claims()
        orphans = await _orphan_files(self.db, self.storage, self.old_cutoff)
        sizes = {d: s for k, s in orphans if (d := _digest_of_key(k))}
        digests = sorted(sizes)
        purged = 0
        for start in range(0, len(digests), repo.BATCH):
            chunk = digests[start : start + repo.BATCH]
            async with self.db.write() as session:
                claimed = await repo.claim_orphans(
                    session, [(d, sizes[d]) for d in chunk], utcnow()
                )
            await _delete_bytes(self.storage, [d for _, d in claimed], self.params.workers)
            async with self.db.write() as session:
                await repo.release_orphans(session, [i for i, _ in claimed])
                await self.add(
                    session,
                    {
                        "purged_orphans": len(claimed),
                        "freed_space": sum(sizes[d] for _, d in claimed),
                    },
                )
            purged += len(claimed)
            await self.checkpoint()
        self.ctx.log(f"deleted {purged} blob files no blob row named")
        await self.purge_upload_orphans()

    async def _finish_claims(self) -> None:
        """Claims an attempt killed in this phase left (rows ``deleting``, their files
        maybe still there): bytes, then rows, as the sweep finishes its own. Pushes of
        those digests wait for them to go, so they are not left for the next run."""
        after = 0
        while True:
            async with self.db.read() as session:
                page = await repo.marked_page(session, after)
            if not page:
                return
            after = page[-1].id
            doomed = [r for r in page if r.status == registry_repo.BLOB_DELETING]
            gone = asyncio.ensure_future(
                _delete_bytes(self.storage, [r.digest for r in doomed], self.params.workers)
            )
            # Nothing new is claimed, and this phase keeps its own place.
            await self._purge(doomed, gone, SweepTurn(None), self.after)

    async def purge_upload_orphans(self) -> None:
        """Partial uploads no upload session names (left by a crash between the file and
        the row, or between the row's deletion and the file's), as old as the blob
        orphans must be. A session's file is created just before its row, and an upload
        start that takes longer than ``registry.service.UPLOAD_START_LIMIT`` (half of
        ``UPLOAD_MIN_AGE``) is rolled back, so an old file never gains a row: the
        rows are read again just before each batch is deleted."""
        orphans = await _orphan_uploads(self.db, self.storage, self.old_cutoff)
        purged = 0
        for start in range(0, len(orphans), repo.BATCH):
            chunk = orphans[start : start + repo.BATCH]
            async with self.db.read() as session:
                named = await repo.existing_uploads(
                    session, [upload_id_of_key(k) for k, _ in chunk]
                )
            doomed = [(k, s) for k, s in chunk if upload_id_of_key(k) not in named]
            for key, _ in doomed:
                await self.storage.delete(key)
            async with self.db.write() as session:
                await self.add(
                    session,
                    {"purged_orphans": len(doomed), "freed_space": sum(s for _, s in doomed)},
                )
            purged += len(doomed)
            await self.checkpoint()
        self.ctx.log(f"deleted {purged} partial uploads no upload session named")

    # --- dry run ------------------------------------------------------------------------

    async def dry_run(self) -> dict[str, Any]:
        """What a real run would do now, counted without changing anything."""
        counts = dict.fromkeys(COUNTERS, 0)
        doomed: dict[int, repo.BlobRow] = {}
        async with self.db.read() as session:
            removed: set[int] = set()
            if self.params.delete_untagged:
                rounds = _untagged_rounds(await repo.untagged_artifacts(session, self.cutoff))
                removed = {i for ids in rounds for i in ids}
                counts["deleted_artifacts"] = len(removed)
            after = 0
            while page := await repo.collectable_page(session, self.cutoff, after):
                doomed.update((r.id, r) for r in page)
                after = page[-1].id
                await self.checkpoint()  # a dry run is stoppable too
            after = 0
            while page := await repo.marked_page(session, after):
                doomed.update((r.id, r) for r in page if r.status == registry_repo.BLOB_DELETING)
                after = page[-1].id
            if removed:
                digests = await _digests_of(session, removed)
                named = sorted(await repo.blobs_of_manifests(session, digests))
                held = await repo.holders(session, named)
                freed = [d for d in named if held.get(d, set()) <= removed]
                for row in await repo.blobs_by_digest(session, freed, self.cutoff):
                    doomed[row.id] = row
            counts.update(_blob_counts(list(doomed.values())))
            counts["purged_uploads"] = await repo.count_stale_uploads(
                session, self.old_cutoff, utcnow()
            )
        orphans = await _orphan_files(self.db, self.storage, self.old_cutoff)
        orphans += await _orphan_uploads(self.db, self.storage, self.old_cutoff)
        counts["purged_orphans"] = len(orphans)
        counts["freed_space"] += sum(size for _, size in orphans)
        self.totals = counts
        async with self.db.write() as session:
            await repo.set_on_execution(session, self.ctx.execution_id, counts)
        self.ctx.log(f"workers: {self.params.workers}")
        self.ctx.log(_eligible(counts["purged_blobs"], counts["purged_manifests"]))
        self.ctx.log("dry run: nothing deleted; " + _summary(counts))
        return counts


async def run_gc(ctx: JobContext) -> Mapping[str, Any] | None:
    """The ``GARBAGE_COLLECTION`` job's handler."""
    try:
        params = parse_params(ctx.params, ctx.env.settings.gc_time_window_hours)
    except BadRequestError as exc:
        raise PermanentJobError(str(exc)) from exc
    run = _Run(ctx, params)
    read_only = False
    if not params.dry_run:
        async with ctx.env.db.read() as session:
            read_only = await readonly.read(session)
        if read_only:
            ctx.log("read-only mode is on: nothing is deleted (a dry run instead)")
    if params.dry_run or read_only:
        return await run.dry_run()
    try:
        return await run.run()
    except JobStopped:
        # Stopped: the blobs still only marked go back to live (claimed ones stay
        # claimed; their bytes may be half gone and the next run finishes them).
        async with ctx.env.db.write() as session:
            await repo.unmark_all(session)
        ctx.log("stopped; marks given up")
        raise


# --- helpers ----------------------------------------------------------------------------


def _blob_counts(rows: Sequence[repo.BlobRow]) -> dict[str, int]:
    manifests = sum(1 for r in rows if r.is_manifest)
    return {
        "purged_blobs": len(rows) - manifests,
        "purged_manifests": manifests,
        "freed_space": sum(r.size for r in rows),
    }


def _eligible(blobs: int, manifests: int) -> str:
    """Harbor's line for the candidates of a run (scripts grep for it)."""
    return f"{blobs} blobs and {manifests} manifests eligible for deletion"


def _summary(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key}={counts.get(key, 0)}" for key in COUNTERS)


def _untagged_rounds(found: dict[int, repo.UntaggedArtifact]) -> list[list[int]]:
    """The untagged artifacts a run deletes, round by round: an artifact goes once every
    index listing it and every subject it is an accessory of has gone (or never was
    untagged-and-deletable, in which case it stays)."""
    removed: set[int] = set()
    rounds: list[list[int]] = []
    while True:
        ready = [
            a.id
            for a in found.values()
            if a.id not in removed and a.parents <= removed and a.subjects <= removed
        ]
        if not ready:
            return rounds
        rounds.append(sorted(ready))
        removed.update(ready)


async def _remove_untagged(
    session: AsyncSession, registry: RegistryService, ids: Sequence[int]
) -> int:
    """Delete these artifacts through the registry's removal path, each only if it is
    still untagged and no index lists it now; returns how many went."""
    gone = 0
    for artifact_id in ids:
        artifact = await repo.find_artifact(session, artifact_id)
        if artifact is None or await repo.has_tags(session, artifact_id):
            continue
        target = registry_repo.RepositoryRef(
            artifact.repository_id, artifact.project_id, artifact.repository_name
        )
        try:
            await registry.remove_artifact(session, target, artifact, SYSTEM_ACTOR)
        except ManifestReferencedError:
            continue  # an index listing it arrived meanwhile
        gone += 1
    return gone


async def _digests_of(session: AsyncSession, artifact_ids: set[int]) -> list[str]:
    return sorted(await repo.artifact_digests(session, sorted(artifact_ids)))


async def _delete_bytes(storage: Storage, digests: Sequence[str], workers: int) -> None:
    """Delete the blobs' objects with ``workers`` threads at once: the filesystem
    driver's bulk delete in ``workers`` slices, other drivers object by object."""
    if not digests:
        return
    keys = [blob_key(d) for d in digests]
    if isinstance(storage, FilesystemStorage):
        size = max(1, -(-len(keys) // workers))
        await asyncio.gather(
            *(storage.delete_many(keys[i : i + size]) for i in range(0, len(keys), size))
        )
        return
    limit = asyncio.Semaphore(workers)

    async def one(key: str) -> None:
        async with limit:
            await storage.delete(key)

    await asyncio.gather(*(one(k) for k in keys))


async def _orphan_files(
    db: Database, storage: Storage, older_than: datetime
) -> list[tuple[str, int]]:
    """(key, size) of blob files older than ``older_than`` that no blob row names."""
    candidates: list[str] = []
    orphans: list[tuple[str, int]] = []

    async def flush() -> None:
        digests = {_digest_of_key(k): k for k in candidates}
        async with db.read() as session:
            known = await repo.existing_digests(session, sorted(d for d in digests if d))
        unnamed = [key for digest, key in digests.items() if digest and digest not in known]
        for info in await _stat_all(storage, unnamed):
            if info is not None and info.modified < older_than:
                orphans.append((info.key, info.size))
        candidates.clear()

    async for key in storage.list("blobs/"):
        candidates.append(key)
        if len(candidates) >= repo.BATCH:
            await flush()
    await flush()
    return orphans


async def _orphan_uploads(
    db: Database, storage: Storage, older_than: datetime
) -> list[tuple[str, int]]:
    """(key, size) of partial uploads last written before ``older_than`` that no upload
    session names."""
    candidates: list[str] = []
    orphans: list[tuple[str, int]] = []

    async def flush() -> None:
        async with db.read() as session:
            known = await repo.existing_uploads(session, [upload_id_of_key(k) for k in candidates])
        unnamed = [key for key in candidates if upload_id_of_key(key) not in known]
        for info in await _stat_all(storage, unnamed):
            if info is not None and info.modified < older_than:
                orphans.append((info.key, info.size))
        candidates.clear()

    async for key in storage.list("uploads/"):
        candidates.append(key)
        if len(candidates) >= repo.BATCH:
            await flush()
    await flush()
    return orphans


async def _stat_all(storage: Storage, keys: Sequence[str]) -> list[ObjectInfo | None]:
    """``stat`` of each key: the filesystem driver's in one worker-thread trip (on a busy
    registry, one trip per file made the walk wait for the loop once per file)."""
    if isinstance(storage, FilesystemStorage):
        return await storage.stat_many(keys)
    return [await storage.stat(key) for key in keys]


def _digest_of_key(key: str) -> str | None:
    """``blobs/sha256/ab/abcdef…`` -> ``sha256:abcdef…``."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "blobs":
        return None
    return f"{parts[1]}:{parts[3]}"
