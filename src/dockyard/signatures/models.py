"""Trusted keys, their per-project version counters and cached verification verdicts.

``trusted_key``: a project's cosign public keys and Notation root certificates.
``trusted_key_set``: one row per (project, kind) whose ``version`` moves on every change
to that kind's keys, so a verdict computed against an older key set is never read.
``signature_verdict``: whether one signature artifact verifies, for one subject artifact,
against one key-set version — what the pull path reads (one indexed lookup) instead of
checking a signature.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class TrustedKey(Base):
    __tablename__ = "trusted_key"
    __table_args__ = (UniqueConstraint("project_id", "kind", "key_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.project_id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    """``cosign`` (a public key) or ``notation`` (a root certificate)."""
    key_id: Mapped[str] = mapped_column(String(255))
    """What ``describe_key`` calls the key (a fingerprint); verdicts name it."""
    description: Mapped[str] = mapped_column(String(1024), default="")
    pem: Mapped[str] = mapped_column(Text)
    identities: Mapped[str] = mapped_column(Text, default="[]")
    """JSON list: for Notation, the signer identities (certificate subjects) trusted."""
    details: Mapped[str] = mapped_column(Text, default="{}")
    """JSON of what ``describe_key`` said (algorithm, subject, expiry…), shown by the API."""
    creator: Mapped[str] = mapped_column(String(255), default="")
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrustedKeySet(Base):
    """The version of a project's keys of one kind; bumped by every add or delete."""

    __tablename__ = "trusted_key_set"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.project_id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    key_count: Mapped[int] = mapped_column(BigInteger, default=0)


class SignatureVerdict(Base):
    """Signature artifact ``signature_id`` checked for subject ``artifact_id`` against
    version ``key_set_version`` of the project's keys of ``kind``."""

    __tablename__ = "signature_verdict"
    __table_args__ = (
        UniqueConstraint("artifact_id", "signature_id", "key_set_version"),
        # The pull path: is there a verified verdict of this kind at the current version?
        Index(
            "ix_signature_verdict_artifact_id_kind_key_set_version_verified",
            "artifact_id",
            "kind",
            "key_set_version",
            "verified",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="CASCADE"))
    signature_id: Mapped[int] = mapped_column(
        ForeignKey("artifact.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    key_set_version: Mapped[int] = mapped_column(BigInteger)
    verified: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(1024), default="")
    key_id: Mapped[str | None] = mapped_column(String(255))
    signer: Mapped[str | None] = mapped_column(String(1024))
    checked_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
