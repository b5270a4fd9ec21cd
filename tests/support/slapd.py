"""A real OpenLDAP for tests: Debian's ``slapd`` on a free loopback port with a seeded directory.

:func:`start_slapd` writes a ``slapd.conf`` (an MDB database under ``dc=example,dc=org``
with the core, cosine, nis and inetOrgPerson schemas), loads :data:`SEED` with
``slapadd`` and runs ``slapd -d 0`` on ``ldap://127.0.0.1:<port>``. It never skips:
when ``slapd`` is missing (``scripts/test`` installs ``slapd`` and ``ldap-utils``) or
does not answer in time, it raises with the reason and the server's output. The caller
stops it with :meth:`Slapd.stop` (and may start it again on the same port with
:meth:`Slapd.start`, to play a directory that went down and came back).
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

BASE_DN = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "directory-root-secret"
SEARCH_DN = f"cn=reader,{BASE_DN}"
SEARCH_PASSWORD = "reader-secret"
USER_PASSWORD = "Ldap-user-pass1"
PEOPLE_DN = f"ou=people,{BASE_DN}"
START_TIMEOUT = 30.0


def _person(uid: str, cn: str, mail: str, display: str | None = None) -> str:
    lines = [
        f"dn: uid={uid},{PEOPLE_DN}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {cn}",
        f"sn: {cn.split()[-1]}",
        f"mail: {mail}",
        f"userPassword: {USER_PASSWORD}",
    ]
    if display is not None:
        lines.append(f"displayName: {display}")
    return "\n".join(lines) + "\n"


SEED = "\n".join(
    [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Example\n"
        "dc: example\n",
        f"dn: {SEARCH_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {SEARCH_PASSWORD}\n",
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        _person("alice", "Alice Liddell", "alice@example.org", "Alice L."),
        _person("bob", "Bob Builder", "bob@example.org"),
        _person("carol", "Carol Danvers", "carol@example.org"),
        _person("dave", "Dave Lister", "dave@example.org"),
        _person("frank", "Frank Poole", "frank@example.org"),
        _person("grace", "Grace Hopper", "grace@example.org", "Rear Admiral Hopper"),
        # Not a person: the filter ``(objectClass=inetOrgPerson)`` must keep it out.
        f"dn: cn=printer,{BASE_DN}\nobjectClass: device\ncn: printer\n",
        # A second ``ops`` entry under another branch: a search that finds two is no login.
        f"dn: ou=contractors,{BASE_DN}\nobjectClass: organizationalUnit\nou: contractors\n",
        _person("erin", "Erin Contractor", "erin@example.org").replace(
            PEOPLE_DN, f"ou=contractors,{BASE_DN}"
        ),
    ]
)

_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


def _config(directory: Path) -> str:
    schemas = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in _SCHEMAS)
    return f"""{schemas}
pidfile {directory}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 67108864
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {directory}/data
index uid,cn,mail eq
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by * read
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError(
        f"the LDAP tests need OpenLDAP's {name}: apt-get install slapd ldap-utils "
        "(scripts/test installs them)"
    )


@dataclass
class Slapd:
    directory: Path
    port: int
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.directory / "slapd.log").open("ab") as log:
            self._start(log)

    def _start(self, log: BinaryIO) -> None:
        self._process = subprocess.Popen(
            [
                _binary("slapd"),
                "-d",
                "0",
                "-f",
                str(self.directory / "slapd.conf"),
                "-h",
                self.url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"slapd exited at start:\n{self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not answer within {START_TIMEOUT}s:\n{self.output()}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def output(self) -> str:
        path = self.directory / "slapd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_slapd() -> Slapd:
    """A seeded OpenLDAP on a free loopback port (raises with the reason when it cannot run)."""
    directory = Path(tempfile.mkdtemp(prefix="dockyard-slapd-"))
    (directory / "data").mkdir()
    conf = directory / "slapd.conf"
    conf.write_text(_config(directory))
    seed = directory / "seed.ldif"
    seed.write_text(SEED)
    loaded = subprocess.run(
        [_binary("slapadd"), "-f", str(conf), "-l", str(seed)],
        capture_output=True,
        text=True,
        check=False,
    )
    if loaded.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"slapadd could not seed the directory:\n{loaded.stderr}")
    server = Slapd(directory, _free_port())
    atexit.register(server.close)
    server.start()
    return server
