"""Queries of trusted keys, key-set versions, verdicts and signature accessories."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from dockyard.db.base import utcnow
from dockyard.db.engine import insert_ignore
from dockyard.oci import artifacts as facts
from dockyard.projects.models import ProjectMetadata
from dockyard.registry.models import Artifact, ArtifactAccessory, Repository
from dockyard.signatures.models import SignatureVerdict, TrustedKey, TrustedKeySet

COSIGN = "cosign"
NOTATION = "notation"
KINDS = (COSIGN, NOTATION)
ACCESSORY_OF_KIND = {COSIGN: facts.ACCESSORY_COSIGN, NOTATION: facts.ACCESSORY_NOTATION}
KIND_OF_ACCESSORY = {v: k for k, v in ACCESSORY_OF_KIND.items()}
FLAG_OF_KIND = {COSIGN: "enable_content_trust_cosign", NOTATION: "enable_content_trust"}

Executor = AsyncSession | AsyncConnection


# --- the pull path: one statement ------------------------------------------------------------


def _kind_columns(kind: str, flag: Any) -> list[Any]:
    """(signed, key-set version, verified) for one kind, computed only when its switch is on."""
    on = flag.value == "true"
    version = (
        select(TrustedKeySet.version)
        .where(
            TrustedKeySet.project_id == Artifact.project_id,
            TrustedKeySet.kind == kind,
            TrustedKeySet.key_count > 0,
        )
        .scalar_subquery()
    )
    signed = exists().where(
        ArtifactAccessory.subject_artifact_id == Artifact.id,
        ArtifactAccessory.type == ACCESSORY_OF_KIND[kind],
    )
    verified = exists().where(
        SignatureVerdict.artifact_id == Artifact.id,
        SignatureVerdict.kind == kind,
        SignatureVerdict.verified.is_(True),
        TrustedKeySet.project_id == Artifact.project_id,
        TrustedKeySet.kind == kind,
        TrustedKeySet.version == SignatureVerdict.key_set_version,
    )
    return [
        case((on, signed), else_=None),
        case((on, version), else_=None),
        case((on, verified), else_=None),
    ]


_COSIGN_FLAG = aliased(ProjectMetadata)
_NOTATION_FLAG = aliased(ProjectMetadata)
_IS_SIGNATURE = exists().where(
    ArtifactAccessory.artifact_id == Artifact.id,
    ArtifactAccessory.type.in_(tuple(ACCESSORY_OF_KIND.values())),
)
# Built once with bound parameters (building costs more than running it): the artifact,
# both switches, and per switch that is on: signed, key-set version, verified.
_TRUST_STATE = (
    select(
        Artifact.id,
        Artifact.project_id,
        case(
            ((_COSIGN_FLAG.value == "true") | (_NOTATION_FLAG.value == "true"), _IS_SIGNATURE),
            else_=None,
        ),
        *_kind_columns(COSIGN, _COSIGN_FLAG),
        *_kind_columns(NOTATION, _NOTATION_FLAG),
    )
    .select_from(Artifact)
    .join(Repository, Repository.repository_id == Artifact.repository_id)
    .outerjoin(
        _COSIGN_FLAG,
        and_(
            _COSIGN_FLAG.project_id == Artifact.project_id,
            _COSIGN_FLAG.name == FLAG_OF_KIND[COSIGN],
        ),
    )
    .outerjoin(
        _NOTATION_FLAG,
        and_(
            _NOTATION_FLAG.project_id == Artifact.project_id,
            _NOTATION_FLAG.name == FLAG_OF_KIND[NOTATION],
        ),
    )
    .where(Repository.name == bindparam("repository"), Artifact.digest == bindparam("digest"))
)


@dataclass(frozen=True, slots=True)
class KindState:
    signed: bool
    key_set_version: int | None
    """None: the project trusts no key of this kind (a signature's presence is enough)."""
    verified: bool


@dataclass(frozen=True, slots=True)
class TrustState:
    artifact_id: int
    project_id: int
    is_signature: bool
    kinds: dict[str, KindState]
    """Only the kinds whose content-trust switch is on."""


async def trust_state(conn: AsyncConnection, repository: str, digest: str) -> TrustState | None:
    row = (await conn.execute(_TRUST_STATE, {"repository": repository, "digest": digest})).first()
    if row is None:
        return None
    kinds = {}
    for index, kind in enumerate(KINDS):
        signed, version, verified = row[3 + 3 * index : 6 + 3 * index]
        if signed is not None:
            kinds[kind] = KindState(bool(signed), version, bool(verified))
    return TrustState(row[0], row[1], bool(row[2]), kinds)


# --- keys --------------------------------------------------------------------------------------


async def list_keys(
    session: AsyncSession, project_id: int, kind: str | None = None
) -> list[TrustedKey]:
    query = select(TrustedKey).where(TrustedKey.project_id == project_id)
    if kind is not None:
        query = query.where(TrustedKey.kind == kind)
    return list((await session.execute(query.order_by(TrustedKey.id))).scalars())


async def find_key(session: AsyncSession, project_id: int, key_row_id: int) -> TrustedKey | None:
    row = await session.get(TrustedKey, key_row_id)
    return row if row is not None and row.project_id == project_id else None


async def key_exists(session: AsyncSession, project_id: int, kind: str, key_id: str) -> bool:
    found = await session.scalar(
        select(
            exists().where(
                TrustedKey.project_id == project_id,
                TrustedKey.kind == kind,
                TrustedKey.key_id == key_id,
            )
        )
    )
    return bool(found)


async def count_keys(session: AsyncSession, project_id: int) -> int:
    rows = await session.execute(select(TrustedKey.id).where(TrustedKey.project_id == project_id))
    return len(rows.all())


async def bump_key_set(session: AsyncSession, project_id: int, kind: str) -> int:
    """Move the version of the project's ``kind`` keys on (creating its row) and recount
    them, inside the change's transaction; returns the new version."""
    await session.execute(
        insert_ignore(
            session,
            TrustedKeySet,
            {"project_id": project_id, "kind": kind, "version": 0, "key_count": 0},
            ("project_id", "kind"),
        )
    )
    count = len(
        (
            await session.execute(
                select(TrustedKey.id).where(
                    TrustedKey.project_id == project_id, TrustedKey.kind == kind
                )
            )
        ).all()
    )
    await session.execute(
        update(TrustedKeySet)
        .where(TrustedKeySet.project_id == project_id, TrustedKeySet.kind == kind)
        .values(version=TrustedKeySet.version + 1, key_count=count)
    )
    version = await session.scalar(
        select(TrustedKeySet.version).where(
            TrustedKeySet.project_id == project_id, TrustedKeySet.kind == kind
        )
    )
    return int(version or 0)


async def key_set_version(db: Executor, project_id: int, kind: str) -> int | None:
    """The current version of the project's ``kind`` keys; None when it has none."""
    result = await db.execute(
        select(TrustedKeySet.version).where(
            TrustedKeySet.project_id == project_id,
            TrustedKeySet.kind == kind,
            TrustedKeySet.key_count > 0,
        )
    )
    value = result.scalar_one_or_none()
    return int(value) if value is not None else None


# --- signatures and verdicts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignatureRef:
    artifact_id: int
    digest: str
    kind: str
    media_type: str
    push_time: Any


async def signatures_of(
    db: Executor, subject_id: int, kinds: Sequence[str] = KINDS, limit: int | None = None
) -> list[SignatureRef]:
    """The signature accessories recorded for artifact ``subject_id``, newest first (with a
    ``limit``, the newest are the ones kept: a re-signed image's latest signature counts)."""
    types = [ACCESSORY_OF_KIND[k] for k in kinds]
    query = (
        select(
            Artifact.id,
            Artifact.digest,
            ArtifactAccessory.type,
            Artifact.manifest_media_type,
            Artifact.push_time,
        )
        .join(ArtifactAccessory, ArtifactAccessory.artifact_id == Artifact.id)
        .where(
            ArtifactAccessory.subject_artifact_id == subject_id, ArtifactAccessory.type.in_(types)
        )
        .order_by(Artifact.push_time.desc(), Artifact.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    rows = (await db.execute(query)).all()
    return [SignatureRef(r[0], r[1], KIND_OF_ACCESSORY[r[2]], r[3], r[4]) for r in rows]


async def verdicts_for(
    session: AsyncSession, subject_id: int, kind: str, version: int
) -> dict[int, SignatureVerdict]:
    """Verdicts stored for ``subject_id``'s signatures of ``kind`` at key-set ``version``,
    by signature artifact id."""
    rows = await session.execute(
        select(SignatureVerdict).where(
            SignatureVerdict.artifact_id == subject_id,
            SignatureVerdict.kind == kind,
            SignatureVerdict.key_set_version == version,
        )
    )
    return {v.signature_id: v for v in rows.scalars()}


async def store_verdicts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert verdicts; one a concurrent check stored first is kept (the same answer)."""
    if rows:
        stamped = [{**row, "checked_time": utcnow()} for row in rows]
        await session.execute(
            insert_ignore(
                session,
                SignatureVerdict,
                stamped,
                ("artifact_id", "signature_id", "key_set_version"),
            )
        )


async def drop_stale_verdicts(
    session: AsyncSession, project_id: int, kind: str, version: int
) -> None:
    """Verdicts of the project's ``kind`` computed against an older key set."""
    subjects = select(Artifact.id).where(Artifact.project_id == project_id)
    await session.execute(
        delete(SignatureVerdict).where(
            SignatureVerdict.kind == kind,
            SignatureVerdict.key_set_version < version,
            SignatureVerdict.artifact_id.in_(subjects),
        )
    )


async def signed_subjects(
    session: AsyncSession, project_id: int, kind: str, after: int, limit: int
) -> list[int]:
    """Ids of the project's artifacts with a ``kind`` signature, past ``after``, in order."""
    rows = await session.execute(
        select(ArtifactAccessory.subject_artifact_id)
        .join(Artifact, Artifact.id == ArtifactAccessory.subject_artifact_id)
        .where(
            Artifact.project_id == project_id,
            ArtifactAccessory.type == ACCESSORY_OF_KIND[kind],
            ArtifactAccessory.subject_artifact_id > after,
        )
        .group_by(ArtifactAccessory.subject_artifact_id)
        .order_by(ArtifactAccessory.subject_artifact_id)
        .limit(limit)
    )
    return [int(r[0]) for r in rows.all() if r[0] is not None]


async def accessory_subjects(session: AsyncSession, artifact_id: int) -> list[tuple[int, str]]:
    """(subject id, kind) of each signature accessory row of artifact ``artifact_id``."""
    rows = await session.execute(
        select(ArtifactAccessory.subject_artifact_id, ArtifactAccessory.type).where(
            ArtifactAccessory.artifact_id == artifact_id,
            ArtifactAccessory.subject_artifact_id.is_not(None),
            ArtifactAccessory.type.in_(tuple(ACCESSORY_OF_KIND.values())),
        )
    )
    return [(int(r[0]), KIND_OF_ACCESSORY[r[1]]) for r in rows.all() if r[0] is not None]
