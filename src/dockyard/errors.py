"""The one error hierarchy of Dockyard.

Services raise these; they know nothing of HTTP. Each class names the OCI
distribution error code it shows as on ``/v2/`` and the Harbor error code it
shows as on ``/api/v2.0/``. The HTTP status for each class lives in the edge
adapters (``dockyard.http.errors``), one table per face.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error a user may see. ``message`` is safe to show."""

    oci_code: ClassVar[str] = "UNKNOWN"
    harbor_code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.audited = False
        """Set once the refusal was recorded in the audit log (so it is recorded once)."""


# --- request shape ---------------------------------------------------------


class BadRequestError(AppError):
    oci_code = "UNSUPPORTED"
    harbor_code = "BAD_REQUEST"


class NameInvalidError(AppError):
    oci_code = "NAME_INVALID"
    harbor_code = "BAD_REQUEST"


class TagInvalidError(AppError):
    oci_code = "MANIFEST_INVALID"
    harbor_code = "BAD_REQUEST"


class DigestInvalidError(AppError):
    oci_code = "DIGEST_INVALID"
    harbor_code = "BAD_REQUEST"


class SizeInvalidError(AppError):
    oci_code = "SIZE_INVALID"
    harbor_code = "BAD_REQUEST"


class PayloadTooLargeError(AppError):
    """A body over the limit the endpoint accepts (e.g. a 4 MiB manifest)."""

    oci_code = "SIZE_INVALID"
    harbor_code = "BAD_REQUEST"


class RangeInvalidError(AppError):
    """A ``Content-Range`` or ``Range`` that does not fit the stored data."""

    oci_code = "RANGE_INVALID"
    harbor_code = "BAD_REQUEST"


class PaginationInvalidError(AppError):
    """``n`` or ``last`` of a listing that is not usable."""

    oci_code = "PAGINATION_NUMBER_INVALID"
    harbor_code = "BAD_REQUEST"


class ManifestInvalidError(AppError):
    oci_code = "MANIFEST_INVALID"
    harbor_code = "BAD_REQUEST"


class MethodNotAllowedError(AppError):
    oci_code = "UNSUPPORTED"
    harbor_code = "METHOD_NOT_ALLOWED"


class UnsupportedError(AppError):
    oci_code = "UNSUPPORTED"
    harbor_code = "UNSUPPORTED"


# --- missing things --------------------------------------------------------


class NotFoundError(AppError):
    oci_code = "NAME_UNKNOWN"
    harbor_code = "NOT_FOUND"


class EndpointNotFoundError(NotFoundError):
    """No endpoint at that path."""

    oci_code = "NOT_FOUND"


class NameUnknownError(NotFoundError):
    oci_code = "NAME_UNKNOWN"


class ProjectNotFoundError(NotFoundError):
    oci_code = "NAME_UNKNOWN"


class BlobUnknownError(NotFoundError):
    oci_code = "BLOB_UNKNOWN"


class BlobUploadUnknownError(NotFoundError):
    oci_code = "BLOB_UPLOAD_UNKNOWN"


class ManifestUnknownError(NotFoundError):
    oci_code = "MANIFEST_UNKNOWN"


class ManifestBlobUnknownError(AppError):
    """A manifest refers to a blob or child manifest the repository lacks."""

    oci_code = "MANIFEST_BLOB_UNKNOWN"
    harbor_code = "BAD_REQUEST"


class BlobUploadInvalidError(AppError):
    oci_code = "BLOB_UPLOAD_INVALID"
    harbor_code = "BAD_REQUEST"


# --- state conflicts -------------------------------------------------------


class ConflictError(AppError):
    oci_code = "DENIED"
    harbor_code = "CONFLICT"


class ManifestReferencedError(ConflictError):
    """A manifest cannot go while an index in its repository still lists it."""


class AlreadyExistsError(ConflictError):
    pass


class PreconditionFailedError(AppError):
    """The target is in a state that refuses the change (e.g. a project that still holds
    repositories cannot be deleted)."""

    oci_code = "DENIED"
    harbor_code = "PRECONDITION_FAILED"


class UnprocessableError(AppError):
    """Well-formed input asking for something that cannot be done (an unknown action)."""

    oci_code = "UNSUPPORTED"
    harbor_code = "UNPROCESSABLE_ENTITY"


# --- access ------------------------------------------------------------------


class UnauthorizedError(AppError):
    """No (valid) credentials; the client should authenticate."""

    oci_code = "UNAUTHORIZED"
    harbor_code = "UNAUTHORIZED"


class DeniedError(AppError):
    """Valid credentials that may not do this."""

    oci_code = "DENIED"
    harbor_code = "FORBIDDEN"


class ImmutableTagError(DeniedError):
    """A change would move or remove a tag an immutability rule protects.

    A refusal at the registry's hook seam (so a :class:`DeniedError`: ``DENIED``
    on ``/v2/``); Harbor's API answers it ``412`` with code ``PRECONDITION``.
    """

    harbor_code = "PRECONDITION"


class PolicyViolationError(AppError):
    """A project policy refuses to serve the artifact (content trust: no signature of the
    required kind, or none that verifies against the project's trusted keys).

    Harbor answers a pull its content-trust policy refuses with ``412`` and the code
    ``PROJECTPOLICYVIOLATION`` on ``/v2/`` as well as on the API; clients print the
    message, so it says which check failed."""

    oci_code = "PROJECTPOLICYVIOLATION"
    harbor_code = "PROJECTPOLICYVIOLATION"


class ServiceUnavailableError(AppError):
    """A service the request needs (the database, the object store) cannot be reached now.

    Shown as ``503`` with ``Retry-After``: nothing was half-done (the transaction rolled
    back, no object became visible), so the client may simply try again. The code is
    distribution's ``UNAVAILABLE`` (the OCI spec defines none for this); clients
    (containers/image, docker) retry a 503 or print its message."""

    oci_code = "UNAVAILABLE"
    harbor_code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, retry_after: int = 5, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after


class DatabaseUnavailableError(ServiceUnavailableError):
    """The database connection was lost or cannot be made (a restart, a failover)."""


class TooManyRequestsError(AppError):
    oci_code = "TOOMANYREQUESTS"
    harbor_code = "TOO_MANY_REQUESTS"

    def __init__(self, message: str, retry_after: int = 1, detail: Any = None) -> None:
        super().__init__(message, detail)
        self.retry_after = retry_after


# --- storage -----------------------------------------------------------------


class StorageError(AppError):
    """A storage driver failed; shown as an internal error."""

    oci_code = "UNKNOWN"
    harbor_code = "INTERNAL_SERVER_ERROR"


class ObjectNotFoundError(StorageError):
    """The storage driver has no object under that key."""


class StorageUnavailableError(StorageError, ServiceUnavailableError):
    """The object store cannot be reached, timed out or answered 5xx: a ``503`` with
    ``Retry-After``, not an internal error (see ``ServiceUnavailableError``)."""

    oci_code = "UNAVAILABLE"
    harbor_code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, retry_after: int = 5, detail: Any = None) -> None:
        ServiceUnavailableError.__init__(self, message, retry_after, detail)


class StorageFullError(AppError):
    """The disk (or the database's) is full, or below ``min_free_bytes``: nothing new can
    be stored until space is freed. Not a server fault: the client is told why.

    On ``/v2/`` it shows as ``403 DENIED`` with this message, as Harbor's quota refusals
    do: clients print the message of a 4xx error body, and skopeo and podman (tried:
    tests/e2e/test_disk_full_clients.py) fail with "uploading layer chunked: denied:
    storage is full: …". Answered as ``507 Insufficient Storage``, the same push printed
    only "received unexpected HTTP status: 507 Insufficient Storage": containers/image
    (skopeo, podman, buildah) and docker read error bodies of 4xx answers only."""

    oci_code = "DENIED"
    harbor_code = "INSUFFICIENT_STORAGE"


# --- configuration -----------------------------------------------------------


class ConfigurationError(AppError):
    """Settings that cannot work; raised at start with a message saying what to fix."""

    harbor_code = "BAD_REQUEST"
