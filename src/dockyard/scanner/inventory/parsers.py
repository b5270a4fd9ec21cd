"""Readers of the package databases and manifests an image keeps, one function each.

Each takes the bytes (or a stream) of one file and the path it was found at, and returns
what it finds; malformed input gives :class:`FormatError` or is skipped, never anything else.
"""

from __future__ import annotations

import json
import re
import struct

from .model import OSRelease, Package


class FormatError(Exception):
    """The file is not what its name says (a clear sentence for the inventory's warnings)."""


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# --- os-release -----------------------------------------------------------------------------


def parse_os_release(data: bytes, path: str) -> OSRelease | None:
    """``KEY=value`` lines, values optionally quoted (os-release(5))."""
    fields: dict[str, str] = {}
    for line in _text(data).splitlines():
        key, eq, value = line.strip().partition("=")
        if not eq or not key or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        fields[key] = value
    if not fields.get("ID"):
        return None
    return OSRelease(
        id=fields["ID"].lower(),
        version_id=fields.get("VERSION_ID", ""),
        version_codename=fields.get("VERSION_CODENAME", ""),
        pretty_name=fields.get("PRETTY_NAME", ""),
        path=path,
    )


# --- dpkg -----------------------------------------------------------------------------------


def _paragraphs(text: str) -> list[dict[str, str]]:
    """deb822 paragraphs: ``Field: value`` with indented continuation lines."""
    out: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, last = {}, ""
        elif line[0] in " \t":
            if last:
                cur[last] += "\n" + line.strip()
        else:
            key, colon, value = line.partition(":")
            if colon:
                last = key.strip().lower()
                cur[last] = value.strip()
    if cur:
        out.append(cur)
    return out


def parse_dpkg_status(data: bytes, path: str, *, require_installed: bool = True) -> list[Package]:
    """``/var/lib/dpkg/status`` (or one file of ``status.d/``, where there is no Status)."""
    found: list[Package] = []
    for para in _paragraphs(_text(data)):
        name, version = para.get("package", ""), para.get("version", "")
        if not name or not version:
            continue
        status = para.get("status", "").split()
        if (require_installed or status) and (len(status) < 3 or status[2] != "installed"):
            continue
        source_name, source_version = name, version
        if src := para.get("source", ""):
            source_name, _, rest = src.partition(" ")
            match = re.fullmatch(r"\((.+)\)", rest.strip())
            if match:
                source_version = match.group(1).strip()
        found.append(
            Package(
                type="deb",
                name=name,
                version=version,
                path=path,
                arch=para.get("architecture", ""),
                source_name=source_name,
                source_version=source_version,
            )
        )
    return found


# --- apk ------------------------------------------------------------------------------------


def parse_apk_installed(data: bytes, path: str) -> list[Package]:
    """``/lib/apk/db/installed``: blank-line separated records of ``X:value`` lines."""
    found: list[Package] = []
    for block in re.split(r"\n\s*\n", _text(data)):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) >= 2 and line[1] == ":" and line[0] not in fields:
                fields[line[0]] = line[2:].strip()
        if fields.get("P") and fields.get("V"):
            found.append(
                Package(
                    type="apk",
                    name=fields["P"],
                    version=fields["V"],
                    path=path,
                    arch=fields.get("A", ""),
                    source_name=fields.get("o", fields["P"]),
                    source_version=fields["V"],
                )
            )
    return found


# --- Python ---------------------------------------------------------------------------------


def parse_python_metadata(data: bytes, path: str) -> list[Package]:
    """A ``METADATA`` or ``PKG-INFO`` file: RFC 822 headers, of which Name and Version."""
    name = version = ""
    for line in _text(data).splitlines():
        if not line.strip():
            break  # the body (the long description) follows the first blank line
        key, colon, value = line.partition(":")
        key = key.strip().lower()
        if colon and key == "name" and not name:
            name = value.strip()
        elif colon and key == "version" and not version:
            version = value.strip()
    if not name or not version:
        raise FormatError(f"/{path}: no Name or Version")
    return [Package(type="pypi", name=name, version=version, path=path)]


# --- npm ------------------------------------------------------------------------------------


def parse_package_json(data: bytes, path: str) -> list[Package]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise FormatError(f"/{path}: not JSON") from None
    if not isinstance(doc, dict):
        raise FormatError(f"/{path}: not a JSON object")
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    namespace = ""
    if name.startswith("@") and "/" in name:
        namespace, _, name = name.partition("/")
    return [Package(type="npm", name=name, version=version, path=path, namespace=namespace)]


# --- Java -----------------------------------------------------------------------------------


def parse_pom_properties(data: bytes, path: str) -> Package | None:
    """``META-INF/maven/<group>/<artifact>/pom.properties`` (Java properties, ``k=v``)."""
    props: dict[str, str] = {}
    for line in _text(data).splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        props[key.strip()] = value.strip()
    group, artifact, version = (props.get(k, "") for k in ("groupId", "artifactId", "version"))
    if not group or not artifact or not version:
        return None
    return Package(type="maven", name=artifact, version=version, path=path, namespace=group)


# --- rpm ------------------------------------------------------------------------------------

# Tags and types of rpm's header format (rpm's doc "RPM package format: header structure").
_RPMTAG = {
    1000: "name",
    1001: "version",
    1002: "release",
    1003: "epoch",
    1022: "arch",
    1044: "sourcerpm",
}
_RPM_INT32 = 4
_RPM_STRING = 6
_RPM_I18NSTRING = 9
_RPM_MAX_INDEX = 0xFFFF  # rpm refuses more index entries than this
_RPM_MAX_DATA = 256 << 20


def parse_rpm_header(blob: bytes) -> dict[str, str | int]:
    """The few tags an inventory needs from a header blob as rpmdb keeps it.

    The blob is the header without its 8-byte magic: the index count and data length (two
    big-endian uint32), that many 16-byte index entries (tag, type, offset, count), then the
    data store. Every offset and length is checked before it is used.
    """
    if len(blob) < 8:
        raise FormatError("an rpm header shorter than its preamble")
    il, dl = struct.unpack_from(">II", blob, 0)
    if il > _RPM_MAX_INDEX or dl > _RPM_MAX_DATA:
        raise FormatError("an rpm header with an absurd index or data size")
    start = 8 + 16 * il
    if start + dl > len(blob):
        raise FormatError("an rpm header longer than its blob")
    store = blob[start : start + dl]
    out: dict[str, str | int] = {}
    for i in range(il):
        tag, typ, offset, count = struct.unpack_from(">iIiI", blob, 8 + 16 * i)
        key = _RPMTAG.get(tag)
        if key is None:
            continue
        if offset < 0 or offset >= dl:
            raise FormatError(f"an rpm header tag {tag} points outside its data")
        if typ == _RPM_INT32:
            if count < 1 or offset % 4 or offset + 4 > dl:
                raise FormatError(f"an rpm header tag {tag} is malformed")
            out[key] = struct.unpack_from(">i", store, offset)[0]
        elif typ in (_RPM_STRING, _RPM_I18NSTRING):
            end = store.find(b"\0", offset)
            if end < 0:
                raise FormatError(f"an rpm header string (tag {tag}) is not terminated")
            out[key] = _text(store[offset:end])
    return out


def rpm_package(tags: dict[str, str | int], path: str) -> Package | None:
    name, version, release = (tags.get(k) for k in ("name", "version", "release"))
    if not isinstance(name, str) or not isinstance(version, str) or not name:
        return None
    if name == "gpg-pubkey":
        return None  # imported signing keys are headers too, not packages
    full = f"{version}-{release}" if isinstance(release, str) and release else version
    epoch = tags.get("epoch")
    source_name = source_version = ""
    src = tags.get("sourcerpm")
    if isinstance(src, str) and src.endswith(".src.rpm"):
        nvr = src[: -len(".src.rpm")]
        parts = nvr.rsplit("-", 2)
        if len(parts) == 3:
            source_name, source_version = parts[0], f"{parts[1]}-{parts[2]}"
    arch = tags.get("arch")
    return Package(
        type="rpm",
        name=name,
        version=full,
        path=path,
        arch=arch if isinstance(arch, str) else "",
        epoch=epoch if isinstance(epoch, int) else None,
        source_name=source_name,
        source_version=source_version,
    )


# --- Go -------------------------------------------------------------------------------------

ELF_HEADER = 64  # the ELF64 header's size (ELF32's is 52): what is read before deciding
_PT_LOAD = 1
_PF_W = 2


def elf_program_table_end(head: bytes) -> int | None:
    """The file offset where an ELF header's program header table ends, or None when the
    header is not one this reader trusts (then the caller searches the whole file)."""
    table = _elf_program_table(head)
    if table is None:
        return None
    offset, entry, count, _, _ = table
    return offset + entry * count


def elf_writable_ranges(prefix: bytes, file_size: int) -> list[tuple[int, int]]:
    """Sorted, merged ``[start, end)`` file ranges of the loadable writable segments, from
    ``prefix`` (the file's first bytes, through its program header table).

    Go's linker puts ``.go.buildinfo`` in writable data, whatever the link mode (Go's own
    ``debug/buildinfo`` falls back to the first writable segment for stripped files), so
    only these ranges need searching; text and read-only data are skipped unsearched.
    """
    table = _elf_program_table(prefix)
    if table is None:
        return []
    offset, entry, count, wide, order = table
    if len(prefix) < offset + entry * count:
        return []
    found = []
    for i in range(count):
        base = offset + i * entry
        if wide:
            kind, flags, start = struct.unpack_from(order + "IIQ", prefix, base)
            (size,) = struct.unpack_from(order + "Q", prefix, base + 32)
        else:
            kind, start = struct.unpack_from(order + "II", prefix, base)
            (size,) = struct.unpack_from(order + "I", prefix, base + 16)
            (flags,) = struct.unpack_from(order + "I", prefix, base + 24)
        if kind == _PT_LOAD and flags & _PF_W and size and start < file_size:
            found.append((start, min(start + size, file_size)))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _elf_program_table(head: bytes) -> tuple[int, int, int, bool, str] | None:
    if len(head) < ELF_HEADER or head[:4] != b"\x7fELF" or head[5] not in (1, 2):
        return None
    order = "<" if head[5] == 1 else ">"
    if head[4] == 2:
        (offset,) = struct.unpack_from(order + "Q", head, 0x20)
        entry, count = struct.unpack_from(order + "HH", head, 0x36)
        smallest, header = 56, 64
    elif head[4] == 1:
        (offset,) = struct.unpack_from(order + "I", head, 0x1C)
        entry, count = struct.unpack_from(order + "HH", head, 0x2A)
        smallest, header = 32, 52
    else:
        return None
    if not count or entry < smallest or offset < header:
        return None
    return offset, entry, count, head[4] == 2, order


GO_MAGIC = b"\xff Go buildinf:"
_GO_HEADER = 32
_GO_MAX_STRING = 1 << 20


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(buf) and shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise FormatError("a truncated varint")


def go_buildinfo_strings(buf: bytes, at: int) -> tuple[str, str] | None:
    """The Go version and module info after the magic at ``buf[at]``, or None if absent.

    Only the layout of Go 1.18 and later (flag 2: strings inline after the 32-byte header);
    older binaries keep pointers into the data segment and are not read.
    """
    if len(buf) < at + _GO_HEADER:
        return None
    flags = buf[at + 15]
    if not flags & 0x2:
        return None
    pos = at + _GO_HEADER
    strings: list[bytes] = []
    for _ in range(2):
        length, pos = _uvarint(buf, pos)
        if length > _GO_MAX_STRING or pos + length > len(buf):
            return None
        strings.append(buf[pos : pos + length])
        pos += length
    version, modinfo = strings
    # The module text is framed by 16 bytes of sentinel on each side.
    return _text(version), _text(modinfo[16:-16]) if len(modinfo) >= 32 else ""


def parse_go_modinfo(go_version: str, modinfo: str, path: str) -> list[Package]:
    """``path``/``mod``/``dep``/``=>`` lines of ``runtime/debug.BuildInfo``'s text form."""
    body = modinfo
    found: list[Package] = []
    main_path = ""
    for line in body.splitlines():
        fields = line.split("\t")
        if fields[0] == "path" and len(fields) >= 2:
            main_path = fields[1]
        elif fields[0] in ("mod", "dep") and len(fields) >= 3:
            found.append(Package(type="golang", name=fields[1], version=fields[2], path=path))
        elif fields[0] == "=>" and len(fields) >= 3 and found:
            # The previous module is replaced: the replacement is what the binary holds. A
            # replacement by a local directory keeps the module's name, with no version.
            name, version = fields[1], fields[2]
            if name.startswith(("./", "../", "/")):
                name, version = found[-1].name, "(devel)"
            found[-1] = Package(type="golang", name=name, version=version, path=path)
    if not found and main_path:
        found.append(Package(type="golang", name=main_path, version="(devel)", path=path))
    if go_version.startswith("go"):
        version = "v" + go_version[2:].split(" ", 1)[0]
        found.append(Package(type="golang", name="stdlib", version=version, path=path))
    return found
