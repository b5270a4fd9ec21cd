"""Harbor's swagger definition ``Label``, field for field.

One model serves requests and answers, as in Harbor's swagger. Request fields
take strict JSON types so that a malformed body is a 400 rather than a guess;
ids are bounded so no value can overflow a database column.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, StrictInt, StrictStr


class Label(BaseModel):
    id: StrictInt | None = Field(default=None, ge=0, le=2**63 - 1)
    name: StrictStr | None = None
    description: StrictStr | None = None
    color: StrictStr | None = None
    scope: StrictStr | None = None
    """``g`` (global) or ``p`` (project)."""
    project_id: StrictInt | None = Field(default=None, ge=0, le=2**31 - 1)
    """The project of a project label; 0 for a global label."""
    creation_time: datetime | None = None
    update_time: datetime | None = None
