"""Every error class maps to a status on both faces; only storage faults are 5xx."""

from __future__ import annotations

import inspect
import json

import pytest

from dockyard import errors
from dockyard.http.errors import (
    HARBOR_STATUS,
    OCI_STATUS,
    harbor_error_response,
    oci_error_response,
    status_for,
)

ERROR_CLASSES = [
    cls
    for _, cls in inspect.getmembers(errors, inspect.isclass)
    if issubclass(cls, errors.AppError)
]
SERVER_FAULTS = (errors.StorageError, errors.ConfigurationError)
OCI_CODES = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    "RANGE_INVALID",
    # not in the spec's table, used as the reference registry does
    "PAGINATION_NUMBER_INVALID",
    "NOT_FOUND",
    "UNKNOWN",
    "UNAVAILABLE",  # distribution's code for a 503
    "PROJECTPOLICYVIOLATION",  # Harbor's content-trust refusal of a pull (412)
}


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_has_a_status_on_both_faces(cls: type[errors.AppError]) -> None:
    oci = status_for(cls("x"), OCI_STATUS) if cls is not errors.TooManyRequestsError else 429
    harbor = status_for(cls("x"), HARBOR_STATUS)
    if issubclass(cls, errors.ServiceUnavailableError):
        assert oci == harbor == 503
    elif issubclass(cls, SERVER_FAULTS):
        assert oci == harbor == 500
    elif cls is not errors.AppError:
        assert 400 <= oci < 500, f"{cls.__name__} maps to {oci} on /v2/"
        assert 400 <= harbor < 500, f"{cls.__name__} maps to {harbor} on /api/v2.0/"
    assert cls.oci_code in OCI_CODES


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.BlobUnknownError("gone"), 404, "BLOB_UNKNOWN"),
        (errors.DigestInvalidError("bad"), 400, "DIGEST_INVALID"),
        (errors.RangeInvalidError("bad"), 416, "RANGE_INVALID"),
        (errors.PayloadTooLargeError("big"), 413, "SIZE_INVALID"),
        (errors.UnauthorizedError("who"), 401, "UNAUTHORIZED"),
        (errors.DeniedError("no"), 403, "DENIED"),
        (errors.TooManyRequestsError("slow down", retry_after=7), 429, "TOOMANYREQUESTS"),
        (errors.ManifestReferencedError("in use"), 409, "DENIED"),
        # Harbor's content-trust middleware: docker shows "PROJECTPOLICYVIOLATION: …"
        (errors.PolicyViolationError("not signed"), 412, "PROJECTPOLICYVIOLATION"),
        # shown by skopeo/podman/docker as "denied: storage is full …" (see the class)
        (errors.StorageFullError("storage is full"), 403, "DENIED"),
    ],
)
def test_oci_body_and_status(error: errors.AppError, status: int, code: str) -> None:
    response = oci_error_response(error, "req1")
    assert response.status_code == status
    body = json.loads(bytes(response.body))
    assert body["errors"][0]["code"] == code
    assert body["errors"][0]["message"] == error.message
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    if isinstance(error, errors.TooManyRequestsError):
        assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize(
    ("error", "harbor_code"),
    [
        (errors.StorageUnavailableError("the object store is unavailable"), "SERVICE_UNAVAILABLE"),
        (errors.DatabaseUnavailableError("the database is unavailable", 3), "SERVICE_UNAVAILABLE"),
    ],
)
def test_unavailable_is_503_with_a_retry_hint(error: errors.AppError, harbor_code: str) -> None:
    assert isinstance(error, errors.ServiceUnavailableError)
    oci, harbor = oci_error_response(error, "r1"), harbor_error_response(error, "r1")
    for response in (oci, harbor):
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(error.retry_after)
    assert json.loads(bytes(oci.body))["errors"][0] == {
        "code": "UNAVAILABLE",
        "message": error.message,
    }
    assert json.loads(bytes(harbor.body))["errors"][0] == {
        "code": harbor_code,
        "message": error.message,
    }


def test_server_faults_hide_their_detail() -> None:
    error = errors.StorageError("disk /secret/path exploded")
    for response in (oci_error_response(error, "abc123"), harbor_error_response(error, "abc123")):
        body = json.loads(bytes(response.body))
        assert response.status_code == 500
        assert "secret" not in body["errors"][0]["message"]
        assert "abc123" in body["errors"][0]["message"]


def test_harbor_body_shape() -> None:
    response = harbor_error_response(errors.NotFoundError("project x not found"), "r")
    assert response.status_code == 404
    assert json.loads(bytes(response.body)) == {
        "errors": [{"code": "NOT_FOUND", "message": "project x not found"}]
    }
