"""Layer blobs for the inventory tests, written with the standard tarfile module."""

from __future__ import annotations

import gzip
import io
import tarfile
from dataclasses import dataclass


@dataclass
class Entry:
    """One tar entry: a file (``data``), a directory, a symlink or a hard link."""

    name: str
    data: bytes = b""
    kind: str = "file"  # file, dir, symlink, hardlink
    target: str = ""
    mode: int = 0o644


def layer(entries: list[Entry | tuple[str, bytes]], *, compress: bool = True) -> bytes:
    """A layer blob: gzip-compressed tar (or plain tar) of the entries, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in entries:
            entry = Entry(item[0], item[1]) if isinstance(item, tuple) else item
            info = tarfile.TarInfo(entry.name)
            info.mode = entry.mode
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            elif entry.kind in ("symlink", "hardlink"):
                info.type = tarfile.SYMTYPE if entry.kind == "symlink" else tarfile.LNKTYPE
                info.linkname = entry.target
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=1) if compress else raw


def layer_of_files(pairs: list[tuple[str, str]], *, compress: bool = True) -> bytes:
    """A layer of real files from this machine: (path on disk, path in the image)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src, dest in pairs:
            tar.add(src, dest)
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=1) if compress else raw
