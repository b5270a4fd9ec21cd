"""``dockyard quota recompute``: the incremental numbers agree with a recomputation after a
mixed scenario; a tampered or missing row is found (exit 1) and ``--fix`` repairs it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import delete, update
from tests.integration.registry_helpers import (
    OCI_MANIFEST,
    digest_of,
    image_manifest,
    push_blob,
)
from tests.support.postgres import postgres_admin_url, temporary_database

from dockyard.app import create_app
from dockyard.cli import _Progress, main
from dockyard.db.engine import Database
from dockyard.projects.service import create_project
from dockyard.quota import repository as quota_repo
from dockyard.quota.models import Quota
from dockyard.settings import Settings

PASSWORD = "Chosen12345"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("DOCKYARD_ADMIN_PASSWORD", "DOCKYARD_DATABASE_URL", "DOCKYARD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


async def _push(
    client: httpx.AsyncClient, repo: str, tag: str, config: bytes, layers: list[bytes]
) -> tuple[str, int]:
    """Push an image; returns (manifest digest, HTTP status of the manifest PUT)."""
    for part in [config, *layers]:
        response = await client.post(
            f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(part)}, content=part
        )
        if response.status_code != 201:
            return "", response.status_code
    manifest = image_manifest(
        (digest_of(config), len(config)), [(digest_of(layer), len(layer)) for layer in layers]
    )
    response = await client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    return digest_of(manifest), response.status_code


async def mixed_scenario(settings: Settings) -> None:
    """Shared layers across repositories and projects, a mount, a refused push, a tag
    deletion and an artifact deletion."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state = app.state.dockyard
        async with state.db.write() as session:
            for name, limit in (("alpha", None), ("beta", None), ("tight", 2000)):
                await create_project(session, name, owner_id=1, storage_limit=limit)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://registry.test", auth=("admin", PASSWORD)
        ) as client:
            shared, config = b"s" * 3000, json.dumps({"os": "linux"}).encode()
            first, status = await _push(client, "alpha/one", "v1", config, [shared, b"a" * 100])
            assert status == 201
            assert (await _push(client, "alpha/two", "v1", config, [shared, b"b" * 200]))[1] == 201
            assert (await _push(client, "beta/app", "v1", config, [shared]))[1] == 201
            mounted = await client.post(
                "/v2/beta/mounted/blobs/uploads/",
                params={"mount": digest_of(b"a" * 100), "from": "alpha/one"},
            )
            assert mounted.status_code == 201
            # Over the limit: the layer does not fit.
            assert (await _push(client, "tight/app", "v1", config, [shared]))[1] == 403
            await push_blob(client, "tight/app", b"small" * 10)
            assert (await client.delete("/v2/alpha/two/manifests/v1")).status_code == 202
            assert (await client.delete(f"/v2/alpha/one/manifests/{first}")).status_code == 202


def _in_loop(action: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(action())


async def _tamper(settings: Settings, project: str, *, drop: bool = False) -> None:
    db = Database(settings.effective_database_url)
    try:
        async with db.write() as session:
            projects = await quota_repo.live_projects(session, [project])
            reference = quota_repo.reference_id(projects[0][0])
            where = (Quota.reference == "project", Quota.reference_id == reference)
            if drop:
                await session.execute(delete(Quota).where(*where))
            else:
                await session.execute(
                    update(Quota).where(*where).values(used_storage=Quota.used_storage + 7)
                )
    finally:
        await db.dispose()


async def _seed_projects(settings: Settings, count: int) -> None:
    db = Database(settings.effective_database_url)
    try:
        async with db.write() as session:
            for number in range(count):
                await create_project(session, f"many-{number:04d}", owner_id=1)
    finally:
        await db.dispose()


def _row(result: Result, project: str) -> list[str]:
    for line in result.output.splitlines():
        cells = line.split()
        if cells and cells[0] == project:
            return cells
    raise AssertionError(f"no row for {project} in:\n{result.output}")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_recompute_agrees_then_finds_and_fixes_tampering(
    runner: CliRunner, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def scenario(env: dict[str, str]) -> None:
        settings = Settings(
            data_dir=tmp_path,
            database_url=env.get("DOCKYARD_DATABASE_URL", ""),
            admin_password=PASSWORD,
        )

        def recompute(*args: str) -> Result:
            return runner.invoke(
                main, ["quota", "recompute", *args, "--data-dir", str(tmp_path)], env=env
            )

        assert runner.invoke(main, ["migrate", "--data-dir", str(tmp_path)], env=env).exit_code == 0
        _in_loop(lambda: mixed_scenario(settings))

        agreed = recompute()
        assert agreed.exit_code == 0, agreed.output
        assert agreed.output.splitlines()[0].split() == [
            "PROJECT",
            "STORED",
            "RECOMPUTED",
            "DIFFERENCE",
        ]
        config = len(json.dumps({"os": "linux"}).encode())
        beta = _row(agreed, "beta")
        assert int(beta[1]) == int(beta[2]) > 3000 + config + 100
        tight = _row(agreed, "tight")
        # The config went in before the layer was refused.
        assert tight[1:] == [str(config + 50)] * 2
        assert "all 4 projects agree" in agreed.output  # library, alpha, beta, tight

        _in_loop(lambda: _tamper(settings, "alpha"))
        found = recompute()
        assert found.exit_code == 1, found.output
        alpha = _row(found, "alpha")
        assert int(alpha[1]) == int(alpha[2]) + 7 and alpha[3] == "+7"
        assert "1 of 4 projects differ" in found.output
        only_beta = recompute("--project", "beta")
        assert only_beta.exit_code == 0, only_beta.output
        assert "alpha" not in only_beta.output

        fixed = recompute("--fix")
        assert fixed.exit_code == 1
        assert "stored the recomputed usage" in fixed.output
        assert recompute().exit_code == 0

        # A project without a row (as before quotas existed) is found and given one.
        _in_loop(lambda: _tamper(settings, "beta", drop=True))
        missing = recompute("--project", "beta")
        assert missing.exit_code == 1
        assert _row(missing, "beta")[1] == "-"
        assert recompute("--project", "beta", "--fix").exit_code == 1
        again = recompute()
        assert again.exit_code == 0, again.output
        assert _row(again, "beta")[1:] == beta[1:]

        unknown = recompute("--project", "nope")
        assert unknown.exit_code == 2
        assert "no such project: nope" in unknown.output

        # Many projects: progress as it goes, on stderr.
        _in_loop(lambda: _seed_projects(settings, 600))
        # A progress line after every batch (not only every 10 s), so the test sees them.
        monkeypatch.setattr(_Progress, "interval", 0.0)
        many = recompute()
        assert many.exit_code == 0, many.output[-500:]
        for done in (100, 500, 604):
            assert f"checked {done} of 604 projects" in many.stderr
        assert "all 604 projects agree" in many.output

    env = {"DOCKYARD_ADMIN_PASSWORD": PASSWORD}
    if backend == "sqlite":
        scenario(env)
    else:
        with temporary_database(postgres_admin_url()) as url:
            scenario({**env, "DOCKYARD_DATABASE_URL": url})
