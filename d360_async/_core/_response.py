"""What came back from the server, and how it becomes data or an exception, without I/O.

The transport builds a `Response` from each exchange and, for a non-2xx status, raises
``error_from_response(response, now=time.time())``. Resources then read 2xx bodies with
`unwrap_v3` or `check_v2`. Everything here is synchronous and total: any bytes at all
decode either to data or to one of our exceptions, never to a ``KeyError`` or
``UnicodeDecodeError``.

Body shapes handled (as the vendor's API reference shows them):

* V3 success envelope ``{data, success, request_id, errors, warnings}``;
* V3 errors as RFC 7807 ``application/problem+json``
  ``{type, title, status, detail, instance, trace_id, errors[{code, message, field, details}]}``;
* the V2 envelope ``{extension_data, success, errors[{stack_trace, description, error_code,
  custom_data}], warnings, information}``, where ``success: false`` is an error even on 200;
* empty bodies (SmartDocumentor answers 400 and 404 with no content; a gateway 401 may too);
* anything a proxy or storage account sends: HTML error pages, XML, truncated or binary bodies.
"""

from __future__ import annotations

import html
import http
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

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
from d360_async._core._redact import redact_url, scrub

__all__ = ["Response", "check_v2", "error_from_response", "unwrap_v3"]

# Headers that may carry a correlation id when the body has none (gateways, Azure storage).
_REQUEST_ID_HEADERS = ("X-Request-Id", "Request-Id", "X-Correlation-Id", "X-Ms-Request-Id")
_TRACE_ID_HEADERS = ("X-Trace-Id", "Trace-Id")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")

_MESSAGE_LIMIT = 300
_ID_LIMIT = 128

_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_XML_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_WWW_AUTH_PARAM = re.compile(r'(error_description|error)="([^"]*)"')

# Picks the exception class when a V3 envelope says ``success: false`` on a 2xx status. The
# vendor's pages document UNAUTHORIZED, RESOURCE_NOT_FOUND, TOO_MANY_REQUESTS,
# INTERNAL_SERVER_ERROR and VALIDATION_ERROR as ``ApiError.code`` values; FORBIDDEN and NOT_FOUND
# are their obvious siblings.
_CLASS_BY_CODE: dict[str, type[APIError]] = {
    "UNAUTHORIZED": AuthenticationError,
    "FORBIDDEN": PermissionDenied,
    "RESOURCE_NOT_FOUND": NotFound,
    "NOT_FOUND": NotFound,
    "TOO_MANY_REQUESTS": RateLimited,
    "INTERNAL_SERVER_ERROR": ServerError,
    "VALIDATION_ERROR": ValidationError,
}


class _Unreadable(Exception):
    """Why a body is not JSON; ``note`` is a short phrase safe to put in a message."""

    def __init__(self, note: str, detail: str | None = None) -> None:
        super().__init__(note)
        self.note = note
        self.detail = detail


@attrs.frozen(eq=False, repr=False)
class Response:
    """One HTTP response, fully read.

    ``url`` is redacted on construction (signatures and tokens replaced), so no code holding a
    `Response` can leak a signed link. ``headers`` should be case-insensitive (aiohttp's
    ``CIMultiDictProxy``); lookups here also tolerate a plain ``dict``.
    """

    method: str
    url: str = attrs.field(converter=redact_url)
    status: int
    headers: Mapping[str, str]
    body: bytes
    rate_limit: RateLimitState = attrs.field(factory=RateLimitState)

    def __repr__(self) -> str:
        # Bodies can be large and headers may hold cookies: neither belongs in a repr.
        return f"<Response {self.method} {self.url} -> {self.status}, {len(self.body)} bytes>"

    @property
    def is_success(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased; ``""`` when absent."""
        value = _header(self.headers, "Content-Type") or ""
        return value.partition(";")[0].strip().lower()

    @property
    def request_id(self) -> str | None:
        """``request_id`` from a JSON body, else a request-id header; ``None`` when neither."""
        return _body_id(self, "request_id", "requestId") or _header_id(
            self.headers, _REQUEST_ID_HEADERS
        )

    @property
    def trace_id(self) -> str | None:
        """``trace_id`` from a problem body, else a trace header or ``traceparent``."""
        return (
            _body_id(self, "trace_id", "traceId")
            or _header_id(self.headers, _TRACE_ID_HEADERS)
            or _traceparent_id(self.headers)
        )

    def json(self) -> Any:
        """Parse the body as JSON.

        Raises:
            MalformedResponse: the body is empty, an HTML (or XML) page, not UTF-8, truncated or
                otherwise not JSON. The message says which, without quoting the body.
        """
        try:
            return _parse(self)
        except _Unreadable as exc:
            detail = f": {exc.detail}" if exc.detail else ""
            raise self._malformed(f"Unreadable response body ({exc.note}{detail})") from None

    def _malformed(self, message: str) -> MalformedResponse:
        return MalformedResponse(
            message,
            method=self.method,
            url=self.url,
            status=self.status,
            request_id=_header_id(self.headers, _REQUEST_ID_HEADERS),
            trace_id=_header_id(self.headers, _TRACE_ID_HEADERS) or _traceparent_id(self.headers),
            rate_limit=self.rate_limit,
        )


def error_from_response(response: Response, *, now: float) -> D360Error:
    """Decode a non-2xx response into the most specific exception, ready to raise.

    The class follows the status (401 [AuthenticationError][d360_async.AuthenticationError], 403
    [PermissionDenied][d360_async.PermissionDenied], 404 [NotFound][d360_async.NotFound], 400/422
    [ValidationError][d360_async.ValidationError], 429 [RateLimited][d360_async.RateLimited], 5xx
    [ServerError][d360_async.ServerError], any other [APIError][d360_async.APIError]); the message
    comes from the body when it says something (problem ``title``/``detail``, the first entry of
    ``errors``), else from the reason phrase plus a note on what the body was ("empty body", "HTML
    error page"). V2 ``stack_trace`` values are dropped; raw HTML is never quoted.

    ``now`` is wall-clock epoch seconds (``time.time()``); a [RateLimited][d360_async.RateLimited]
    gets ``retry_at = now + Retry-After`` (or ``+ X-RateLimit-Reset`` as a delay) when the response
    said how long to wait.
    """
    if response.is_success:
        raise ValueError(f"error_from_response needs a non-2xx response, got {response.status}")
    status = response.status
    cls = _class_for_status(status)
    content = _read_error_body(response)
    message = _compose(_reason(status), content.title, content.detail, content.errors, content.note)
    retry_at = None
    if cls is RateLimited:
        wait = _wait_hint(response.rate_limit)
        if wait is not None:
            retry_at = now + wait
            message += f" (retry after {wait:g} s)"
    return _build(
        cls,
        message,
        response,
        errors=content.errors,
        request_id=content.request_id or _header_id(response.headers, _REQUEST_ID_HEADERS),
        trace_id=content.trace_id
        or _header_id(response.headers, _TRACE_ID_HEADERS)
        or _traceparent_id(response.headers),
        retry_at=retry_at,
    )


def unwrap_v3(response: Response) -> Any:
    """Return ``data`` from a V3 success envelope ``{data, success, request_id, errors, ...}``.

    Raises:
        MalformedResponse: the body is not JSON, not an object, or has no ``data`` key.
        ValidationError: ``success`` is ``false`` (even on HTTP 200), unless an error ``code``
            the vendor documents (``UNAUTHORIZED``, ``RESOURCE_NOT_FOUND``,
            ``TOO_MANY_REQUESTS``...) names a more specific class.
    """
    payload = response.json()
    if not isinstance(payload, dict):
        raise response._malformed(
            f"Expected a V3 envelope (JSON object), got {_json_kind(payload)}"
        )
    # The request id only goes into an exception, so it is looked up only on the way to one.
    if payload.get("success") is False:
        errors = _error_details(payload.get("errors"))
        cls: type[APIError] = ValidationError
        for error in errors:
            if error.code and error.code.upper() in _CLASS_BY_CODE:
                cls = _CLASS_BY_CODE[error.code.upper()]
                break
        message = _compose(
            "Request failed",
            _clean(payload.get("title")),
            _clean(payload.get("detail")),
            errors,
            "success: false",
        )
        # No clock here, so a RateLimited raised from a 2xx body has no retry_at; its
        # rate_limit attribute still carries what the headers said.
        raise _build(
            cls,
            message,
            response,
            errors=errors,
            request_id=_envelope_request_id(payload, response),
            trace_id=_clean_id(payload.get("trace_id")),
            retry_at=None,
        )
    if "data" not in payload:
        raise _build(
            MalformedResponse,
            "V3 envelope has no 'data' key",
            response,
            errors=(),
            request_id=_envelope_request_id(payload, response),
            trace_id=None,
            retry_at=None,
        )
    return payload["data"]


def _envelope_request_id(payload: Mapping[str, Any], response: Response) -> str | None:
    return _clean_id(payload.get("request_id")) or response.request_id


def check_v2(response: Response) -> Mapping[str, Any]:
    """Return a V2 payload after checking its envelope.

    The V2 API reports failure in the body: ``success: false`` is an error even with HTTP 200
    (V2 API reference, "Get the status of the delete-file operation"), so every V2 read goes
    through here.

    Raises:
        MalformedResponse: the body is not JSON or not an object.
        ValidationError: ``success`` is ``false``; ``errors`` holds the V2 errors as
            [ErrorDetail][d360_async.ErrorDetail] (``code=error_code``, ``message=description``).
    """
    payload = response.json()
    if not isinstance(payload, dict):
        raise response._malformed(
            f"Expected a V2 envelope (JSON object), got {_json_kind(payload)}"
        )
    if payload.get("success") is False:
        errors = _error_details(payload.get("errors"))
        message = _compose("Request failed", None, None, errors, "success: false")
        raise _build(
            ValidationError,
            message,
            response,
            errors=errors,
            request_id=response.request_id,
            trace_id=None,
            retry_at=None,
        )
    return payload


# --- error bodies ------------------------------------------------------------------------------


@attrs.frozen
class _ErrorContent:
    """What an error body said, already cleaned for use in a message."""

    title: str | None = None
    detail: str | None = None
    errors: tuple[ErrorDetail, ...] = ()
    request_id: str | None = None
    trace_id: str | None = None
    note: str | None = None


def _read_error_body(response: Response) -> _ErrorContent:
    """Extract what is useful from any error body; never raises."""
    try:
        payload = _parse(response)
    except _Unreadable as exc:
        return _unreadable_content(response, exc.note)
    if not isinstance(payload, dict):
        return _ErrorContent(note=f"unexpected JSON {_json_kind(payload)}")
    errors = _error_details(payload.get("errors"))
    # OAuth2 token endpoints (SmartDocumentor's /connect/token) answer {error, error_description}.
    oauth_error = payload.get("error")
    if not errors and isinstance(oauth_error, str):
        errors = (
            ErrorDetail(code=_clean(oauth_error), message=_clean(payload.get("error_description"))),
        )
    detail = _clean(payload.get("detail")) or _clean(payload.get("message"))
    return _ErrorContent(
        title=_clean(payload.get("title")),
        detail=detail,
        errors=errors,
        request_id=_clean_id(payload.get("request_id")) or _clean_id(payload.get("requestId")),
        trace_id=_clean_id(payload.get("trace_id")) or _clean_id(payload.get("traceId")),
        note=None if (detail or errors or payload.get("title")) else "no error details",
    )


def _unreadable_content(response: Response, note: str) -> _ErrorContent:
    """Summarise a body that is not JSON: empty, HTML, XML or garbage."""
    body = response.body
    if note == "empty body" and response.status == 401:
        # A gateway 401 may come with no body; RFC 6750 puts the reason in WWW-Authenticate.
        params = dict(_WWW_AUTH_PARAM.findall(_header(response.headers, "WWW-Authenticate") or ""))
        description = _clean(params.get("error_description"))
        code = _clean(params.get("error"))
        if description or code:
            return _ErrorContent(
                detail=description or code,
                errors=(ErrorDetail(code=code, message=description),),
                note=note,
            )
    if note == "HTML error page":
        match = _HTML_TITLE.search(body[:4096])
        title = _clean(html.unescape(match.group(1).decode("utf-8", "replace"))) if match else None
        if title:
            return _ErrorContent(note=f"HTML error page titled {title[:80]!r}")
    if note == "XML body":
        # Azure storage refuses an expired SAS link with <Error><Code>AuthenticationFailed</Code>.
        match = _XML_CODE.search(body[:4096])
        code = _clean(match.group(1).decode("utf-8", "replace")) if match else None
        if code:
            return _ErrorContent(detail=code, errors=(ErrorDetail(code=code),), note=note)
    return _ErrorContent(note=note)


def _error_details(raw: Any) -> tuple[ErrorDetail, ...]:
    """Map V3 ``errors[{code, message, field, details}]`` and V2 ``errors[{error_code,
    description, custom_data, stack_trace}]`` to [ErrorDetail][d360_async.ErrorDetail].

    ``stack_trace`` is dropped on purpose: it is the server's internals, not the caller's
    business, and can be kilobytes long. ASP.NET's ``{"field": ["message", ...]}`` form is
    accepted too, since the vendor's stack is ASP.NET.
    """
    details: list[ErrorDetail] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                details.append(
                    ErrorDetail(
                        code=_clean(item.get("code")) or _clean(item.get("error_code")),
                        message=_clean(item.get("message")) or _clean(item.get("description")),
                        field=_clean(item.get("field")),
                        details=item["details"]
                        if item.get("details") is not None
                        else item.get("custom_data"),
                    )
                )
            elif (text := _clean(item)) is not None:
                details.append(ErrorDetail(message=text))
    elif isinstance(raw, dict):
        for field, messages in raw.items():
            for text in messages if isinstance(messages, list) else [messages]:
                details.append(ErrorDetail(message=_clean(text), field=_clean(field)))
    return tuple(details)


def _compose(
    head: str,
    title: str | None,
    detail: str | None,
    errors: tuple[ErrorDetail, ...],
    note: str | None,
) -> str:
    """``"<title or head>: <detail or first error>"`` plus a note on the body, if any."""
    head = (title or head).rstrip(". ")
    tail = detail
    if tail is None:
        first = next((e for e in errors if e.message or e.code), None)
        if first is not None:
            tail = first.message or first.code
            if first.field:
                tail = f"{tail} (field {first.field!r})"
    message = head if not tail or _same(tail, head) else f"{head}: {tail}"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more errors)"
    if note:
        message += f" ({note})"
    return message


def _same(a: str, b: str) -> bool:
    return a.rstrip(". ").casefold() == b.rstrip(". ").casefold()


def _class_for_status(status: int) -> type[APIError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDenied
    if status == 404:
        return NotFound
    if status in (400, 422):
        return ValidationError
    if status == 429:
        return RateLimited
    if 500 <= status <= 599:
        return ServerError
    return APIError


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _wait_hint(state: RateLimitState) -> float | None:
    """Seconds until a retry may succeed: Retry-After first, else the window reset."""
    for value in (state.retry_after, state.reset_after):
        if value is not None and value >= 0:
            return value
    return None


def _build(
    cls: type[D360Error],
    message: str,
    response: Response,
    *,
    errors: tuple[ErrorDetail, ...],
    request_id: str | None,
    trace_id: str | None,
    retry_at: float | None,
) -> D360Error:
    common: dict[str, Any] = {
        "method": response.method,
        "url": response.url,
        "status": response.status,
        "request_id": request_id,
        "trace_id": trace_id,
        "errors": errors,
        "rate_limit": response.rate_limit,
    }
    if issubclass(cls, RateLimited):
        return cls(message, retry_at=retry_at, **common)
    return cls(message, **common)


# --- parsing -----------------------------------------------------------------------------------


def _parse(response: Response) -> Any:
    """Parse the body as JSON or raise `_Unreadable` saying why not."""
    body = response.body.removeprefix(b"\xef\xbb\xbf")
    stripped = body.strip()
    if not stripped:
        raise _Unreadable("empty body")
    first = stripped[:1]
    if first == b"<":
        # Markup is never JSON. Proxies send HTML error pages (a 502 from a load balancer);
        # Azure storage answers an expired SAS link with XML.
        content_type = response.content_type
        is_html = "html" in content_type or _looks_like_html(stripped)
        if not is_html and ("xml" in content_type or stripped.startswith((b"<?xml", b"<Error"))):
            raise _Unreadable("XML body")
        raise _Unreadable("HTML error page")
    if first not in (b"{", b"[") and "html" in response.content_type:
        raise _Unreadable("HTML error page")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Unreadable("body is not UTF-8", f"invalid byte at offset {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The parser stopping at the very end, or a document that never closes its strings,
        # objects or arrays, means the body was cut short (a dropped connection, a proxy's size
        # limit) rather than badly written.
        if exc.pos >= len(text.rstrip()) or _is_unclosed(text):
            raise _Unreadable("truncated JSON", f"{len(body)} bytes") from None
        if not text[: exc.pos].strip():
            # Not even the first character is JSON: plain text from a proxy or a stub server.
            raise _Unreadable("not JSON") from None
        raise _Unreadable("malformed JSON", f"{exc.msg} at offset {exc.pos}") from None
    except ValueError:
        # Valid JSON that Python refuses to read: an integer longer than the interpreter's
        # limit on digits (4,300 by default, a guard against quadratic-time conversion).
        raise _Unreadable("malformed JSON", "a number too long to read") from None
    except RecursionError:
        raise _Unreadable("JSON nested too deeply") from None


def _is_unclosed(text: str) -> bool:
    """True when ``text`` ends inside a string or with brackets still open."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return in_string or depth > 0


def _looks_like_html(stripped: bytes) -> bool:
    head = stripped[:512].lower()
    return head.startswith((b"<!doctype html", b"<html")) or any(
        tag in head for tag in (b"<html", b"<head", b"<body", b"<title", b"<h1", b"<center")
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _clean(value: Any, limit: int = _MESSAGE_LIMIT) -> str | None:
    """A server-provided string made safe for a message: one line, no markup, bounded length."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    # Scrubbed before it is cut: a credential cut in half would no longer be recognised.
    text = scrub(" ".join(str(value).split()))
    if not text or (text.startswith("<") and ">" in text):
        return None
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _clean_id(value: Any) -> str | None:
    return _clean(value, _ID_LIMIT)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):
        # A plain dict (tests, custom transports) is case-sensitive; fall back to a scan.
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _header_id(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if (value := _clean_id(_header(headers, name))) is not None:
            return value
    return None


def _traceparent_id(headers: Mapping[str, str]) -> str | None:
    # W3C Trace Context: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>".
    match = _TRACEPARENT.match((_header(headers, "traceparent") or "").strip().lower())
    return match.group(1) if match else None


def _body_id(response: Response, *keys: str) -> str | None:
    try:
        payload = _parse(response)
    except _Unreadable:
        return None
    if not isinstance(payload, dict):
        return None
    for key in keys:
        if (value := _clean_id(payload.get(key))) is not None:
            return value
    return None
