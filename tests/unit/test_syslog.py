"""Audit events as RFC 5424 syslog messages, their TCP framing and the endpoint grammar.

``parse_rfc5424`` is a strict reader of RFC 5424's grammar (section 6), written from
the RFC and independent of the formatter; the integration tests read what a real
listener received with it too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from dockyard.audit.syslog import (
    UDP_MAX_BYTES,
    Endpoint,
    EndpointError,
    SyslogEvent,
    format_message,
    frame_octet_counted,
    parse_endpoint,
)

_HEADER = re.compile(
    r"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) "
    r"(?P<timestamp>-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
    r"(?P<hostname>[\x21-\x7e]{1,255}) (?P<app>[\x21-\x7e]{1,48}) "
    r"(?P<procid>[\x21-\x7e]{1,128}) (?P<msgid>[\x21-\x7e]{1,32}) "
)
_SD_NAME = re.compile(r"[\x21-\x7e]{1,32}")


@dataclass
class Rfc5424:
    pri: int
    version: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: dict[str, dict[str, str]]
    msg: str

    @property
    def facility(self) -> int:
        return self.pri // 8

    @property
    def severity(self) -> int:
        return self.pri % 8


def _sd_name(text: str, at: int, stop: str) -> tuple[str, int]:
    end = at
    while end < len(text) and text[end] not in stop:
        end += 1
    name = text[at:end]
    assert _SD_NAME.fullmatch(name) and not set(name) & set('= ]"'), f"bad SD name {name!r}"
    return name, end


def parse_rfc5424(raw: bytes) -> Rfc5424:
    """One syslog message, checked against RFC 5424's ABNF; raises AssertionError."""
    text = raw.decode("utf-8")
    header = _HEADER.match(text)
    assert header, f"not an RFC 5424 header: {text[:120]!r}"
    assert int(header["pri"]) <= 191
    at = header.end()
    sd: dict[str, dict[str, str]] = {}
    if text[at] == "-":
        at += 1
    else:
        while at < len(text) and text[at] == "[":
            sd_id, at = _sd_name(text, at + 1, " ]")
            params: dict[str, str] = {}
            while text[at] == " ":
                name, at = _sd_name(text, at + 1, "=")
                assert text[at : at + 2] == '="', 'PARAM-NAME must be followed by ="'
                at += 2
                value = []
                while text[at] != '"':
                    if text[at] == "\\" and text[at + 1] in '"\\]':
                        at += 1
                    else:
                        assert text[at] != "]", "] must be escaped in PARAM-VALUE"
                    value.append(text[at])
                    at += 1
                params[name] = "".join(value)
                at += 1
            assert text[at] == "]", "SD-ELEMENT must end with ]"
            at += 1
            sd[sd_id] = params
    msg = ""
    if at < len(text):
        assert text[at] == " ", "MSG must follow a space"
        msg = text[at + 1 :]
    return Rfc5424(
        int(header["pri"]),
        int(header["version"]),
        header["timestamp"],
        header["hostname"],
        header["app"],
        header["procid"],
        header["msgid"],
        sd,
        msg,
    )


def split_octet_counted(stream: bytes) -> tuple[list[bytes], bytes]:
    """RFC 6587 octet-counted frames in ``stream``, and the incomplete rest."""
    frames = []
    while True:
        length, space, rest = stream.partition(b" ")
        if not space or not length.isdigit() or len(rest) < int(length):
            return frames, stream
        frames.append(rest[: int(length)])
        stream = rest[int(length) :]


def _event(**changes: object) -> SyslogEvent:
    fields: dict[str, object] = {
        "time": datetime(2026, 11, 28, 2, 27, 29, 123456, tzinfo=UTC),
        "event_type": "create_artifact",
        "operation": "create",
        "resource_type": "artifact",
        "resource": "library/app:1.0",
        "project_id": 1,
        "username": "admin",
        "client_ip": "192.0.2.7",
        "description": "push sha256:abc",
        "succeeded": True,
    }
    fields.update(changes)
    return SyslogEvent(**fields)  # type: ignore[arg-type]


def test_message_follows_rfc_5424() -> None:
    message = parse_rfc5424(format_message(_event(), hostname="node-1", procid=4242))
    assert (message.facility, message.severity) == (16, 6)  # local0, info
    assert message.version == 1
    assert message.timestamp == "2026-11-28T02:27:29.123456Z"
    assert (message.hostname, message.app_name, message.procid) == ("node-1", "dockyard", "4242")
    assert message.msgid == "create_artifact"
    params = message.sd["audit@32473"]
    assert params == {
        "event_type": "create_artifact",
        "operation": "create",
        "resource_type": "artifact",
        "resource": "library/app:1.0",
        "project_id": "1",
        "username": "admin",
        "client_ip": "192.0.2.7",
        "result": "success",
        "description": "push sha256:abc",
    }
    body = json.loads(message.msg)
    assert body["time"] == "2026-11-28T02:27:29.123456Z"
    assert {k: str(v) for k, v in body.items() if k != "time"} == params


def test_failures_are_warnings() -> None:
    message = parse_rfc5424(format_message(_event(succeeded=False), hostname="h", procid=1))
    assert (message.facility, message.severity) == (16, 4)
    assert message.sd["audit@32473"]["result"] == "failure"


def test_hostile_values_are_escaped_and_headers_stay_ascii() -> None:
    nasty = 'a"b\\c]d [e f="g"] ünï\n'
    raw = format_message(
        _event(resource=nasty, username="ünï cödé", description=nasty, event_type="x y"),
        hostname="host with space",
        procid="",
    )
    message = parse_rfc5424(raw)
    assert message.sd["audit@32473"]["resource"] == nasty
    assert message.sd["audit@32473"]["username"] == "ünï cödé"
    assert message.hostname == "host_with_space"
    assert message.procid == "-"
    assert message.msgid == "x_y"
    assert message.msg.isascii()  # MSG-ANY without a BOM
    assert json.loads(message.msg)["description"] == nasty


def test_naive_times_are_utc_and_long_msgids_are_cut() -> None:
    event = _event(time=datetime(2026, 1, 2, 3, 4, 5), event_type="e" * 40)
    message = parse_rfc5424(format_message(event, hostname="h", procid=1))
    assert message.timestamp == "2026-01-02T03:04:05.000000Z"
    assert message.msgid == "e" * 32


def test_udp_messages_fit_a_datagram_by_cutting_the_description() -> None:
    long = _event(description="d" * 6000)
    raw = format_message(long, hostname="h", procid=1, max_bytes=UDP_MAX_BYTES)
    assert len(raw) <= UDP_MAX_BYTES
    message = parse_rfc5424(raw)
    description = message.sd["audit@32473"]["description"]
    assert 0 < len(description) < 6000 and set(description) == {"d"}
    assert json.loads(message.msg)["description"] == description
    assert len(format_message(long, hostname="h", procid=1)) > 12000  # TCP: whole


def test_octet_counting_frames() -> None:
    first = format_message(_event(), hostname="h", procid=1)
    second = format_message(_event(resource="ü"), hostname="h", procid=1)
    stream = frame_octet_counted(first) + frame_octet_counted(second)
    assert stream.startswith(str(len(first)).encode() + b" <")
    frames, rest = split_octet_counted(stream + b"12 <1")
    assert frames == [first, second] and rest == b"12 <1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("  ", None),
        ("syslog.example.com:514", Endpoint("tcp", "syslog.example.com", 514)),
        ("tcp://10.0.0.1:6514", Endpoint("tcp", "10.0.0.1", 6514)),
        ("UDP://logs:514", Endpoint("udp", "logs", 514)),
        ("udp://[::1]:1514", Endpoint("udp", "::1", 1514)),
        ("[fe80::1]:514", Endpoint("tcp", "fe80::1", 514)),
    ],
)
def test_endpoints(text: str, expected: Endpoint | None) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "syslog.example.com",
        "syslog:0",
        "syslog:65536",
        "syslog:-1",
        "syslog:51a",
        ":514",
        "http://syslog:514",
        "tcp://",
        "sys log:514",
        "syslog:514/path",
        "[::1:514",
        "[zz]:514",
        "a" * 300 + ":514",
        "-bad.example:514",
    ],
)
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(EndpointError, match="host:port"):
        parse_endpoint(text)


def test_endpoint_text_round_trips() -> None:
    for text in ("tcp://logs:514", "udp://[::1]:514"):
        endpoint = parse_endpoint(text)
        assert endpoint is not None and parse_endpoint(str(endpoint)) == endpoint
