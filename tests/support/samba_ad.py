"""A real Active Directory for tests: Debian's Samba provisioned as a throwaway AD domain
controller and run in the foreground on loopback.

:func:`start_samba_ad` provisions ``DOCKYARD.TEST`` into a temporary folder
(``samba-tool domain provision``, no DNS), starts ``samba -i -M single`` with only its LDAP
service, on ``lo`` (Samba's LDAP server listens on 389 and 636, which cannot be changed),
with simple binds allowed without TLS, and adds users and groups with ``samba-tool``:
``hpym`` in ``Registry Devs``, ``jvandyne`` in ``Ops Leads`` which is in ``Registry
Admins`` (a nested admin group). Samba keeps ``memberOf`` itself, as Windows does.

When it cannot run, :class:`SambaUnavailable` says exactly why (the packages missing,
not root, port 389 taken, the provision or the server failing, with their output), and
the tests skip with that reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REALM = "DOCKYARD.TEST"
DOMAIN = "DOCKYARD"
BASE_DN = "DC=dockyard,DC=test"
USERS_DN = f"CN=Users,{BASE_DN}"
ADMIN_DN = f"CN=Administrator,{USERS_DN}"
ADMIN_PASSWORD = "Adm1n-Passw0rd!"
USER_PASSWORD = "Ldap-user-pass1"
HOST = "127.0.0.1"
PORT = 389
PACKAGES = "samba samba-ad-provision samba-dsdb-modules samba-vfs-modules"
PROVISION_TIMEOUT = 300.0
START_TIMEOUT = 60.0
USERS = {  # sAMAccountName: (given name, surname, groups)
    "hpym": ("Hank", "Pym", ["Registry Devs"]),
    "jvandyne": ("Janet", "Van Dyne", ["Ops Leads"]),
    "sstrange": ("Stephen", "Strange", []),
}
NESTED = {"Registry Admins": ["Ops Leads"]}
"""Groups holding groups (added after the users' groups)."""


class SambaUnavailable(RuntimeError):
    """Why Samba cannot run as an AD DC here."""


class SambaFailed(RuntimeError):
    """Samba is installed and may run here, but provisioning, starting or seeding it
    failed: a test error, not a skip."""


def group_dn(name: str) -> str:
    return f"CN={name},{USERS_DN}"


@dataclass
class SambaAD:
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "samba.log"

    @property
    def url(self) -> str:
        return f"ldap://{HOST}:{PORT}"

    @property
    def conf(self) -> Path:
        return self.folder / "etc" / "smb.conf"

    def tool(self, *args: str) -> None:
        done = subprocess.run(
            ["samba-tool", *args, "-s", str(self.conf)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise SambaFailed(
                f"samba-tool {' '.join(args[:2])} failed: "
                f"{(done.stdout + done.stderr).decode(errors='replace')[-1500:]}"
            )

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # samba runs in a session of its own: stop the whole group, children included.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _port_taken() -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, PORT)) == 0


def _answers() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


def start_samba_ad() -> SambaAD:
    """A provisioned, running, seeded AD DC; :class:`SambaUnavailable` when it cannot run
    here (not installed, not root, port 389 taken), :class:`SambaFailed` when it should
    but did not (a test error, never a skip)."""
    missing = [tool for tool in ("samba", "samba-tool") if shutil.which(tool) is None]
    if missing or not Path("/usr/share/samba/setup/ad-schema").is_dir():
        raise SambaUnavailable(f"Debian's Samba AD DC is not installed: apt-get install {PACKAGES}")
    if os.geteuid() != 0:
        raise SambaUnavailable(
            "Samba's AD DC must run as root (it binds LDAP's port 389 and sets file ACLs)"
        )
    if _port_taken():
        raise SambaUnavailable(
            f"{HOST}:{PORT} is taken by another server; Samba's LDAP port cannot be changed"
        )
    server = SambaAD(Path(tempfile.mkdtemp(prefix="dockyard-samba-")))
    try:
        provision = subprocess.run(
            [
                "samba-tool",
                "domain",
                "provision",
                f"--realm={REALM}",
                f"--domain={DOMAIN}",
                "--server-role=dc",
                "--dns-backend=NONE",
                f"--adminpass={ADMIN_PASSWORD}",
                f"--targetdir={server.folder}",
                "--option=interfaces=lo",
                "--option=bind interfaces only=yes",
                "--option=server services=ldap",
            ],
            capture_output=True,
            timeout=PROVISION_TIMEOUT,
            check=False,
        )
        if provision.returncode != 0:
            raise SambaFailed(
                "samba-tool domain provision failed: "
                f"{(provision.stdout + provision.stderr).decode(errors='replace')[-1500:]}"
            )
        with server.log.open("wb") as log:
            server.process = subprocess.Popen(
                [
                    "samba",
                    "-i",
                    "-M",
                    "single",
                    "-s",
                    str(server.conf),
                    # Simple binds over plain LDAP on loopback (Samba wants TLS or signing;
                    # the provision does not keep this option, so it is given here).
                    "--option=ldap server require strong auth=no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers():
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise SambaFailed(
                    "samba did not start listening on 389: "
                    f"{server.log.read_text(errors='replace')[-1500:]}"
                )
            time.sleep(0.3)
        for account, (given, surname, _) in USERS.items():
            server.tool(
                "user",
                "create",
                account,
                USER_PASSWORD,
                f"--given-name={given}",
                f"--surname={surname}",
                f"--mail-address={account}@dockyard.test",
            )
        groups = {g for _, _, gs in USERS.values() for g in gs} | set(NESTED)
        for name in sorted(groups):
            server.tool("group", "add", name)
        for account, (_, _, member_of) in USERS.items():
            for name in member_of:
                server.tool("group", "addmembers", name, account)
        for name, members in NESTED.items():
            server.tool("group", "addmembers", name, ",".join(members))
    except BaseException:
        server.close()
        raise
    return server
