"""Harbor's webhook shapes (swagger definitions of the same names)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class WebhookTargetObject(BaseModel):
    type: str | None = None
    """``http`` or ``slack``."""
    address: str | None = None
    auth_header: str | None = None
    """Sent as the ``Authorization`` header of every delivery (never logged)."""
    skip_cert_verify: bool | None = None
    payload_format: str | None = None
    """``Default`` or ``CloudEvents`` (http only; Slack has its own)."""


class WebhookPolicy(BaseModel):
    id: int | None = None
    name: str | None = None
    description: str | None = None
    project_id: int | None = None
    targets: list[WebhookTargetObject] | None = None
    event_types: list[str] | None = None
    creator: str | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None
    enabled: bool | None = None


class WebhookLastTrigger(BaseModel):
    policy_name: str | None = None
    event_type: str | None = None
    enabled: bool | None = None
    creation_time: datetime | None = None
    last_trigger_time: datetime | None = None


class WebhookJob(BaseModel):
    id: int | None = None
    policy_id: int | None = None
    event_type: str | None = None
    notify_type: str | None = None
    status: str | None = None
    job_detail: str | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None


class PayloadFormat(BaseModel):
    notify_type: str | None = None
    formats: list[str] | None = None


class SupportedWebhookEventTypes(BaseModel):
    event_type: list[str] | None = None
    notify_type: list[str] | None = None
    payload_formats: list[PayloadFormat] | None = None
