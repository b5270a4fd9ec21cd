"""Reading a layer blob as a stream of tar members, bounded against hostile input.

A layer is read once, front to back: gzip is inflated as it arrives, and a tar member's
data is either handed to a reader that takes what it needs or skipped. Nothing keeps a
list of members (``tarfile`` does, even in stream mode), and the headers that carry a
length of their own (GNU long names, pax records) are capped before they are read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, cast

# Intel's ISA-L inflate: the same stream API as zlib's at about half its CPU, and inflating
# is most of a scan's work (docs/scanning.md, "Speed").
from isal import isal_zlib

# The stubs name the error class as if it were an instance.
INFLATE_ERROR = cast(type[Exception], isal_zlib.error)

BLOCK = 512
CHUNK = 1 << 20
MAX_EXTENDED_HEADER = 1 << 20  # a pax record or a GNU long name longer than this is hostile


class LayerError(Exception):
    """The layer cannot be read: not a tar, truncated, unsupported compression, too large."""


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class LayerStream:
    """Compressed bytes in, tar bytes out, counting what was produced against a cap."""

    def __init__(self, raw: Reader, max_bytes: int) -> None:
        self._raw = raw
        self._max = max_bytes
        self.produced = 0
        self._buf = b""
        self._pos = 0
        head = self._raw_read(CHUNK)
        self._inflate: isal_zlib.Decompress | None = None
        if head[:2] == b"\x1f\x8b":
            self._inflate = isal_zlib.decompressobj(wbits=31)
        elif head[:4] == b"\x28\xb5\x2f\xfd":
            raise LayerError("unsupported compression: zstd (gzip and uncompressed tar are read)")
        elif head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
            raise LayerError("unsupported compression (gzip and uncompressed tar are read)")
        self._pending = head

    def _raw_read(self, n: int) -> bytes:
        data = self._raw.read(n)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise LayerError("the layer reader returned something other than bytes")
        return bytes(data)

    def _fill(self) -> bool:
        """Put more tar bytes in the buffer; False at the end of the layer."""
        while True:
            if self._pending:
                raw, self._pending = self._pending, b""
            else:
                raw = self._raw_read(CHUNK)
            if self._inflate is None:
                if not raw:
                    return False
                out = raw
            else:
                if not raw:
                    if not self._inflate.eof:
                        raise LayerError("the gzip stream is truncated")
                    return False
                if self._inflate.eof:
                    if not raw.strip(b"\0"):
                        continue  # zero padding after the last gzip member
                    # Another gzip member: concatenated gzip is valid gzip.
                    self._inflate = isal_zlib.decompressobj(wbits=31)
                try:
                    out = self._inflate.decompress(raw, CHUNK)
                except INFLATE_ERROR as exc:
                    raise LayerError(f"the layer is not valid gzip: {exc}") from None
                if self._inflate.unconsumed_tail:
                    self._pending = self._inflate.unconsumed_tail
                elif self._inflate.eof and self._inflate.unused_data:
                    self._pending = self._inflate.unused_data
                if not out:
                    continue
            self.produced += len(out)
            if self.produced > self._max:
                raise LayerError(f"the layer exceeds the {self._max} bytes read per scan")
            self._buf = self._buf[self._pos :] + out
            self._pos = 0
            return True

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the layer."""
        parts: list[bytes] = []
        while n > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._fill():
                    break
                continue
            take = min(n, avail)
            parts.append(self._buf[self._pos : self._pos + take])
            self._pos += take
            n -= take
        return b"".join(parts)

    def skip(self, n: int) -> None:
        while n > 0:
            avail = len(self._buf) - self._pos
            if avail == 0:
                if not self._fill():
                    raise LayerError("the tar is truncated")
                continue
            take = min(n, avail)
            self._pos += take
            n -= take


@dataclass(slots=True)
class Member:
    name: str
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    size: int
    mode: int
    linkname: str


class MemberData:
    """A member's bytes, readable once, front to back; what is left unread is skipped."""

    def __init__(self, source: LayerStream, size: int) -> None:
        self._source = source
        self.remaining = size

    def read(self, n: int = -1, /) -> bytes:
        if n < 0 or n > self.remaining:
            n = self.remaining
        data = self._source.read(n)
        if len(data) < n:
            raise LayerError("the tar is truncated")
        self.remaining -= len(data)
        return data

    def skip(self, n: int) -> None:
        """Pass over ``n`` bytes (at most what is left) without copying them."""
        n = min(n, self.remaining)
        self._source.skip(n)
        self.remaining -= n


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:
            raise LayerError("a negative number in a tar header")
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise LayerError("a tar header holds a malformed number") from None


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise LayerError("a malformed pax record") from None
        if length <= space - pos or pos + length > len(data):
            raise LayerError("a malformed pax record")
        record = data[space + 1 : pos + length - 1]
        key, eq, value = record.partition(b"=")
        if eq:
            out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


_HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")
_KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir", b"2": "symlink", b"1": "hardlink"}


def members(source: LayerStream) -> Iterator[tuple[Member, MemberData]]:
    """Each member with its data; the caller reads what it wants before asking for the next.

    The data of a member must not be used after the next member is asked for.
    """
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    seen_header = False
    while True:
        header = source.read(BLOCK)
        if not header:
            if not seen_header:
                raise LayerError("the layer is empty, not a tar")
            return
        if len(header) < BLOCK:
            raise LayerError("the tar is truncated")
        if header == b"\0" * BLOCK:
            return  # end of archive (a second zero block and padding may follow; unread)
        try:
            chksum = _octal(header[148:156])
        except LayerError:
            chksum = -1
        computed = sum(header[:148]) + 256 + sum(header[156:])
        if chksum != computed:
            raise LayerError(
                "not a tar (bad header checksum)" if not seen_header else "a corrupt tar header"
            )
        seen_header = True
        size = _octal(header[124:136])
        typeflag = header[156:157]
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        if typeflag in (b"L", b"K", b"x", b"g"):
            if size > MAX_EXTENDED_HEADER:
                raise LayerError(f"a tar extended header of {size} bytes")
            data = source.read(padded)
            if len(data) < padded:
                raise LayerError("the tar is truncated")
            data = data[:size]
            if typeflag == b"L":
                long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif typeflag == b"K":
                long_link = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif typeflag == b"x":
                pax = _pax(data)
            continue  # global pax headers ("g") carry nothing we use
        name = header[0:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar" and header[345:500].strip(b"\0"):
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        linkname = header[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        member_name = name.decode("utf-8", "surrogateescape")
        if long_name is not None:
            member_name = long_name
        if long_link is not None:
            linkname = long_link
        if "path" in pax:
            member_name = pax["path"]
        if "linkpath" in pax:
            linkname = pax["linkpath"]
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise LayerError("a malformed pax size") from None
            if size < 0:
                raise LayerError("a malformed pax size")
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
        long_name = long_link = None
        pax = {}
        kind = _KINDS.get(typeflag, "other")
        # Links, directories, devices and fifos carry no data whatever their size field says
        # (as GNU tar, Go's archive/tar and Python's tarfile read them).
        data_size = 0 if typeflag in _HEADER_ONLY else size
        padded = (data_size + BLOCK - 1) // BLOCK * BLOCK
        mode = _octal(header[100:108])
        body = MemberData(source, data_size)
        yield Member(member_name, kind, data_size, mode, linkname), body
        source.skip(body.remaining + (padded - data_size))
