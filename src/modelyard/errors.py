"""Domain errors. Every service raises these; the web layers map them to their wire formats."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Error codes shared with MLflow's wire protocol, each with its HTTP status."""

    INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
    BAD_REQUEST = "BAD_REQUEST"
    RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
    RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
    ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    RESOURCE_CONFLICT = "RESOURCE_CONFLICT"
    REQUEST_LIMIT_EXCEEDED = "REQUEST_LIMIT_EXCEEDED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
    TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
    # stored bytes that fail an integrity check (missing, or a link planted in the store)
    DATA_LOSS = "DATA_LOSS"
    # the client stopped sending the request body
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    # a request body over the server's per-request limit
    RESOURCE_LIMIT_EXCEEDED = "RESOURCE_LIMIT_EXCEEDED"
    # the project's storage quota would be exceeded
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    # an upload's bytes do not match the checksum sent with it (OCI's name; native API only)
    DIGEST_INVALID = "DIGEST_INVALID"

    @property
    def http_status(self) -> int:
        return _STATUS[self]


_STATUS = {
    ErrorCode.INVALID_PARAMETER_VALUE: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.RESOURCE_ALREADY_EXISTS: 400,
    ErrorCode.RESOURCE_DOES_NOT_EXIST: 404,
    ErrorCode.ENDPOINT_NOT_FOUND: 404,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.RESOURCE_CONFLICT: 409,
    ErrorCode.REQUEST_LIMIT_EXCEEDED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.NOT_IMPLEMENTED: 501,
    ErrorCode.TEMPORARILY_UNAVAILABLE: 503,
    ErrorCode.DATA_LOSS: 500,
    ErrorCode.DEADLINE_EXCEEDED: 408,
    ErrorCode.RESOURCE_LIMIT_EXCEEDED: 413,
    ErrorCode.QUOTA_EXCEEDED: 413,
    ErrorCode.DIGEST_INVALID: 400,
}


class ModelyardError(Exception):
    """A failure with a stable error code and a message meant for the user."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidParameter(ModelyardError):
    code = ErrorCode.INVALID_PARAMETER_VALUE


class BadRequest(ModelyardError):
    code = ErrorCode.BAD_REQUEST


class NotFound(ModelyardError):
    code = ErrorCode.RESOURCE_DOES_NOT_EXIST


class AlreadyExists(ModelyardError):
    code = ErrorCode.RESOURCE_ALREADY_EXISTS


class Unavailable(ModelyardError):
    """The database is busy; the client should retry."""

    code = ErrorCode.TEMPORARILY_UNAVAILABLE


class DataLoss(ModelyardError):
    """Stored bytes cannot be served as they were stored: missing, or something other than
    the stored blob sits in their place. Logged; ``modelyard fsck`` explains."""

    code = ErrorCode.DATA_LOSS


class RequestTimeout(ModelyardError):
    """The client stopped sending the request body for longer than the server waits."""

    code = ErrorCode.DEADLINE_EXCEEDED


class TooLarge(ModelyardError):
    """A request body over the per-request upload limit."""

    code = ErrorCode.RESOURCE_LIMIT_EXCEEDED


class QuotaExceeded(ModelyardError):
    """Storing the upload would take the project over its storage quota."""

    code = ErrorCode.QUOTA_EXCEEDED


class DigestInvalid(ModelyardError):
    """The uploaded bytes do not match the checksum the client announced."""

    code = ErrorCode.DIGEST_INVALID


class Conflict(ModelyardError):
    """The request contradicts the state of the resource (e.g. writing to a published package)."""

    code = ErrorCode.RESOURCE_CONFLICT


class NotSupported(ModelyardError):
    code = ErrorCode.NOT_IMPLEMENTED


class Unauthenticated(ModelyardError):
    """No valid credentials: missing, wrong, expired or revoked."""

    code = ErrorCode.UNAUTHENTICATED


class PermissionDenied(ModelyardError):
    """The caller may see the resource but not do this to it."""

    code = ErrorCode.PERMISSION_DENIED
