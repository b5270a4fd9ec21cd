"""Secrets kept at rest (``ldap_search_password``…), encrypted with a key kept in the database.

The key is made on the first start beside the token signing key, so every node shares
it; the encryption is Fernet (AES-128-CBC with an HMAC-SHA256, from ``cryptography``).
It keeps a secret out of a database dump or a backup read on its own, not from someone
who holds the whole database (docs/security.md says so).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.system.models import Property

SECRET_KEY_PROPERTY = "settings_secret_key"  # noqa: S105 - a property name

_boxes: dict[str, Fernet] = {}


def generate_key() -> str:
    return Fernet.generate_key().decode()


class SecretBoxError(Exception):
    """No key, or a value the key does not open (a database from another installation)."""


def _box(key: str) -> Fernet:
    box = _boxes.get(key)
    if box is None:
        box = _boxes[key] = Fernet(key.encode())
    return box


async def _key(session: AsyncSession) -> str:
    prop = await session.get(Property, SECRET_KEY_PROPERTY)
    key = prop.v if prop is not None else None
    if key is None:
        raise SecretBoxError("no settings secret key: run `dockyard migrate` first")
    return key


async def seal(session: AsyncSession, plain: str) -> str:
    """``plain`` encrypted for storage ("" stays "": nothing to hide)."""
    if not plain:
        return ""
    return _box(await _key(session)).encrypt(plain.encode()).decode()


async def open_sealed(session: AsyncSession, sealed: str) -> str:
    if not sealed:
        return ""
    return open_with_key(await _key(session), sealed)


def open_with_key(key: str | None, sealed: str) -> str:
    """``sealed`` opened with ``key`` (the ``settings_secret_key`` property's value)."""
    if not sealed:
        return ""
    if key is None:
        raise SecretBoxError("no settings secret key: run `dockyard migrate` first")
    try:
        return _box(key).decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretBoxError(
            "a stored secret cannot be decrypted with this database's key; set it again"
        ) from None
