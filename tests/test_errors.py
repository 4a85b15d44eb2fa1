"""The exception tree: shape, attributes and how errors print."""

from __future__ import annotations

import builtins

import attrs
import pytest

from d360_async._core import _errors
from d360_async._core._errors import (
    APIError,
    AuthenticationError,
    CheckpointError,
    ConnectError,
    ConnectTimeout,
    CredentialsUnavailable,
    D360Error,
    DownloadLinkExpired,
    ErrorDetail,
    MalformedResponse,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ServerError,
    TimeoutError,
    TransportError,
    ValidationError,
    WatchError,
)
from d360_async._core._ratelimit._headers import RateLimitState
from d360_async._core._redact import Secret


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (TransportError, D360Error),
        (ConnectError, TransportError),
        (TimeoutError, TransportError),
        (TimeoutError, builtins.TimeoutError),
        (ConnectTimeout, ConnectError),
        (ConnectTimeout, TimeoutError),
        (ProtocolError, TransportError),
        (APIError, D360Error),
        (AuthenticationError, APIError),
        (PermissionDenied, APIError),
        (NotFound, APIError),
        (ValidationError, APIError),
        (RateLimited, APIError),
        (ServerError, APIError),
        (MalformedResponse, D360Error),
        (DownloadLinkExpired, D360Error),
        (WatchError, D360Error),
        (CredentialsUnavailable, AuthenticationError),
        (CheckpointError, D360Error),
        (CheckpointError, ValueError),
        (D360Error, Exception),
    ],
    ids=lambda cls: cls.__name__,
)
def test_tree(cls: type[BaseException], parent: type[BaseException]) -> None:
    assert issubclass(cls, parent)


@pytest.mark.parametrize(
    ("cls", "not_parent"),
    [
        (MalformedResponse, APIError),
        (MalformedResponse, TransportError),
        (APIError, TransportError),
        (ConnectError, builtins.TimeoutError),
    ],
    ids=lambda cls: cls.__name__,
)
def test_families_do_not_overlap(cls: type[BaseException], not_parent: type[BaseException]) -> None:
    assert not issubclass(cls, not_parent)


def test_all_names_exist_and_every_exception_is_a_d360_error() -> None:
    assert _errors.__all__ == sorted(_errors.__all__)
    for name in _errors.__all__:
        value = getattr(_errors, name)
        assert name == "ErrorDetail" or issubclass(value, D360Error)


def test_attributes_and_defaults() -> None:
    error = D360Error("boom")
    assert (error.message, error.method, error.url, error.status) == ("boom", None, None, None)
    assert (error.request_id, error.trace_id, error.errors, error.rate_limit) == (
        None,
        None,
        (),
        None,
    )
    assert str(error) == "boom"


def test_errors_become_a_tuple() -> None:
    details = [ErrorDetail(code="A"), ErrorDetail(code="B")]
    error = ValidationError("bad", errors=details)
    details.append(ErrorDetail(code="C"))
    assert error.errors == (ErrorDetail(code="A"), ErrorDetail(code="B"))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({}, "Not Found", id="bare"),
        pytest.param(
            {"method": "GET", "url": "https://h/x"}, "Not Found (GET https://h/x)", id="request"
        ),
        pytest.param(
            {"method": "GET", "url": "https://h/x", "status": 404},
            "Not Found (GET https://h/x -> 404)",
            id="request-and-status",
        ),
        pytest.param(
            {
                "method": "GET",
                "url": "https://h/x",
                "status": 404,
                "trace_id": "t1",
                "request_id": "r1",
            },
            "Not Found (GET https://h/x -> 404) [trace t1]",
            id="trace-wins",
        ),
        pytest.param({"request_id": "r1"}, "Not Found [trace r1]", id="request-id"),
    ],
)
def test_str(kwargs: dict[str, object], expected: str) -> None:
    assert str(NotFound("Not Found", **kwargs)) == expected  # type: ignore[arg-type]


def test_repr() -> None:
    error = ServerError("Bad Gateway", status=502, url="https://h/x?sig=REDACTED")
    assert repr(error) == "ServerError('Bad Gateway', status=502, url='https://h/x?sig=REDACTED')"


def test_rate_limited() -> None:
    state = RateLimitState(retry_after=3.0)
    error = RateLimited("slow down", retry_at=10.0, status=429, rate_limit=state)
    assert (error.retry_at, error.status, error.rate_limit) == (10.0, 429, state)
    assert RateLimited("x").retry_at is None


def test_timeout_is_caught_by_builtin_handlers() -> None:
    with pytest.raises(builtins.TimeoutError):
        raise TimeoutError("read timeout", method="GET", url="https://h")


def test_error_detail() -> None:
    detail = ErrorDetail(code="E", message="m", field="f", details={"k": 1})
    assert detail == ErrorDetail("E", "m", "f", {"k": 1})
    assert ErrorDetail() == ErrorDetail(None, None, None, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        detail.code = "X"  # type: ignore[misc]


def test_chaining_is_preserved() -> None:
    cause = OSError("reset")
    error = ProtocolError("connection dropped")
    with pytest.raises(D360Error) as excinfo:
        raise error from cause
    assert excinfo.value.__cause__ is cause


def test_an_error_scrubs_what_it_is_built_from() -> None:
    held = Secret("held-token-Abc123")
    error = NotFound(
        "token 'Bearer held-token-Abc123' is not valid; refused https://x/y?sig=s1gn4ture",
        method="GET",
        url="https://x/y?sv=1&sig=s1gn4ture&se=2",
        status=404,
        request_id="held-token-Abc123",
        trace_id="Bearer other-token-Xyz",
        errors=[
            ErrorDetail(
                code="held-token-Abc123",
                message="api_token: v2-raw-Secret9",
                field="sig=s1gn4ture",
                details={"echo": ["held-token-Abc123", {"nested": "Bearer zz-Top-Secret"}]},
            )
        ],
    )
    texts = [str(error), repr(error), error.message, repr(error.errors), error.url or ""]
    texts += [error.request_id or "", error.trace_id or ""]
    for text in texts:
        for leaked in ("held-token-Abc123", "s1gn4ture", "other-token-Xyz", "v2-raw-Secret9"):
            assert leaked not in text, text
        assert "zz-Top-Secret" not in text
    assert error.url == "https://x/y?sv=REDACTED&sig=REDACTED&se=REDACTED"
    assert error.cause_type is None
    del held


def test_checkpoint_error_is_the_documented_value_error() -> None:
    with pytest.raises(ValueError, match="damaged"):
        raise CheckpointError("checkpoint is damaged")
