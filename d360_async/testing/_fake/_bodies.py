"""Response bodies in the exact shapes of the vendor's published examples.

As the vendor's API reference pages show them: the V3 envelope and RFC 7807 problem bodies, the V2
envelope, the SmartDocumentor task status, and an Azure-storage-like XML error for signed
download links.
"""

from __future__ import annotations

import time
from typing import Any, Final

__all__ = [
    "HTML_502",
    "MALFORMED_JSON",
    "iso",
    "problem",
    "storage_error",
    "v2_envelope",
    "v3_envelope",
]

JSON = dict[str, Any]

_PROBLEMS: Final[dict[int, tuple[str, str, str, str, str]]] = {
    # status: (type slug, title, detail, error code, error message)
    400: (
        "validation",
        "Bad Request.",
        "One or more validation errors occurred.",
        "VALIDATION_ERROR",
        "The request is invalid.",
    ),
    401: (
        "unauthorized",
        "Unauthorized.",
        "The authentication token is missing or has expired.",
        "UNAUTHORIZED",
        "Bearer token is missing or invalid.",
    ),
    404: (
        "not-found",
        "Not Found.",
        "The requested resource does not exist or has been deleted.",
        "RESOURCE_NOT_FOUND",
        "The requested resource was not found.",
    ),
    429: (
        "too-many-requests",
        "Too Many Requests.",
        "Rate limit exceeded. Retry after the duration specified in the Retry-After header.",
        "TOO_MANY_REQUESTS",
        "Rate limit exceeded. Retry after the duration specified in the Retry-After header.",
    ),
    500: (
        "internal-error",
        "Internal Server Error.",
        "An unexpected error occurred. Please try again or contact support.",
        "INTERNAL_SERVER_ERROR",
        "An unexpected error occurred.",
    ),
    503: (
        "service-unavailable",
        "Service Unavailable.",
        "The service is temporarily unavailable. Retry after the duration specified in the "
        "Retry-After header.",
        "SERVICE_UNAVAILABLE",
        "The service is temporarily unavailable.",
    ),
}


def problem(
    status: int,
    trace_id: str,
    *,
    message: str | None = None,
    field: str | None = None,
) -> JSON:
    """An RFC 7807 problem body as the V3 API sends it (``application/problem+json``)."""
    slug, title, detail, code, default_message = _PROBLEMS[status]
    return {
        "type": f"https://developer.document360.com/errors/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": None,
        "trace_id": trace_id,
        "errors": [
            {
                "code": code,
                "message": message or default_message,
                "field": field,
                "details": None,
            }
        ],
        "warnings": None,
    }


def v3_envelope(data: Any, request_id: str, *, empty_lists: bool = True) -> JSON:
    """The V3 success envelope; the vendor's examples show both ``[]`` and ``null`` lists."""
    lists: list[Any] | None = [] if empty_lists else None
    return {
        "data": data,
        "success": True,
        "request_id": request_id,
        "errors": lists,
        "warnings": None if lists is None else [],
    }


def v2_envelope(
    success: bool = True, *, error: str | None = None, error_code: str | None = None
) -> JSON:
    """The V2 envelope fields (``success: false`` is an error even with HTTP 200)."""
    errors: list[JSON] = []
    if error is not None:
        errors.append(
            {
                "extension_data": None,
                "stack_trace": None,
                "description": error,
                "error_code": error_code,
                "custom_data": None,
            }
        )
    return {
        "extension_data": None,
        "success": success,
        "errors": errors,
        "warnings": [],
        "information": [],
    }


def storage_error(code: str, message: str, detail: str, request_id: str, now: float) -> bytes:
    """An XML error body in the style of a cloud storage service refusing a signed URL."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}\n"
        f"RequestId:{request_id}\nTime:{iso(now, fraction=True)}</Message>"
        f"<AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail></Error>"
    ).encode()


def iso(epoch: float, *, fraction: bool = False) -> str:
    """``2025-06-15T12:00:00Z`` (the vendor's timestamp format), UTC."""
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))
    if fraction:
        text += f".{int((epoch % 1) * 1_000_000):06d}"
    return text + "Z"


HTML_502: Final[bytes] = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream server returned an invalid response."
    b"</p><hr><address>fake-gateway</address></body></html>\n"
)

MALFORMED_JSON: Final[bytes] = b'{"data": {"id": "fault", "status": Completed,, }, "success": tru'
