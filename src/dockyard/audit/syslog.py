"""Audit events as syslog messages (RFC 5424), and the forwarding endpoint's grammar. Pure.

A message is ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG``:

- PRI is facility ``local0`` (16) times 8 plus the severity: ``info`` (6) for a
  change that succeeded, ``warning`` (4) for one that was refused or failed;
- TIMESTAMP is the event's time in UTC with microseconds (``2026-11-28T02:27:29.123456Z``);
- APP-NAME is ``dockyard``, PROCID the process id, MSGID the event type
  (``create_artifact``, ``login_user``…);
- one structured-data element ``[audit@32473 …]`` carries every field as a
  parameter (32473 is the enterprise number RFC 5424 reserves for examples:
  Dockyard has none of its own);
- MSG repeats the fields as one line of ASCII JSON (non-ASCII characters
  escaped, so it needs no BOM), for collectors that ignore structured data.

Over TCP each message is framed by octet counting (RFC 6587: ``LEN SP MSG``);
over UDP one datagram carries one message (RFC 5426), at most
``UDP_MAX_BYTES`` long — a longer description is cut to fit.

The endpoint is ``host:port`` (TCP, as Harbor), ``tcp://host:port`` or
``udp://host:port``; IPv6 addresses go in brackets (``udp://[::1]:514``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

TCP = "tcp"
UDP = "udp"
APP_NAME = "dockyard"
SD_ID = "audit@32473"
FACILITY_LOCAL0 = 16
SEVERITY_WARNING = 4
SEVERITY_INFO = 6
UDP_MAX_BYTES = 2048
"""The size RFC 5426 says every receiver should accept."""
MAX_ENDPOINT = 261

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?$"
)
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")


class EndpointError(ValueError):
    """The forwarding endpoint is not ``[tcp://|udp://]host:port``."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    transport: str
    """``tcp`` or ``udp``."""
    host: str
    """A name or address, IPv6 without its brackets."""
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint | None:
    """``audit_log_forward_endpoint`` as an ``Endpoint``; ``None`` when empty (forwarding
    off). Raises ``EndpointError`` saying what a valid one looks like."""
    raw = text.strip()
    if not raw:
        return None
    problem = EndpointError(
        "audit_log_forward_endpoint must be host:port, tcp://host:port or udp://host:port "
        "(e.g. syslog.example.com:514)"
    )
    if len(raw) > MAX_ENDPOINT:
        raise problem
    transport = TCP
    scheme, sep, rest = raw.partition("://")
    if sep:
        transport = scheme.lower()
        if transport not in (TCP, UDP):
            raise problem
        raw = rest
    if raw.startswith("["):
        host, bracket, port_text = raw[1:].partition("]")
        if not bracket or not port_text.startswith(":") or not _IPV6.match(host):
            raise problem
        port_text = port_text[1:]
    else:
        host, colon, port_text = raw.rpartition(":")
        if not colon or not _HOSTNAME.match(host):
            raise problem
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise problem
    return Endpoint(transport, host, int(port_text))


@dataclass(frozen=True, slots=True)
class SyslogEvent:
    """What one forwarded audit event says (the audit row's fields and its event type)."""

    time: datetime
    event_type: str
    operation: str
    resource_type: str
    resource: str
    project_id: int
    username: str
    client_ip: str
    description: str
    succeeded: bool


def _header_field(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, ``-`` when empty (RFC 5424 NILVALUE)."""
    cleaned = _PRINTUSASCII.sub("_", value)[:limit]
    return cleaned or "-"


def _sd_value(value: str) -> str:
    """A PARAM-VALUE: UTF-8 with ``"``, ``\\`` and ``]`` escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def timestamp(when: datetime) -> str:
    """RFC 5424 TIMESTAMP: RFC 3339 in UTC with microseconds."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_message(
    event: SyslogEvent,
    *,
    hostname: str,
    procid: int | str,
    facility: int = FACILITY_LOCAL0,
    max_bytes: int | None = None,
) -> bytes:
    """One RFC 5424 message (without transport framing); at most ``max_bytes`` long,
    cutting the description to fit."""
    description = event.description
    while True:
        message = _render(event, description, hostname, procid, facility)
        if max_bytes is None or len(message) <= max_bytes or not description:
            return message[:max_bytes] if max_bytes is not None else message
        over = len(message) - max_bytes
        # The description appears twice (SD and JSON), escaped at most 6x in JSON.
        description = description[: max(0, len(description) - max(1, over // 2))]


def _render(
    event: SyslogEvent, description: str, hostname: str, procid: int | str, facility: int
) -> bytes:
    severity = SEVERITY_INFO if event.succeeded else SEVERITY_WARNING
    fields: dict[str, str | int | bool] = {
        "time": timestamp(event.time),
        "event_type": event.event_type,
        "operation": event.operation,
        "resource_type": event.resource_type,
        "resource": event.resource,
        "project_id": event.project_id,
        "username": event.username,
        "client_ip": event.client_ip,
        "result": "success" if event.succeeded else "failure",
        "description": description,
    }
    params = " ".join(
        f'{name}="{_sd_value(str(value))}"' for name, value in fields.items() if name != "time"
    )
    header = " ".join(
        (
            f"<{facility * 8 + severity}>1",
            timestamp(event.time),
            _header_field(hostname, 255),
            APP_NAME,
            _header_field(str(procid), 128),
            _header_field(event.event_type, 32),
        )
    )
    body = json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
    return f"{header} [{SD_ID} {params}] {body}".encode()


def frame_octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing for syslog over TCP: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message
