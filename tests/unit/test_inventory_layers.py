"""The inventory's layer handling: order, whiteouts, hostile tars, compression, limits."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from tests.support.layer_tars import Entry, layer

from dockyard.scanner.inventory import Limits, ainventory_layers, inventory_layers
from dockyard.storage import blob_key
from dockyard.storage.filesystem import FilesystemStorage

STATUS_A = b"""Package: alpha
Status: install ok installed
Architecture: amd64
Version: 1.0-1

"""
STATUS_B = b"""Package: beta
Status: install ok installed
Architecture: all
Version: 2:3.0~rc1-2
Source: beta-src (2:3.0~rc1-1)
"""
METADATA = b"Metadata-Version: 2.1\nName: %s\nVersion: %s\n\nbody Name: nope\n"
DEBIAN = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def names(blobs: list[bytes], **kw: int) -> set[tuple[str, str, str]]:
    inv = inventory_layers([io.BytesIO(b) for b in blobs], Limits(**kw) if kw else None)
    return {(p.type, p.name, p.version) for p in inv.packages}


def site(name: str, version: str) -> Entry:
    path = f"usr/lib/python3/dist-packages/{name}-{version}.dist-info/METADATA"
    return Entry(path, METADATA % (name.encode(), version.encode()))


def test_a_later_layer_replaces_a_file_and_whiteouts_delete_lower_ones() -> None:
    lower = layer(
        [("var/lib/dpkg/status", STATUS_A), site("requests", "2.31.0"), site("idna", "3.4")]
    )
    upper = layer(
        [
            ("var/lib/dpkg/status", STATUS_A + STATUS_B),
            # deletes the whole dist-info directory of idna
            Entry("usr/lib/python3/dist-packages/.wh.idna-3.4.dist-info"),
        ]
    )
    assert names([lower, upper]) == {
        ("deb", "alpha", "1.0-1"),
        ("deb", "beta", "2:3.0~rc1-2"),
        ("pypi", "requests", "2.31.0"),
    }
    # Order matters: the same layers the other way round keep idna (the whiteout came first).
    assert ("pypi", "idna", "3.4") in names([upper, lower])


def test_an_opaque_directory_hides_only_lower_layers() -> None:
    lower = layer([site("requests", "2.31.0"), site("idna", "3.4")])
    upper = layer(
        [
            Entry("usr/lib/python3/dist-packages/.wh..wh..opq"),
            site("urllib3", "2.0.7"),
        ]
    )
    assert names([lower, upper]) == {("pypi", "urllib3", "2.0.7")}


def test_a_file_or_symlink_where_a_directory_was_hides_the_tree_and_a_dir_hides_a_file() -> None:
    lower = layer([site("requests", "2.31.0"), ("opt/app/lib.egg-info", METADATA % (b"x", b"1"))])
    upper = layer(
        [
            Entry("usr/lib/python3/dist-packages", kind="symlink", target="/elsewhere"),
            Entry("opt/app/lib.egg-info", kind="dir"),
        ]
    )
    assert names([lower]) == {("pypi", "requests", "2.31.0"), ("pypi", "x", "1")}
    assert names([lower, upper]) == set()


def test_a_hard_link_between_two_read_paths_counts_under_its_own_path() -> None:
    blob = layer(
        [
            ("var/lib/dpkg/status.d/alpha", STATUS_A),
            Entry("var/lib/dpkg/status", kind="hardlink", target="var/lib/dpkg/status.d/alpha"),
            Entry("var/lib/dpkg/status.d/x", kind="hardlink", target="nowhere"),
        ]
    )
    inv = inventory_layers([io.BytesIO(blob)])
    assert [(p.name, p.path) for p in inv.packages] == [
        ("alpha", "var/lib/dpkg/status"),
        ("alpha", "var/lib/dpkg/status.d/alpha"),
    ]


def test_os_release_through_the_usual_symlink_and_purls_carry_the_distro() -> None:
    blob = layer(
        [
            ("usr/lib/os-release", DEBIAN),
            Entry("etc/os-release", kind="symlink", target="../usr/lib/os-release"),
            ("var/lib/dpkg/status", STATUS_B),
        ]
    )
    inv = inventory_layers([io.BytesIO(blob)])
    assert inv.os is not None
    assert (inv.os.id, inv.os.version_id, inv.os.pretty_name) == (
        "debian",
        "12",
        "Debian GNU/Linux 12 (bookworm)",
    )
    [pkg] = inv.packages
    assert (pkg.source_name, pkg.source_version) == ("beta-src", "2:3.0~rc1-1")
    assert pkg.purl == "pkg:deb/debian/beta@2:3.0~rc1-2?arch=all&distro=debian-12"
    # Whited out in a later layer: the OS is gone too.
    gone = layer([Entry("usr/lib/.wh.os-release"), Entry("etc/.wh.os-release")])
    assert inventory_layers([io.BytesIO(blob), io.BytesIO(gone)]).os is None


def test_uncompressed_layers_and_concatenated_gzip_members_are_read() -> None:
    plain = layer([("var/lib/dpkg/status", STATUS_A)], compress=False)
    assert names([plain]) == {("deb", "alpha", "1.0-1")}
    half = len(plain) // 2
    two_members = gzip.compress(plain[:half]) + gzip.compress(plain[half:])
    assert names([two_members]) == {("deb", "alpha", "1.0-1")}


def test_unreadable_layers_are_reported_and_the_next_layers_still_count() -> None:
    good = layer([("var/lib/dpkg/status", STATUS_A)])
    zstd = b"\x28\xb5\x2f\xfd" + os.urandom(100)
    cases = {
        "zstd": (zstd, "unsupported compression: zstd"),
        "garbage": (os.urandom(4096), "not a tar"),
        "truncated gzip": (good[: len(good) // 2], "truncated"),
        "bad gzip": (b"\x1f\x8b" + os.urandom(200), "not valid gzip"),
        "empty": (b"", "empty"),
    }
    for label, (blob, message) in cases.items():
        inv = inventory_layers([io.BytesIO(blob), io.BytesIO(good)])
        assert [p.name for p in inv.packages] == ["alpha"], label
        assert len(inv.warnings) == 1 and message in inv.warnings[0], (label, inv.warnings)


def test_truncated_tar_inside_valid_gzip_keeps_what_came_before() -> None:
    raw = layer([("var/lib/dpkg/status", STATUS_A), ("big", os.urandom(10_000))], compress=False)
    inv = inventory_layers([io.BytesIO(gzip.compress(raw[:5000]))])
    assert [p.name for p in inv.packages] == ["alpha"]
    assert "truncated" in inv.warnings[0]


def test_path_traversal_and_absolute_names_are_skipped_or_kept_inside_the_root() -> None:
    blob = layer(
        [
            ("../../var/lib/dpkg/status", STATUS_B),
            ("/var/lib/dpkg/status", STATUS_A),  # absolute: read as relative to the root
            ("usr/../../etc/os-release", DEBIAN),
        ]
    )
    inv = inventory_layers([io.BytesIO(blob)])
    assert [p.name for p in inv.packages] == ["alpha"]
    assert inv.os is None
    assert sum("outside the image root" in w for w in inv.warnings) == 2


def test_symlink_loops_cost_nothing() -> None:
    blob = layer(
        [
            Entry("etc/os-release", kind="symlink", target="os-release"),
            Entry("usr/lib/os-release", kind="symlink", target="../../etc/os-release"),
            Entry("a", kind="symlink", target="b"),
            Entry("b", kind="symlink", target="a"),
            Entry("var/lib/dpkg", kind="symlink", target="../../var/lib/dpkg"),
        ]
    )
    inv = inventory_layers([io.BytesIO(blob)])
    assert inv.os is None and inv.packages == [] and inv.warnings == []


def test_a_decompression_bomb_stops_at_the_byte_cap() -> None:
    # 64 MiB of zeros inside a ~64 KiB gzip: the cap of 8 MiB stops it, and says so.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(64 << 20)))
    bomb = gzip.compress(raw.getvalue(), compresslevel=9)
    assert len(bomb) < 1 << 20
    good = layer([("var/lib/dpkg/status", STATUS_A)])
    inv = inventory_layers([io.BytesIO(bomb), io.BytesIO(good)], Limits(max_scan_bytes=8 << 20))
    assert "exceeds the 8388608 bytes read per scan" in inv.warnings[0]
    # The budget is for the whole scan: nothing is left for the next layer.
    assert inv.packages == []
    assert inv.bytes_read >= 8 << 20


def test_absurd_sizes_in_headers_are_refused() -> None:
    # A pax header claiming 1 GiB: refused before anything is read into memory.
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 1 << 30
    blob = header.tobuf(format=tarfile.USTAR_FORMAT) + bytes(1024)
    inv = inventory_layers([io.BytesIO(blob)])
    assert "extended header of 1073741824 bytes" in inv.warnings[0]
    # A file that says it is larger than the layer: truncated, not a hang.
    info = tarfile.TarInfo("var/lib/dpkg/status")
    info.size = 1 << 40
    blob = info.tobuf(format=tarfile.GNU_FORMAT) + STATUS_A
    inv = inventory_layers([io.BytesIO(blob)])
    assert "/var/lib/dpkg/status: 1099511627776 bytes, over the 8388608 read" in inv.warnings[0]
    assert "truncated" in inv.warnings[1]


def test_member_and_file_caps() -> None:
    many = layer([(f"f{i}", b"") for i in range(50)] + [("var/lib/dpkg/status", STATUS_A)])
    inv = inventory_layers([io.BytesIO(many)], Limits(max_members=20))
    assert inv.packages == [] and "more than 20 entries" in inv.warnings[0]
    inv = inventory_layers([io.BytesIO(many)], Limits(max_file_bytes=10))
    assert inv.packages == [] and "over the 10 read" in inv.warnings[0]
    inv = inventory_layers(
        [io.BytesIO(layer([("var/lib/dpkg/status", STATUS_A + STATUS_B)]))], Limits(max_packages=1)
    )
    assert len(inv.packages) == 1 and "more than 1 packages" in inv.warnings[0]


def test_async_sources_chunk_iterators_and_readers() -> None:
    lower = layer([("var/lib/dpkg/status", STATUS_A)])
    upper = layer([site("idna", "3.4")])

    async def chunks(blob: bytes) -> AsyncIterator[bytes]:
        for i in range(0, len(blob), 100):
            yield blob[i : i + 100]

    class Reader:
        def __init__(self, blob: bytes) -> None:
            self.buf = io.BytesIO(blob)

        async def read(self, n: int = -1, /) -> bytes:
            return self.buf.read(n)

    inv = asyncio.run(ainventory_layers([chunks(lower), Reader(upper)]))
    assert {p.name for p in inv.packages} == {"alpha", "idna"}
    assert inv.layers == 2


def test_a_source_the_parser_stops_reading_is_left_idle_and_closes() -> None:
    # The bridge asks for the next chunk before the parser takes the current one. A layer
    # refused part-way (here: more entries than allowed) leaves one such read pending; it
    # is cancelled, so the owner's close finds the source idle and runs its cleanup.
    many = layer([(f"f{i}", b"x" * 600) for i in range(400)])
    asked, closed = [], []

    async def chunks(blob: bytes) -> AsyncIterator[bytes]:
        try:
            for i in range(0, len(blob), 512):
                asked.append(i)
                await asyncio.sleep(0)
                yield blob[i : i + 512]
        finally:
            closed.append(True)

    async def run() -> None:
        source = chunks(many)
        inv = await ainventory_layers([source], Limits(max_members=5))
        assert "more than 5 entries" in inv.warnings[0]
        await source.aclose()  # raises if a read were still running
        assert closed == [True]
        assert 0 < len(asked) < len(many) // 512  # stopped early

    asyncio.run(run())


def test_a_directory_or_link_with_a_size_carries_no_data() -> None:
    # A directory header claiming 1024 bytes, followed directly by the next header: the size
    # is ignored (as tar readers do), so the status file right after it is found.
    info = tarfile.TarInfo("etc")
    info.type = tarfile.DIRTYPE
    info.size = 1024
    raw = info.tobuf(format=tarfile.USTAR_FORMAT)
    status = tarfile.TarInfo("var/lib/dpkg/status")
    status.size = len(STATUS_A)
    raw += status.tobuf(format=tarfile.USTAR_FORMAT) + STATUS_A + bytes(-len(STATUS_A) % 512)
    raw += bytes(1024)
    assert names([raw]) == {("deb", "alpha", "1.0-1")}


def test_a_file_replaced_by_a_symlink_or_an_unreadable_file_is_gone() -> None:
    lower = layer([("var/lib/dpkg/status", STATUS_A), site("idna", "3.4")])
    metadata = "usr/lib/python3/dist-packages/idna-3.4.dist-info/METADATA"
    upper = layer(
        [
            Entry("var/lib/dpkg/status", kind="symlink", target="/dev/null"),
            (metadata, b"Metadata-Version: 2.1\n"),  # no Name: a warning, and no package
        ]
    )
    inv = inventory_layers([io.BytesIO(lower), io.BytesIO(upper)])
    assert inv.packages == []
    assert inv.warnings == [f"/{metadata}: no Name or Version"]


def test_layers_read_from_the_filesystem_storage_driver(tmp_path: Path) -> None:
    # The scanner will read layers as the registry stores them: through Storage.read.
    blobs = [layer([("var/lib/dpkg/status", STATUS_A)]), layer([site("idna", "3.4")])]
    storage = FilesystemStorage(tmp_path)

    async def run() -> set[str]:
        keys = []
        for blob in blobs:
            key = blob_key("sha256:" + hashlib.sha256(blob).hexdigest())
            await storage.write_bytes(key, blob)
            keys.append(key)
        inv = await ainventory_layers([storage.read(key) for key in keys])
        return {p.name for p in inv.packages}

    assert asyncio.run(run()) == {"alpha", "idna"}
