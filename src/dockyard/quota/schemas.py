"""Harbor's swagger definitions for quotas (``Quota``, ``QuotaUpdateReq``, ``ResourceList``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, StrictInt, StrictStr

ResourceList = dict[str, int]
"""Harbor's ``ResourceList``: resource name (only ``storage`` here) to an amount."""


class QuotaUpdateReq(BaseModel):
    """The body of ``updateQuota``: ``{"hard": {"storage": bytes}}``."""

    hard: dict[StrictStr, StrictInt] | None = None


class QuotaRefObject(BaseModel):
    """What a quota belongs to: a project (``ProjectRefObject``'s fields)."""

    id: int
    name: str
    owner_name: str | None = None


class Quota(BaseModel):
    id: int
    ref: QuotaRefObject
    hard: ResourceList
    used: ResourceList
    creation_time: datetime
    update_time: datetime
