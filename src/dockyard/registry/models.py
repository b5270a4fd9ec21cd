"""Registry tables, shaped as Harbor's so later features extend rather than rewrite.

Blobs are stored once by digest (``blob``); which repository may read which
blob is a ``repository_blob`` link; which project holds which blob (for quotas)
is ``project_blob``. A manifest is a blob too; its parsed facts are an
``artifact`` row, its tags ``tag`` rows, the children of an index
``artifact_reference`` rows, and the layers it needs ``artifact_blob`` rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dockyard.db.base import Base, BigId, UTCDateTime, utcnow


class Repository(Base):
    __tablename__ = "repository"

    repository_id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.project_id", ondelete="CASCADE"), index=True
    )
    description: Mapped[str] = mapped_column(Text, default="")
    pull_count: Mapped[int] = mapped_column(Integer, default=0)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Blob(Base):
    __tablename__ = "blob"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(String(255), unique=True)
    content_type: Mapped[str] = mapped_column(String(1024), default="")
    size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32), default="none")
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RepositoryBlob(Base):
    """Repository ``repository_id`` may read blob ``blob_id``."""

    __tablename__ = "repository_blob"
    __table_args__ = (UniqueConstraint("repository_id", "blob_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repository.repository_id", ondelete="CASCADE")
    )
    blob_id: Mapped[int] = mapped_column(ForeignKey("blob.id", ondelete="CASCADE"), index=True)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProjectBlob(Base):
    __tablename__ = "project_blob"
    __table_args__ = (UniqueConstraint("project_id", "blob_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.project_id", ondelete="CASCADE"))
    blob_id: Mapped[int] = mapped_column(ForeignKey("blob.id", ondelete="CASCADE"), index=True)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Artifact(Base):
    __tablename__ = "artifact"
    __table_args__ = (
        UniqueConstraint("repository_id", "digest"),
        Index("ix_artifact_repository_id_subject_digest", "repository_id", "subject_digest"),
        Index("ix_artifact_digest", "digest"),
        # Artifact lists page by push time, newest first, within a repository or project.
        Index("ix_artifact_repository_id_push_time_id", "repository_id", "push_time", "id"),
        Index("ix_artifact_project_id_push_time_id", "project_id", "push_time", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(255), default="IMAGE")
    media_type: Mapped[str] = mapped_column(String(255), default="")
    """The config's media type (Harbor's meaning), empty for an index."""
    manifest_media_type: Mapped[str] = mapped_column(String(255))
    artifact_type: Mapped[str | None] = mapped_column(String(255))
    project_id: Mapped[int] = mapped_column(ForeignKey("project.project_id", ondelete="CASCADE"))
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repository.repository_id", ondelete="CASCADE")
    )
    repository_name: Mapped[str] = mapped_column(String(255))
    digest: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    subject_digest: Mapped[str | None] = mapped_column(String(255))
    annotations: Mapped[str | None] = mapped_column(Text)
    extra_attrs: Mapped[str | None] = mapped_column(Text)
    icon: Mapped[str] = mapped_column(String(255), default="")
    push_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    pull_time: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Tag(Base):
    __tablename__ = "tag"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repository.repository_id", ondelete="CASCADE")
    )
    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifact.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    push_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    pull_time: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ArtifactBlob(Base):
    """The manifest ``digest_af`` needs blob ``digest_blob`` (the manifest itself included)."""

    __tablename__ = "artifact_blob"
    __table_args__ = (UniqueConstraint("digest_af", "digest_blob"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    digest_af: Mapped[str] = mapped_column(String(255))
    digest_blob: Mapped[str] = mapped_column(String(255), index=True)
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ArtifactReference(Base):
    """An index (``parent_id``) lists a child manifest (``child_id``)."""

    __tablename__ = "artifact_reference"
    __table_args__ = (UniqueConstraint("parent_id", "child_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="CASCADE"))
    child_id: Mapped[int] = mapped_column(ForeignKey("artifact.id"), index=True)
    child_digest: Mapped[str] = mapped_column(String(255))
    platform: Mapped[str | None] = mapped_column(Text)
    urls: Mapped[str | None] = mapped_column(Text)
    annotations: Mapped[str | None] = mapped_column(Text)


class ArtifactAccessory(Base):
    """A signature, SBOM or other referrer attached to a subject artifact."""

    __tablename__ = "artifact_accessory"
    __table_args__ = (UniqueConstraint("artifact_id", "subject_artifact_digest"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifact.id", ondelete="CASCADE"))
    subject_artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifact.id", ondelete="CASCADE"), index=True
    )
    subject_artifact_digest: Mapped[str] = mapped_column(String(255))
    subject_artifact_repo: Mapped[str] = mapped_column(String(255), index=True)
    type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    digest: Mapped[str] = mapped_column(String(255))
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlobUpload(Base):
    """An upload session: a row plus a partial object in the storage driver."""

    __tablename__ = "blob_upload"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repository.repository_id", ondelete="CASCADE"), index=True
    )
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(Text)
    """The storage driver's opaque JSON state for the partial object."""
    busy_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set while one request appends to the upload; a racing request is refused."""
    holder: Mapped[str | None] = mapped_column(String(128))
    """The process holding the claim (``registry/claims.py``); a claim whose process is
    gone is taken over at once rather than after ``busy_until``."""
    creation_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
