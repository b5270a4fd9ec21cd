"""First-start work: migrations, the admin user, the ``library`` project, the token key;
and keeping the data directory private to the service."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from dockyard.db.engine import Database, insert_ignore, sqlite_file
from dockyard.db.migrate import migrate
from dockyard.iam.models import User
from dockyard.iam.passwords import generate_password, hash_password
from dockyard.iam.tokens import generate_signing_key
from dockyard.projects import repository as projects_repo
from dockyard.projects.service import create_project
from dockyard.settings import Settings
from dockyard.system.config import get_property
from dockyard.system.models import Property
from dockyard.system.secretbox import SECRET_KEY_PROPERTY, generate_key

TOKEN_KEY_PROPERTY = "token_signing_key"  # noqa: S105 - a property name
PRIVATE_UMASK = 0o077
"""Files and directories the service creates are its own: 0600 and 0700."""

log = logging.getLogger("dockyard.system")


@dataclass(frozen=True)
class BootstrapReport:
    migrated_from: str | None
    migrated_to: str | None
    generated_admin_password: str | None
    """Set only when this start created ``admin`` with a random password."""
    admin_password_ignored: bool = False
    """``admin_password`` was set but ``admin`` already existed, so it changed nothing."""


async def prepare(settings: Settings, database: Database) -> BootstrapReport:
    """Idempotent: safe on every start and on several nodes starting at once.

    The whole of it runs under the database's startup lock, so processes starting
    together take turns: the first migrates and creates the rows, the others find
    them. The inserts are idempotent as well (``ON CONFLICT DO NOTHING``)."""
    _create_sqlite_file(database)
    async with database.startup_lock():
        before, after = await migrate(database)
        generated, created = await _first_start_rows(settings, database)
    ignored = settings.admin_password is not None and not created
    return BootstrapReport(before, after, generated, ignored)


async def _first_start_rows(settings: Settings, database: Database) -> tuple[str | None, bool]:
    """Create ``admin``, ``library``, the token key and the settings secret key where
    missing; returns the generated admin password when this call created ``admin`` with
    one, and whether this call created ``admin``."""
    async with database.read() as session:
        exists = await session.scalar(select(User.user_id).where(User.username == "admin"))
    generated: str | None = None
    created = False
    password_hash = None
    if exists is None:
        # Hash outside the write transaction: the slow KDF must not hold the write lock.
        password = settings.admin_password or (generated := generate_password())
        password_hash = hash_password(password)
    async with database.write() as session:
        if password_hash is not None:
            inserted = await session.execute(
                insert_ignore(
                    session,
                    User,
                    {
                        "username": "admin",
                        "password": password_hash,
                        "realname": "system admin",
                        "comment": "admin user",
                        "sysadmin_flag": True,
                    },
                    ["username"],
                )
            )
            created = getattr(inserted, "rowcount", 0) == 1
            if not created:
                generated = None  # someone else made admin first; their password stands
        admin_id = await session.scalar(select(User.user_id).where(User.username == "admin"))
        assert admin_id is not None
        if await projects_repo.find_project_by_name(session, "library") is None:
            await create_project(session, "library", owner_id=admin_id, public=True)
        await session.execute(
            insert_ignore(
                session, Property, {"k": TOKEN_KEY_PROPERTY, "v": generate_signing_key()}, ["k"]
            )
        )
        await session.execute(
            insert_ignore(session, Property, {"k": SECRET_KEY_PROPERTY, "v": generate_key()}, ["k"])
        )
    return generated, created


def _create_sqlite_file(database: Database) -> None:
    """Create a missing SQLite database file 0600 ourselves: SQLite would make it 0644
    less the umask, and gives its ``-wal`` and ``-shm`` files the database file's mode."""
    path = sqlite_file(database.url)
    if path is None or os.path.exists(path):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        pass  # opening the database says what is wrong, in one line


async def load_token_key(database: Database) -> str:
    async with database.read() as session:
        key = await get_property(session, TOKEN_KEY_PROPERTY)
    if key is None:
        raise RuntimeError("no token signing key: run `dockyard migrate` first")
    return key


# --- a data directory private to the service ---------------------------------


def secure_data_dir(settings: Settings) -> None:
    """Create the data directory (and a storage root kept outside it) private to this
    user (0700), and take group and other permissions off them when found open, with a
    warning: a closed directory keeps everything below it private, whatever the modes of
    files written by older versions.

    The SQLite files inside the data directory are tightened too (0600). A SQLite
    database elsewhere is the operator's file: it is only warned about, never changed."""
    data_dir = settings.data_dir.resolve()
    roots = [settings.data_dir]
    if not settings.effective_storage_root.resolve().is_relative_to(data_dir):
        roots.append(settings.effective_storage_root)
    for root in roots:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        _take_others_off(root)
    path = sqlite_file(settings.effective_database_url)
    if path is None:
        return
    ours = Path(path).resolve().is_relative_to(data_dir)
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}.startup-lock"):
        _take_others_off(Path(name), change=ours)


def _take_others_off(path: Path, *, change: bool = True) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    if not change:
        log.warning(
            "%s is open to other users (mode %04o); it holds password hashes and the token "
            "signing key: make it private (chmod 600)",
            path,
            mode,
        )
        return
    path.chmod(mode & 0o700)
    log.warning(
        "%s was open to other users (mode %04o): made it %04o, as Dockyard's data is private "
        "to the user it runs as",
        path,
        mode,
        mode & 0o700,
    )
