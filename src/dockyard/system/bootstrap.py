"""First-start work: migrations, the admin user, the ``library`` project, the token key."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.db.engine import Database, insert_ignore
from dockyard.db.migrate import migrate
from dockyard.iam import repository as users
from dockyard.iam.models import User
from dockyard.iam.passwords import generate_password, hash_password
from dockyard.iam.tokens import generate_signing_key
from dockyard.projects import repository as projects_repo
from dockyard.projects.service import create_project
from dockyard.settings import Settings
from dockyard.system.config import get_property
from dockyard.system.models import Property

TOKEN_KEY_PROPERTY = "token_signing_key"  # noqa: S105 - a property name


@dataclass(frozen=True)
class BootstrapReport:
    migrated_from: str | None
    migrated_to: str | None
    generated_admin_password: str | None
    """Set only when this start created ``admin`` with a random password."""


async def prepare(settings: Settings, database: Database) -> BootstrapReport:
    """Idempotent: safe on every start and on several nodes starting at once."""
    before, after = await migrate(database)
    generated: str | None = None
    async with database.write() as session:
        admin = await users.find_user_by_name(session, "admin")
        if admin is None:
            password = settings.admin_password
            if not password:
                password = generated = generate_password()
            admin = User(
                username="admin",
                password=hash_password(password),
                realname="system admin",
                comment="admin user",
                sysadmin_flag=True,
            )
            session.add(admin)
            await session.flush()
        if await projects_repo.find_project_by_name(session, "library") is None:
            await create_project(session, "library", owner_id=admin.user_id, public=True)
        await session.execute(
            insert_ignore(
                session, Property, {"k": TOKEN_KEY_PROPERTY, "v": generate_signing_key()}, ["k"]
            )
        )
    return BootstrapReport(before, after, generated)


async def load_token_key(database: Database) -> str:
    async with database.read() as session:
        key = await get_property(session, TOKEN_KEY_PROPERTY)
    if key is None:
        raise RuntimeError("no token signing key: run `dockyard migrate` first")
    return key
