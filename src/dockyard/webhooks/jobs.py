"""The ``WEBHOOK`` job: one task delivers one event to one target.

The handler POSTs the rendered event (``payloads.render``) with ``httpx``: a
timeout, no redirects followed, TLS verified unless the target says
``skip_cert_verify``, and the target's ``auth_header`` as ``Authorization``
(never written to a log). A non-2xx answer or a network error raises, so the
job system retries with backoff until the task's attempts run out and then
shows it ``Error``; each attempt's status code and time go to the task's log.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from functools import cache
from typing import Any

import httpx
from pydantic import ValidationError

from dockyard.jobs.runner import JobContext, JobType, PermanentJobError
from dockyard.webhooks.payloads import DEFAULT_FORMAT, HTTP, Event, render
from dockyard.webhooks.repository import VENDOR_TYPE
from dockyard.webhooks.schemas import WebhookTargetObject

TIMEOUT_SECONDS = 10.0
"""How long one delivery attempt may take, connecting and waiting for the answer."""
USER_AGENT = "Dockyard-Webhook"


class DeliveryError(Exception):
    """The target did not take the event (retried while attempts remain)."""


@cache
def _verifying_context() -> ssl.SSLContext:
    """The CA bundle, loaded once per process: loading it costs ~0.1 s of CPU on the
    event loop, which every delivery would otherwise pay."""
    return httpx.create_ssl_context()


def _tls(address: str, *, verify: bool) -> ssl.SSLContext | bool:
    """What ``httpx`` should verify with: nothing for plain ``http://`` (no TLS), the
    shared verifying context for ``https://``, or no verification when the target asks."""
    if not verify or not address.lower().startswith("https://"):
        return False
    return _verifying_context()


def _parse(params: Mapping[str, Any]) -> tuple[Event, WebhookTargetObject, int]:
    try:
        event = Event.from_params(params["event"])
        target = WebhookTargetObject.model_validate(params["target"])
        policy_id = int(params.get("policy_id", 0))
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise PermanentJobError(f"unreadable webhook task: {type(exc).__name__}") from None
    if not target.address:
        raise PermanentJobError("the target has no address")
    return event, target, policy_id


async def deliver(ctx: JobContext) -> Mapping[str, Any]:
    event, target, policy_id = _parse(ctx.params)
    notify_type = target.type or HTTP
    payload_format = target.payload_format or DEFAULT_FORMAT
    source = f"/projects/{event.project_id}/webhook/policies/{policy_id}"
    body, content_type = render(event, notify_type, payload_format, source)
    headers = {"Content-Type": content_type, "User-Agent": USER_AGENT}
    if target.auth_header:
        headers["Authorization"] = target.auth_header
    address = str(target.address)
    ctx.log(
        f"attempt {ctx.attempt}: POST {address} ({event.type}, {notify_type}/{payload_format}, "
        f"{len(body)} bytes{', certificate not verified' if target.skip_cert_verify else ''})"
    )
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(
            verify=_tls(address, verify=not target.skip_cert_verify),
            timeout=TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
        ) as client:
            response = await client.post(address, content=body, headers=headers)
    except httpx.HTTPError as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        reason = str(exc) or type(exc).__name__
        ctx.log(f"no answer after {elapsed} ms: {type(exc).__name__}: {reason}")
        raise DeliveryError(f"{address} could not be reached: {reason}") from None
    elapsed = int((time.monotonic() - started) * 1000)
    ctx.log(f"answered {response.status_code} in {elapsed} ms")
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"{address} answered {response.status_code}")
    return {"status_code": response.status_code, "elapsed_ms": elapsed}


job_types: list[JobType] = [JobType(VENDOR_TYPE, deliver)]
