"""``create_app(settings)``: all wiring lives here and in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from anyio import to_thread
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.middleware import Middleware

from dockyard.artifacts import api as artifacts_api
from dockyard.artifacts import icons_api
from dockyard.artifacts import write_api as artifacts_write_api
from dockyard.audit import api as audit_api
from dockyard.audit import hooks as audit_hooks
from dockyard.audit import jobs as audit_jobs
from dockyard.console.routes import console_routes
from dockyard.db.counters import CountersFile
from dockyard.db.engine import Database
from dockyard.errors import ConfigurationError, StorageError
from dockyard.gc import api as gc_api
from dockyard.gc import jobs as gc_jobs
from dockyard.http.api import Operation, api_routes
from dockyard.http.middleware import RequestContextMiddleware
from dockyard.http.outbound import OutboundClient
from dockyard.http.state import AppState
from dockyard.iam import api as iam_api
from dockyard.iam import ldap_api, oidc_api
from dockyard.iam.providers.authproxy import AuthProxy
from dockyard.iam.ratelimit import LoginThrottle
from dockyard.iam.routes import token_routes
from dockyard.iam.service import IdentityService
from dockyard.iam.tokens import TokenAuthority
from dockyard.immutability import api as immutability_api
from dockyard.immutability import hooks as immutability_hooks
from dockyard.jobs import api as jobs_api
from dockyard.jobs.runner import JobEnvironment, JobRunner, JobType
from dockyard.labels import api as labels_api
from dockyard.logs import configure_logging
from dockyard.metrics import multiprocess as metrics_multiprocess
from dockyard.metrics.middleware import MetricsMiddleware, RequestMetrics, instrument_routes
from dockyard.metrics.routes import (
    MetricsExposition,
    flush_every,
    metrics_routes,
    start_listener,
)
from dockyard.projects import api as projects_api
from dockyard.proxy.cache import STALE_SERVED, PullThroughCache
from dockyard.proxy.fill import BlobFills
from dockyard.quota import api as quota_api
from dockyard.quota import hooks as quota_hooks
from dockyard.registry.hooks import RegistryHooks
from dockyard.registry.pull_policy import PullPolicies
from dockyard.registry.routes import RegistryFace
from dockyard.registry.service import RegistryService
from dockyard.remotes import api as remotes_api
from dockyard.replication import api as replication_api
from dockyard.replication import hooks as replication_hooks
from dockyard.replication import jobs as replication_jobs
from dockyard.retention import api as retention_api
from dockyard.retention import jobs as retention_jobs
from dockyard.robots import api as robots_api
from dockyard.scan import api as scan_api
from dockyard.scan import hooks as scan_hooks
from dockyard.scan import jobs as scan_jobs
from dockyard.scan.policy import VulnerabilityPolicy
from dockyard.scanner import jobs as scanner_jobs
from dockyard.scanner.adapter import AdapterScans
from dockyard.scanner.routes import adapter_routes
from dockyard.search import api as search_api
from dockyard.settings import Settings, load_settings
from dockyard.signatures import api as signatures_api
from dockyard.signatures import hooks as signatures_hooks
from dockyard.signatures import jobs as signatures_jobs
from dockyard.signatures.policy import ContentTrustPolicy
from dockyard.signatures.service import SignatureChecker
from dockyard.storage import FilesystemStorage, Storage
from dockyard.storage.s3 import open_s3
from dockyard.storage.space import RESERVE_NAME, DiskSpace
from dockyard.system import api as system_api
from dockyard.system import routes as system_routes
from dockyard.system.bootstrap import load_token_key
from dockyard.system.health import HealthMonitor
from dockyard.system.readonly_guard import ReadOnlyGuard
from dockyard.tracing import Tracing, TracingMiddleware, open_tracing
from dockyard.webhooks import api as webhooks_api
from dockyard.webhooks import hooks as webhooks_hooks
from dockyard.webhooks import jobs as webhooks_jobs

SERVE_SETTINGS_ENV = "_DOCKYARD_SERVE_SETTINGS"


async def build_state(settings: Settings, tracing: Tracing | None = None) -> AppState:
    """The services of one process; with ``tracing``, its engines and storage calls are
    traced (``tracing.py``)."""
    db = Database(settings.effective_database_url)
    if settings.sql_counters is not None:
        db.count_sql()
    storage = await open_storage(settings)
    if tracing is not None:
        tracing.instrument_database(db)
        tracing.instrument_storage(storage)
    space = disk_space(settings, db)
    await to_thread.run_sync(space.make_reserve)
    db.before_write = space.before_database_write
    tokens = TokenAuthority(
        await load_token_key(db),
        issuer=settings.token_issuer,
        service=settings.token_service,
        ttl_seconds=settings.token_expiration_minutes * 60,
    )
    identity = IdentityService(
        db,
        LoginThrottle(settings.login_failure_limit, settings.login_address_failure_limit),
        tokens,
        robot_prefix=settings.robot_name_prefix,
        recheck_seconds=settings.auth_recheck_seconds,
        proxy=AuthProxy.from_settings(settings),
        outbound=lambda: OutboundClient.for_targets(settings),
        cli_secret_max_age_days=settings.oidc_cli_secret_max_age_days,
    )
    # Order matters: refusals (immutability, quota) before records (audit).
    hooks = RegistryHooks(
        [
            immutability_hooks.RegistryHooks(db, settings),
            quota_hooks.RegistryHooks(db, settings),
            audit_hooks.RegistryHooks(db, settings),
            webhooks_hooks.RegistryHooks(db, settings),
            signatures_hooks.RegistryHooks(),
            scan_hooks.RegistryHooks(db, settings),
            replication_hooks.RegistryHooks(),
        ]
    )
    # The pull-policy seam (registry/pull_policy.py): asked in order by every manifest
    # GET/HEAD; vulnerability blocking goes after content trust.
    pull_policies = PullPolicies(
        [ContentTrustPolicy(SignatureChecker(db, storage)), VulnerabilityPolicy()]
    )
    registry = RegistryService(
        db,
        storage,
        upload_max_bytes=settings.upload_max_bytes,
        hooks=hooks,
        space=space,
        pull_policies=pull_policies,
    )
    fills = BlobFills(storage, settings.data_dir / "proxy-spool")
    registry.pull_through = PullThroughCache(settings, db, registry, fills)
    health = HealthMonitor(db, storage, job_lease=timedelta(seconds=settings.job_lease_seconds))
    return AppState(
        settings, db, storage, tokens, identity, registry, health, job_types=job_types(settings)
    )


async def open_storage(settings: Settings) -> Storage:
    """The driver ``storage_driver`` names; an S3 bucket is asked once now, so a missing
    bucket or refused credentials stop the start with a clear message."""
    if settings.storage_driver == "filesystem":
        return FilesystemStorage(settings.effective_storage_root)
    storage = open_s3(
        bucket=settings.storage_s3_bucket,
        prefix=settings.storage_s3_prefix,
        region=settings.storage_s3_region,
        endpoint=settings.storage_s3_endpoint,
        path_style=settings.storage_s3_path_style,
        credentials=settings.storage_s3_credentials,
        access_key_id=settings.storage_s3_access_key_id,
        secret_access_key=settings.storage_s3_secret_access_key,
        tls_verify=settings.storage_s3_tls_verify,
        part_bytes=settings.storage_s3_part_bytes,
        redirect=settings.storage_redirect,
    )
    try:
        await storage.check()
    except StorageError as exc:
        raise ConfigurationError(f"storage ({storage.name}): {exc.message}") from exc
    return storage


def disk_space(settings: Settings, db: Database) -> DiskSpace:
    """Free-space checks over the storage root and the folder of the SQLite database (else
    the data directory), where the disk reserve is kept (``storage/space.py``). A
    PostgreSQL whose data shares that disk gets the reserve's room too."""
    folder = settings.data_dir.resolve()
    if db.dialect == "sqlite":
        database = make_url(settings.effective_database_url).database
        if database and database != ":memory:":
            folder = Path(database).resolve().parent
    # Free-space checks apply to local disks only: with S3 the store manages its space.
    local = [settings.effective_storage_root] if settings.storage_driver == "filesystem" else []
    return DiskSpace(
        [*local, folder],
        min_free_bytes=settings.min_free_bytes,
        reserve=folder / RESERVE_NAME,
        reserve_bytes=settings.disk_reserve_bytes,
    )


def job_types(settings: Settings) -> dict[str, JobType]:
    """Every job type: each domain's ``jobs.py``, then the ``job_plugins`` modules'."""
    types = [
        *gc_jobs.job_types,
        *retention_jobs.job_types,
        *replication_jobs.job_types_for(settings),
        *webhooks_jobs.job_types,
        *audit_jobs.job_types,
        *scanner_jobs.job_types,
        *signatures_jobs.job_types,
        *scan_jobs.job_types,
    ]
    for name in settings.job_plugins:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"job_plugins: cannot import {name}: {exc}") from exc
        types += list(getattr(module, "job_types", []))
    return {job.name: job for job in types}


async def start_workers(state: AppState, concurrency: int | None = None) -> JobRunner:
    """Start this process's job workers (``dockyard serve`` and ``dockyard worker``)."""
    runner = JobRunner(
        JobEnvironment(state.settings, state.db, state.storage, state.registry),
        state.job_types,
        concurrency=concurrency,
    )
    await runner.start()
    state.jobs = runner
    return runner


def api_operations() -> list[Operation]:
    """Every ``/api/v2.0`` operation Dockyard implements, from each domain's ``api.py``."""
    return [
        *system_api.operations,
        *iam_api.operations,
        *ldap_api.operations,
        *oidc_api.operations,
        *projects_api.operations,
        *robots_api.operations,
        *artifacts_api.operations,
        *artifacts_write_api.operations,
        *labels_api.operations,
        *quota_api.operations,
        *immutability_api.operations,
        *audit_api.operations,
        *jobs_api.operations,
        *gc_api.operations,
        *retention_api.operations,
        *webhooks_api.operations,
        *remotes_api.operations,
        *replication_api.operations,
        *search_api.operations,
        *scan_api.operations,
        *icons_api.operations,
        *signatures_api.operations,
    ]


def create_app(settings: Settings) -> Starlette:
    """The ASGI app. The database must be migrated first (``dockyard migrate``/``serve``)."""

    metrics = RequestMetrics() if settings.metrics_enabled else None
    exposition = MetricsExposition(settings, metrics) if metrics is not None else None
    if exposition is not None and exposition.directory is None:
        # In multiprocess mode the counter's values are read from the workers' files.
        with contextlib.suppress(ValueError):  # a second app in the same process
            exposition.registry.register(STALE_SERVED)
    tracing = open_tracing(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = await build_state(settings, tracing)
        app.state.dockyard = state
        await scanner_jobs.sync_schedule(state.db, settings)
        adapter = AdapterScans(settings, state.db) if settings.scanner_adapter_enabled else None
        app.state.scanner_adapter = adapter
        listener = flusher = None
        if exposition is not None:
            exposition.open(state.db)
            flusher = asyncio.create_task(flush_every(exposition.requests))
            if settings.metrics_port is not None:
                listener = await start_listener(exposition, settings.host, settings.metrics_port)
        counters_file = None
        if settings.sql_counters is not None and state.db.counters is not None:
            counters_file = CountersFile(state.db.counters, settings.sql_counters)
            counters_file.start()
        if settings.job_workers > 0:
            await start_workers(state)
        try:
            yield
        finally:
            state.health.begin_shutdown()  # /readyz fails from here on
            try:
                if listener is not None:
                    listener.close()
                if flusher is not None:
                    flusher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await flusher
                if state.jobs is not None:
                    await state.jobs.close()
                if adapter is not None:
                    await adapter.close()
                await state.registry.hooks.close()
                if isinstance(state.registry.pull_through, PullThroughCache):
                    await state.registry.pull_through.aclose()
            finally:
                state.identity.directory.close()  # pooled LDAP connections
                await state.db.dispose()
                metrics_multiprocess.worker_stopped()
                if tracing is not None:
                    await to_thread.run_sync(tracing.shutdown)
                if counters_file is not None:
                    await counters_file.close()

    routes = [
        *system_routes.probe_routes(),
        *token_routes(),
        *iam_api.session_routes(),
        *api_routes(api_operations()),
        *console_routes(),
    ]
    if settings.scanner_adapter_enabled:
        routes[:0] = adapter_routes()
    middleware = [
        Middleware(RequestContextMiddleware),
        # Only when tracing is on: otherwise requests pay nothing for it.
        *([Middleware(TracingMiddleware, tracer=tracing.tracer)] if tracing else []),
        Middleware(ReadOnlyGuard),
        Middleware(RegistryFace),
    ]
    if metrics is not None and exposition is not None:
        if settings.metrics_port is None:
            routes[:0] = metrics_routes(exposition)
        instrument_routes(routes, metrics)
        middleware.insert(1, Middleware(MetricsMiddleware, metrics=metrics))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def freeze_startup_heap() -> None:
    """Move everything alive at start (modules, SQLAlchemy metadata, compiled
    statements…) out of the garbage collector's sight.

    Python's full collections otherwise walk these long-lived objects again and
    again, and each walk is a pause of tens of milliseconds in whatever request
    is running: the listing benchmark's p99 fell from ~160 ms to ~60 ms with
    this alone. Objects frozen here are never collected, so it is done once, at
    start, and not in tests that build many apps.
    """
    gc.collect()
    gc.freeze()


def app_from_environment() -> Starlette:
    """Factory for ASGI server workers started by ``dockyard serve``."""
    raw = os.environ.get(SERVE_SETTINGS_ENV)
    overrides = json.loads(raw) if raw else {}
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)
    app = create_app(settings)
    freeze_startup_heap()
    return app
