"""The ``WEBHOOK`` job: one task delivers one event to one target.

The handler POSTs the rendered event (``payloads.render``) through the capped
outbound client (``http/outbound.py``): one total deadline
(``outbound_timeout_seconds``), the first 4 KiB of the answer kept for the log and
the rest never read, the egress policy checked on the resolved address, no
redirects followed, TLS verified unless the target says ``skip_cert_verify``, and
the target's ``auth_header`` as ``Authorization`` (never written to a log). A
non-2xx answer or a network error raises, so the job system retries with backoff
until the task's attempts run out and then shows it ``Error``; a target the egress
policy refuses fails at once (retrying cannot change the policy). Each attempt's
status code, time and the start of the answer go to the task's log.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from dockyard.http.outbound import OutboundClient, OutboundError, OutboundRefused
from dockyard.jobs.runner import JobContext, JobType, PermanentJobError
from dockyard.webhooks.payloads import DEFAULT_FORMAT, HTTP, Event, render
from dockyard.webhooks.repository import VENDOR_TYPE
from dockyard.webhooks.schemas import WebhookTargetObject

USER_AGENT = "Dockyard-Webhook"
LOGGED_BODY = 1024
"""Characters of the target's answer written to the task's log."""


class DeliveryError(Exception):
    """The target did not take the event (retried while attempts remain)."""


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
    client = OutboundClient.for_targets(ctx.env.settings)
    started = time.monotonic()
    try:
        response = await client.request(
            "POST",
            address,
            headers=headers,
            content=body,
            verify_tls=not target.skip_cert_verify,
        )
    except OutboundRefused as exc:
        ctx.log(f"not sent: {exc}")
        raise PermanentJobError(f"{address} was not contacted: {exc}") from None
    except OutboundError as exc:
        elapsed = int((time.monotonic() - started) * 1000)
        ctx.log(f"no answer after {elapsed} ms: {type(exc).__name__}: {exc}")
        raise DeliveryError(f"{address} could not be reached: {exc}") from None
    elapsed = response.elapsed_ms
    ctx.log(f"answered {response.status_code} in {elapsed} ms")
    if response.head:
        ctx.log(f"answer began: {response.head_text(LOGGED_BODY)}")
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"{address} answered {response.status_code}")
    return {"status_code": response.status_code, "elapsed_ms": elapsed}


job_types: list[JobType] = [JobType(VENDOR_TYPE, deliver)]
