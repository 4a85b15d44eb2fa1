"""Response decoding: the vendor's example bodies first, then everything a proxy can send."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d360_async._core._errors import (
    APIError,
    AuthenticationError,
    D360Error,
    ErrorDetail,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    ValidationError,
)
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._response import Response, check_v2, error_from_response, unwrap_v3

URL = "https://apihub.document360.io/v3/projects/p1/exports/e1"
PROBLEM = {"Content-Type": "application/problem+json; charset=utf-8"}
JSON = {"Content-Type": "application/json; charset=utf-8"}
HTML = {"Content-Type": "text/html"}


def _problem(type_: str, title: str, status: int, detail: str, code: str, message: str) -> bytes:
    # The shape of every problem body on the vendor's V3 API reference pages.
    return json.dumps(
        {
            "type": f"https://developer.document360.com/errors/{type_}",
            "title": title,
            "status": status,
            "detail": detail,
            "instance": None,
            "trace_id": "req_abc123def456",
            "errors": [{"code": code, "message": message, "field": None, "details": None}],
            "warnings": None,
        },
        indent=2,
    ).encode()


PROBLEM_401 = _problem(
    "unauthorized",
    "Unauthorized.",
    401,
    "The authentication token is missing or has expired.",
    "UNAUTHORIZED",
    "Bearer token is missing or invalid.",
)
PROBLEM_404 = _problem(
    "not-found",
    "Not Found.",
    404,
    "The requested resource does not exist or has been deleted.",
    "RESOURCE_NOT_FOUND",
    "The requested resource was not found.",
)
RATE_LIMIT_TEXT = (
    "Rate limit exceeded. Retry after the duration specified in the Retry-After header."
)
PROBLEM_429 = _problem(
    "too-many-requests",
    "Too Many Requests.",
    429,
    RATE_LIMIT_TEXT,
    "TOO_MANY_REQUESTS",
    RATE_LIMIT_TEXT,
)
PROBLEM_500 = _problem(
    "internal-error",
    "Internal Server Error.",
    500,
    "An unexpected error occurred. Please try again or contact support.",
    "INTERNAL_SERVER_ERROR",
    "An unexpected error occurred.",
)

# V2 API reference, delete-file status page: the 400 example and the 200 example.
V2_400 = b"""{
  "extension_data": null,
  "success": false,
  "errors": [],
  "warnings": [],
  "information": []
}"""
V2_DELETE_STATUS = b"""{
  "task_status": {
    "task_id": "65868a00c536f34594713fec",
    "is_complete": true,
    "status": 2
  },
  "extension_data": null,
  "success": true,
  "errors": [],
  "warnings": [],
  "information": []
}"""
V2_FAILED = json.dumps(
    {
        "extension_data": None,
        "success": False,
        "errors": [
            {
                "extension_data": None,
                "stack_trace": "at Document360.Drive.DeleteFileStatus() in C:\\src\\Drive.cs:42",
                "description": "Task id is invalid.",
                "error_code": "INVALID_TASK",
                "custom_data": {"taskId": "nope"},
            }
        ],
        "warnings": [],
        "information": [],
    }
).encode()

# V3 success envelopes (V3 API reference examples).
V3_TASK_COMPLETED = b"""{
"data": {
"task_id": "a3b4c5d6-1234-5678-9abc-def012345678",
"status": "Completed"
},
"success": true,
"request_id": "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
"errors": null,
"warnings": null
}"""
V3_TASK_PROCESSING = V3_TASK_COMPLETED.replace(b'"Completed"', b'"Processing"').replace(
    b"1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed", b"2c0e7f8a-ccfe-5c3e-ac6e-bc9e0cce5cfe"
)
V3_EXPORT_COMPLETED = b"""{
  "data": {
    "id": "f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b",
    "status": "Completed",
    "download_url": "https://storage.document360.io/exports/f1a2b3c4/export-2025-06-15.zip",
    "completed_at": "2025-06-15T12:00:00Z"
  },
  "success": true,
  "request_id": "d4e5f6a7-b8c9-0123-defa-234567890123",
  "errors": [],
  "warnings": []
}"""
V3_LOGS = b"""{
"data": [
{"id": "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "status": "Success",
 "created_at": "2025-09-25T14:30:00Z", "error_count": 0, "warning_count": 2},
{"id": "2b3c4d5e-6f7a-8b9c-0d1e-2f3a4b5c6d7e", "status": "Failed",
 "created_at": "2025-09-20T11:15:00Z", "error_count": 3, "warning_count": 0}
],
"success": true,
"request_id": "req_abc123def456",
"errors": null,
"warnings": null
}"""

HTML_502 = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx</center>
<script>var secret = "do-not-show";</script>
</body>
</html>
"""
AZURE_403 = (
    b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>'
    b"<Message>Server failed to authenticate the request.\nRequestId:abc\nTime:2026</Message>"
    b"</Error>"
)


def make(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
    url: str = URL,
    rate_limit: RateLimitState | None = None,
) -> Response:
    return Response(
        method=method,
        url=url,
        status=status,
        headers=headers if headers is not None else {},
        body=body,
        rate_limit=rate_limit if rate_limit is not None else RateLimitState(),
    )


# --- error_from_response: the vendor's problem bodies -----------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls", "message", "code"),
    [
        pytest.param(
            401,
            PROBLEM_401,
            AuthenticationError,
            "Unauthorized: The authentication token is missing or has expired.",
            "UNAUTHORIZED",
            id="401-unauthorized",
        ),
        pytest.param(
            404,
            PROBLEM_404,
            NotFound,
            "Not Found: The requested resource does not exist or has been deleted.",
            "RESOURCE_NOT_FOUND",
            id="404-not-found",
        ),
        pytest.param(
            429,
            PROBLEM_429,
            RateLimited,
            f"Too Many Requests: {RATE_LIMIT_TEXT}",
            "TOO_MANY_REQUESTS",
            id="429-too-many-requests",
        ),
        pytest.param(
            500,
            PROBLEM_500,
            ServerError,
            "Internal Server Error: An unexpected error occurred. Please try again or contact "
            "support.",
            "INTERNAL_SERVER_ERROR",
            id="500-internal-error",
        ),
    ],
)
def test_vendor_problem_bodies(
    status: int, body: bytes, cls: type[APIError], message: str, code: str
) -> None:
    state = RateLimitState(limit=60, remaining=0)
    error = error_from_response(make(status, body, PROBLEM, rate_limit=state), now=0.0)
    assert type(error) is cls
    assert error.message.startswith(message)
    assert error.status == status
    assert error.method == "GET"
    assert error.url == URL
    assert error.trace_id == "req_abc123def456"
    assert error.rate_limit is state
    assert [e.code for e in error.errors] == [code]
    assert "[trace req_abc123def456]" in str(error)
    assert f"GET {URL} -> {status}" in str(error)


def test_problem_error_entries_are_mapped_field_by_field() -> None:
    body = json.dumps(
        {
            "type": "https://developer.document360.com/errors/validation",
            "title": "Validation failed.",
            "status": 422,
            "detail": None,
            "trace_id": "t-1",
            "errors": [
                {
                    "code": "VALIDATION_ERROR",
                    "message": "must be one of pdf, html",
                    "field": "format",
                    "details": "got 'docx'",
                },
                {"code": "VALIDATION_ERROR", "message": "required", "field": "workspace_id"},
            ],
        }
    ).encode()
    error = error_from_response(make(422, body, PROBLEM, method="POST"), now=0.0)
    assert type(error) is ValidationError
    assert error.errors == (
        ErrorDetail("VALIDATION_ERROR", "must be one of pdf, html", "format", "got 'docx'"),
        ErrorDetail("VALIDATION_ERROR", "required", "workspace_id", None),
    )
    assert error.message == (
        "Validation failed: must be one of pdf, html (field 'format') (+1 more errors)"
    )


@pytest.mark.parametrize(
    ("retry_after", "reset_after", "expected"),
    [
        pytest.param(30.0, None, 1030.0, id="retry-after"),
        pytest.param(30.0, 50.0, 1030.0, id="retry-after-wins-over-reset"),
        pytest.param(None, 12.5, 1012.5, id="reset-as-fallback"),
        pytest.param(0.0, None, 1000.0, id="retry-after-zero"),
        pytest.param(None, None, None, id="unknown"),
    ],
)
def test_rate_limited_retry_at(
    retry_after: float | None, reset_after: float | None, expected: float | None
) -> None:
    state = RateLimitState(remaining=0, retry_after=retry_after, reset_after=reset_after)
    error = error_from_response(make(429, PROBLEM_429, PROBLEM, rate_limit=state), now=1000.0)
    assert isinstance(error, RateLimited)
    assert error.retry_at == expected
    assert error.rate_limit is state
    if expected is not None:
        assert "retry after" in error.message


# --- error_from_response: class by status ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, PermissionDenied),
        (404, NotFound),
        (409, APIError),
        (410, APIError),
        (422, ValidationError),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (599, ServerError),
        (302, APIError),
        (600, APIError),
    ],
    ids=lambda value: str(value) if isinstance(value, int) else value.__name__,
)
def test_class_by_status(status: int, cls: type[APIError]) -> None:
    error = error_from_response(make(status), now=0.0)
    assert type(error) is cls
    assert isinstance(error, APIError)
    assert error.status == status


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_error_from_response_refuses_success(status: int) -> None:
    with pytest.raises(ValueError, match="non-2xx"):
        error_from_response(make(status), now=0.0)


# --- error_from_response: bodies that are not problems ----------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "message"),
    [
        pytest.param(400, b"", {}, ValidationError, "Bad Request (empty body)", id="sd-400-empty"),
        pytest.param(404, b"", {}, NotFound, "Not Found (empty body)", id="sd-404-empty"),
        pytest.param(404, b"  \r\n ", {}, NotFound, "Not Found (empty body)", id="whitespace-only"),
        pytest.param(
            401,
            b"",
            {},
            AuthenticationError,
            "Unauthorized (empty body)",
            id="gateway-401-empty",
        ),
        pytest.param(
            401,
            b"",
            {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'},
            AuthenticationError,
            "Unauthorized: expired (empty body)",
            id="gateway-401-www-authenticate",
        ),
        pytest.param(
            502,
            HTML_502,
            HTML,
            ServerError,
            "Bad Gateway (HTML error page titled '502 Bad Gateway')",
            id="html-502",
        ),
        pytest.param(
            502,
            b"<!DOCTYPE html><p>upstream down</p>",
            {},
            ServerError,
            "Bad Gateway (HTML error page)",
            id="html-502-no-content-type-no-title",
        ),
        pytest.param(
            503,
            b"Service Unavailable",
            {"Content-Type": "text/html"},
            ServerError,
            "Service Unavailable (HTML error page)",
            id="html-content-type-plain-text",
        ),
        pytest.param(
            500,
            PROBLEM_500[:40],
            PROBLEM,
            ServerError,
            "Internal Server Error (truncated JSON)",
            id="truncated-problem",
        ),
        pytest.param(
            500,
            b'{"title": "x" "detail": 1}',
            JSON,
            ServerError,
            "Internal Server Error (malformed JSON)",
            id="malformed-json",
        ),
        pytest.param(
            500,
            b"\xff\xfe\x00garbage\x80",
            {},
            ServerError,
            "Internal Server Error (body is not UTF-8)",
            id="not-utf8",
        ),
        pytest.param(
            500,
            b"[1, 2, 3]",
            JSON,
            ServerError,
            "Internal Server Error (unexpected JSON an array)",
            id="json-array",
        ),
        pytest.param(
            500,
            b"{}",
            JSON,
            ServerError,
            "Internal Server Error (no error details)",
            id="json-empty-object",
        ),
        pytest.param(
            403,
            AZURE_403,
            {"Content-Type": "application/xml"},
            PermissionDenied,
            "Forbidden: AuthenticationFailed (XML body)",
            id="azure-sas-403-xml",
        ),
        pytest.param(
            400,
            V2_400,
            JSON,
            ValidationError,
            "Bad Request (no error details)",
            id="v2-400-vendor-example",
        ),
        pytest.param(
            400,
            V2_FAILED,
            JSON,
            ValidationError,
            "Bad Request: Task id is invalid.",
            id="v2-400-with-error",
        ),
        pytest.param(
            400,
            b'{"error": "invalid_client", "error_description": "Client authentication failed"}',
            JSON,
            ValidationError,
            "Bad Request: Client authentication failed",
            id="oauth-token-endpoint",
        ),
        pytest.param(
            400,
            b'{"type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",'
            b' "title": "One or more validation errors occurred.", "status": 400,'
            b' "traceId": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",'
            b' "errors": {"Format": ["The Format field is required."]}}',
            PROBLEM,
            ValidationError,
            "One or more validation errors occurred: The Format field is required. "
            "(field 'Format')",
            id="aspnet-validation-problem",
        ),
        pytest.param(
            409,
            b'{"message": "Export already running"}',
            JSON,
            APIError,
            "Conflict: Export already running",
            id="generic-message",
        ),
    ],
)
def test_unusual_error_bodies(
    status: int, body: bytes, headers: dict[str, str], cls: type[APIError], message: str
) -> None:
    error = error_from_response(make(status, body, headers), now=0.0)
    assert type(error) is cls
    assert error.message == message
    assert error.status == status
    assert "<" not in error.message


def test_html_page_is_summarised_never_quoted() -> None:
    page = b"<html><head><title>" + b"T" * 500 + b"</title></head><body>" + b"x" * 10_000
    error = error_from_response(make(502, page, HTML), now=0.0)
    assert "<" not in str(error)
    assert len(error.message) < 200
    assert "do-not-show" not in str(error_from_response(make(502, HTML_502, HTML), now=0.0))


def test_v2_stack_trace_never_kept() -> None:
    error = error_from_response(make(400, V2_FAILED, JSON, method="POST"), now=0.0)
    assert error.errors == (
        ErrorDetail(code="INVALID_TASK", message="Task id is invalid.", details={"taskId": "nope"}),
    )
    for text in (str(error), repr(error), repr(error.errors)):
        assert "Drive.cs" not in text
        assert "DeleteFileStatus" not in text


def test_long_server_text_is_bounded_and_single_line() -> None:
    body = json.dumps({"title": "Bad\n\tthing", "detail": "word " * 500}).encode()
    error = error_from_response(make(400, body, PROBLEM), now=0.0)
    assert "\n" not in error.message
    assert error.message.startswith("Bad thing: word word")
    assert len(error.message) <= 320
    assert error.message.endswith("…")


def test_ids_from_headers_when_the_body_has_none() -> None:
    headers = {
        "x-request-id": "rid-7",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    error = error_from_response(make(404, b"", headers), now=0.0)
    assert error.request_id == "rid-7"
    assert error.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_request_id_from_an_envelope_error_body() -> None:
    body = b'{"data": null, "success": false, "request_id": "r-9", "errors": [{"code": "X"}]}'
    error = error_from_response(make(409, body, JSON), now=0.0)
    assert error.request_id == "r-9"
    assert error.message == "Conflict: X"


def test_error_url_is_redacted_even_if_the_caller_forgot() -> None:
    signed = "https://u:pw@x.blob.core.windows.net/exports/a.zip?sv=2023-01-03&sr=b&sig=abc%2Bdef"
    error = error_from_response(make(403, AZURE_403, url=signed), now=0.0)
    for text in (str(error), repr(error), error.url or ""):
        assert "abc%2Bdef" not in text
        assert "pw" not in text
    assert (
        error.url == "https://x.blob.core.windows.net/exports/a.zip?sv=REDACTED&sr=b&sig=REDACTED"
    )


# --- Response.json() ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(V3_TASK_COMPLETED, "Completed", id="v3-task"),
        pytest.param(b"\xef\xbb\xbf" + V3_TASK_COMPLETED, "Completed", id="utf8-bom"),
    ],
)
def test_json_parses(body: bytes, expected: str) -> None:
    assert make(200, body, JSON).json()["data"]["status"] == expected


def test_json_with_a_wrong_html_content_type_still_parses() -> None:
    assert make(200, b'{"a": 1}', HTML).json() == {"a": 1}


@pytest.mark.parametrize(
    ("body", "headers", "note"),
    [
        pytest.param(b"", {}, "empty body", id="empty"),
        pytest.param(b"\n\n", JSON, "empty body", id="blank"),
        pytest.param(HTML_502, HTML, "HTML error page", id="html"),
        pytest.param(b"  <html><body>hi</body></html>", JSON, "HTML error page", id="html-as-json"),
        pytest.param(b"<p>oops", {}, "HTML error page", id="bare-markup"),
        pytest.param(AZURE_403, {}, "XML body", id="xml"),
        pytest.param(b'{"data": "\xe9t\xe9"}', JSON, "body is not UTF-8", id="latin1"),
        pytest.param(V3_TASK_COMPLETED[:50], JSON, "truncated JSON", id="truncated-mid-string"),
        pytest.param(V3_TASK_COMPLETED[:-3], JSON, "truncated JSON", id="truncated-near-end"),
        pytest.param(b'{"data": ', JSON, "truncated JSON", id="truncated-after-colon"),
        pytest.param(b"{'data': 1}", JSON, "malformed JSON", id="single-quotes"),
        pytest.param(b"  Service Unavailable", {}, "not JSON", id="plain-text"),
        pytest.param(b'{"a": 1} trailing', JSON, "malformed JSON", id="trailing-garbage"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, JSON, "JSON nested too deeply", id="deep"),
    ],
)
def test_json_malformed(body: bytes, headers: dict[str, str], note: str) -> None:
    response = make(200, body, {**headers, "X-Request-Id": "rid-1"})
    with pytest.raises(MalformedResponse) as excinfo:
        response.json()
    error = excinfo.value
    assert note in error.message
    assert error.status == 200
    assert error.method == "GET"
    assert error.url == URL
    assert error.request_id == "rid-1"
    assert error.__cause__ is None
    assert "<" not in str(error)


# --- unwrap_v3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            V3_TASK_COMPLETED,
            {"task_id": "a3b4c5d6-1234-5678-9abc-def012345678", "status": "Completed"},
            id="drive-task-completed",
        ),
        pytest.param(
            V3_TASK_PROCESSING,
            {"task_id": "a3b4c5d6-1234-5678-9abc-def012345678", "status": "Processing"},
            id="drive-task-processing",
        ),
        pytest.param(
            V3_EXPORT_COMPLETED,
            {
                "id": "f1a2b3c4-d5e6-7f89-0a1b-2c3d4e5f6a7b",
                "status": "Completed",
                "download_url": "https://storage.document360.io/exports/f1a2b3c4/export-2025-06-15.zip",
                "completed_at": "2025-06-15T12:00:00Z",
            },
            id="export-completed",
        ),
        pytest.param(b'{"data": null, "success": true}', None, id="null-data"),
        pytest.param(b'{"data": [], "success": true}', [], id="empty-list"),
        pytest.param(b'{"data": 3}', 3, id="no-success-key"),
    ],
)
def test_unwrap_v3(body: bytes, expected: Any) -> None:
    assert unwrap_v3(make(200, body, JSON)) == expected


def test_unwrap_v3_logs_list() -> None:
    data = unwrap_v3(make(200, V3_LOGS, JSON))
    assert [entry["status"] for entry in data] == ["Success", "Failed"]


def test_v3_request_id() -> None:
    response = make(200, V3_TASK_COMPLETED, JSON)
    assert response.request_id == "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed"
    assert response.trace_id is None


@pytest.mark.parametrize(
    ("errors", "cls"),
    [
        pytest.param(None, ValidationError, id="no-errors"),
        pytest.param([{"code": "VALIDATION_ERROR", "message": "bad"}], ValidationError, id="val"),
        pytest.param([{"code": "UNAUTHORIZED", "message": "no"}], AuthenticationError, id="401"),
        pytest.param([{"code": "RESOURCE_NOT_FOUND", "message": "gone"}], NotFound, id="404"),
        pytest.param([{"code": "too_many_requests"}], RateLimited, id="429-lowercase"),
        pytest.param([{"code": "INTERNAL_SERVER_ERROR"}], ServerError, id="500"),
        pytest.param([{"code": "SOMETHING_NEW", "message": "?"}], ValidationError, id="unknown"),
    ],
)
def test_unwrap_v3_success_false_on_200(errors: Any, cls: type[APIError]) -> None:
    body = json.dumps(
        {"data": None, "success": False, "request_id": "r-1", "errors": errors}
    ).encode()
    with pytest.raises(APIError) as excinfo:
        unwrap_v3(make(200, body, JSON))
    error = excinfo.value
    assert type(error) is cls
    assert error.status == 200
    assert error.request_id == "r-1"
    assert "success: false" in error.message
    if isinstance(error, RateLimited):
        assert error.retry_at is None


def test_unwrap_v3_success_false_message_uses_first_error() -> None:
    body = b'{"data": null, "success": false, "errors": [{"code": "X", "message": "no export"}]}'
    with pytest.raises(ValidationError, match=r"^Request failed: no export \(success: false\)"):
        unwrap_v3(make(200, body, JSON))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        pytest.param(b'{"success": true, "request_id": "r"}', "no 'data' key", id="missing-data"),
        pytest.param(b"[1, 2]", "got an array", id="array"),
        pytest.param(b'"text"', "got a str", id="string"),
        pytest.param(b"null", "got null", id="null"),
        pytest.param(b"", "empty body", id="empty"),
        pytest.param(HTML_502, "HTML error page", id="html"),
    ],
)
def test_unwrap_v3_malformed(body: bytes, match: str) -> None:
    with pytest.raises(MalformedResponse, match=match) as excinfo:
        unwrap_v3(make(200, body, JSON))
    assert excinfo.value.status == 200


# --- check_v2 ----------------------------------------------------------------------------------


def test_check_v2_vendor_success() -> None:
    payload = check_v2(make(200, V2_DELETE_STATUS, JSON))
    assert payload["task_status"] == {
        "task_id": "65868a00c536f34594713fec",
        "is_complete": True,
        "status": 2,
    }


@pytest.mark.parametrize(
    ("body", "errors", "message"),
    [
        pytest.param(V2_400, (), "Request failed (success: false)", id="vendor-400-on-200"),
        pytest.param(
            V2_FAILED,
            (ErrorDetail("INVALID_TASK", "Task id is invalid.", None, {"taskId": "nope"}),),
            "Request failed: Task id is invalid. (success: false)",
            id="with-error",
        ),
        pytest.param(
            b'{"success": false, "errors": [{"error_code": "E42", "stack_trace": "boom"}]}',
            (ErrorDetail(code="E42"),),
            "Request failed: E42 (success: false)",
            id="code-only",
        ),
    ],
)
def test_check_v2_success_false_on_200(
    body: bytes, errors: tuple[ErrorDetail, ...], message: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        check_v2(make(200, body, JSON))
    error = excinfo.value
    assert error.errors == errors
    assert error.message == message
    assert error.status == 200
    assert "boom" not in str(error)
    assert "Drive.cs" not in str(error)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        pytest.param(b"[]", "got an array", id="array"),
        pytest.param(b"", "empty body", id="empty"),
        pytest.param(V2_DELETE_STATUS[:30], "truncated JSON", id="truncated"),
    ],
)
def test_check_v2_malformed(body: bytes, match: str) -> None:
    with pytest.raises(MalformedResponse, match=match):
        check_v2(make(200, body, JSON))


# --- Response itself ---------------------------------------------------------------------------


def test_repr_shows_neither_body_nor_headers() -> None:
    response = make(
        200, b'{"secret": "s3cr3t"}', {"Set-Cookie": "session=abc"}, url=URL + "?api_token=t0k"
    )
    text = repr(response)
    assert text == f"<Response GET {URL}?api_token=REDACTED -> 200, 20 bytes>"
    assert "s3cr3t" not in text
    assert "abc" not in text


def test_headers_lookup_is_case_insensitive_for_plain_dicts() -> None:
    response = make(200, b"{}", {"content-TYPE": "Application/JSON; charset=utf-8"})
    assert response.content_type == "application/json"
    assert make(200).content_type == ""


@pytest.mark.parametrize(
    ("body", "headers", "request_id", "trace_id"),
    [
        pytest.param(PROBLEM_404, {}, None, "req_abc123def456", id="problem-body"),
        pytest.param(b"", {"Request-Id": "h-1", "X-Trace-Id": "t-2"}, "h-1", "t-2", id="headers"),
        pytest.param(b"", {"traceparent": "garbage"}, None, None, id="bad-traceparent"),
        pytest.param(b'{"requestId": 17}', {}, "17", None, id="camel-case-int"),
        pytest.param(b'{"request_id": true}', {}, None, None, id="bool-ignored"),
        pytest.param(b"<html>", {"X-Request-Id": "h-3"}, "h-3", None, id="html-header-only"),
    ],
)
def test_ids(
    body: bytes, headers: dict[str, str], request_id: str | None, trace_id: str | None
) -> None:
    response = make(404, body, headers)
    assert response.request_id == request_id
    assert response.trace_id == trace_id


def test_response_is_frozen_and_identity_hashed() -> None:
    response = make(200)
    with pytest.raises(AttributeError):
        response.status = 500  # type: ignore[misc]
    assert {response: 1}[response] == 1
    assert response.is_success
    assert not make(404).is_success


# --- properties over arbitrary input -----------------------------------------------------------

_content_types = st.sampled_from(
    ["", "application/json", "application/problem+json", "text/html", "text/xml", "text/plain"]
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "data",
                    "success",
                    "errors",
                    "title",
                    "detail",
                    "code",
                    "message",
                    "error_code",
                    "description",
                    "trace_id",
                    "request_id",
                    "field",
                    "stack_trace",
                    "status",
                    "x",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)
_bodies = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda value: json.dumps(value).encode()),
    _json_values.map(lambda value: json.dumps(value).encode()[:-1]),
    st.text(max_size=100).map(lambda text: ("<html>" + text).encode()),
)
_error_statuses = st.integers(100, 199) | st.integers(300, 700)


@settings(max_examples=60, deadline=None, database=None)
@given(body=_bodies, content_type=_content_types, status=st.integers(100, 700))
def test_json_only_returns_or_raises_malformed(body: bytes, content_type: str, status: int) -> None:
    response = make(status, body, {"Content-Type": content_type})
    outcome: object
    try:
        outcome = response.json()
    except MalformedResponse as exc:
        outcome = exc
    assert not isinstance(outcome, BaseException) or getattr(outcome, "status", None) == status
    for prop in (response.request_id, response.trace_id):
        assert prop is None or isinstance(prop, str)


@settings(max_examples=60, deadline=None, database=None)
@given(body=_bodies, content_type=_content_types, status=_error_statuses)
def test_error_from_response_is_total(body: bytes, content_type: str, status: int) -> None:
    error = error_from_response(make(status, body, {"Content-Type": content_type}), now=0.0)
    assert isinstance(error, APIError)
    assert error.status == status
    text = str(error)
    assert "<html" not in text
    assert "\n" not in error.message
    repr(error)


@settings(max_examples=60, deadline=None, database=None)
@given(body=_bodies, status=st.integers(200, 299))
def test_envelope_readers_raise_only_our_errors(body: bytes, status: int) -> None:
    response = make(status, body, JSON)
    for reader in (unwrap_v3, check_v2):
        raised: D360Error | None = None
        try:
            reader(response)
        except D360Error as exc:
            raised = exc
        assert raised is None or raised.status == status
