"""The ``SIGNATURE_VERIFICATION`` job: verdicts computed off the pull path.

One task per cause: a signature pushed (``params.artifact_ids``: its subjects, and the
kinds to check) or a project's keys of one kind changed (``params.project_id`` and
``kind``: every artifact of the project with a signature of that kind, in id order,
resumable from the last id checkpointed; then verdicts against older key sets are
dropped). ``SignatureChecker.settle`` skips signatures that already have a verdict, so
a retried task redoes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockyard.jobs.runner import JobContext, JobType, PermanentJobError
from dockyard.signatures import repository as repo
from dockyard.signatures.service import VENDOR_TYPE, SignatureChecker

BATCH = 100


def _kinds(params: Mapping[str, Any]) -> list[str]:
    kinds = params.get("kinds") or [params.get("kind")]
    if not isinstance(kinds, list) or not kinds or any(k not in repo.KINDS for k in kinds):
        raise PermanentJobError(f"unreadable signature verification task: kinds {kinds!r}")
    return [str(k) for k in kinds]


async def verify_signatures(ctx: JobContext) -> Mapping[str, Any]:
    checker = SignatureChecker(ctx.env.db, ctx.env.storage)
    kinds = _kinds(ctx.params)
    checked = 0
    subjects = ctx.params.get("artifact_ids")
    if subjects is not None:
        if not isinstance(subjects, list) or not all(isinstance(i, int) for i in subjects):
            raise PermanentJobError("unreadable signature verification task: artifact_ids")
        for subject in subjects:
            for kind in kinds:
                checked += len(await checker.settle(subject, kind))
        return {"checked": checked}
    project_id = ctx.params.get("project_id")
    if not isinstance(project_id, int):
        raise PermanentJobError("unreadable signature verification task: project_id")
    kind = kinds[0]
    after = int((ctx.progress or {}).get("after", 0))
    while True:
        async with ctx.env.db.read() as session:
            batch = await repo.signed_subjects(session, project_id, kind, after, BATCH)
        for subject in batch:
            checked += len(await checker.settle(subject, kind))
        if len(batch) < BATCH:
            break
        after = batch[-1]
        await ctx.checkpoint({"after": after})
    async with ctx.env.db.write() as session:
        version = await repo.key_set_version(session, project_id, kind)
        if version is not None:
            await repo.drop_stale_verdicts(session, project_id, kind, version)
    ctx.log(f"checked {checked} signatures of {kind} in project {project_id}")
    return {"checked": checked}


job_types = [JobType(VENDOR_TYPE, verify_signatures)]
