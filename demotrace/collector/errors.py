"""Every refusal the collector can give, in one place: each class is a stable error code and its status.

Every failure a client can cause raises a CollectorError that carries its HTTP status, so the web layer
only translates; nothing a client sends can make a collector service raise anything else.
"""

from __future__ import annotations


class CollectorError(Exception):
    """A request the collector refuses; ``status`` is the HTTP status, ``code`` a stable short name."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(CollectorError):
    status = 400
    code = "bad_request"


class Unauthorized(CollectorError):
    status = 401
    code = "unauthorized"


class NotFound(CollectorError):
    status = 404
    code = "not_found"


class Conflict(CollectorError):
    status = 409
    code = "conflict"


class WideningNotConfirmed(CollectorError):
    """A fleet policy that would capture more than the current one, sent without the confirmation."""

    status = 409
    code = "widening_not_confirmed"


class PayloadTooLarge(CollectorError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(CollectorError):
    status = 415
    code = "unsupported_media_type"


class Exempt(CollectorError):
    """The device is exempt from recording: the collector takes nothing from it."""

    status = 403
    code = "exempt"


class RetryableError(CollectorError):
    """A refusal that ends by itself: the client should come back after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Busy(RetryableError):
    """Every ingest slot (or the ingest memory budget) is taken."""

    status = 503
    code = "busy"


class TooManyRequests(RetryableError):
    """This client (a device, an address) passed its own rate or concurrency limit."""

    status = 429
    code = "rate_limited"


class BodyTooSlow(CollectorError):
    """The request body arrived slower than the collector's minimum rate: it was cut off."""

    status = 408
    code = "body_too_slow"


class ClientGone(CollectorError):
    """The client closed the connection before its body arrived: nobody is left to answer."""

    status = 400
    code = "client_disconnected"


# --- resumable uploads ---------------------------------------------------------------------------------


class UploadNotFound(CollectorError):
    status = 404
    code = "upload_not_found"


class OffsetMismatch(CollectorError):
    """A chunk that does not start where the received bytes end: the client should ask for the offset."""

    status = 416
    code = "offset_mismatch"


class UploadCorrupted(CollectorError):
    """The assembled body does not match the declared SHA-256; the session is gone, start over."""

    status = 409
    code = "upload_corrupted"


class TooManyUploads(CollectorError):
    status = 429
    code = "too_many_uploads"
