"""Edge adapters: AppError -> HTTP, one status table per face.

``/v2/`` answers with the OCI distribution body ``{"errors":[{code,message,detail}]}``;
``/api/v2.0/`` with Harbor's ``{"errors":[{code,message}]}``. 5xx bodies carry
only "internal server error" and the request id; the detail goes to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import JSONResponse

from dockyard import errors as e

log = logging.getLogger("dockyard.http")

# Most specific class first: the first isinstance match wins.
OCI_STATUS: tuple[tuple[type[e.AppError], int], ...] = (
    (e.ServiceUnavailableError, 503),
    (e.PolicyViolationError, 412),
    (e.PayloadTooLargeError, 413),
    (e.RangeInvalidError, 416),
    (e.TooManyRequestsError, 429),
    (e.UnauthorizedError, 401),
    (e.DeniedError, 403),
    (e.StorageFullError, 403),  # why not 507: see StorageFullError
    (e.ManifestReferencedError, 409),
    (e.ConflictError, 409),
    (e.PreconditionFailedError, 409),
    (e.ObjectNotFoundError, 500),
    (e.StorageError, 500),
    (e.ConfigurationError, 500),
    (e.NotFoundError, 404),
    (e.ManifestBlobUnknownError, 400),
    (e.NameInvalidError, 400),
    (e.TagInvalidError, 400),
    (e.DigestInvalidError, 400),
    (e.SizeInvalidError, 400),
    (e.ManifestInvalidError, 400),
    (e.BlobUploadInvalidError, 400),
    (e.MethodNotAllowedError, 405),
    (e.UnsupportedError, 415),
    (e.PaginationInvalidError, 400),
    (e.UnprocessableError, 400),
    (e.BadRequestError, 400),
)

HARBOR_STATUS: tuple[tuple[type[e.AppError], int], ...] = (
    (e.ServiceUnavailableError, 503),
    (e.PolicyViolationError, 412),
    (e.PayloadTooLargeError, 413),
    (e.TooManyRequestsError, 429),
    (e.UnauthorizedError, 401),
    (e.ImmutableTagError, 412),
    (e.DeniedError, 403),
    (e.StorageFullError, 403),
    (e.ConflictError, 409),
    (e.PreconditionFailedError, 412),
    (e.StorageError, 500),
    (e.ConfigurationError, 500),
    (e.NotFoundError, 404),
    (e.MethodNotAllowedError, 405),
    (e.UnsupportedError, 415),
    (e.UnprocessableError, 422),
    (e.AppError, 400),
)


def status_for(error: e.AppError, table: tuple[tuple[type[e.AppError], int], ...]) -> int:
    for cls, status in table:
        if isinstance(error, cls):
            return status
    return 500


def _log_unavailable(error: e.ServiceUnavailableError, request_id: str) -> None:
    """A 503's message is safe to show (it names the service, not its internals); the
    cause goes to the log, once per request, without a traceback."""
    cause = error.__cause__
    log.warning(
        "request %s: %s%s", request_id, error.message, f" ({cause})" if cause is not None else ""
    )


def _internal_message(request_id: str) -> str:
    return f"internal server error (request id {request_id})"


def oci_error_response(
    error: e.AppError, request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    status = status_for(error, OCI_STATUS)
    headers = dict(headers or {})
    if isinstance(error, e.TooManyRequestsError | e.ServiceUnavailableError):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, e.ServiceUnavailableError):
        _log_unavailable(error, request_id)
        body: dict[str, Any] = {"code": error.oci_code, "message": error.message}
    elif status >= 500:
        log.error("request %s failed: %s", request_id, error.message, exc_info=error)
        body = {"code": "UNKNOWN", "message": _internal_message(request_id)}
    else:
        body = {"code": error.oci_code, "message": error.message}
        if error.detail is not None:
            body["detail"] = error.detail
    headers.setdefault("Docker-Distribution-API-Version", "registry/2.0")
    return JSONResponse({"errors": [body]}, status_code=status, headers=headers)


def harbor_error_response(
    error: e.AppError, request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    status = status_for(error, HARBOR_STATUS)
    headers = dict(headers or {})
    if isinstance(error, e.TooManyRequestsError | e.ServiceUnavailableError):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, e.ServiceUnavailableError):
        _log_unavailable(error, request_id)
        message, code = error.message, error.harbor_code
    elif status >= 500:
        log.error("request %s failed: %s", request_id, error.message, exc_info=error)
        message = _internal_message(request_id)
        code = "INTERNAL_SERVER_ERROR"
    else:
        message, code = error.message, error.harbor_code
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status, headers)


def internal_error_response(request_id: str, oci: bool) -> JSONResponse:
    code = "UNKNOWN" if oci else "INTERNAL_SERVER_ERROR"
    return JSONResponse(
        {"errors": [{"code": code, "message": _internal_message(request_id)}]}, status_code=500
    )
