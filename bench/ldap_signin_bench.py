"""Token requests signed in through LDAP: p50/p99 latency against a local OpenLDAP.

Run from the repository root (needs Debian's ``slapd``; ``scripts/test`` installs it):

    .venv/bin/python bench/ldap_signin_bench.py [--requests N]

Starts ``tests/support/slapd.py``'s seeded directory and a real ``dockyard serve``
(SQLite), switches it to ``auth_mode: ldap_auth``, then sends N (default 1,000)
``GET /service/token`` requests one after another with an LDAP user's Basic
credentials, each checked against the directory (a search on a pooled connection
bound as the search DN, then a bind as the user on another pooled one), and each
resolving the user's groups (``memberOf`` on the entry, ``member`` searched on the
groups, nested groups walked) and recording them (``iam/groupsync.py``): ``alice`` is in
one group, ``carol`` in three (team-a in team-b in team-c, a project member). ``admin``
(from the database, its password check remembered; an administrator, so no project is
read) and a project robot (a database account with a role: the same project reads as
an LDAP user's) are timed the same way. Then the
directory's part alone (``LdapDirectory.authenticate`` in this process, no HTTP, no
database) is timed for both users, to say what bounds a sign-in.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402
from tests.support.server import DockyardServer  # noqa: E402
from tests.support.slapd import (  # noqa: E402
    BASE_DN,
    SEARCH_DN,
    SEARCH_PASSWORD,
    USER_PASSWORD,
    Slapd,
    group_dn,
    start_slapd,
)

from dockyard.iam.providers.ldap import LdapConfig, LdapDirectory  # noqa: E402

PARAMS = {"service": "dockyard", "scope": "repository:bench/app:pull,push"}
GROUP_SETTINGS = {
    "ldap_group_base_dn": f"ou=groups,{BASE_DN}",
    "ldap_group_search_filter": "(objectClass=groupOfNames)",
    "ldap_group_membership_attribute": "memberOf,member",
}


def _time(client: httpx.Client, auth: tuple[str, str], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        answer = client.get("/service/token", params=PARAMS, auth=auth)
        samples.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    return samples


def _report(label: str, samples: list[float]) -> float:
    cuts = statistics.quantiles(samples, n=100)
    print(
        f"{label:<40} n={len(samples)}  p50={cuts[49]:.2f} ms  p99={cuts[98]:.2f} ms  "
        f"mean={statistics.fmean(samples):.2f} ms"
    )
    return cuts[49]


def _directory_only(directory: Slapd, name: str, count: int) -> list[float]:
    """``LdapDirectory.authenticate`` (search, bind, group walk) in this process."""
    cfg = LdapConfig(
        url=directory.url,
        search_dn=SEARCH_DN,
        search_password=SEARCH_PASSWORD,
        base_dn=BASE_DN,
        filter="(objectClass=inetOrgPerson)",
        uid="uid",
        scope=2,
        timeout=5,
        verify_cert=True,
        group_base_dn=GROUP_SETTINGS["ldap_group_base_dn"],
        group_filter=GROUP_SETTINGS["ldap_group_search_filter"],
        membership_attributes=("memberOf", "member"),
    )

    async def run() -> list[float]:
        ldap = LdapDirectory()
        samples = []
        try:
            for _ in range(count):
                start = time.perf_counter()
                found = await ldap.authenticate(cfg, name, USER_PASSWORD)
                samples.append((time.perf_counter() - start) * 1000)
                assert found is not None
        finally:
            ldap.close()
        return samples

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    directory = start_slapd(groups=True)
    try:
        with DockyardServer() as server, httpx.Client(base_url=server.url, timeout=30) as client:
            configured = client.put(
                "/api/v2.0/configurations",
                auth=server.admin_auth,
                json={
                    "auth_mode": "ldap_auth",
                    "ldap_url": directory.url,
                    "ldap_search_dn": SEARCH_DN,
                    "ldap_search_password": SEARCH_PASSWORD,
                    "ldap_base_dn": BASE_DN,
                    "ldap_filter": "(objectClass=inetOrgPerson)",
                    "ldap_uid": "uid",
                    **GROUP_SETTINGS,
                },
            )
            configured.raise_for_status()
            client.post(
                "/api/v2.0/projects", auth=server.admin_auth, json={"project_name": "bench"}
            ).raise_for_status()
            for dn in (group_dn("team-c"), group_dn("developers")):
                client.post(
                    "/api/v2.0/projects/bench/members",
                    auth=server.admin_auth,
                    json={"role_id": 2, "member_group": {"ldap_group_dn": dn}},
                ).raise_for_status()
            # A database account that is no administrator, with a role in the project: its
            # token costs the same project reads as an LDAP user's, without the directory.
            made = client.post(
                "/api/v2.0/robots",
                auth=server.admin_auth,
                json={
                    "name": "bench",
                    "level": "project",
                    "duration": -1,
                    "permissions": [
                        {
                            "kind": "project",
                            "namespace": "bench",
                            "access": [
                                {"resource": "repository", "action": "pull"},
                                {"resource": "repository", "action": "push"},
                            ],
                        }
                    ],
                },
            )
            made.raise_for_status()
            robot = (made.json()["name"], made.json()["secret"])
            for name in ("alice", "carol"):
                _time(client, (name, USER_PASSWORD), 20)  # onboarding, pools and caches warm
            _time(client, server.admin_auth, 20)
            _time(client, robot, 20)
            http = {
                name: _report(
                    f"token, LDAP user {name} ({groups})",
                    _time(client, (name, USER_PASSWORD), args.requests),
                )
                for name, groups in (("alice", "1 group"), ("carol", "3 nested groups"))
            }
            _report("token, database admin", _time(client, server.admin_auth, args.requests))
            base = _report("token, project robot (database)", _time(client, robot, args.requests))
        alone = {
            name: _report(
                f"directory alone, {name}", _directory_only(directory, name, args.requests)
            )
            for name in ("alice", "carol")
        }
        for name in ("alice", "carol"):
            rest = http[name] - alone[name] - base
            print(
                f"{name}: p50 {http[name]:.2f} ms = the directory {alone[name]:.2f} ms "
                f"+ a database account's token {base:.2f} ms + {rest:.2f} ms of the rest "
                "(the worker-thread hop, the user and group reads of onboarding and groupsync)"
            )
    finally:
        directory.close()


if __name__ == "__main__":
    main()
