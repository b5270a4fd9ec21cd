"""The audit pages' filter form (system audit log, a project's logs) as Harbor's ``q``.

Text fields (user, resource) match a part, case-insensitively; the operation and
the result are chosen from lists; the date range is two calendar days in UTC,
both included. A value the form could not have sent (a date that is no date, an
operation not in the list, text with ``q``'s punctuation) is dropped, never an
error: the page shows every event instead of failing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

from dockyard.audit.events import EVENT_TYPES, event_kind
from dockyard.console.web import Page

OPERATIONS: tuple[str, ...] = tuple(
    sorted({kind[0] for kind in map(event_kind, EVENT_TYPES) if kind is not None})
)
"""The operations the log holds (``create``, ``delete``, ``login``, ``pull``, ``update``)."""
RESULTS = ("ok", "failed")
_MAX_TEXT = 128
_Q_PUNCTUATION = ",={}()~[]"


def _text(page: Page, name: str) -> str:
    value = page.query(name).strip()[:_MAX_TEXT]
    if any(c in value for c in _Q_PUNCTUATION) or not value.isprintable():
        return ""
    return value


def _day(page: Page, name: str) -> str:
    value = page.query(name).strip()[:10]
    try:
        return date.fromisoformat(value).isoformat() if value else ""
    except ValueError:
        return ""


@dataclass(frozen=True, slots=True)
class AuditFilters:
    username: str = ""
    resource: str = ""
    resource_type: str = ""
    operation: str = ""
    result: str = ""
    """``ok``, ``failed`` or empty (either)."""
    since: str = ""
    """First day shown, ``YYYY-MM-DD`` (UTC), or empty."""
    until: str = ""
    """Last day shown, included, or empty."""

    @classmethod
    def from_page(cls, page: Page) -> AuditFilters:
        operation = page.query("operation").strip()
        result = page.query("result").strip()
        since, until = _day(page, "since"), _day(page, "until")
        if since and until and since > until:
            since, until = until, since
        return cls(
            username=_text(page, "username"),
            resource=_text(page, "resource"),
            resource_type=_text(page, "resource_type"),
            operation=operation if operation in OPERATIONS else "",
            result=result if result in RESULTS else "",
            since=since,
            until=until,
        )

    def q(self) -> str | None:
        """The filters as ``q`` (None: no filter)."""
        parts = []
        if self.username:
            parts.append(f"username=~{self.username}")
        if self.resource:
            parts.append(f"resource=~{self.resource}")
        if self.resource_type:
            parts.append(f"resource_type={self.resource_type}")
        if self.operation:
            parts.append(f"operation={self.operation}")
        if self.result:
            parts.append(f"operation_result={'true' if self.result == 'ok' else 'false'}")
        if self.since or self.until:
            low = f"{self.since}T00:00:00+00:00" if self.since else ""
            high = f"{self.until}T23:59:59.999999+00:00" if self.until else ""
            parts.append(f"op_time=[{low}~{high}]")
        return ",".join(parts) or None

    def as_query(self) -> dict[str, str]:
        """The filters as the page's own query parameters (for paging links)."""
        return {key: value for key, value in asdict(self).items() if value}
