"""``dockyard backup`` while skopeo pushes, ``dockyard restore`` into a fresh data
directory, a server on it: every image pulls back byte for byte. Then what a restore
refuses (a non-empty target, a corrupted or truncated backup, a newer schema) and the
hold a backup puts on garbage collection's sweep."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.oci_layout import make_image_layout
from tests.support.server import DockyardServer
from tests.support.skopeo import Skopeo

from dockyard.db.sweep_hold import sweeps_held

pytestmark = pytest.mark.e2e


def _push(skopeo: Skopeo, server: DockyardServer, layout: Path, ref: str) -> str:
    digest_file = layout.with_suffix(".digest")
    skopeo.run(
        "copy",
        "--digestfile",
        str(digest_file),
        "--dest-tls-verify=false",
        "--dest-creds",
        server.admin_creds,
        f"oci:{layout}:latest",
        f"docker://{server.registry}/{ref}",
    )
    return digest_file.read_text().strip()


def _dockyard(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@dataclass
class Scenario:
    server: DockyardServer
    backup: Path
    pushed: dict[str, str]
    """ref -> manifest digest of every push that was acknowledged."""
    before: set[str]
    """refs pushed before the backup began (the backup must hold them)."""
    backup_output: str


@pytest.fixture(scope="module")
def scenario(skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp("backup")
    with DockyardServer() as server:
        pushed: dict[str, str] = {}
        for i in range(4):
            layout = make_image_layout(work / f"a{i}", layers=3, layer_size=256 * 1024).path
            pushed[f"library/app{i}:latest"] = _push(skopeo, server, layout, f"library/app{i}")
        before = set(pushed)
        during = [
            make_image_layout(work / f"b{i}", layers=2, layer_size=128 * 1024).path
            for i in range(4)
        ]
        errors: list[BaseException] = []
        first_done = threading.Event()

        def push_during() -> None:
            try:
                for i, layout in enumerate(during):
                    ref = f"library/during{i}"
                    pushed[f"{ref}:latest"] = _push(skopeo, server, layout, ref)
                    first_done.set()
            except BaseException as exc:  # reported by the test
                errors.append(exc)
            finally:
                first_done.set()

        pusher = threading.Thread(target=push_during)
        pusher.start()
        first_done.wait(300)  # the backup starts while the next pushes go on
        dest = work / "the-backup"
        try:
            result = server.cli("backup", str(dest))
        finally:
            pusher.join()
        assert not errors, errors
        yield Scenario(server, dest, pushed, before, result.stdout + result.stderr)


def test_backup_while_pushing_restores_every_image_byte_for_byte(
    scenario: Scenario, skopeo: Skopeo, tmp_path: Path
) -> None:
    manifest = json.loads((scenario.backup / "manifest.json").read_text())
    assert manifest["format"] == 1
    assert manifest["blobs"]["count"] >= 4 * 5  # 4 images of 3 layers, config, manifest
    assert manifest["counts"]["artifact"] >= 4
    assert "copying" in scenario.backup_output  # progress

    fresh = tmp_path / "restored"
    result = _dockyard("restore", str(scenario.backup), "--data-dir", str(fresh), check=True)
    assert "restored" in result.stdout
    with DockyardServer(data_dir=fresh) as restored:
        restored_tags = 0
        for ref, digest in scenario.pushed.items():
            repository, tag = ref.rsplit(":", 1)
            with restored.client() as client:
                head = client.head(
                    f"/v2/{repository}/manifests/{tag}",
                    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                )
            if ref not in scenario.before and head.status_code == 404:
                continue  # pushed after the snapshot: not in this backup
            assert head.status_code == 200, (ref, head.status_code)
            dest = tmp_path / f"pulled-{restored_tags}"
            skopeo.run(
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                restored.admin_creds,
                f"docker://{restored.registry}/{ref}",
                f"oci:{dest}:pulled",
            )
            index = json.loads((dest / "index.json").read_text())
            assert index["manifests"][0]["digest"] == digest, ref
            # skopeo verifies every blob's digest as it pulls; check the layout's too
            for blob in (dest / "blobs" / "sha256").iterdir():
                assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
            restored_tags += 1
        assert restored_tags >= len(scenario.before)


def test_backup_refuses_a_non_empty_destination(scenario: Scenario, tmp_path: Path) -> None:
    (tmp_path / "something").write_text("keep me")
    result = scenario.server.cli("backup", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "is not empty" in result.stderr
    assert (tmp_path / "something").read_text() == "keep me"


def test_restore_refuses_a_non_empty_data_dir_unless_forced(
    scenario: Scenario, tmp_path: Path
) -> None:
    target = tmp_path / "data"
    _dockyard("restore", str(scenario.backup), "--data-dir", str(target), check=True)
    again = _dockyard("restore", str(scenario.backup), "--data-dir", str(target))
    assert again.returncode != 0
    assert "is not empty" in again.stderr and "--force" in again.stderr
    forced = _dockyard("restore", str(scenario.backup), "--data-dir", str(target), "--force")
    assert forced.returncode == 0, forced.stderr


def _damaged(scenario: Scenario, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(scenario.backup, copy)
    return copy


def _refused(backup: Path, tmp_path: Path, expected: str) -> None:
    target = tmp_path / "target"
    result = _dockyard("restore", str(backup), "--data-dir", str(target))
    assert result.returncode != 0, result.stdout
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    # nothing was put in place
    assert not (target / "dockyard.db").exists()
    assert not (target / "storage").exists() or not any((target / "storage").iterdir())


def test_restore_refuses_a_corrupted_database(scenario: Scenario, tmp_path: Path) -> None:
    copy = _damaged(scenario, tmp_path)
    database = copy / "dockyard.db"
    data = bytearray(database.read_bytes())
    data[len(data) // 2] ^= 0xFF
    database.write_bytes(bytes(data))
    _refused(copy, tmp_path, "does not match the manifest's checksum")


def test_restore_refuses_a_truncated_blob(scenario: Scenario, tmp_path: Path) -> None:
    copy = _damaged(scenario, tmp_path)
    blob = max((copy / "storage" / "blobs").rglob("*"), key=lambda p: p.stat().st_size)
    blob.write_bytes(blob.read_bytes()[:1000])
    _refused(copy, tmp_path, "does not match its digest")


def test_restore_refuses_a_missing_blob(scenario: Scenario, tmp_path: Path) -> None:
    copy = _damaged(scenario, tmp_path)
    next(p for p in (copy / "storage" / "blobs").rglob("*") if p.is_file()).unlink()
    _refused(copy, tmp_path, "lacks blob")


def test_restore_refuses_an_unfinished_backup(scenario: Scenario, tmp_path: Path) -> None:
    copy = _damaged(scenario, tmp_path)
    (copy / "manifest.json").unlink()
    _refused(copy, tmp_path, "not a finished Dockyard backup")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("schema_revision", "9999_from_the_future", "made by a newer version"),
        ("format", 99, "newer than this Dockyard reads"),
    ],
)
def test_restore_refuses_a_newer_backup(
    scenario: Scenario, tmp_path: Path, field: str, value: object, expected: str
) -> None:
    copy = _damaged(scenario, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[field] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    _refused(copy, tmp_path, expected)


def test_backup_of_a_postgresql_deployment_points_to_pg_dump(tmp_path: Path) -> None:
    result = _dockyard(
        "backup",
        str(tmp_path / "b"),
        "--data-dir",
        str(tmp_path / "d"),
        "--database-url",
        "postgresql://dockyard@127.0.0.1:1/dockyard",
    )
    assert result.returncode != 0
    assert "pg_dump" in result.stderr
    assert not (tmp_path / "b").exists()


def test_gc_sweep_waits_while_a_backup_holds_it(
    scenario: Scenario, skopeo: Skopeo, tmp_path: Path
) -> None:
    """The hold the backup takes: a collection that would delete a blob claims nothing
    until it is released."""
    server = scenario.server
    layout = make_image_layout(tmp_path / "doomed", layers=1, layer_size=4096).path
    digest = _push(skopeo, server, layout, "library/doomed")
    with server.client() as client:
        deleted = client.delete(f"/v2/library/doomed/manifests/{digest}")
        assert deleted.status_code == 202, deleted.text
    stored = server.data_dir / "storage" / "blobs" / "sha256" / digest[7:9] / digest[7:]
    assert stored.exists()
    offset = server.log_offset()
    with (
        sweeps_held(str(server.data_dir / "dockyard.db")),
        httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as api,
    ):
        started = api.post(
            "/api/v2.0/system/gc/schedule",
            json={"schedule": {"type": "Manual"}, "parameters": {"time_window": 0}},
        )
        assert started.status_code == 201, started.text
        gc_url = "/api/v2.0/system/gc/" + started.headers["Location"].rsplit("/", 1)[1]
        _wait_for(lambda: "waits for a backup" in server.output_since(offset))
        assert stored.exists()  # held: not claimed, not deleted
        assert api.get(gc_url).json()["job_status"] == "Running"
    _wait_for(lambda: _gc_done(server, gc_url))
    assert not stored.exists()


def _gc_done(server: DockyardServer, url: str) -> bool:
    with httpx.Client(base_url=server.url, auth=server.admin_auth, timeout=60) as api:
        status = api.get(url).json()["job_status"]
    assert status not in ("Error", "Stopped")
    return bool(status == "Success")


def _wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")
