"""Free-space admission and the disk reserve (storage/space.py), with free space faked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from dockyard.db.engine import _disk_full
from dockyard.errors import StorageFullError
from dockyard.storage.space import DiskSpace

MIB = 1024 * 1024


class FakeSpace(DiskSpace):
    free = 100 * MIB

    def free_bytes(self) -> int:
        return self.free


def _space(tmp_path: Path, free: int) -> FakeSpace:
    space = FakeSpace(
        [tmp_path], min_free_bytes=10 * MIB, reserve=tmp_path / "reserve", reserve_bytes=MIB
    )
    space.free = free
    return space


async def _chunks(*sizes: int) -> AsyncIterator[bytes]:
    for size in sizes:
        yield b"x" * size


def test_pushes_stop_below_min_free(tmp_path: Path) -> None:
    assert _space(tmp_path, 15 * MIB).check_room() == 5 * MIB
    with pytest.raises(StorageFullError, match=r"^storage is full"):
        _space(tmp_path, 9 * MIB).check_room()


async def test_a_chunk_may_not_take_the_floor(tmp_path: Path) -> None:
    space = _space(tmp_path, 15 * MIB)
    passed = [len(c) async for c in space.limit(_chunks(MIB, MIB), 2 * MIB)]
    assert passed == [MIB, MIB]
    with pytest.raises(StorageFullError):
        _ = [c async for c in space.limit(_chunks(MIB, MIB, 1), 2 * MIB)]


async def test_the_reserve_goes_when_the_disk_is_full_and_comes_back(tmp_path: Path) -> None:
    space = _space(tmp_path, 100 * MIB)
    assert space.make_reserve()
    reserve = tmp_path / "reserve"
    assert reserve.stat().st_size == MIB
    space.free = 10 * MIB  # low, but not full: kept (another program could take it)
    await space.before_database_write()
    assert reserve.exists()
    space.free = MIB - 1  # full: released before the write
    await space.before_database_write()
    assert not reserve.exists()
    space.free = 2 * MIB  # not enough room to make it again yet
    await space.before_database_write()
    assert not reserve.exists()
    space.free = 100 * MIB
    await space.before_database_write()
    assert reserve.stat().st_size == MIB


def test_database_disk_full_errors_are_recognised() -> None:
    sqlite_full = SimpleNamespace(sqlite_errorcode=13)
    postgres_full = SimpleNamespace(sqlstate="53100")
    other = SimpleNamespace(sqlstate="23505")
    assert _disk_full(OperationalError("x", {}, sqlite_full))  # type: ignore[arg-type]
    assert _disk_full(OperationalError("x", {}, postgres_full))  # type: ignore[arg-type]
    assert not _disk_full(OperationalError("x", {}, other))  # type: ignore[arg-type]
