"""Harbor's retention shapes (swagger definitions of the same names)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class RetentionRuleParamMetadata(BaseModel):
    type: str | None = None
    unit: str | None = None
    required: bool | None = None


class RetentionRuleMetadata(BaseModel):
    rule_template: str | None = None
    display_text: str | None = None
    action: str | None = None
    params: list[RetentionRuleParamMetadata] | None = None


class RetentionSelectorMetadata(BaseModel):
    display_text: str | None = None
    kind: str | None = None
    decorations: list[str] | None = None


class RetentionMetadata(BaseModel):
    templates: list[RetentionRuleMetadata] | None = None
    scope_selectors: list[RetentionSelectorMetadata] | None = None
    tag_selectors: list[RetentionSelectorMetadata] | None = None


class RetentionSelector(BaseModel):
    kind: str | None = None
    """``doublestar``."""
    decoration: str | None = None
    """``repoMatches``/``repoExcludes`` (repositories), ``matches``/``excludes`` (tags)."""
    pattern: str | None = None
    extras: str | None = None
    """A JSON object in a string; tag selectors take ``{"untagged": true}``."""


class RetentionRule(BaseModel):
    id: int | None = None
    priority: int | None = None
    disabled: bool | None = None
    action: str | None = None
    template: str | None = None
    params: dict[str, Any] | None = None
    tag_selectors: list[RetentionSelector] | None = None
    scope_selectors: dict[str, list[RetentionSelector]] | None = None


class RetentionRuleTrigger(BaseModel):
    kind: str | None = None
    """``Schedule``."""
    settings: dict[str, Any] | None = None
    """``{"cron": "0 0 0 * * *"}``; an empty cron means no schedule."""
    references: dict[str, Any] | None = None


class RetentionPolicyScope(BaseModel):
    level: str | None = None
    """``project``."""
    ref: int | None = None
    """The project's id."""


class RetentionPolicy(BaseModel):
    id: int | None = None
    algorithm: str | None = None
    """``or``."""
    rules: list[RetentionRule] | None = None
    trigger: RetentionRuleTrigger | None = None
    scope: RetentionPolicyScope | None = None


class RetentionExecution(BaseModel):
    id: int
    policy_id: int
    start_time: str | None = None
    end_time: str | None = None
    status: str
    trigger: str
    dry_run: bool


class RetentionExecutionTask(BaseModel):
    id: int
    execution_id: int
    repository: str
    job_id: str
    status: str
    status_code: int
    status_revision: int
    start_time: str | None = None
    end_time: str | None = None
    total: int
    retained: int


class TriggerRetentionBody(BaseModel):
    """``triggerRetentionExecution``'s body."""

    dry_run: bool | None = None


class OperateRetentionBody(BaseModel):
    """``operateRetentionExecution``'s body: only ``stop``."""

    action: str | None = None
