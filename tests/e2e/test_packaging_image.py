"""deploy/Containerfile: the image builds offline with podman, runs as a non-root user with its
data on a volume, answers the API, takes a push and a pull from skopeo, and keeps what was
pushed when the container is replaced.

No container registry is reachable, so the base image is a Debian rootfs made with debootstrap
from the apt mirror and imported with ``podman import``; the wheels come from a wheelhouse
built outside the image (tests/support/deploy_tools.py caches both). Slow when cold (a few
minutes for debootstrap and the image build); docs/deploy.md has the figures.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.deploy_tools import REPO, debian_rootfs, rootfs_python, wheelhouse
from tests.support.oci_layout import make_image_layout
from tests.support.podman import Podman
from tests.support.postgres import postgres_admin_url, temporary_database
from tests.support.seaweedfs import SeaweedFS, s3_settings, start_seaweedfs
from tests.support.server import free_port
from tests.support.skopeo import Skopeo

from dockyard.storage.layout import blob_key

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "Image-test-1"
DATA = "/var/lib/dockyard"


def _global_options() -> list[str]:
    """runc where present: crun refuses to start containers on a host whose cgroups are in
    hybrid mode with a controller on the v2 hierarchy (as on the CI machine)."""
    runc = shutil.which("runc")
    return ["--runtime", runc] if runc else []


def _ulimits() -> list[str]:
    """Limits at or below this process's own: podman's defaults (1048576 open files, and as
    many processes) are above the hard limits of a containerised host, where the runtime may
    not raise them and fails. 4096 of each is far more than the server needs."""
    args = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        _, hard = resource.getrlimit(which)
        limit = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        args += ["--ulimit", f"{name}={limit}:{limit}"]
    return args


@dataclass
class Built:
    podman: Podman
    image: str
    timings: dict[str, float]

    def run(self, *args: str, check: bool = True) -> str:
        return self.podman.run(*_global_options(), *args, check=check).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    executable = shutil.which("podman")
    if executable is None:
        pytest.fail("podman is not installed; scripts/test installs it (apt-get install podman)")
    podman = Podman(
        executable=executable, workdir=tmp_path_factory.mktemp("podman-image"), timeout=1200
    )
    timings: dict[str, float] = {}
    started = time.monotonic()
    rootfs = debian_rootfs()
    timings["rootfs"] = time.monotonic() - started

    started = time.monotonic()
    house = wheelhouse(rootfs_python(rootfs))
    timings["wheels"] = time.monotonic() - started
    context = tmp_path_factory.mktemp("image-context")
    shutil.copytree(house, context / "dist")
    shutil.rmtree(house)

    built = Built(podman, f"localhost/dockyard-test:{uuid.uuid4().hex[:8]}", timings)
    started = time.monotonic()
    built.run("import", "--change", 'CMD ["/bin/bash"]', str(rootfs), "localhost/debian-base:test")
    timings["import"] = time.monotonic() - started

    started = time.monotonic()
    built.run(
        "build",
        "--format",
        "docker",
        "--layers=false",
        "--network",
        "none",
        *_ulimits(),
        "--build-arg",
        "BASE=localhost/debian-base:test",
        "--build-arg",
        "PIP_NO_INDEX=1",
        "-f",
        str(REPO / "deploy" / "Containerfile"),
        "-t",
        built.image,
        str(context),
    )
    timings["build"] = time.monotonic() - started
    print(f"\nimage timings (s): {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    yield built
    built.run("rmi", "--all", "--force", check=False)


@dataclass
class Running:
    name: str
    port: int
    volume: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.port}"


def _environment(env: dict[str, str]) -> list[str]:
    return [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]


def _start(built: Built, volume: str, env: dict[str, str] | None = None) -> Running:
    running = Running(f"dockyard-{uuid.uuid4().hex[:8]}", free_port(), volume)
    built.run(
        "run",
        "--detach",
        "--name",
        running.name,
        "--network",
        "host",
        "--health-interval",
        "disable",
        *_ulimits(),
        *_environment(
            {
                "DOCKYARD_PORT": str(running.port),
                "DOCKYARD_ADMIN_PASSWORD": ADMIN_PASSWORD,
                **(env or {}),
            }
        ),
        "-v",
        f"{volume}:{DATA}",
        built.image,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{running.url}/api/v2.0/ping", timeout=2).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        state = built.run("inspect", "--format", "{{.State.Status}}", running.name).strip()
        if state != "running" or time.monotonic() > deadline:
            logs = built.run("logs", running.name, check=False)
            pytest.fail(f"the container did not answer (state {state}); its log:\n{logs}")
        time.sleep(0.5)


def _stop(built: Built, running: Running) -> None:
    built.run("stop", "--time", "30", running.name, check=False)
    built.run("rm", "--force", running.name, check=False)


@pytest.fixture(scope="module")
def container(built: Built) -> Iterator[Running]:
    volume = f"dockyard-data-{uuid.uuid4().hex[:8]}"
    running = _start(built, volume)
    yield running
    _stop(built, running)
    built.run("volume", "rm", "--force", volume, check=False)


def test_image_is_described_for_its_users(built: Built) -> None:
    [info] = json.loads(built.run("image", "inspect", built.image))
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert DATA in config["Volumes"]
    assert "5000/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] == ["dockyard"]
    assert config["Cmd"] == ["serve"]
    assert f"DOCKYARD_DATA_DIR={DATA}" in config["Env"]
    assert "/api/v2.0/ping" in " ".join(info["Healthcheck"]["Test"])
    # the wheel's dependencies are in the image's virtualenv, and pip is not
    listing = built.run(
        "run", "--rm", *_ulimits(), "--entrypoint", "ls", built.image, "/opt/dockyard/bin"
    )
    assert "dockyard" in listing.split()
    assert "pip" not in listing.split()


def test_serves_as_non_root_with_data_on_the_volume(built: Built, container: Running) -> None:
    assert httpx.get(f"{container.url}/api/v2.0/ping").text == "Pong"
    assert built.run("exec", container.name, "id", "-u").strip() == "10001"
    listing = built.run("exec", container.name, "ls", "-ln", DATA)
    assert "dockyard.db" in listing
    assert all(line.split()[2] == "10001" for line in listing.splitlines()[1:])
    mountpoint = built.run("volume", "inspect", "--format", "{{.Mountpoint}}", container.volume)
    assert (Path(mountpoint.strip()) / "dockyard.db").is_file()
    # the image's health check passes against the running server
    assert (
        built.podman.run(*_global_options(), "healthcheck", "run", container.name).returncode == 0
    )


def test_skopeo_pushes_and_pulls_and_the_volume_keeps_it(
    built: Built, container: Running, skopeo: Skopeo, tmp_path: Path
) -> None:
    image = make_image_layout(tmp_path / "src", layers=2, layer_size=32 * 1024)
    creds = f"admin:{ADMIN_PASSWORD}"
    target = f"docker://{container.registry}/library/packaged:1"
    skopeo.run(
        "copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{image.path}:latest", target
    )

    # replace the container with a new one on the same volume: the image is still there
    _stop(built, container)
    replaced = _start(built, container.volume)
    container.name, container.port = replaced.name, replaced.port
    target = f"docker://{container.registry}/library/packaged:1"
    skopeo.run(
        "copy", "--src-tls-verify=false", "--src-creds", creds, target, f"oci:{tmp_path / 'back'}:1"
    )
    inspected = skopeo.json("inspect", "--raw", f"oci:{tmp_path / 'back'}:1")
    assert [layer["digest"] for layer in inspected["layers"]] == list(image.layer_digests)


@pytest.fixture(scope="module")
def seaweedfs() -> Iterator[SeaweedFS]:
    server = start_seaweedfs()
    try:
        yield server
    finally:
        server.stop()


def test_scale_out_serve_and_worker_containers_on_postgresql_and_s3(
    built: Built, skopeo: Skopeo, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    """The compose file's shape: a serve container running no jobs and a worker container,
    on PostgreSQL and an S3 bucket. A push lands in the bucket, and a garbage collection
    asked of the serve node is run by the worker."""
    bucket = seaweedfs.new_bucket()
    with temporary_database(postgres_admin_url()) as database_url:
        env = {
            f"DOCKYARD_{name.upper()}": str(value).lower()
            if isinstance(value, bool)
            else str(value)
            for name, value in s3_settings(seaweedfs, bucket).items()
        }
        env |= {"DOCKYARD_DATABASE_URL": database_url, "DOCKYARD_JOB_WORKERS": "0"}
        serve = _start(built, f"serve-{uuid.uuid4().hex[:8]}", env)
        worker = f"worker-{uuid.uuid4().hex[:8]}"
        try:
            built.run(
                "run",
                "--detach",
                "--name",
                worker,
                "--network",
                "host",
                *_ulimits(),
                *_environment(env),
                built.image,
                "worker",
                "--concurrency",
                "1",
            )
            image = make_image_layout(tmp_path / "src", layers=2, layer_size=32 * 1024)
            creds = f"admin:{ADMIN_PASSWORD}"
            target = f"docker://{serve.registry}/library/scaled:1"
            skopeo.run(
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                creds,
                f"oci:{image.path}:latest",
                target,
            )
            # the layers are objects in the bucket (read through SeaweedFS's filer)
            with seaweedfs.client() as filer:
                for digest in image.layer_digests:
                    key = blob_key(digest)
                    assert filer.head(f"/buckets/{bucket}/{key}").status_code == 200, key
            back = tmp_path / "back"
            skopeo.run(
                "copy", "--src-tls-verify=false", "--src-creds", creds, target, f"oci:{back}:1"
            )
            pulled = skopeo.json("inspect", "--raw", f"oci:{back}:1")
            assert [layer["digest"] for layer in pulled["layers"]] == list(image.layer_digests)

            api = httpx.Client(
                base_url=f"{serve.url}/api/v2.0", auth=("admin", ADMIN_PASSWORD), timeout=10
            )
            with api:
                answer = api.post(
                    "/system/gc/schedule",
                    json={"schedule": {"type": "Manual"}, "parameters": {"dry_run": True}},
                )
                assert answer.status_code == 201, answer.text
                status = _wait_for_gc(api)
            assert status == "Success"
            logs = built.podman.run(*_global_options(), "logs", worker)
            assert "Dockyard job worker" in logs.stdout + logs.stderr
        finally:
            _stop(built, Running(worker, 0, ""))
            _stop(built, serve)
            built.run("volume", "rm", "--force", serve.volume, check=False)


def _wait_for_gc(api: httpx.Client) -> str:
    """The status of the newest garbage collection once it has finished (bounded)."""
    deadline = time.monotonic() + 180
    while True:
        [newest] = api.get("/system/gc", params={"page": 1, "page_size": 1}).json()
        if newest["job_status"] not in ("Pending", "Running"):
            return str(newest["job_status"])
        if time.monotonic() > deadline:
            pytest.fail(f"garbage collection still {newest['job_status']} after 3 minutes")
        time.sleep(1)
