"""The pure parts of the metrics: handler names, tallies flushed as observe() would, the
business families, and the settings that refuse a metrics setup that would not work."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dockyard.db.base import utcnow
from dockyard.errors import ConfigurationError
from dockyard.metrics import multiprocess
from dockyard.metrics.middleware import RequestMetrics, add_observations, registry_handler
from dockyard.metrics.service import ProjectRow, QueueRow, Snapshot, families
from dockyard.settings import CONFIG_FILE_ENV, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (CONFIG_FILE_ENV, "DOCKYARD_PORT", multiprocess.ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("path", "handler"),
    [
        ("/v2/", "base"),
        ("/v2", "base"),
        ("/v2/_catalog", "catalog"),
        ("/v2/library/a/b/tags/list", "tags"),
        ("/v2/library/a/manifests/latest", "manifest"),
        ("/v2/library/a/manifests/sha256:" + "0" * 64, "manifest"),
        ("/v2/library/a/blobs/sha256:" + "0" * 64, "blob"),
        ("/v2/library/a/blobs/uploads/", "blob_upload"),
        ("/v2/library/a/blobs/uploads", "blob_upload"),
        ("/v2/library/a/blobs/uploads/0f3c-uuid", "blob_upload_chunk"),
        ("/v2/library/a/referrers/sha256:" + "0" * 64, "referrers"),
        # a repository named like a route keyword is still read from the end
        ("/v2/library/blobs/manifests/uploads", "manifest"),
        ("/v2/library/tags/list/extra", "other"),
        ("/v2/nonsense", "other"),
    ],
)
def test_registry_handler_names_a_bounded_set(path: str, handler: str) -> None:
    assert registry_handler(path) == handler


def _exposition(histogram: Histogram) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(histogram)
    text = generate_latest(registry).decode()
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_flushed_tallies_expose_as_observe_would() -> None:
    """add_observations reaches into Histogram's children: this fails if a new
    prometheus-client stores them otherwise."""
    observed = Histogram("t_seconds", "t", ["op"], registry=None)
    metrics = RequestMetrics()
    samples = [0.0, 0.001, 0.005, 0.0051, 0.3, 2.5, 7.0, 10.0, 99.0, 0.25]
    for seconds in samples:
        observed.labels("x").observe(seconds)
        metrics.done(True, "GET", "blob", 200, seconds)
    tallied = Histogram("t_seconds", "t", ["op"], registry=None)
    add_observations(tallied.labels("x"), metrics.durations[(True, "GET", "blob")])
    assert _exposition(tallied) == _exposition(observed)


def test_flush_moves_tallies_into_the_metrics_once() -> None:
    metrics = RequestMetrics()
    for _ in range(3):
        metrics.done(True, "GET", "blob", 200, 0.01)
    metrics.done(False, "GET", "listProjects", 200, 0.02)
    metrics.inflight[(True, "blob")] = 2
    metrics.flush()
    metrics.flush()  # nothing new: nothing added twice
    registry = CollectorRegistry()
    metrics.register(registry)
    assert (
        registry.get_sample_value(
            "registry_http_requests_total", {"code": "200", "handler": "blob", "method": "GET"}
        )
        == 3
    )
    assert (
        registry.get_sample_value(
            "harbor_core_http_request_total",
            {"code": "200", "method": "GET", "operation": "listProjects"},
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "registry_http_request_duration_seconds_count", {"handler": "blob", "method": "GET"}
        )
        == 3
    )
    assert registry.get_sample_value("registry_http_in_flight_requests", {"handler": "blob"}) == 2


def test_business_families_carry_harbors_names_and_labels() -> None:
    now = utcnow()
    snapshot = Snapshot(
        database_up=True,
        projects=[
            ProjectRow("library", True, 3, 7, 100, -1),
            ProjectRow("team", False, 1, 0, 5, 1000),
            ProjectRow("noquota", False, 0, 0, None, None),
        ],
        queues=[QueueRow("GARBAGE_COLLECTION", 2, now - timedelta(seconds=30))],
        concurrency=[("WEBHOOK", "pool-1", 1)],
        workers=2,
    )
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families(snapshot, now)
        for sample in family.samples
    }
    assert found[("harbor_project_total", (("public", "true"),))] == 1
    assert found[("harbor_project_total", (("public", "false"),))] == 2
    key = ("harbor_project_repo_total", (("project_name", "library"), ("public", "true")))
    assert found[key] == 3
    assert found[("harbor_artifact_pulled", (("project_name", "library"),))] == 7
    assert found[("harbor_project_quota_byte", (("project_name", "team"),))] == 1000
    assert found[("harbor_project_quota_usage_byte", (("project_name", "team"),))] == 5
    assert ("harbor_project_quota_byte", (("project_name", "noquota"),)) not in found
    assert found[("harbor_task_queue_size", (("type", "GARBAGE_COLLECTION"),))] == 2
    assert found[("harbor_task_queue_latency", (("type", "GARBAGE_COLLECTION"),))] == 30
    assert found[("harbor_task_concurrency", (("pool", "pool-1"), ("type", "WEBHOOK")))] == 1
    assert found[("harbor_up", (("component", "jobservice"),))] == 1
    assert found[("harbor_health", ())] == 1


def test_a_database_that_does_not_answer_says_so_and_nothing_else() -> None:
    names = {family.name: family for family in families(Snapshot(database_up=False))}
    assert set(names) == {"harbor_up", "harbor_health", "harbor_system_info"}
    assert names["harbor_health"].samples[0].value == 0
    database = [s for s in names["harbor_up"].samples if s.labels["component"] == "database"]
    assert database[0].value == 0


def test_metrics_are_off_by_default_and_need_a_token_on_the_main_port() -> None:
    assert load_settings().metrics_enabled is False
    with pytest.raises(ConfigurationError, match="metrics_token"):
        load_settings(metrics_enabled=True)
    assert load_settings(metrics_enabled=True, metrics_token="s3cret").metrics_port is None
    assert load_settings(metrics_enabled=True, metrics_port=9090).metrics_port == 9090


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metrics_port": 9090}, "metrics_port set but metrics_enabled is false"),
        ({"metrics_token": "x"}, "metrics_token set but metrics_enabled is false"),
        ({"metrics_enabled": True, "metrics_port": 5000}, "must differ from port"),
        ({"metrics_enabled": True, "metrics_port": 0}, "metrics_port"),
        ({"metrics_enabled": True, "metrics_port": 9090, "metrics_path": "metrics"}, "a path"),
        ({"metrics_enabled": True, "metrics_port": 9090, "metrics_path": "/"}, "a path"),
        ({"metrics_enabled": True, "metrics_port": 9090, "metrics_path": "/v2/m"}, "/v2"),
        ({"metrics_enabled": True, "metrics_port": 9090, "metrics_path": "/api"}, "/api"),
        ({"metrics_enabled": True, "metrics_port": 9090, "metrics_cache_seconds": -1}, "cache"),
    ],
)
def test_a_metrics_setting_that_would_not_work_is_refused(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_settings(**options)


def test_metrics_settings_come_from_the_config_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "dockyard.yml"
    config.write_text("metrics_enabled: true\nmetrics_port: 9090\nmetrics_path: /prom\n")
    monkeypatch.setenv(CONFIG_FILE_ENV, str(config))
    monkeypatch.setenv("DOCKYARD_METRICS_PORT", "9191")
    settings = load_settings()
    assert (settings.metrics_enabled, settings.metrics_port) == (True, 9191)
    assert settings.metrics_path == "/prom"


def test_the_multiprocess_directory_is_emptied_or_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = tmp_path / "prom"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"old run")
    monkeypatch.setenv(multiprocess.ENV, str(given))
    assert multiprocess.prepare_directory() == (given, False)
    assert not list(given.iterdir())
    monkeypatch.delenv(multiprocess.ENV)
    made, was_made = multiprocess.prepare_directory()
    try:
        assert was_made and made.is_dir()
        assert multiprocess.directory() == made
    finally:
        made.rmdir()


def test_a_dead_workers_in_flight_gauges_leave_the_sums(tmp_path: Path) -> None:
    """A worker killed without its shutdown (kill -9) still had requests in flight: its
    live gauges go at the next scrape; its counters, and a live worker's gauges, stay."""
    dead = 2**22 + 12345  # above the default pid_max: no such process
    mine = os.getpid()
    for name in (
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"counter_{dead}.db",
        f"gauge_livesum_{mine}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    assert multiprocess.forget_dead_workers(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"counter_{dead}.db",
        f"gauge_livesum_{mine}.db",
    ]
