"""``dockyard backup`` and ``dockyard restore`` for the embedded default (SQLite and the
filesystem driver), taken while the server serves. See docs/backup.md.

A backup is a folder::

    manifest.json      format, Dockyard version, schema revision, counts, checksums
    dockyard.db        a consistent snapshot of the database (``VACUUM INTO``)
    storage/blobs/...  every blob the snapshot names, at its usual key

Its order is what makes it consistent while pushes and garbage collection go on:

1. garbage collection's sweep is held off (``db/sweep_hold.py``): batches in flight
   finish, no new blob is claimed;
2. the database is snapshotted in one read transaction (``VACUUM INTO``; writers go on
   under WAL). Rows are written after their bytes, so every blob row in it has its file;
3. every blob the snapshot shows live is copied and hashed on the way: content addressing
   makes the digest its checksum, and no blob of the snapshot can be deleted meanwhile;
4. the hold is released, and ``manifest.json`` is written last: a folder without it is an
   unfinished backup, which ``restore`` refuses.

Upload sessions in flight are left out (their rows are removed from the snapshot; clients
start those uploads again). Blobs GC had claimed before the snapshot (``deleting``) are
not copied; their rows stay, and the restored server's next GC finishes them as it does
after a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.db.engine import sqlite_file
from dockyard.db.sweep_hold import sweeps_held
from dockyard.errors import AppError
from dockyard.settings import Settings
from dockyard.storage.layout import blob_key

FORMAT = 1
"""The backup folder's format; a restore refuses a newer one."""
MANIFEST = "manifest.json"
DATABASE = "dockyard.db"
STORAGE = "storage"
_CHUNK = 1 << 20
_COUNTED = ("project", "repository", "artifact", "tag", "blob")
_DELETING = "deleting"

Progress = Callable[[int, int, int, int], None]
"""Called before the first blob and after each: (blobs done, blobs in all, bytes done,
bytes in all)."""


class BackupError(AppError):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Summary:
    path: Path
    manifest: dict[str, Any]


def _embedded(settings: Settings, verb: str) -> Path:
    """The SQLite file, or a refusal for a deployment this command cannot handle."""
    database = sqlite_file(settings.effective_database_url)
    if database is None:
        raise BackupError(
            f"dockyard {verb} handles the embedded default only (SQLite and filesystem "
            "storage); this deployment uses PostgreSQL: back it up with pg_dump and "
            "restore with pg_restore, database first, then the bucket (docs/backup.md)"
        )
    if settings.storage_driver != "filesystem":
        raise BackupError(
            f"dockyard {verb} handles the embedded default only (SQLite and filesystem "
            f"storage); this deployment stores blobs in {settings.storage_driver}: use the "
            "store's versioning or replication (docs/backup.md)"
        )
    return Path(database)


def _is_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


# --- backup ----------------------------------------------------------------------------------


def backup(settings: Settings, dest: Path, progress: Progress | None = None) -> Summary:
    """Write a backup of the running (or stopped) embedded deployment into ``dest``,
    which must not exist or be empty."""
    database = _embedded(settings, "backup")
    if not database.exists():
        raise BackupError(f"no database at {database}: nothing to back up")
    if not _is_empty(dest):
        raise BackupError(f"{dest} exists and is not empty; give a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    root = settings.effective_storage_root
    try:
        with sweeps_held(str(database)):
            snapshot = dest / DATABASE
            with closing(sqlite3.connect(database, timeout=30)) as source:
                source.execute("VACUUM INTO ?", (str(snapshot),))
            blobs, revision, counts = _prepare_snapshot(snapshot)
            copied = _copy_blobs(root, dest / STORAGE, blobs, progress)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    # One flush of everything written, before the manifest says the backup is whole
    # (cheaper than an fsync per blob, which halved the speed).
    os.sync()
    manifest = {
        "format": FORMAT,
        "dockyard_version": _version(),
        "schema_revision": revision,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": {"file": DATABASE, "sha256": _sha256_file(dest / DATABASE)},
        "counts": counts,
        "blobs": {"count": len(blobs), "bytes": copied},
        "checksums": "each blob's digest is its checksum (sha256 of its bytes)",
    }
    _write_json(dest / MANIFEST, manifest)
    return Summary(dest, manifest)


def _prepare_snapshot(snapshot: Path) -> tuple[list[tuple[str, int]], str, dict[str, int]]:
    """Drop upload sessions (their partial files are not copied) from the snapshot and read
    its revision, counts and live blobs (digest, size)."""
    with closing(sqlite3.connect(snapshot)) as conn:
        conn.execute("DELETE FROM blob_upload")
        conn.commit()
        revision = _revision(conn)
        counts = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 (fixed names)
            for table in _COUNTED
        }
        blobs = [
            (str(digest), int(size))
            for digest, size in conn.execute(
                "SELECT digest, size FROM blob WHERE status <> ? ORDER BY id", (_DELETING,)
            )
        ]
    return blobs, revision, counts


def _revision(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    if row is None:
        raise BackupError("the database has no schema revision; run dockyard migrate first")
    return str(row[0])


def _copy_blobs(
    root: Path, target: Path, blobs: list[tuple[str, int]], progress: Progress | None
) -> int:
    copied = 0
    total = sum(size for _, size in blobs)
    missing: list[str] = []
    if progress is not None:
        progress(0, len(blobs), 0, total)
    for done, (digest, _size) in enumerate(blobs, 1):
        key = blob_key(digest)
        try:
            copied += _copy_checked(root / key, target / key, digest)
        except FileNotFoundError:
            missing.append(digest)
        if progress is not None:
            progress(done, len(blobs), copied, total)
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise BackupError(
            f"{len(missing)} blob(s) the database names are missing from {root}: {shown}; "
            "the store lost them before this backup (check the disk)"
        )
    return copied


def _copy_checked(src: Path, dst: Path, digest: str) -> int:
    """Copy ``src`` to ``dst`` (written aside, then renamed) and check its bytes hash to
    ``digest``; returns the bytes copied."""
    algorithm, _, expected = digest.partition(":")
    try:
        hasher = hashlib.new(algorithm)
    except ValueError:
        raise BackupError(f"blob {digest}: unknown digest algorithm") from None
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    size = 0
    with src.open("rb") as reader, partial.open("wb") as writer:
        while chunk := reader.read(_CHUNK):
            hasher.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    if hasher.hexdigest() != expected:
        partial.unlink()
        raise BackupError(f"blob {digest} at {src} does not match its digest (corrupted)")
    partial.rename(dst)
    return size


# --- restore ---------------------------------------------------------------------------------


def read_manifest(source: Path) -> dict[str, Any]:
    path = source / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(
            f"{source} is not a finished Dockyard backup (no {MANIFEST}; an interrupted "
            "backup has none)"
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), int):
        raise BackupError(f"{path} is not a Dockyard backup manifest")
    if manifest["format"] > FORMAT:
        raise BackupError(
            f"the backup's format {manifest['format']} is newer than this Dockyard reads "
            f"({FORMAT}); restore it with the version that made it "
            f"({manifest.get('dockyard_version', 'unknown')}) or later"
        )
    return manifest


def restore(
    settings: Settings,
    source: Path,
    *,
    force: bool = False,
    known_revisions: Callable[[str], bool],
    progress: Progress | None = None,
) -> Summary:
    """Restore the backup in ``source`` into the settings' database and storage root,
    which must be empty (or are replaced with ``force``). Every checksum is verified
    before anything is put in place."""
    database = _embedded(settings, "restore")
    root = settings.effective_storage_root
    manifest = read_manifest(source)
    revision = str(manifest.get("schema_revision", ""))
    if not known_revisions(revision):
        raise BackupError(
            f"the backup's schema revision {revision!r} is unknown to this Dockyard "
            f"({_version()}): it was made by a newer version "
            f"({manifest.get('dockyard_version', 'unknown')}); upgrade Dockyard first"
        )
    snapshot = source / DATABASE
    expected = (manifest.get("database") or {}).get("sha256")
    if not snapshot.exists():
        raise BackupError(f"the backup has no {DATABASE}")
    if _sha256_file(snapshot) != expected:
        raise BackupError(f"{snapshot} does not match the manifest's checksum (corrupted)")
    occupied = [p for p in (database, root) if not _is_empty(p)]
    if occupied and not force:
        raise BackupError(
            f"{', '.join(map(str, occupied))} is not empty; restore into a fresh data "
            "directory, or pass --force to replace what is there"
        )
    with closing(sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)) as conn:
        blobs = [
            (str(digest), int(size))
            for digest, size in conn.execute(
                "SELECT digest, size FROM blob WHERE status <> ? ORDER BY id", (_DELETING,)
            )
        ]
        if _revision(conn) != revision:
            raise BackupError("the backup's database and manifest disagree on the revision")
    count = (manifest.get("blobs") or {}).get("count")
    if count != len(blobs):
        raise BackupError(
            f"the backup's database names {len(blobs)} blobs, its manifest {count} (corrupted)"
        )
    staging = root.with_name(root.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    total, verified = sum(size for _, size in blobs), 0
    try:
        if progress is not None:
            progress(0, len(blobs), 0, total)
        for done, (digest, _size) in enumerate(blobs, 1):
            key = blob_key(digest)
            try:
                verified += _copy_checked(source / STORAGE / key, staging / key, digest)
            except FileNotFoundError:
                raise BackupError(f"the backup lacks blob {digest} (incomplete)") from None
            if progress is not None:
                progress(done, len(blobs), verified, total)
        # Everything checked and flushed: replace what is there (with --force), then move
        # into place.
        os.sync()
        if force:
            _remove_database(database)
            shutil.rmtree(root, ignore_errors=True)
        database.parent.mkdir(parents=True, exist_ok=True)
        placed = database.with_name(database.name + ".restoring")
        shutil.copyfile(snapshot, placed)
        if root.exists():
            root.rmdir()  # empty (checked above)
        root.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir(parents=True, exist_ok=True)
        staging.rename(root)
        placed.rename(database)
        os.sync()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Summary(source, manifest)


def _remove_database(database: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with suppress(FileNotFoundError):
            database.with_name(database.name + suffix).unlink()


# --- helpers ---------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _write_json(path: Path, value: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("w") as writer:
        json.dump(value, writer, indent=2)
        writer.write("\n")
        writer.flush()
        os.fsync(writer.fileno())
    partial.rename(path)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dockyard")
    except PackageNotFoundError:
        return "unknown"
