"""Registry hook: a signature pushed into a project that trusts keys of its kind gets
its verdict computed by a job enqueued in the push's transaction, so the first pull
after it finds the verdict stored."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from dockyard.jobs import service as jobs
from dockyard.oci import artifacts as facts
from dockyard.registry.hooks import ManifestPush, NoHooks
from dockyard.signatures import repository as repo
from dockyard.signatures.service import VENDOR_TYPE


class RegistryHooks(NoHooks):
    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        # Only a referrer or a cosign signature tag can be a signature: other pushes (images,
        # every small push) cost no statement here.
        cosign_tag = push.tag is not None and facts.cosign_subject(push.tag) is not None
        if push.subject is None and not cosign_tag:
            return
        subjects = await repo.accessory_subjects(session, push.artifact_id)
        if not subjects:
            return
        wanted: dict[str, list[int]] = {}
        for subject, kind in subjects:
            wanted.setdefault(kind, []).append(subject)
        for kind, ids in wanted.items():
            if await repo.key_set_version(session, push.project_id, kind) is None:
                continue
            await jobs.enqueue(
                session,
                VENDOR_TYPE,
                vendor_id=push.project_id,
                trigger=jobs.EVENT,
                extra_attrs={"artifact_ids": sorted(set(ids)), "kinds": [kind]},
            )
