"""The S3 driver's part cutting: pieces of exactly ``part_bytes`` whatever the chunking."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from dockyard.errors import SizeInvalidError
from dockyard.storage.s3 import _pieces

PART = 1000


async def _chunks(sizes: list[int], data: bytes) -> AsyncIterator[bytes]:
    at = 0
    for size in sizes:
        yield data[at : at + size]
        at += size


async def _cut(sizes: list[int], limit: int | None = None) -> tuple[bytes, list[bytes]]:
    data = random.Random(sum(sizes)).randbytes(sum(sizes))
    return data, [piece async for piece in _pieces(_chunks(sizes, data), PART, limit)]


@pytest.mark.parametrize(
    "sizes",
    [
        [PART],  # one chunk, one whole part
        [PART * 3],  # one chunk holding three parts
        [PART * 3 + 7],  # ... and a tail
        [1, PART - 1, PART, 999, 2, 0, 5],  # boundaries hit exactly, an empty chunk
        [PART - 1, 2 * PART + 2, 1],  # a chunk straddling three parts
        [37] * 100,  # many small chunks, a part boundary inside a chunk
    ],
)
async def test_pieces_are_whole_parts_in_order(sizes: list[int]) -> None:
    data, pieces = await _cut(sizes)
    assert b"".join(pieces) == data
    assert all(len(p) == PART for p in pieces[:-1])
    assert 0 < len(pieces[-1]) <= PART
    assert all(type(p) is bytes for p in pieces)


async def test_random_chunking_matches_the_input() -> None:
    rng = random.Random(17)
    sizes = [rng.randint(0, 3 * PART) for _ in range(200)]
    data, pieces = await _cut(sizes)
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces[:-1]] == [PART] * (len(pieces) - 1)


async def test_no_chunks_no_pieces() -> None:
    assert (await _cut([]))[1] == []


async def test_more_than_the_limit_is_refused() -> None:
    with pytest.raises(SizeInvalidError):
        await _cut([PART, PART, 1], limit=2 * PART)
    _, pieces = await _cut([PART, PART], limit=2 * PART)
    assert len(pieces) == 2
