"""Settings: defaults, then a YAML file (``--config``), then ``DOCKYARD_*`` variables.

Everything is validated when the process starts; a bad value stops it with a
message saying which setting is wrong and what would be right.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, IPvAnyNetwork, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dockyard.errors import ConfigurationError

CONFIG_FILE_ENV = "DOCKYARD_CONFIG"
# Items of ``/configurations`` that only an administrator changes at run time (they live
# in the database, so every node sees a change at once); a test keeps this in step with
# ``system/config.py``. Named in a settings file, they get a message saying where they go.
RUN_TIME_ITEMS = frozenset(
    {
        "auth_mode",
        "self_registration",
        "project_creation_restriction",
        "robot_token_duration",
        "banner_message",
        "storage_per_project",
        "quota_per_project_enable",
        "notification_enable",
        "disabled_audit_log_event_types",
        "audit_log_forward_endpoint",
        "skip_audit_log_database",
        "read_only",
        "ldap_url",
        "ldap_search_dn",
        "ldap_search_password",
        "ldap_base_dn",
        "ldap_filter",
        "ldap_uid",
        "ldap_scope",
        "ldap_timeout",
        "ldap_verify_cert",
        "http_authproxy_endpoint",
        "http_authproxy_tokenreview_endpoint",
        "http_authproxy_verify_cert",
        "http_authproxy_skip_search",
        "http_authproxy_server_certificate",
        "http_authproxy_admin_groups",
        "http_authproxy_admin_usernames",
        "oidc_name",
        "oidc_endpoint",
        "oidc_client_id",
        "oidc_client_secret",
        "oidc_scope",
        "oidc_user_claim",
        "oidc_groups_claim",
        "oidc_admin_group",
        "oidc_group_filter",
        "oidc_verify_cert",
        "oidc_auto_onboard",
        "oidc_extra_redirect_parms",
        "oidc_logout",
        "primary_auth_mode",
        "ldap_starttls",
        "ldap_ca_cert",
        "ldap_group_base_dn",
        "ldap_group_search_filter",
        "ldap_group_attribute_name",
        "ldap_group_search_scope",
        "ldap_group_admin_dn",
        "ldap_group_membership_attribute",
    }
)
# Run-time items whose start-time value is a setting here under another name.
RUN_TIME_NAMES = {
    "token_expiration": "token_expiration_minutes",
    "session_timeout": "session_timeout_minutes",
    "robot_name_prefix": "robot_name_prefix",
}
_RUN_TIME_PLACE = "PUT /api/v2.0/configurations or the console's Configuration page"

# The YAML file of the settings being built now (set by ``load_settings``).
_config_file: ContextVar[str | None] = ContextVar("dockyard_config_file", default=None)


def tracing_installed() -> bool:
    """Whether the ``tracing`` extra (OpenTelemetry's SDK and OTLP/HTTP exporter) is there."""
    for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except ModuleNotFoundError:  # a parent package is missing
            return False
    return True


class Settings(BaseSettings):
    """All of Dockyard's settings. Environment variables are ``DOCKYARD_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="DOCKYARD_",
        extra="forbid",
        validate_default=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=1, le=65535)
    data_dir: Path = Path("dockyard-data")
    database_url: str = ""
    """``sqlite:///path`` (default: ``<data_dir>/dockyard.db``) or ``postgresql://…``."""
    storage_root: Path | None = None
    """Filesystem driver root (default: ``<data_dir>/storage``)."""
    storage_driver: Literal["filesystem", "s3"] = "filesystem"
    """Where blobs live: local files under ``storage_root``, or an S3-compatible bucket
    (``storage_s3_*``; docs/storage.md)."""
    storage_s3_bucket: str = ""
    """The bucket (must exist; checked at start)."""
    storage_s3_prefix: str = ""
    """Object names are put under this path in the bucket (empty: the bucket's root)."""
    storage_s3_region: str = "us-east-1"
    storage_s3_endpoint: str = ""
    """The store's URL for S3-compatible stores (MinIO, Ceph RGW, SeaweedFS, R2, GCS);
    empty: AWS S3 of ``storage_s3_region``."""
    storage_s3_path_style: bool = False
    """Address the bucket as ``<endpoint>/<bucket>`` (most self-hosted stores) rather
    than ``<bucket>.<endpoint>``."""
    storage_s3_credentials: Literal["static", "env", "instance"] = "env"
    """``static``: the two keys below; ``env``: the ``AWS_*`` environment variables, else
    web identity, container or instance credentials; ``instance``: only the instance
    profile / container role (the ``AWS_*`` key variables are ignored)."""
    storage_s3_access_key_id: str = ""
    storage_s3_secret_access_key: str = Field(default="", repr=False)
    storage_s3_tls_verify: bool = True
    """Check the store's TLS certificate (turn off only for a test store)."""
    storage_s3_part_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    """Size of upload segments and multipart parts (S3's minimum is 5 MiB); an upload
    in progress buffers up to this much per request in memory."""
    storage_redirect: bool = False
    """Answer blob GETs with a redirect to a presigned URL of the store (S3 only), as
    distribution's ``redirect`` does; clients then need to reach the store."""
    external_url: str = ""
    """The URL clients reach Dockyard at (Harbor's ``external_url``); used for the
    token realm and ``Location`` headers. Default: derived from host and port."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    workers: int = Field(default=1, ge=1, le=64)
    """ASGI worker processes for ``dockyard serve``."""
    admin_password: str | None = Field(default=None, repr=False)
    """Initial password of ``admin`` on a fresh database (else a random one is printed)."""
    auth_challenge: Literal["bearer", "basic"] = "bearer"
    """What ``/v2/`` asks clients for: a token from ``/service/token`` or HTTP Basic."""
    token_service: str = "dockyard"  # noqa: S105 - the token audience, not a secret
    token_issuer: str = "dockyard-token-issuer"  # noqa: S105 - a name, not a secret
    token_expiration_minutes: int = Field(default=30, ge=1, le=60 * 24)
    upload_max_bytes: int = Field(default=0, ge=0)
    """Largest blob accepted, in bytes (0: no limit)."""
    min_free_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    """Pushes are refused ("storage is full") once the storage (or SQLite) disk has less
    free space than this, so a full disk can still be recovered (0: only a full disk
    refuses them). See ``storage/space.py``."""
    disk_reserve_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    """Size of the reserve file kept beside the SQLite database (with PostgreSQL, in
    ``data_dir``) and released when the disk fills, so deletes and garbage collection can
    still write (0: no reserve)."""
    login_failure_limit: int = Field(default=10, ge=1)
    """Failed logins allowed for one account from one address in a 5-minute window;
    beyond it that account is refused from that address only (a correct password
    from anywhere else still works)."""
    login_address_failure_limit: int | None = Field(default=None, ge=1)
    """Failed logins allowed from one address, whatever the accounts, in 5 minutes;
    beyond it the address is refused (password spraying). Default: five times
    ``login_failure_limit``."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or CIDR networks of reverse proxies whose ``Forwarded`` /
    ``X-Forwarded-For`` headers name the client (login throttling, audit log).
    From any other peer these headers are ignored."""
    sql_counters: Path | None = None
    """A directory: each server process counts the SQL statements and transactions it
    runs, by call site, and writes the counts to ``sql-<pid>.json`` there (for
    ``bench/registry_bench.py`` and tests; it costs CPU, so leave it unset otherwise)."""
    auth_recheck_seconds: float = Field(default=0.5, ge=0, le=60)
    """How long a process trusts its cached view of revocations (a robot disabled,
    deleted or given a new secret, a user deleted or with a new password, a member
    removed) made by another process; changes in the same process apply at once.
    0: ask the database on every bearer-token request."""
    content_trust_signer_pull: bool = True
    """Whether content trust lets a signing client read the manifest it is about to sign:
    a caller who may push the repository (a token granting push, or Basic credentials),
    from a client whose User-Agent names cosign, notation or dockyard-sign (Harbor's
    exemption, on by default there too, so that the first signature can be made). The
    User-Agent is the client's to choose, so anyone who may push could read unsigned
    images this way; turn it off to enforce content trust on every pull (then sign before
    turning the project's switch on). Never affects other pull policies."""
    audit_token_service_logins: bool = False
    """Whether each password login at the token service (``/service/token``, one per
    ``docker push``/``pull``) is also an audit event. Off, as in Harbor: such logins
    are written to the application log and only their failures are audited."""
    robot_name_prefix: str = Field(default="robot$", min_length=1, max_length=32)
    """What robot account names start with (Harbor's ``robot_name_prefix``), until an
    administrator changes the run-time item of the same name; robots keep the prefix
    they were created with."""
    session_timeout_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    """Idle lifetime of a console session (cookie ``sid``)."""
    oidc_cli_secret_max_age_days: int = Field(default=0, ge=0, le=36500)
    """Days an OIDC user's CLI secret stays valid after it was made (0: until the user
    regenerates it, or is deleted). Independent of the provider's token lifetimes."""
    job_workers: int = Field(default=2, ge=0, le=64)
    """Job worker slots in each ``dockyard serve`` process (0: run jobs only in
    ``dockyard worker`` processes)."""
    job_lease_seconds: int = Field(default=60, ge=2, le=3600)
    """How long a worker's claim on a task lasts without a heartbeat; a task whose
    worker died is retried after this."""
    job_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often idle workers look for new tasks and due schedules."""
    job_retry_base_seconds: float = Field(default=5.0, ge=0, le=3600)
    """Wait before a failed task's first retry; doubled for each further attempt."""
    job_execution_retention_count: int = Field(default=50, ge=1)
    """Finished executions kept per feature and target (e.g. per webhook policy)."""
    job_execution_retention_days: int = Field(default=30, ge=1)
    """Finished executions older than this are deleted with their tasks and logs."""
    job_plugins: list[str] = Field(default_factory=list)
    """Importable modules whose ``job_types`` list adds job types (extensions, tests)."""
    gc_time_window_hours: float = Field(default=2.0, ge=0)
    """Blobs uploaded or linked this recently are never collected (GC's protection window)."""
    # Outbound HTTP (``http/outbound.py``) and where it may go (``http/egress.py``).
    outbound_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Total deadline of one outbound HTTP call (webhook delivery…): resolving,
    connecting, sending and reading the answer together, not per read."""
    scan_timeout_seconds: float = Field(default=1800.0, gt=0, le=86400)
    """How long one scan may wait for its scanner adapter's report (polling ``302``
    answers) before it ends ``Error``; also the lifetime of the pull credential the
    adapter is handed (docs/scanning.md)."""
    egress_allow_loopback: bool = False
    """Whether webhook (and later replication) targets may be loopback addresses
    (127.0.0.0/8, ::1, ``localhost``): off, so a project admin cannot reach services
    that listen only on the registry's own host."""
    egress_allow_private: bool = True
    """Whether such targets may be private addresses (10/8, 172.16/12, 192.168/16,
    100.64/10, fc00::/7): on, as in Harbor, where CI and chat servers usually live."""
    egress_allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    """CIDRs such targets may reach even when their kind is refused (e.g. one
    loopback or link-local address); cloud metadata addresses stay refused."""
    egress_denied_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    """CIDRs such targets may never reach (checked before ``egress_allowed_networks``)."""
    # The built-in scanner's adapter face (``scanner/adapter_api.py``, docs/scanning.md).
    scanner_adapter_enabled: bool = False
    """Serve the built-in scanner as a Harbor scanner adapter (API v1.2) under
    ``/scanner/v1``, so another Harbor or Dockyard can register it. Off by default."""
    scanner_adapter_api_key: str = Field(default="", repr=False)
    """When set, every adapter call must carry it (``Authorization: Bearer <key>``,
    ``X-ScannerAdapter-API-Key: <key>``, or Basic with it as the password); unset, the
    adapter answers anyone who reaches it."""
    scanner_adapter_timeout_seconds: float = Field(default=600.0, gt=0, le=86400)
    """Deadline of one adapter scan: pulling the image, reading its layers, matching."""
    scanner_adapter_max_pull_bytes: int = Field(default=8 << 30, ge=1 << 20)
    """Compressed bytes one adapter scan may pull (layers and manifests together)."""
    scanner_adapter_max_scan_bytes: int = Field(default=16 << 30, ge=1 << 20)
    """Uncompressed tar bytes one adapter scan may read (a decompression bomb stops here)."""
    scanner_adapter_report_hours: float = Field(default=24.0, gt=0, le=24 * 365)
    """How long an adapter scan's result is kept for its caller to fetch."""
    vulndb_refresh_cron: str = ""
    """Refresh the OSV database from ``vulndb_refresh_urls`` on this schedule (Harbor's six
    cron fields, seconds first, UTC; e.g. ``0 0 3 * * *`` daily at 03:00). Empty: no
    schedule (``dockyard vulndb import`` by hand or from cron)."""
    vulndb_refresh_urls: list[str] = Field(default_factory=list)
    """The OSV JSON or zip files (http or https URLs) each scheduled refresh imports."""
    metrics_enabled: bool = False
    """Serve Prometheus metrics (docs/metrics.md). Off by default, as in Harbor: they name
    every project, private ones too, and count every request."""
    metrics_path: str = "/metrics"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Serve metrics on this port (same ``host``), on a listener of their own, instead of the
    main port; unset: on the main port, which then needs ``metrics_token``."""
    metrics_token: str = Field(default="", repr=False)
    """A scrape must send ``Authorization: Bearer <token>``. Required on the main port."""
    metrics_cache_seconds: float = Field(default=10.0, ge=0, le=300)
    """How long the figures read from the database are reused by later scrapes."""
    # Tracing (``tracing.py``, docs/health.md): Harbor's ``trace`` settings, OTLP only.
    trace_enabled: bool = False
    """Send OpenTelemetry spans of requests, SQL statements and storage calls to an OTLP
    collector (needs ``pip install 'dockyard[tracing]'``)."""
    trace_otel_endpoint: str = ""
    """The collector's OTLP/HTTP traces URL, e.g. ``http://otel-collector:4318/v1/traces``
    (Harbor's ``otel.endpoint`` and ``otel.url_path`` in one; ``https://`` for TLS)."""
    trace_otel_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Deadline of one export to the collector."""
    trace_otel_compression: bool = False
    """Gzip the exported spans."""
    trace_sample_rate: float = Field(default=1.0, ge=0, le=1)
    """Share of new traces recorded (1: all); a trace a caller started and sampled (W3C
    ``traceparent``) is always followed."""
    trace_service_name: str = Field(default="dockyard", min_length=1)
    """The ``service.name`` the spans carry."""
    trace_namespace: str = ""
    """The ``service.namespace`` the spans carry (Harbor's ``trace.namespace``)."""
    trace_attributes: dict[str, str] = Field(default_factory=dict)
    """More resource attributes on every span (Harbor's ``trace.attributes``)."""

    @field_validator("external_url")
    @classmethod
    def _check_external_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(
                "must start with http:// or https:// (e.g. https://registry.example.com)"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR network (e.g. 10.0.0.0/8)"
                ) from None
        return [entry.strip() for entry in value]

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql", "postgres://")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {path} does not exist")
        return self

    @field_validator("metrics_path")
    @classmethod
    def _check_metrics_path(cls, value: str) -> str:
        taken = ("/v2", "/api", "/service", "/c", "/harbor", "/.well-known")
        if not value.startswith("/") or value == "/" or any(c in value for c in "?# "):
            raise ValueError("must be a path such as /metrics")
        if any(value == t or value.startswith(t + "/") for t in taken):
            raise ValueError(f"must not be under {', '.join(taken)} (the registry's own paths)")
        return value

    @model_validator(mode="after")
    def _check_metrics(self) -> Settings:
        given = self.model_fields_set & {
            "metrics_path",
            "metrics_port",
            "metrics_token",
            "metrics_cache_seconds",
        }
        if given and not self.metrics_enabled:
            raise ValueError(f"{', '.join(sorted(given))} set but metrics_enabled is false")
        if not self.metrics_enabled:
            return self
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError(
                "metrics_port must differ from port (leave it unset for the main port)"
            )
        if self.metrics_port is None and not self.metrics_token:
            raise ValueError(
                "metrics on the main port need metrics_token (they name private projects); "
                "set it, or set metrics_port to serve them on a port you keep private"
            )
        return self

    @model_validator(mode="after")
    def _check_vulndb_refresh(self) -> Settings:
        if bool(self.vulndb_refresh_cron) != bool(self.vulndb_refresh_urls):
            raise ValueError(
                "vulndb_refresh_cron and vulndb_refresh_urls go together: the schedule needs "
                "the URLs to import, and the URLs are only used by the schedule"
            )
        for url in self.vulndb_refresh_urls:
            if not url.lower().startswith(("http://", "https://")):
                raise ValueError(f"vulndb_refresh_urls: {url[:100]!r} is not an http(s) URL")
        return self

    @model_validator(mode="after")
    def _check_scanner_adapter(self) -> Settings:
        if self.scanner_adapter_api_key and not self.scanner_adapter_enabled:
            raise ValueError(
                "scanner_adapter_api_key is set but scanner_adapter_enabled is false: the key "
                "guards the adapter, which is off; enable it or remove the key"
            )
        return self

    @model_validator(mode="after")
    def _check_tracing(self) -> Settings:
        if not self.trace_enabled:
            return self
        if not self.trace_otel_endpoint.startswith(("http://", "https://")):
            raise ValueError(
                "trace_enabled needs trace_otel_endpoint, the collector's OTLP/HTTP traces URL "
                "(e.g. http://otel-collector:4318/v1/traces)"
            )
        if not tracing_installed():
            raise ValueError(
                "trace_enabled needs OpenTelemetry, which is not installed; run: "
                "pip install 'dockyard[tracing]'"
            )
        return self

    @model_validator(mode="after")
    def _check_storage(self) -> Settings:
        if self.storage_driver != "s3":
            return self
        if not self.storage_s3_bucket:
            raise ValueError("storage_s3_bucket is required with storage_driver s3")
        if self.storage_s3_credentials == "static" and not (
            self.storage_s3_access_key_id and self.storage_s3_secret_access_key
        ):
            raise ValueError(
                "storage_s3_credentials static needs storage_s3_access_key_id and "
                "storage_s3_secret_access_key"
            )
        return self

    # --- derived values --------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def public_url(self) -> str:
        if self.external_url:
            return self.external_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dockyard.db').resolve()}"

    @property
    def effective_storage_root(self) -> Path:
        return self.storage_root if self.storage_root is not None else self.data_dir / "storage"

    # --- sources: init kwargs > env > YAML file > defaults ---------------

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``DOCKYARD_CONFIG`` (set by ``--config``)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get() or os.environ.get(CONFIG_FILE_ENV)
        if not path:
            return {}
        return read_config_file(Path(path))


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {path} must hold a mapping of setting: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _problem(where: str, kind: str, message: str) -> str:
    """What is wrong with one setting, naming where it can be changed when it is not here."""
    if kind == "extra_forbidden" and where in RUN_TIME_ITEMS:
        return f"not a start-time setting; change it at run time with {_RUN_TIME_PLACE}"
    if kind == "extra_forbidden" and where in RUN_TIME_NAMES:
        return (
            f"not a setting here; the start-time default is {RUN_TIME_NAMES[where]}, and "
            f"{where} is changed at run time with {_RUN_TIME_PLACE}"
        )
    return message.removeprefix("Value error, ")


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build settings, turning validation errors into one readable message.

    ``config_file`` (else ``DOCKYARD_CONFIG``) names the YAML file; ``overrides``
    win over everything else.
    """
    token = _config_file.set(str(config_file) if config_file else None)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            problems.append(f"{where}: {_problem(where, err['type'], err['msg'])}")
        source = "(from --config, DOCKYARD_* variables or options)"
        if len(problems) == 1:  # one line for one mistake
            raise ConfigurationError(f"invalid setting {source}: {problems[0]}") from None
        raise ConfigurationError(
            f"invalid settings {source}:\n" + "\n".join(f"  {p}" for p in problems)
        ) from None
    finally:
        _config_file.reset(token)
