"""Webhook payloads (Default, CloudEvents 1.0, Slack) and target validation. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dockyard.errors import BadRequestError
from dockyard.webhooks.payloads import (
    CLOUDEVENTS_CONTENT_TYPE,
    Event,
    artifact_data,
    render,
)
from dockyard.webhooks.schemas import WebhookTargetObject
from dockyard.webhooks.service import check_event_types, check_target

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64


def _event() -> Event:
    data = artifact_data(
        registry_host="registry.example.com",
        repository="library/app/web",
        repository_created=WHEN,
        public=True,
        resources=[(DIGEST, "1.0"), (DIGEST, None)],
    )
    return Event("e1", "PUSH_ARTIFACT", WHEN, "alice", 7, data)


def test_default_payload_is_harbors_shape() -> None:
    body, content_type = render(_event(), "http", "Default", "/projects/7/webhook/policies/3")
    assert content_type == "application/json"
    assert json.loads(body) == {
        "type": "PUSH_ARTIFACT",
        "occur_at": int(WHEN.timestamp()),
        "operator": "alice",
        "event_data": {
            "resources": [
                {
                    "digest": DIGEST,
                    "tag": "1.0",
                    "resource_url": "registry.example.com/library/app/web:1.0",
                },
                {
                    "digest": DIGEST,
                    "resource_url": f"registry.example.com/library/app/web@{DIGEST}",
                },
            ],
            "repository": {
                "date_created": int(WHEN.timestamp()),
                "name": "app/web",
                "namespace": "library",
                "repo_full_name": "library/app/web",
                "repo_type": "public",
            },
        },
    }


def test_cloudevents_payload() -> None:
    body, content_type = render(_event(), "http", "CloudEvents", "/projects/7/webhook/policies/3")
    assert content_type == CLOUDEVENTS_CONTENT_TYPE
    event = json.loads(body)
    assert {k: v for k, v in event.items() if k != "data"} == {
        "specversion": "1.0",
        "id": "e1",
        "source": "/projects/7/webhook/policies/3",
        "type": "harbor.artifact.pushed",
        "datacontenttype": "application/json",
        "time": "2026-01-02T03:04:05Z",
        "operator": "alice",
    }
    assert event["data"]["repository"]["repo_full_name"] == "library/app/web"


def test_slack_message_and_event_round_trip() -> None:
    event = _event()
    assert Event.from_params(json.loads(json.dumps(event.as_params()))) == event
    body, _ = render(event, "slack", "Default", "")
    text = json.loads(body)["text"]
    assert text.startswith("Dockyard event PUSH_ARTIFACT by alice on library/app/web")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (WebhookTargetObject(address="ftp://h/x"), "http:// or https://"),
        (WebhookTargetObject(address="http:///nohost"), "with a host"),
        (WebhookTargetObject(address=""), "address is required"),
        (WebhookTargetObject(type="email", address="http://h"), "type must be"),
        (WebhookTargetObject(address="http://h", payload_format="Xml"), "payload_format"),
        (
            WebhookTargetObject(type="slack", address="http://h", payload_format="CloudEvents"),
            "slack",
        ),
        (WebhookTargetObject(address="http://h", auth_header="a\r\nb: c"), "control"),
        (WebhookTargetObject(address="http://h", auth_header="ünï"), "ASCII"),
    ],
)
def test_bad_targets_are_refused(target: WebhookTargetObject, message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        check_target(target, "targets[0]")


def test_targets_get_their_defaults_and_event_types_are_checked() -> None:
    target = check_target(WebhookTargetObject(address=" https://h:8443/x "), "t")
    assert target == WebhookTargetObject(
        type="http",
        address="https://h:8443/x",
        auth_header="",
        skip_cert_verify=False,
        payload_format="Default",
    )
    assert check_event_types(["PULL_ARTIFACT", "PULL_ARTIFACT", "TAG_RETENTION"]) == [
        "PULL_ARTIFACT",
        "TAG_RETENTION",
    ]
    # Every type Harbor lists is accepted (all are sent).
    assert check_event_types(["SCANNING_FAILED", "REPLICATION"]) == [
        "SCANNING_FAILED",
        "REPLICATION",
    ]
    with pytest.raises(BadRequestError, match="not supported"):
        check_event_types(["SCANNING_EXPLODED"])
    with pytest.raises(BadRequestError, match="required"):
        check_event_types([])
