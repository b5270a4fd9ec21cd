"""The registry's hook seam: every push, removal, new blob and pull reaches the hooks,
inside the transaction, and a hook's refusal rolls the change back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    digest_of,
    error_code,
    push_blob,
    push_image,
)

from dockyard.errors import DeniedError
from dockyard.http.state import AppState
from dockyard.registry.hooks import (
    BlobsLinked,
    ManifestPull,
    ManifestPush,
    ManifestRemoval,
    NoHooks,
    RegistryHooks,
)


@dataclass
class Recorder(NoHooks):
    events: list[object] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def before_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        self.events.append(("before_push", push))
        if "push" in self.refuse:
            raise DeniedError("refused by the test hook")

    async def after_manifest_push(self, session: AsyncSession, push: ManifestPush) -> None:
        self.events.append(("after_push", push))

    async def before_manifest_removal(
        self, session: AsyncSession, removal: ManifestRemoval
    ) -> None:
        self.events.append(("before_removal", removal))
        if "removal" in self.refuse:
            raise DeniedError("refused by the test hook")

    async def after_manifest_removal(self, session: AsyncSession, removal: ManifestRemoval) -> None:
        self.events.append(("after_removal", removal))

    async def blobs_linked(self, session: AsyncSession, linked: BlobsLinked) -> None:
        self.events.append(("linked", linked))
        if "blobs" in self.refuse:
            raise DeniedError("refused by the test hook")

    def manifest_pulled(self, pull: ManifestPull) -> None:
        self.events.append(("pulled", pull))

    def of(self, kind: str) -> list[object]:
        return [event for name, event in self.events if name == kind]  # type: ignore[misc]


@pytest.fixture
def recorder(state: AppState) -> Iterator[Recorder]:
    recorder = Recorder()
    original = state.registry.hooks
    state.registry.hooks = RegistryHooks([*original.hooks, recorder])
    try:
        yield recorder
    finally:
        state.registry.hooks = original


async def test_push_links_blobs_once_and_reports_tag_moves(
    admin: httpx.AsyncClient, recorder: Recorder, unique_repo: str
) -> None:
    first, _ = await push_image(admin, unique_repo, "v1", seed=unique_repo.encode() + b"one")
    linked = recorder.of("linked")
    # config + 2 layers at upload time, the manifest itself at push time
    assert sum(len(e.blobs) for e in linked) == 4  # type: ignore[attr-defined]
    assert all(e.actor.name == "admin" for e in linked)  # type: ignore[attr-defined]
    (push,) = recorder.of("before_push")
    assert isinstance(push, ManifestPush)
    assert (push.tag, push.previous_digest, push.digest, push.artifact_is_new) == (
        "v1",
        None,
        first,
        True,
    )
    assert push.actor.source_ip == "127.0.0.1"
    recorder.events.clear()

    second, _ = await push_image(admin, unique_repo, "v1", seed=unique_repo.encode() + b"two")
    push = recorder.of("before_push")[0]
    assert isinstance(push, ManifestPush)
    assert (push.previous_digest, push.digest) == (first, second)
    recorder.events.clear()

    again, _ = await push_image(admin, unique_repo, "v1", seed=unique_repo.encode() + b"two")
    assert again == second
    assert recorder.of("linked") == []
    push = recorder.of("after_push")[0]
    assert isinstance(push, ManifestPush) and not push.artifact_is_new


async def test_removals_and_pulls(
    admin: httpx.AsyncClient, recorder: Recorder, unique_repo: str
) -> None:
    digest, _ = await push_image(admin, unique_repo, "a")
    await admin.put(
        f"/v2/{unique_repo}/manifests/b",
        content=(
            await admin.get(f"/v2/{unique_repo}/manifests/a", headers={"Accept": OCI_MANIFEST})
        ).content,
        headers={"Content-Type": OCI_MANIFEST},
    )
    await admin.head(f"/v2/{unique_repo}/manifests/a", headers={"Accept": OCI_MANIFEST})
    pulls = recorder.of("pulled")
    assert len(pulls) == 1  # GET counts, HEAD does not
    assert isinstance(pulls[0], ManifestPull) and pulls[0].tag == "a"
    recorder.events.clear()

    assert (await admin.delete(f"/v2/{unique_repo}/manifests/a")).status_code == 202
    removal = recorder.of("after_removal")[0]
    assert isinstance(removal, ManifestRemoval)
    assert (removal.tags, removal.artifact_removed, removal.digest) == (("a",), False, digest)
    recorder.events.clear()

    assert (await admin.delete(f"/v2/{unique_repo}/manifests/{digest}")).status_code == 202
    removal = recorder.of("before_removal")[0]
    assert isinstance(removal, ManifestRemoval)
    assert (removal.tags, removal.artifact_removed) == (("b",), True)


async def test_refusals_roll_back(
    admin: httpx.AsyncClient, recorder: Recorder, unique_repo: str
) -> None:
    digest, manifest = await push_image(admin, unique_repo, "keep", seed=b"k")
    recorder.refuse = {"push"}
    moved = await admin.put(
        f"/v2/{unique_repo}/manifests/moved",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert moved.status_code == 403 and error_code(moved) == "DENIED"
    assert (await admin.get(f"/v2/{unique_repo}/manifests/moved")).status_code == 404

    recorder.refuse = {"removal"}
    refused = await admin.delete(f"/v2/{unique_repo}/manifests/{digest}")
    assert refused.status_code == 403
    assert (await admin.head(f"/v2/{unique_repo}/manifests/keep")).status_code == 200

    recorder.refuse = {"blobs"}
    data = b"refused-blob-" + unique_repo.encode()
    response = await admin.post(
        f"/v2/{unique_repo}/blobs/uploads/", params={"digest": digest_of(data)}, content=data
    )
    assert response.status_code == 403
    assert (await admin.head(f"/v2/{unique_repo}/blobs/{digest_of(data)}")).status_code == 404
    recorder.refuse = set()
    assert await push_blob(admin, unique_repo, data) == digest_of(data)


async def test_a_refused_chunked_upload_is_not_left_claimed(
    admin: httpx.AsyncClient, recorder: Recorder, unique_repo: str
) -> None:
    """The bytes became a blob before the refusal; the session goes, not lingers busy."""
    data = b"chunked-refused-" + unique_repo.encode()
    started = await admin.post(f"/v2/{unique_repo}/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["location"]
    patched = await admin.patch(
        location,
        content=data,
        headers={"Content-Range": f"0-{len(data) - 1}", "Content-Type": "application/octet-stream"},
    )
    assert patched.status_code == 202, patched.text
    recorder.refuse = {"blobs"}
    closed = await admin.put(patched.headers["location"], params={"digest": digest_of(data)})
    assert closed.status_code == 403
    status = await admin.get(patched.headers["location"])
    assert status.status_code == 404
    assert error_code(status) == "BLOB_UPLOAD_UNKNOWN"
    recorder.refuse = set()
    assert await push_blob(admin, unique_repo, data) == digest_of(data)
