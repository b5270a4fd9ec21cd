"""API shapes of trusted keys and signature status (Dockyard's own, tagged ``dockyard``
in ``/api/v2.0/openapi.json``; Harbor has no such operations)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_PEM_CHARS = 64 * 1024
MAX_IDENTITIES = 32
MAX_IDENTITY_CHARS = 1024


class TrustedKeyReq(BaseModel):
    """A key to trust: a cosign public key (PEM) or a Notation root certificate (PEM)
    with the signer identities (certificate subjects, or ``*``) it may vouch for."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cosign", "notation"]
    pem: str = Field(min_length=1, max_length=MAX_PEM_CHARS)
    identities: list[str] = Field(default_factory=list, max_length=MAX_IDENTITIES)
    description: str = Field(default="", max_length=1024)


class TrustedKey(BaseModel):
    id: int
    kind: str
    key_id: str
    """The key's fingerprint, as verdicts and the signature status name it."""
    description: str
    identities: list[str]
    details: dict[str, Any]
    """What Dockyard read from the PEM: algorithm, certificate subject, validity…"""
    pem: str
    creator: str
    creation_time: datetime


class SignatureStatus(BaseModel):
    """One signature of an artifact and whether it verifies against the project's keys."""

    kind: str
    """``cosign`` or ``notation``."""
    digest: str
    """The signature artifact's manifest digest."""
    media_type: str
    push_time: datetime | None = None
    verified: bool | None
    """True/False against the project's current keys of this kind; None when the project
    trusts no key of this kind (content trust then only asks that a signature exists)."""
    reason: str
    key_id: str | None = None
    signer: str | None = None
