"""Token requests signed in through the HTTP auth proxy: p50/p99 latency against a
proxy on loopback.

Run from the repository root:

    .venv/bin/python bench/authproxy_signin_bench.py [--requests N]

Starts ``tests/support/authproxy.py``'s proxy (the standard library's threaded HTTP
server) and a real ``dockyard serve`` (SQLite), switches it to ``auth_mode:
http_auth``, then sends N (default 1,000) ``GET /service/token`` requests one after
another with a proxy user's Basic credentials. Each is two calls to the proxy (login,
then the TokenReview), each on a new connection, and one read of the user and its
groups (nothing is written when the review says what it said last time). ``admin``
(from the database) is timed the same way.
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
from tests.support.authproxy import PASSWORD, AuthProxyServer  # noqa: E402
from tests.support.server import DockyardServer  # noqa: E402

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
    proxy = AuthProxyServer()
    proxy.add("alice", ["developers", "everyone"])
    try:
        with DockyardServer() as server, httpx.Client(base_url=server.url, timeout=30) as client:
            configured = client.put(
                "/api/v2.0/configurations",
                auth=server.admin_auth,
                json={
                    "auth_mode": "http_auth",
                    "http_authproxy_endpoint": proxy.login_url,
                    "http_authproxy_tokenreview_endpoint": proxy.review_url,
                },
            )
            configured.raise_for_status()
            _time(client, ("alice", PASSWORD), 20)  # onboarding and caches warm
            _time(client, server.admin_auth, 20)
            _report("proxy user (alice)", _time(client, ("alice", PASSWORD), args.requests))
            _report("database admin", _time(client, server.admin_auth, args.requests))
    finally:
        proxy.stop()


if __name__ == "__main__":
    main()
