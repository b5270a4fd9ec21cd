"""The inventory's readers, each on real files of this machine where it has them.

Real: dpkg's status (Debian 12, hundreds of packages), Python dist-info of this virtualenv,
npm's own node_modules tree, Go binaries (Debian's skopeo; terraform's release build, which
carries module dependencies), Debian's Java archives. Written by the tests following their
formats, since the machine has none: an apk database and an rpmdb.sqlite.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import re
import sqlite3
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from tests.support.layer_tars import Entry, layer, layer_of_files

from dockyard.scanner.inventory import Inventory, inventory_layers, purl
from dockyard.scanner.inventory.parsers import FormatError, parse_rpm_header


def scan(*blobs: bytes) -> Inventory:
    return inventory_layers([io.BytesIO(b) for b in blobs])


def test_dpkg_status_of_this_machine() -> None:
    fields = "${Package} ${Version} ${Architecture} ${source:Package} ${source:Version}"
    fmt = "${db:Status-Abbrev}\\t" + fields.replace(" ", "\\t") + "\\n"
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True, check=True
    )
    expected = {
        tuple(line.split("\t")[1:]) for line in out.stdout.splitlines() if line.startswith("ii")
    }
    assert len(expected) > 100
    inv = scan(
        layer_of_files(
            [
                ("/var/lib/dpkg/status", "var/lib/dpkg/status"),
                ("/usr/lib/os-release", "etc/os-release"),
            ]
        )
    )
    got = {(p.name, p.version, p.arch, p.source_name, p.source_version) for p in inv.packages}
    assert got == expected
    assert inv.os is not None and inv.os.id == "debian"
    libc = next(p for p in inv.packages if p.name == "libc6")
    assert libc.purl == purl(
        "deb",
        "libc6",
        libc.version,
        "debian",
        {"arch": libc.arch, "distro": f"debian-{inv.os.version_id}"},
    )
    version = libc.version.replace("+", "%2B")
    assert libc.purl.startswith(f"pkg:deb/debian/libc6@{version}?arch=amd64&distro=debian-")


def test_distroless_status_d_has_no_status_field() -> None:
    real = Path("/var/lib/dpkg/status").read_text()
    para = next(p for p in real.split("\n\n") if p.startswith("Package: base-files\n"))
    distroless = "\n".join(line for line in para.splitlines() if not line.startswith("Status:"))
    inv = scan(
        layer(
            [
                ("var/lib/dpkg/status.d/base-files", distroless.encode()),
                ("var/lib/dpkg/status.d/base-files.md5sums", b"abc  etc/issue\n"),
            ]
        )
    )
    [pkg] = inv.packages
    assert pkg.name == "base-files" and pkg.path == "var/lib/dpkg/status.d/base-files"
    # In the full status a package that is not installed any more is left out.
    removed = para.replace("install ok installed", "deinstall ok config-files")
    assert scan(layer([("var/lib/dpkg/status", removed.encode())])).packages == []


APK_DB = b"""C:Q1Jwlj5aQuH3uzpb+FkWajlmbfAuM=
P:musl
V:1.2.4-r2
A:x86_64
S:407765
I:651264
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teras <timo.teras@iki.fi>
t:1697124522
c:3d30a8ee48b0e5ed5374d0a9ebc50cbc5c545a0f
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1R6xK7yV3bL0f6gXQ2HlVbl6Xbx0=

C:Q1lPl2xNWgV7hTqlIdfLEYpxLKk1I=
P:libcrypto3
V:3.1.4-r1
A:x86_64
o:openssl
F:lib
R:libcrypto.so.3

"""
ALPINE = b'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.18.4\nPRETTY_NAME="Alpine Linux v3.18"\n'


def test_apk_installed_written_per_its_format() -> None:
    inv = scan(layer([("etc/os-release", ALPINE), ("lib/apk/db/installed", APK_DB)]))
    assert [(p.name, p.version, p.arch, p.source_name) for p in inv.packages] == [
        ("musl", "1.2.4-r2", "x86_64", "musl"),
        ("libcrypto3", "3.1.4-r1", "x86_64", "openssl"),
    ]
    assert (
        inv.packages[1].purl
        == "pkg:apk/alpine/libcrypto3@3.1.4-r1?arch=x86_64&distro=alpine-3.18.4"
    )


# --- rpm: a header blob written per rpm's header format ------------------------------------

RPM_STRING, RPM_INT32, RPM_BIN = 6, 4, 7


def rpm_header(tags: list[tuple[int, int, bytes, int]]) -> bytes:
    """The blob rpmdb keeps: il, dl, il index entries (tag, type, offset, count), the data."""
    index, store = b"", b""
    # rpm puts a region tag first (HEADERIMMUTABLE, BIN, pointing at a trailer); mimic it.
    entries = [(63, RPM_BIN, b"\0" * 16, 16), *tags]
    for tag, typ, data, count in entries:
        if typ == RPM_INT32:
            store += b"\0" * (-len(store) % 4)
        index += struct.pack(">iIiI", tag, typ, len(store), count)
        store += data
    return struct.pack(">II", len(entries), len(store)) + index + store


def rpm_pkg(name: str, version: str, release: str, epoch: int | None, source: str) -> bytes:
    tags = [
        (1000, RPM_STRING, name.encode() + b"\0", 1),
        (1001, RPM_STRING, version.encode() + b"\0", 1),
        (1002, RPM_STRING, release.encode() + b"\0", 1),
        (1022, RPM_STRING, b"x86_64\0", 1),
        (1044, RPM_STRING, source.encode() + b"\0", 1),
    ]
    if epoch is not None:
        tags.append((1003, RPM_INT32, struct.pack(">i", epoch), 1))
    return rpm_header(tags)


def test_rpmdb_sqlite_with_headers_written_per_the_format(tmp_path: Path) -> None:
    db_path = tmp_path / "rpmdb.sqlite"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
    blobs = [
        rpm_pkg("bash", "5.2.15", "5.fc39", None, "bash-5.2.15-5.fc39.src.rpm"),
        rpm_pkg("openssl-libs", "3.1.1", "4.fc39", 1, "openssl-3.1.1-4.fc39.src.rpm"),
        rpm_pkg("gpg-pubkey", "18b8e74c", "62f2920f", None, ""),
        struct.pack(">II", 1, 4) + struct.pack(">iIiI", 1000, RPM_STRING, 99, 1) + b"abc\0",
    ]
    db.executemany("INSERT INTO Packages (blob) VALUES (?)", [(b,) for b in blobs])
    db.commit()
    db.close()
    fedora = b"ID=fedora\nVERSION_ID=39\n"
    inv = scan(
        layer(
            [
                ("etc/os-release", fedora),
                ("usr/lib/sysimage/rpm/rpmdb.sqlite", db_path.read_bytes()),
            ]
        )
    )
    assert [
        (p.name, p.version, p.epoch, p.arch, p.source_name, p.source_version) for p in inv.packages
    ] == [
        ("bash", "5.2.15-5.fc39", None, "x86_64", "bash", "5.2.15-5.fc39"),
        ("openssl-libs", "3.1.1-4.fc39", 1, "x86_64", "openssl", "3.1.1-4.fc39"),
    ]
    assert (
        inv.packages[1].purl
        == "pkg:rpm/fedora/openssl-libs@3.1.1-4.fc39?arch=x86_64&distro=fedora-39&epoch=1"
    )
    assert any("points outside its data" in w for w in inv.warnings)
    # Not a database at all: said so, nothing else breaks.
    inv = scan(layer([("var/lib/rpm/rpmdb.sqlite", b"not sqlite" * 100)]))
    assert inv.packages == [] and "not a readable rpm database" in inv.warnings[0]


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        struct.pack(">II", 0x10000, 0),  # too many index entries
        struct.pack(">II", 1, 1 << 30),  # data larger than rpm allows
        struct.pack(">II", 2, 4) + b"\0" * 16,  # index longer than the blob
        struct.pack(">II", 1, 4) + struct.pack(">iIiI", 1000, RPM_STRING, 0, 1) + b"abcd",  # no NUL
        struct.pack(">II", 1, 4)
        + struct.pack(">iIiI", 1003, RPM_INT32, 2, 1)
        + b"abcd",  # misaligned
    ],
)
def test_hostile_rpm_headers_are_refused(blob: bytes) -> None:
    with pytest.raises(FormatError):
        parse_rpm_header(blob)


# --- Python, npm ----------------------------------------------------------------------------


def test_python_dist_info_of_this_virtualenv() -> None:
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    pairs = []
    for info in site.glob("*.dist-info"):
        pairs.append(
            (str(info / "METADATA"), f"usr/local/lib/python3.11/site-packages/{info.name}/METADATA")
        )
    expected = {
        (d.metadata["Name"], d.version) for d in importlib.metadata.distributions(path=[str(site)])
    }
    assert len(expected) > 20
    inv = scan(layer_of_files(pairs))
    assert {(p.name, p.version) for p in inv.packages} == expected
    sqla = next(p for p in inv.packages if p.name.lower() == "sqlalchemy")
    assert sqla.purl == f"pkg:pypi/sqlalchemy@{sqla.version}"


def test_egg_info_file_and_directory() -> None:
    pkg_info = b"Metadata-Version: 1.1\nName: Legacy_Thing\nVersion: 0.9\n"
    inv = scan(
        layer(
            [
                ("usr/lib/python3/dist-packages/legacy.egg-info", pkg_info),
                ("opt/x/y.egg-info/PKG-INFO", pkg_info),
            ]
        )
    )
    assert [p.purl for p in inv.packages] == ["pkg:pypi/legacy-thing@0.9"] * 2


NPM_TREE = Path("/usr/lib/node_modules/npm")


@pytest.mark.skipif(not NPM_TREE.is_dir(), reason="npm's own node_modules tree is not installed")
def test_npm_tree_of_this_machine() -> None:
    expected = set()
    for manifest in [
        # nested trees too (node_modules/a/node_modules/b)
        *NPM_TREE.glob("**/node_modules/*/package.json"),
        *NPM_TREE.glob("**/node_modules/@*/*/package.json"),
    ]:
        doc = json.loads(manifest.read_text())
        if isinstance(doc.get("name"), str) and isinstance(doc.get("version"), str):
            expected.add((doc["name"], doc["version"]))
    assert len(expected) > 100
    inv = scan(layer_of_files([(str(NPM_TREE), "usr/lib/node_modules/npm")]))
    got = {(f"{p.namespace}/{p.name}" if p.namespace else p.name, p.version) for p in inv.packages}
    top = json.loads((NPM_TREE / "package.json").read_text())
    assert got == expected | {("npm", top["version"])}
    # package.json files below a package's root (dist/esm/...) are not packages
    assert not any("/dist/" in p.path for p in inv.packages)
    scoped = next(p for p in inv.packages if p.namespace)
    assert scoped.purl == f"pkg:npm/%40{scoped.namespace[1:]}/{scoped.name}@{scoped.version}"


# --- Go -------------------------------------------------------------------------------------


def go_version_of(binary: Path) -> str:
    found = re.search(rb"\bgo(1\.\d+(?:\.\d+)?)\b", binary.read_bytes())
    assert found
    return "v" + found.group(1).decode()


@pytest.mark.skipif(not Path("/usr/bin/skopeo").exists(), reason="skopeo is not installed")
def test_go_binary_built_by_debian() -> None:
    inv = scan(
        layer_of_files([("/usr/bin/skopeo", "usr/bin/skopeo"), ("/usr/bin/ls", "usr/bin/ls")])
    )
    assert [(p.name, p.version, p.path) for p in inv.packages] == [
        ("github.com/containers/skopeo/cmd/skopeo", "(devel)", "usr/bin/skopeo"),
        ("stdlib", go_version_of(Path("/usr/bin/skopeo")), "usr/bin/skopeo"),
    ]


TERRAFORM = Path("/usr/local/bin/terraform")


@pytest.mark.skipif(not TERRAFORM.exists(), reason="no module-mode Go binary on this machine")
def test_go_binary_with_module_dependencies() -> None:
    data = TERRAFORM.read_bytes()
    deps = dict(re.findall(rb"\ndep\t([^\t\n]+)\t([^\t\n]+)", data))
    local = set(re.findall(rb"\ndep\t([^\t\n]+)\t[^\n]*\n=>\t\./", data))
    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "layer.tar"
        blob.write_bytes(layer_of_files([(str(TERRAFORM), "bin/terraform")], compress=False))
        del data
        with blob.open("rb") as f:
            inv = inventory_layers([f])
    got = {p.name: p.version for p in inv.packages}
    assert got.pop("stdlib") == go_version_of(TERRAFORM)
    assert got.pop("github.com/hashicorp/terraform") == "(devel)"
    assert got == {k.decode(): ("(devel)" if k in local else v.decode()) for k, v in deps.items()}
    assert local  # the replacements by local directories were exercised
    assert "pkg:golang/cloud.google.com/go@v0.110.7" in {p.purl for p in inv.packages}


def test_hostile_elf_files_with_the_go_magic() -> None:
    magic = b"\xff Go buildinf:"
    bad = [
        b"\x7fELF" + b"\0" * 12 + magic + b"\x08\x02" + b"\0" * 16 + b"\xff" * 20,  # endless varint
        b"\x7fELF"
        + b"\0" * 12
        + magic
        + b"\x08\x02"
        + b"\0" * 16
        + b"\x80\x80\x80\x01",  # huge length
        b"\x7fELF" + b"\0" * 13 + magic + b"\x08\x02" + b"\0" * 16 + b"\x02go\x00",  # unaligned
        b"\x7fELF" + b"\0" * 12 + magic,  # cut short
    ]
    inv = scan(layer([Entry(f"bin/x{i}", blob, mode=0o755) for i, blob in enumerate(bad)]))
    assert inv.packages == []
    # The magic at every aligned offset of 8 MiB: given up on after a few, not a hang.
    flood = b"\x7fELF" + b"\0" * 12 + (magic + b"\x08\x00") * (1 << 19)
    inv = scan(layer([Entry("bin/flood", flood, mode=0o755)]))
    assert inv.packages == [] and "too many Go build info candidates" in inv.warnings[0]


def _elf64(segments: list[tuple[int, int, bytes]], *, big_endian: bool = False) -> bytes:
    """A little ELF64 file: each segment is (flags, file offset, bytes), all PT_LOAD."""
    order = ">" if big_endian else "<"
    ident = b"\x7fELF" + bytes([2, 2 if big_endian else 1, 1]) + bytes(9)
    header = ident + struct.pack(order + "HHIQQQIHHHHHH", 2, 62, 1, 0, 64, 0, 0, 64, 56,
                                 len(segments), 0, 0, 0)  # fmt: skip
    table = b"".join(
        struct.pack(order + "IIQQQQQQ", 1, flags, offset, offset, offset, len(body), len(body), 16)
        for flags, offset, body in segments
    )
    out = bytearray(header + table)
    for _, offset, body in segments:
        out[len(out) :] = bytes(max(offset - len(out), 0))
        out[offset : offset + len(body)] = body
    return bytes(out)


def _buildinfo(module: str) -> bytes:
    modinfo = b"0" * 16 + f"path\t{module}\nmod\t{module}\t(devel)\t\n".encode() + b"1" * 16
    strings = b"".join(bytes([len(s)]) + s for s in (b"go1.22.1", modinfo))
    return b"\xff Go buildinf:" + b"\x08\x02" + bytes(16) + strings


def test_go_build_info_is_looked_for_in_the_writable_segments_only() -> None:
    info = _buildinfo("example.com/tool")
    text, data = 0x1000, 0x3000  # R+X at 0x1000, R+W at 0x3000 (flags: X=1, W=2, R=4)
    in_data = _elf64([(5, text, b"\x90" * 0x800), (6, data, info)])
    in_text_only = _elf64([(5, text, info), (6, data, b"\0" * 0x100)])
    big_endian = _elf64([(5, text, b"\x90" * 0x800), (6, data, info)], big_endian=True)
    inv = scan(
        layer(
            [
                Entry("bin/in-data", in_data, mode=0o755),
                Entry("bin/in-text-only", in_text_only, mode=0o755),
                Entry("bin/big-endian", big_endian, mode=0o755),
            ]
        )
    )
    found = {(p.path, p.name, p.version) for p in inv.packages}
    assert found == {
        ("bin/in-data", "example.com/tool", "(devel)"),
        ("bin/in-data", "stdlib", "v1.22.1"),
        ("bin/big-endian", "example.com/tool", "(devel)"),
        ("bin/big-endian", "stdlib", "v1.22.1"),
    }, inv.warnings
    # Text is skipped unsearched: Go never puts its build info there.
    assert not any(p.path == "bin/in-text-only" for p in inv.packages)
    # A program header table that cannot be trusted: the whole file is searched.
    broken = bytearray(in_text_only)
    broken[0x36:0x38] = struct.pack("<H", 8)  # entries too small to be ELF64 program headers
    inv = scan(layer([Entry("bin/broken", bytes(broken), mode=0o755)]))
    assert {p.name for p in inv.packages} == {"example.com/tool", "stdlib"}


# --- Java -----------------------------------------------------------------------------------

LANG3 = Path("/usr/share/java/commons-lang3.jar")


def pom_of(jar: Path) -> tuple[str, str, str]:
    with zipfile.ZipFile(jar) as z:
        name = next(n for n in z.namelist() if n.endswith("pom.properties"))
        props = dict(
            line.split("=", 1)
            for line in z.read(name).decode().splitlines()
            if "=" in line and not line.startswith("#")
        )
    return props["groupId"], props["artifactId"], props["version"]


@pytest.mark.skipif(
    not LANG3.exists(), reason="apt-get install libcommons-lang3-java gives the jar"
)
def test_java_archives_and_one_level_of_nesting(tmp_path: Path) -> None:
    group, artifact, version = pom_of(LANG3.resolve())
    inner = tmp_path / "inner.war"
    with zipfile.ZipFile(inner, "w") as z:
        z.write(LANG3.resolve(), "WEB-INF/lib/commons-lang3.jar")
    war = tmp_path / "app.war"
    with zipfile.ZipFile(war, "w") as z:
        z.write(LANG3.resolve(), "WEB-INF/lib/commons-lang3.jar")
        z.write(inner, "WEB-INF/lib/inner.war")  # a jar two levels down is not opened
        z.writestr("WEB-INF/lib/broken.jar", b"not a zip")
    inv = scan(
        layer_of_files(
            [(str(LANG3.resolve()), "usr/share/java/commons-lang3.jar"), (str(war), "srv/app.war")]
        )
    )
    assert [(p.namespace, p.name, p.version, p.path) for p in inv.packages] == [
        (group, artifact, version, "srv/app.war!/WEB-INF/lib/commons-lang3.jar"),
        (group, artifact, version, "usr/share/java/commons-lang3.jar"),
    ]
    assert inv.packages[0].purl == f"pkg:maven/{group}/{artifact}@{version}"
    assert any("broken.jar" in w for w in inv.warnings)


def test_purl_encoding() -> None:
    assert purl("npm", "core", "7.0.0", "@angular") == "pkg:npm/%40angular/core@7.0.0"
    assert purl(
        "deb", "libc6", "2.36-9+deb12u4", "debian", {"distro": "debian-12", "arch": "amd64"}
    ) == ("pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12")
    assert (
        purl("golang", "go", "v0.1.0", "cloud.google.com")
        == "pkg:golang/cloud.google.com/go@v0.1.0"
    )
