"""A real OpenLDAP for tests: Debian's ``slapd`` on a free loopback port with a seeded directory.

:func:`start_slapd` writes a ``slapd.conf`` (an MDB database under ``dc=example,dc=org``
with the core, cosine, nis and inetOrgPerson schemas, a small schema of our own for
Active Directory's ``sAMAccountName``, and the ``memberof`` overlay), loads :data:`SEED`
with ``slapadd`` and runs ``slapd -d 0`` on ``ldap://127.0.0.1:<port>``. With
``groups=True`` it then adds :data:`GROUPS` over LDAP (so the overlay writes each
member's ``memberOf``, as Active Directory shows it); ``bulk=n`` adds ``n`` users and
``n`` groups (a directory that answers thousands); ``tls=True`` makes a CA and a server
certificate for 127.0.0.1 (``cryptography``) and listens on ``ldaps://`` too, with
StartTLS on the plain port. It never skips:
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

from tests.support.certs import issue_server, make_ca

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

GROUPS_DN = f"ou=groups,{BASE_DN}"
AD_USERS_DN = f"ou=ad,{BASE_DN}"
AD_GROUPS_DN = f"ou=adgroups,{BASE_DN}"
SPECIAL_DN = rf"cn=Pat O'Brien\, (Ops)*,{PEOPLE_DN}"
"""A user whose DN holds a comma, parentheses and an asterisk (uid ``pobrien``)."""


def group_dn(name: str, under: str = GROUPS_DN) -> str:
    return f"cn={name},{under}"


def _dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE_DN}"


def _ad_user(name: str, account: str) -> str:
    return (
        f"dn: cn={name},{AD_USERS_DN}\nobjectClass: inetOrgPerson\nobjectClass: dockyardAdAccount\n"
        f"cn: {name}\nsn: {name.split()[-1]}\nsAMAccountName: {account}\n"
        f"mail: {account}@ad.example.org\nuserPassword: {USER_PASSWORD}\n"
    )


SEED_GROUPS = "\n".join(
    [
        f"dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {AD_USERS_DN}\nobjectClass: organizationalUnit\nou: ad\n",
        f"dn: {AD_GROUPS_DN}\nobjectClass: organizationalUnit\nou: adgroups\n",
        f"dn: {SPECIAL_DN}\nobjectClass: inetOrgPerson\nuid: pobrien\ncn: Pat O'Brien, (Ops)*\n"
        f"sn: O'Brien\nmail: pobrien@example.org\nuserPassword: {USER_PASSWORD}\n",
        _ad_user("Hank Pym", "hpym"),
        _ad_user("Janet Van Dyne", "jvandyne"),
    ]
)
"""Entries loaded with the seed when ``groups=True``: the branches and the AD-shaped users."""

GROUPS: list[tuple[str, str, list[str]]] = [
    # (DN, object class, members), added in this order over LDAP (the overlay needs the
    # members to exist, and writes ``memberOf`` on each, groups included).
    (group_dn("developers"), "groupOfNames", [_dn("alice")]),
    (group_dn("team-a"), "groupOfNames", [_dn("carol")]),
    (group_dn("team-b"), "groupOfNames", [group_dn("team-a")]),
    (group_dn("team-c"), "groupOfNames", [group_dn("team-b")]),
    # A cycle: loop-1 holds loop-2 holds loop-1 (dave is in loop-1).
    (group_dn("loop-1"), "groupOfNames", [_dn("dave")]),
    (group_dn("loop-2"), "groupOfNames", [group_dn("loop-1")]),
    (group_dn("ops-leads"), "groupOfNames", [_dn("frank")]),
    (group_dn("registry-admins"), "groupOfNames", [group_dn("ops-leads")]),
    (group_dn("special"), "groupOfNames", [SPECIAL_DN]),
    # uniqueMember only (the overlay does not read it): found by searching the groups.
    (group_dn("maintainers"), "groupOfUniqueNames", [_dn("bob")]),
    (group_dn("AD Devs", AD_GROUPS_DN), "groupOfNames", [f"cn=Hank Pym,{AD_USERS_DN}"]),
]
LOOP_CLOSER = (group_dn("loop-1"), group_dn("loop-2"))
"""Added after GROUPS: loop-1 gets loop-2 as a member, closing the cycle."""

# Active Directory's sAMAccountName (its OID from Microsoft's schema) on an auxiliary
# class of our own, so inetOrgPerson entries can carry it.
_AD_SCHEMA = """attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.1.1 NAME 'dockyardAdAccount' SUP top AUXILIARY
    MAY sAMAccountName )
"""

_SCHEMAS = ("core", "cosine", "nis", "inetorgperson")


def _config(directory: Path, tls: bool) -> str:
    schemas = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in _SCHEMAS)
    (directory / "ad.schema").write_text(_AD_SCHEMA)
    certificates = (
        f"TLSCACertificateFile {directory}/ca.pem\n"
        f"TLSCertificateFile {directory}/server.pem\n"
        f"TLSCertificateKeyFile {directory}/server.key\n"
        if tls
        else ""
    )
    return f"""{schemas}
include {directory}/ad.schema
pidfile {directory}/slapd.pid
{certificates}modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
sizelimit unlimited
database mdb
maxsize 67108864
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {directory}/data
index uid,cn,mail,sAMAccountName eq
index member,uniqueMember eq
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by * read
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
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
    tls_port: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        assert self.tls_port is not None, "started without tls=True"
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_pem(self) -> str:
        """The CA that signed the server's certificate (PEM)."""
        return (self.directory / "ca.pem").read_text()

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
                " ".join([self.url] + ([self.ldaps_url] if self.tls_port else [])),
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


def _certificates(directory: Path) -> None:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost."""
    ca = make_ca("Dockyard test LDAP CA")
    server = issue_server(ca)
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    (directory / "server.pem").write_bytes(server.cert_pem)
    (directory / "server.key").write_bytes(server.key_pem)


def _bulk(count: int) -> str:
    """``count`` users under ``ou=bulk`` and ``count`` groups under ``ou=bulkgroups``
    (each group holds alice: her sign-in finds them all)."""
    entries = [
        f"dn: ou=bulk,{BASE_DN}\nobjectClass: organizationalUnit\nou: bulk\n",
        f"dn: ou=bulkgroups,{BASE_DN}\nobjectClass: organizationalUnit\nou: bulkgroups\n",
    ]
    for i in range(count):
        entries.append(
            f"dn: uid=bulk{i:05d},ou=bulk,{BASE_DN}\nobjectClass: inetOrgPerson\n"
            f"uid: bulk{i:05d}\ncn: Bulk {i}\nsn: {i}\n"
        )
        entries.append(
            f"dn: cn=bulk-group-{i:05d},ou=bulkgroups,{BASE_DN}\n"
            f"objectClass: groupOfUniqueNames\ncn: bulk-group-{i:05d}\n"
            f"uniqueMember: {_dn('grace')}\n"
        )
    return "\n".join(entries)


def _add_groups(server: Slapd) -> None:
    """:data:`GROUPS` added over LDAP as the root DN, so the overlay keeps ``memberOf``."""
    import ldap3  # the application's LDAP client; only the group tests need it here

    conn = ldap3.Connection(
        ldap3.Server("127.0.0.1", port=server.port), ROOT_DN, ROOT_PASSWORD, auto_bind=True
    )
    try:
        for dn, object_class, members in GROUPS:
            attribute = "uniqueMember" if object_class == "groupOfUniqueNames" else "member"
            cn = dn.split(",", 1)[0].split("=", 1)[1]
            if not conn.add(dn, [object_class], {"cn": cn, attribute: members}):
                raise RuntimeError(f"could not add {dn}: {conn.result}")
        group, member = LOOP_CLOSER
        if not conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [member])]}):
            raise RuntimeError(f"could not close the loop: {conn.result}")
    finally:
        conn.unbind()


def start_slapd(*, groups: bool = False, bulk: int = 0, tls: bool = False) -> Slapd:
    """A seeded OpenLDAP on a free loopback port (raises with the reason when it cannot run)."""
    directory = Path(tempfile.mkdtemp(prefix="dockyard-slapd-"))
    (directory / "data").mkdir()
    if tls:
        _certificates(directory)
    conf = directory / "slapd.conf"
    conf.write_text(_config(directory, tls))
    seed = directory / "seed.ldif"
    parts = [SEED] + ([SEED_GROUPS] if groups else []) + ([_bulk(bulk)] if bulk else [])
    seed.write_text("\n".join(parts))
    loaded = subprocess.run(
        [_binary("slapadd"), "-f", str(conf), "-l", str(seed)],
        capture_output=True,
        text=True,
        check=False,
    )
    if loaded.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"slapadd could not seed the directory:\n{loaded.stderr}")
    server = Slapd(directory, _free_port(), _free_port() if tls else None)
    atexit.register(server.close)
    server.start()
    if groups:
        _add_groups(server)
    return server
