"""What one additions GET may cost: blob reads stop at the cap whatever a descriptor
declares, and a chart archive is unpacked within a member and a byte budget."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from pathlib import Path

import pytest

from dockyard.artifacts import service
from dockyard.artifacts.service import MAX_CHART_MEMBERS, chart_files
from dockyard.errors import NotFoundError
from dockyard.oci.digest import Digest
from dockyard.storage import blob_key
from dockyard.storage.filesystem import FilesystemStorage


def _header(name: str, size: int = 0) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _many_members(count: int, first: bytes = b"") -> bytes:
    """A gzip'd tar of ``count`` empty members (the same header repeated: tiny once gzip'd)."""
    return gzip.compress(first + _header("c/templates/x.yaml") * count + b"\0" * 1024, 1)


def _readme_member(text: bytes) -> bytes:
    return _header("c/README.md", len(text)) + text + b"\0" * (-len(text) % 512)


def test_an_archive_of_too_many_members_is_refused_quickly() -> None:
    archive = _many_members(40_000)
    assert len(archive) < service.MAX_ADDITION_BYTES  # small enough to be read
    started = time.process_time()
    with pytest.raises(NotFoundError, match="members"):
        chart_files(archive, ("readme.md",))
    assert time.process_time() - started < 2.0


def test_an_archive_that_unpacks_past_the_cap_is_refused() -> None:
    huge = _header("c/charts/blob.bin", service.MAX_CHART_UNPACKED_BYTES) + b"\0" * (
        service.MAX_CHART_UNPACKED_BYTES + 512
    )
    archive = gzip.compress(huge, 1)
    with pytest.raises(NotFoundError, match="unpacks"):
        chart_files(archive, ("readme.md",))


def test_the_walk_stops_at_the_first_wanted_file() -> None:
    """The README comes first: the members after it, past every cap, are never read."""
    archive = _many_members(MAX_CHART_MEMBERS * 2, first=_readme_member(b"# c\n"))
    assert chart_files(archive, ("readme.md",)).readme == "# c\n"
    with pytest.raises(NotFoundError):
        chart_files(archive, ("values.yaml",))


class _CountingStorage(FilesystemStorage):
    read_bytes_total = 0

    async def read_bytes(self, key: str) -> bytes:
        data = await super().read_bytes(key)
        self.read_bytes_total += len(data)
        return data


async def test_a_lying_descriptor_cannot_pull_a_large_blob_into_memory(tmp_path: Path) -> None:
    storage = _CountingStorage(tmp_path)
    big = b"x" * (service.MAX_ADDITION_BYTES + 1024 * 1024)
    digest = str(Digest.of(big))
    await storage.write_bytes(blob_key(digest), big)
    read_before = storage.read_bytes_total
    with pytest.raises(NotFoundError, match="larger than"):
        # the descriptor claims 10 bytes; the blob holds 5 MiB
        await service._read_capped(storage, digest, 10, "chart")
    assert storage.read_bytes_total == read_before
    small = b"y" * 100
    await storage.write_bytes(blob_key("sha256:" + "cd" * 32), small)
    assert await service._read_capped(storage, "sha256:" + "cd" * 32, 10, "chart") == small


def test_chart_files_still_reads_a_plain_tar() -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("c/values.yaml")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"a: "))
    assert chart_files(raw.getvalue(), ("values.yaml",)).values == "a: "
