"""What a webhook delivery sends: events and their three renderings. Pure.

An ``Event`` is fixed when the change happens (inside its transaction) and kept
in the delivery task's parameters, so every retry sends the same bytes. It is
rendered per target: Harbor's *Default* JSON, CloudEvents 1.0 (structured
mode), or a Slack message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PUSH_ARTIFACT = "PUSH_ARTIFACT"
PULL_ARTIFACT = "PULL_ARTIFACT"
DELETE_ARTIFACT = "DELETE_ARTIFACT"
DELETE_TAG = "DELETE_TAG"
QUOTA_EXCEED = "QUOTA_EXCEED"
QUOTA_WARNING = "QUOTA_WARNING"
TAG_RETENTION = "TAG_RETENTION"
REPLICATION = "REPLICATION"
SCANNING_COMPLETED = "SCANNING_COMPLETED"
SCANNING_FAILED = "SCANNING_FAILED"
SCANNING_STOPPED = "SCANNING_STOPPED"

EVENT_TYPES: tuple[str, ...] = (
    DELETE_ARTIFACT,
    DELETE_TAG,
    PULL_ARTIFACT,
    PUSH_ARTIFACT,
    QUOTA_EXCEED,
    QUOTA_WARNING,
    REPLICATION,
    SCANNING_COMPLETED,
    SCANNING_FAILED,
    SCANNING_STOPPED,
    TAG_RETENTION,
)
"""The event types a policy may subscribe to: every one Harbor lists, by Harbor's names;
Dockyard sends them all."""

CLOUDEVENT_TYPES: dict[str, str] = {
    PUSH_ARTIFACT: "harbor.artifact.pushed",
    PULL_ARTIFACT: "harbor.artifact.pulled",
    DELETE_ARTIFACT: "harbor.artifact.deleted",
    DELETE_TAG: "harbor.tag.deleted",
    QUOTA_EXCEED: "harbor.quota.exceeded",
    QUOTA_WARNING: "harbor.quota.warning",
    TAG_RETENTION: "harbor.tag_retention.finished",
    REPLICATION: "harbor.replication.status.changed",
    SCANNING_COMPLETED: "harbor.scan.completed",
    SCANNING_FAILED: "harbor.scan.failed",
    SCANNING_STOPPED: "harbor.scan.stopped",
}

HTTP = "http"
SLACK = "slack"
NOTIFY_TYPES: tuple[str, ...] = (HTTP, SLACK)

DEFAULT_FORMAT = "Default"
CLOUDEVENTS_FORMAT = "CloudEvents"
PAYLOAD_FORMATS: dict[str, tuple[str, ...]] = {
    HTTP: (DEFAULT_FORMAT, CLOUDEVENTS_FORMAT),
    SLACK: (DEFAULT_FORMAT,),
}

JSON_CONTENT_TYPE = "application/json"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, as every target will hear of it."""

    id: str
    """Unique per event (the CloudEvents ``id``): the same on every retry."""
    type: str
    """One of ``EVENT_TYPES``."""
    occur_at: datetime
    operator: str
    project_id: int
    data: Mapping[str, Any]
    """Harbor's ``event_data`` (``resources``, ``repository``…)."""

    def as_params(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "occur_at": self.occur_at.isoformat(),
            "operator": self.operator,
            "project_id": self.project_id,
            "data": dict(self.data),
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Event:
        occur_at = datetime.fromisoformat(str(params["occur_at"]))
        if occur_at.tzinfo is None:
            occur_at = occur_at.replace(tzinfo=UTC)
        return cls(
            id=str(params["id"]),
            type=str(params["type"]),
            occur_at=occur_at,
            operator=str(params.get("operator", "")),
            project_id=int(params.get("project_id", 0)),
            data=dict(params.get("data") or {}),
        )


def artifact_data(
    *,
    registry_host: str,
    repository: str,
    repository_created: datetime,
    public: bool,
    resources: list[tuple[str, str | None]],
) -> dict[str, Any]:
    """Harbor's ``event_data`` of an artifact event: ``resources`` are (digest, tag)."""
    namespace, _, name = repository.partition("/")
    listed = []
    for digest, tag in resources:
        ref = f"{repository}:{tag}" if tag else f"{repository}@{digest}"
        resource: dict[str, Any] = {"digest": digest, "resource_url": f"{registry_host}/{ref}"}
        if tag:
            resource["tag"] = tag
        listed.append(resource)
    return {
        "resources": listed,
        "repository": {
            "date_created": int(repository_created.timestamp()),
            "name": name,
            "namespace": namespace,
            "repo_full_name": repository,
            "repo_type": "public" if public else "private",
        },
    }


def default_body(event: Event) -> dict[str, Any]:
    """Harbor's *Default* payload."""
    return {
        "type": event.type,
        "occur_at": int(event.occur_at.timestamp()),
        "operator": event.operator,
        "event_data": dict(event.data),
    }


def cloudevents_body(event: Event, source: str) -> dict[str, Any]:
    """A CloudEvents 1.0 event in structured mode; ``operator`` is an extension attribute."""
    return {
        "specversion": "1.0",
        "id": event.id,
        "source": source,
        "type": CLOUDEVENT_TYPES.get(event.type, f"harbor.{event.type.lower()}"),
        "datacontenttype": JSON_CONTENT_TYPE,
        "time": event.occur_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "operator": event.operator,
        "data": dict(event.data),
    }


def slack_body(event: Event) -> dict[str, Any]:
    """A Slack incoming-webhook message: a summary line and the event as a code block."""
    repository = event.data.get("repository") or {}
    where = repository.get("repo_full_name") if isinstance(repository, Mapping) else None
    summary = f"Dockyard event {event.type} by {event.operator or 'unknown'}"
    if where:
        summary += f" on {where}"
    detail = json.dumps(default_body(event), indent=2, sort_keys=True)
    return {"text": f"{summary}\n```{detail}```"}


def render(event: Event, notify_type: str, payload_format: str, source: str) -> tuple[bytes, str]:
    """The body and ``Content-Type`` one target gets."""
    if notify_type == SLACK:
        body, content_type = slack_body(event), JSON_CONTENT_TYPE
    elif payload_format == CLOUDEVENTS_FORMAT:
        body, content_type = cloudevents_body(event, source), CLOUDEVENTS_CONTENT_TYPE
    else:
        body, content_type = default_body(event), JSON_CONTENT_TYPE
    return json.dumps(body, separators=(",", ":")).encode(), content_type
