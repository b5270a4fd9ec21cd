"""Harbor's replication shapes (swagger definitions of the same names)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dockyard.remotes.schemas import Registry


class ReplicationFilter(BaseModel):
    type: str | None = None
    value: Any = None
    decoration: str | None = None


class ReplicationTriggerSettings(BaseModel):
    cron: str | None = None


class ReplicationTrigger(BaseModel):
    type: str | None = None
    trigger_settings: ReplicationTriggerSettings | None = None


class ReplicationPolicy(BaseModel):
    id: int | None = None
    name: str | None = None
    description: str | None = None
    src_registry: Registry | None = None
    dest_registry: Registry | None = None
    dest_namespace: str | None = None
    dest_namespace_replace_count: int | None = None
    trigger: ReplicationTrigger | None = None
    filters: list[ReplicationFilter] | None = None
    replicate_deletion: bool | None = None
    deletion: bool | None = None
    override: bool | None = None
    enabled: bool | None = None
    creation_time: datetime | None = None
    update_time: datetime | None = None
    speed: int | None = None
    copy_by_chunk: bool | None = None
    single_active_replication: bool | None = None


class StartReplicationExecution(BaseModel):
    policy_id: int | None = None


class ReplicationExecution(BaseModel):
    id: int | None = None
    policy_id: int | None = None
    status: str | None = None
    trigger: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    status_text: str | None = None
    total: int | None = None
    failed: int | None = None
    succeed: int | None = None
    in_progress: int | None = None
    stopped: int | None = None


class ReplicationTask(BaseModel):
    id: int | None = None
    execution_id: int | None = None
    status: str | None = None
    job_id: str | None = None
    operation: str | None = None
    resource_type: str | None = None
    src_resource: str | None = None
    dst_resource: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
