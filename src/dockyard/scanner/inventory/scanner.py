"""Apply an image's layers in order and collect what each surviving file says is installed.

A layer is streamed once. Only the files that can name packages are read, each up to a
cap, and what they say is kept per path; whiteouts (``.wh.<name>``, ``.wh..wh..opq``) and
entries that replace a lower directory drop what lower layers left under those paths, as an
overlay filesystem would. Symlinks are never followed, so a symlink loop costs nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import posixpath
import sqlite3
import tempfile
import zipfile
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Protocol

from . import parsers
from .model import Inventory, OSRelease, Package, with_purl
from .tarstream import LayerError, LayerStream, Member, MemberData, Reader, members


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep a hostile image from costing more than a real one."""

    max_scan_bytes: int = 16 << 30  # uncompressed tar bytes over all layers (a bomb stops here)
    max_members: int = 2_000_000  # tar entries per layer
    max_file_bytes: int = 8 << 20  # a package database or manifest
    max_archive_bytes: int = 256 << 20  # a Java archive or an rpmdb.sqlite, spooled to disk
    max_binary_bytes: int = 512 << 20  # an ELF file searched for Go build info
    max_packages: int = 500_000
    max_archive_entries: int = 100_000  # entries of one Java archive looked at


OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
RPMDB_PATHS = ("var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite")
JAVA_SUFFIXES = (".jar", ".war", ".ear")


@dataclass(frozen=True, slots=True)
class _Link:
    """A symlink at an os-release path (``/etc/os-release`` usually points into /usr/lib)."""

    target: str


Found = list[Package] | OSRelease | _Link


def normalize(name: str) -> str | None:
    """A member name as a path without a leading slash, or None if it climbs out of the root."""
    path = posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")
    if not path or path == "." or "\0" in path:
        return None
    # normpath on an absolute path swallows '..' at the root; refuse names that tried it.
    if ".." in name.replace("\\", "/").split("/"):
        return None
    return path


def _classify(path: str, member: Member) -> str | None:
    base = posixpath.basename(path)
    if path in OS_RELEASE_PATHS:
        return "os"
    if path == DPKG_STATUS:
        return "dpkg"
    if path.startswith(DPKG_STATUS_D) and "/" not in path[len(DPKG_STATUS_D) :]:
        return None if base.endswith(".md5sums") else "dpkg.d"
    if path == APK_INSTALLED:
        return "apk"
    if path in RPMDB_PATHS:
        return "rpm"
    if base == "METADATA" and path.endswith(".dist-info/METADATA"):
        return "python"
    if base == "PKG-INFO" and path.endswith(".egg-info/PKG-INFO"):
        return "python"
    if base.endswith(".egg-info"):
        return "python"  # an egg-info that is a file is itself PKG-INFO
    if base == "package.json" and "node_modules/" in path:
        rest = path.rsplit("node_modules/", 1)[1].split("/")
        if len(rest) == 2 or (len(rest) == 3 and rest[0].startswith("@")):
            return "npm"
        return None
    if base.lower().endswith(JAVA_SUFFIXES):
        return "java"
    if member.mode & 0o111 and member.size >= 64:
        return "binary"
    return None


class _Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.packages = 0
        self.bytes_left = limits.max_scan_bytes


@dataclass(slots=True)
class _Layer:
    """What one layer does to the lower ones, applied when the layer ends."""

    found: dict[str, Found] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)  # the path and everything under it
    cleared: set[str] = field(default_factory=set)  # everything under the path (opaque dirs)


MAX_ELF_PROGRAM_TABLE = 64 << 10  # a program header table ending later is not trusted


class _GoSearch:
    """The search of one ELF file for Go's build info, range by range, reading forward."""

    def __init__(self, path: str, data: MemberData, position: int) -> None:
        self.path = path
        self.data = data
        self.position = position  # file offset of the next byte the data gives
        self.tries = 0
        self.gave_up = False

    def run(self, window: bytes, offset: int, end: int) -> list[Package] | None:
        """Search ``[offset, end)``; ``window`` holds its first bytes (already read)."""
        magic = parsers.GO_MAGIC
        self.position = max(self.position, offset + len(window))
        need = 64 << 10  # bytes after the magic that the strings may take (more on demand)
        while True:
            at = window.find(magic)
            while at >= 0 and (offset + at) % 16:
                at = window.find(magic, at + 1)
            if at >= 0:
                self.tries += 1
                if self.tries > 16:  # the magic over and over: a real binary has it once
                    self.gave_up = True
                    return None
                # Make sure the strings after the header are in the window (bounded); they
                # may run past the range's end.
                while len(window) - at < need and self.data.remaining:
                    window += self._read(min(need, self.data.remaining))
                try:
                    strings = parsers.go_buildinfo_strings(window, at)
                except parsers.FormatError:
                    strings = None
                if strings is None and len(window) - at >= need and need < (2 << 20) + 64:
                    need = (2 << 20) + 64
                    continue
                if strings is not None:
                    return parsers.parse_go_modinfo(strings[0], strings[1], self.path) or None
                offset += at + 1
                window = window[at + 1 :]
                continue
            left = min(self.data.remaining, end - self.position)
            if left <= 0:
                return None
            keep = len(magic) - 1
            offset += max(len(window) - keep, 0)
            window = window[-keep:] + self._read(min(1 << 20, left))

    def skip_to(self, offset: int) -> None:
        if offset > self.position:
            self.data.skip(offset - self.position)
            self.position = offset

    def _read(self, n: int) -> bytes:
        data = self.data.read(n)
        self.position += len(data)
        return data


class _Scan:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.budget = _Budget(limits)
        self.found: dict[str, Found] = {}
        self.inventory = Inventory()

    def warn(self, text: str) -> None:
        if len(self.inventory.warnings) < 1000:
            self.inventory.warnings.append(text)

    # -- layers --

    def layer(self, reader: Reader) -> None:
        index = self.inventory.layers
        self.inventory.layers += 1
        # Directories under which lower layers left something: a non-directory there hides it.
        ancestors: set[str] = set()
        for path in self.found:
            parent = posixpath.dirname(path)
            while parent and parent not in ancestors:
                ancestors.add(parent)
                parent = posixpath.dirname(parent)
        step = _Layer()
        count = 0
        stream: LayerStream | None = None
        try:
            stream = LayerStream(reader, self.budget.bytes_left)
            for member, data in members(stream):
                count += 1
                if count > self.limits.max_members:
                    raise LayerError(f"more than {self.limits.max_members} entries")
                self.member(member, data, step, ancestors)
        except LayerError as exc:
            self.warn(f"layer {index}: {exc}; the rest of this layer was not read")
        finally:
            if stream is not None:
                self.budget.bytes_left -= stream.produced
        self.apply(step)

    def apply(self, step: _Layer) -> None:
        if step.deleted or step.cleared:
            kept: dict[str, Found] = {}
            for path, found in self.found.items():
                if path in step.deleted:
                    continue
                parent = posixpath.dirname(path)
                gone = False
                while parent:
                    if parent in step.deleted or parent in step.cleared:
                        gone = True
                        break
                    parent = posixpath.dirname(parent)
                if not gone:
                    kept[path] = found
            self.found = kept
        self.found.update(step.found)

    def member(self, member: Member, data: MemberData, step: _Layer, ancestors: set[str]) -> None:
        path = normalize(member.name)
        if path is None:
            self.warn(f"skipped a tar entry outside the image root: {member.name[:200]!r}")
            return
        base = posixpath.basename(path)
        parent = posixpath.dirname(path)
        if base.startswith(".wh."):
            if base == ".wh..wh..opq":
                step.cleared.add(parent)
            elif base.startswith(".wh..wh."):
                pass  # other AUFS metadata
            else:
                step.deleted.add(posixpath.join(parent, base[4:]))
            return
        if member.kind == "dir":
            if path in self.found:
                step.deleted.add(path)  # a directory where a lower layer had a file
            return
        # Anything else replaces what a lower layer had at this path, file or tree, even when
        # it says nothing itself (a symlink, an empty file, a file that cannot be parsed).
        if path in ancestors or path in self.found:
            step.deleted.add(path)
        step.found.pop(path, None)
        if member.kind == "hardlink":
            target = normalize(member.linkname)
            if target is not None:
                # Only a link between two paths that are read both ways: the target's
                # findings, under this path. (A link to a file read for no reason is lost.)
                found = step.found.get(target, self.found.get(target))
                if isinstance(found, list) and _classify(path, member) is not None:
                    step.found[path] = [dataclasses.replace(p, path=path) for p in found]
            return
        if member.kind == "symlink" and path in OS_RELEASE_PATHS:
            target = normalize(posixpath.join(parent, member.linkname))
            if target is not None:
                step.found[path] = _Link(target)
            return
        if member.kind != "file":
            return
        kind = _classify(path, member)
        if kind is None:
            return
        try:
            result = self.read(kind, path, member, data)
        except parsers.FormatError as exc:
            self.warn(str(exc))
            return
        if result is None:
            return
        if isinstance(result, list):
            room = self.limits.max_packages - self.budget.packages
            if len(result) > room:
                self.warn(f"more than {self.limits.max_packages} packages; the rest were left out")
                result = result[: max(room, 0)]
            self.budget.packages += len(result)
            if not result:
                return
        step.found[path] = result

    # -- files --

    def small(self, path: str, member: Member, data: MemberData) -> bytes | None:
        if member.size > self.limits.max_file_bytes:
            self.warn(f"/{path}: {member.size} bytes, over the {self.limits.max_file_bytes} read")
            return None
        return data.read()

    def read(self, kind: str, path: str, member: Member, data: MemberData) -> Found | None:
        if kind == "binary":
            return self.go_binary(path, member, data)
        if kind == "java":
            return self.java(path, member, data)
        if kind == "rpm":
            return self.rpmdb(path, member, data)
        body = self.small(path, member, data)
        if body is None:
            return None
        if kind == "os":
            return parsers.parse_os_release(body, path)
        if kind == "dpkg":
            return parsers.parse_dpkg_status(body, path)
        if kind == "dpkg.d":
            return parsers.parse_dpkg_status(body, path, require_installed=False)
        if kind == "apk":
            return parsers.parse_apk_installed(body, path)
        if kind == "python":
            return parsers.parse_python_metadata(body, path)
        if kind == "npm":
            return parsers.parse_package_json(body, path)
        raise AssertionError(kind)

    def go_binary(self, path: str, member: Member, data: MemberData) -> Found | None:
        head = data.read(4)
        if head != b"\x7fELF":
            return None
        if member.size > self.limits.max_binary_bytes:
            self.warn(
                f"/{path}: an ELF file of {member.size} bytes was not searched for Go build info"
            )
            return None
        # Only the writable segments can hold the build info: found from the program
        # header table at the front, the rest of the file is skipped unsearched (a scan's
        # search and copies of every executable were a fifth of a large image's scan).
        # A table that cannot be read means the whole file is searched, as before.
        head += data.read(min(parsers.ELF_HEADER, member.size) - len(head))
        ranges: list[tuple[int, int]] = []
        table_end = parsers.elf_program_table_end(head)
        if table_end is not None and table_end <= min(member.size, MAX_ELF_PROGRAM_TABLE):
            head += data.read(max(table_end - len(head), 0))
            ranges = parsers.elf_writable_ranges(head, member.size)
        search = _GoSearch(path, data, len(head))
        found = None
        if not ranges:
            found = search.run(head, 0, member.size)
        for start, end in ranges:
            if end <= search.position:
                continue
            if start < len(head) and search.position == len(head):
                found = search.run(head[start:], start, end)
            else:
                search.skip_to(start)
                found = search.run(b"", search.position, end)
            if found is not None or search.gave_up:
                break
        if search.gave_up:
            self.warn(f"/{path}: too many Go build info candidates; not read")
        return found

    def spool(self, path: str, member: Member, data: MemberData, into: IO[bytes]) -> bool:
        if member.size > self.limits.max_archive_bytes:
            self.warn(
                f"/{path}: {member.size} bytes, over the {self.limits.max_archive_bytes} read"
            )
            return False
        while data.remaining:
            into.write(data.read(min(1 << 20, data.remaining)))
        into.flush()
        into.seek(0)
        return True

    def java(self, path: str, member: Member, data: MemberData) -> Found | None:
        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
            if not self.spool(path, member, data, spool):
                return None
            return self.java_archive(spool, path, nested=True)

    def java_archive(self, file: IO[bytes], path: str, *, nested: bool) -> list[Package] | None:
        found: list[Package] = []
        try:
            with zipfile.ZipFile(file) as archive:
                infos = archive.infolist()[: self.limits.max_archive_entries]
                for info in infos:
                    name = info.filename
                    if name.startswith("META-INF/maven/") and name.endswith("/pom.properties"):
                        if info.file_size > self.limits.max_file_bytes:
                            continue
                        with archive.open(info) as entry:
                            body = entry.read(self.limits.max_file_bytes + 1)
                        pkg = parsers.parse_pom_properties(body[: self.limits.max_file_bytes], path)
                        if pkg is not None:
                            found.append(pkg)
                    elif nested and name.lower().endswith(JAVA_SUFFIXES):
                        if info.file_size > self.limits.max_archive_bytes:
                            self.warn(f"/{path}!/{name}: too large to open")
                            continue
                        inner_path = f"{path}!/{name}"
                        with tempfile.SpooledTemporaryFile(max_size=8 << 20) as inner:
                            with archive.open(info) as entry:
                                copied = 0
                                while chunk := entry.read(1 << 20):
                                    copied += len(chunk)
                                    if copied > self.limits.max_archive_bytes:
                                        break
                                    inner.write(chunk)
                            inner.seek(0)
                            found.extend(self.java_archive(inner, inner_path, nested=False) or [])
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            OSError,
            ValueError,
            EOFError,
            NotImplementedError,
            RuntimeError,
        ) as exc:
            self.warn(f"/{path}: not a readable Java archive ({exc})")
            return found or None
        return found or None

    def rpmdb(self, path: str, member: Member, data: MemberData) -> Found | None:
        with tempfile.NamedTemporaryFile(suffix=".sqlite") as spool:
            if not self.spool(path, member, data, spool):
                return None
            found: list[Package] = []
            try:
                db = sqlite3.connect(f"file:{spool.name}?mode=ro&immutable=1", uri=True)
                try:
                    rows = db.execute(
                        "SELECT blob FROM Packages LIMIT ?", (self.limits.max_packages + 1,)
                    )
                    for (blob,) in rows:
                        if not isinstance(blob, bytes):
                            continue
                        try:
                            pkg = parsers.rpm_package(parsers.parse_rpm_header(blob), path)
                        except parsers.FormatError as exc:
                            self.warn(f"/{path}: {exc}")
                            continue
                        if pkg is not None:
                            found.append(pkg)
                finally:
                    db.close()
            except sqlite3.Error as exc:
                raise parsers.FormatError(f"/{path}: not a readable rpm database ({exc})") from None
            return found

    # -- result --

    def result(self) -> Inventory:
        inv = self.inventory
        for candidate in OS_RELEASE_PATHS:  # /etc/os-release first, /usr/lib's if it is absent
            found = self.found.get(candidate)
            if isinstance(found, _Link):  # one hop: a link to a link is not followed
                found = self.found.get(found.target)
            if isinstance(found, OSRelease):
                inv.os = found
                break
        packages: list[Package] = []
        for path in sorted(self.found):
            found = self.found[path]
            if isinstance(found, list):
                packages.extend(with_purl(p, inv.os) for p in found)
        inv.packages = packages
        inv.bytes_read = self.limits.max_scan_bytes - self.budget.bytes_left
        return inv


class AsyncReader(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


def inventory_layers(layers: Iterable[Reader], limits: Limits | None = None) -> Inventory:
    """The packages installed in an image whose layers (bottom first) these readers give.

    Each reader gives a layer blob as it is stored: gzip or uncompressed tar. A layer that
    cannot be read is reported in the warnings and the scan goes on with the next one.
    """
    scan = _Scan(limits or Limits())
    for reader in layers:
        scan.layer(reader)
    return scan.result()


class _Bridge:
    """A blocking reader, for a worker thread, over an async iterator of chunks or a reader."""

    def __init__(
        self, source: AsyncIterable[bytes] | AsyncReader, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._loop = loop
        self._buf = b""
        self._ahead: concurrent.futures.Future[bytes] | None = None
        self._next: Callable[[], Coroutine[object, object, bytes]]
        if hasattr(source, "read"):
            reader = source
            self._next = lambda: reader.read(1 << 20)
        else:
            iterator = source.__aiter__()

            async def step() -> bytes:
                try:
                    return bytes(await iterator.__anext__())
                except StopAsyncIteration:
                    return b""

            self._next = step

    def read(self, n: int = -1, /) -> bytes:
        if not self._buf:
            if self._ahead is None:
                self._ahead = asyncio.run_coroutine_threadsafe(self._next(), self._loop)
            self._buf = self._ahead.result()
            # Ask for the next chunk before this one is inflated: the event loop reads (and
            # hashes) it meanwhile, instead of both sides taking turns.
            self._ahead = (
                asyncio.run_coroutine_threadsafe(self._next(), self._loop) if self._buf else None
            )
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    async def drop_read_ahead(self) -> None:
        """Cancel a chunk asked for but never taken (the parser stopped before the end), so
        that the source is idle when its owner closes it."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            await asyncio.wait([asyncio.wrap_future(ahead)])


async def ainventory_layers(
    layers: Iterable[AsyncIterable[bytes] | AsyncReader], limits: Limits | None = None
) -> Inventory:
    """:func:`inventory_layers` for async sources (the storage driver's ``read`` iterators).

    The parsing runs in a worker thread; the sources are read on this event loop.
    """
    loop = asyncio.get_running_loop()
    bridges = [_Bridge(source, loop) for source in layers]
    try:
        return await asyncio.to_thread(inventory_layers, bridges, limits)
    finally:
        for bridge in bridges:
            await bridge.drop_read_ahead()


def iter_chunks(reader: Reader, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := reader.read(size):
        yield chunk
