"""Token requests signed in through LDAP: p50/p99 latency against a local OpenLDAP.

Run from the repository root (needs Debian's ``slapd``; ``scripts/test`` installs it):

    .venv/bin/python bench/ldap_signin_bench.py [--requests N]

Starts ``tests/support/slapd.py``'s seeded directory and a real ``dockyard serve``
(SQLite), switches it to ``auth_mode: ldap_auth``, then sends N (default 1,000)
``GET /service/token`` requests one after another with an LDAP user's Basic
credentials, each checked against the directory (a search on a pooled connection
bound as the search DN, then a bind as the user on another pooled one). ``admin``
(from the database, its password check remembered) is timed the same way.
"""

from __future__ import annotations

import argparse
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
    start_slapd,
)

PARAMS = {"service": "dockyard", "scope": "repository:library/bench:pull"}


def _time(client: httpx.Client, auth: tuple[str, str], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        answer = client.get("/service/token", params=PARAMS, auth=auth)
        samples.append((time.perf_counter() - start) * 1000)
        answer.raise_for_status()
    return samples


def _report(label: str, samples: list[float]) -> None:
    cuts = statistics.quantiles(samples, n=100)
    print(
        f"{label:<28} n={len(samples)}  p50={cuts[49]:.2f} ms  p99={cuts[98]:.2f} ms  "
        f"mean={statistics.fmean(samples):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    directory = start_slapd()
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
                },
            )
            configured.raise_for_status()
            _time(client, ("alice", USER_PASSWORD), 20)  # onboarding, pool and caches warm
            _time(client, server.admin_auth, 20)
            _report("LDAP user (alice)", _time(client, ("alice", USER_PASSWORD), args.requests))
            _report("database admin", _time(client, server.admin_auth, args.requests))
    finally:
        directory.close()


if __name__ == "__main__":
    main()
