"""Fuzzing every decoder: random bytes, JSON and header values in, only data or our errors out.

``tests/test_response.py`` already covers ``Response.json``, ``error_from_response`` and the
envelope readers over random bodies with plain headers; this module adds random *headers*
everywhere, every body decoder the resources use with every model (bodies shaped like the
model, with random values, missing and extra keys), the status normalisers on arbitrary JSON,
the SmartDocumentor token answer, the rate-limit header parsers, checkpoints and target specs.

"Our errors" are :class:`~d360_async.D360Error` subclasses, plus :class:`ValueError` where an
API documents it (checkpoints, target specs).  Whatever comes out must also print: ``str`` and
``repr`` of a result or an error never raise.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import string
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from d360_async import (
    ApiReferenceImport,
    ApiReferenceLogDetail,
    D360Error,
    DriveTask,
    Export,
    ExportStarted,
    Import,
    ImportStarted,
    Phase,
    RateLimited,
    SmartDocumentorTask,
    TargetKind,
    V2DeleteFileStatus,
    V2Export,
    V2Import,
)
from d360_async._clients._client import Client
from d360_async._core._ratelimit._headers import MAX_COUNT, MAX_DELAY
from d360_async._core._response import Response, check_v2, error_from_response, unwrap_v3
from d360_async._core._status import (
    StatusReading,
    normalise_smartdocumentor,
    normalise_v2,
    normalise_v2_task,
    normalise_v3,
)
from d360_async._core._watch._checkpoint import load_checkpoint
from d360_async._limiters import parse_rate_limit, parse_retry_after
from d360_async._resources import api_references, drive, exports, imports, v2
from d360_async._resources._base import decode_accepted, decode_v2, decode_v3
from d360_async._resources.smartdocumentor import _decode_page, _decode_task
from d360_async._watch._watch import watch
from d360_async.smartdocumentor import ClientCredentialsAuth

# ``D360_FUZZ_EXAMPLES=5000 pytest tests/reliability/test_decoder_fuzz.py`` fuzzes for longer.
FUZZ = settings(
    max_examples=int(os.environ.get("D360_FUZZ_EXAMPLES", "80")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
URL = "https://apihub.document360.io/v3/projects/p/exports/e?sig=SIGNATURE&se=2030"

# -- strategies -------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**60)
    | st.floats()  # NaN and infinities too: Python's json writes and reads them
    | st.text(max_size=30)
    | st.sampled_from(["Completed", "Failed", "InProgress", "", " ", "2024-01-01T00:00:00Z"])
    | st.uuids().map(str)
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_timestamps = st.datetimes().map(lambda d: d.isoformat()) | st.sampled_from(
    ["2024-05-01T10:00:00.1234567Z", "2024-13-40T99:00:00", "yesterday", "2024-05-01"]
)
_field_values = (
    json_values
    | _timestamps
    | st.integers(-5, 50)
    | st.uuids().map(str)
    | st.sampled_from(["Pending", "Processing", "Success", "InReview", "ExportCompleted"])
)


def _field_names(cls: type[Any]) -> list[str]:
    names = [field.name for field in attrs.fields(cls)]
    if cls is SmartDocumentorTask:  # camelCase on the wire
        names = [n.split("_")[0] + "".join(p.title() for p in n.split("_")[1:]) for n in names]
    return names


def shaped(cls: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with (some of) the model's keys, random values, and maybe extra keys."""
    names = _field_names(cls)
    return st.builds(
        lambda present, extra: {**present, **extra},
        st.fixed_dictionaries({}, optional=dict.fromkeys(names, _field_values)),
        st.dictionaries(st.text(max_size=6), json_values, max_size=2),
    )


def _envelope_v3(data: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {"data": data},
        optional={
            "success": st.booleans() | json_values,
            "errors": json_values,
            "request_id": json_values,
            "warnings": json_values,
        },
    )


def _envelope_v2(body: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda inner, success: {**inner, **success},
        body,
        st.fixed_dictionaries({}, optional={"success": st.booleans(), "errors": json_values}),
    )


def _encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda value: json.dumps(value).encode())


def bodies(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Mostly well-formed JSON of ``values``, sometimes cut short or replaced by noise."""
    encoded = _encoded(values)
    return st.one_of(
        encoded,
        encoded,
        encoded.map(lambda b: b[: len(b) // 2]),
        st.binary(max_size=80),
        st.sampled_from([b"", b"<html><title>502</title></html>", b"\xef\xbb\xbf{}", b"null"]),
        st.integers(min_value=4, max_value=6).map(lambda n: b'{"data": ' + b"9" * 10**n + b"}"),
    )


_header_names = st.sampled_from(
    [
        "Content-Type",
        "Retry-After",
        "retry-after-ms",
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Date",
        "WWW-Authenticate",
        "X-Request-Id",
        "Request-Id",
        "X-Trace-Id",
        "traceparent",
        "Operation-Location",
        "Content-Encoding",
    ]
)
header_values = st.one_of(
    st.text(max_size=40),
    st.text(string.printable, max_size=40),
    st.integers().map(str),
    st.floats().map(str),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.sampled_from(
        [
            "application/json",
            "application/problem+json; charset=utf-8",
            "text/html",
            'Bearer error="invalid_token", error_description="expired"',
            "http://[::1",
            "https://apihub.document360.io/v3/projects/p/exports/",
            "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            "1e400",
            "9" * 300,  # 309 digits and more: see test_a_huge_rate_limit_number below
            "gzip",
        ]
    ),
)


@st.composite
def headers(draw: st.DrawFn) -> CIMultiDictProxy[str]:
    pairs = draw(st.lists(st.tuples(_header_names, header_values), max_size=6))
    return CIMultiDictProxy(CIMultiDict(pairs))


NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def response(status: int, body: bytes, header_map: CIMultiDictProxy[str]) -> Response:
    return Response(method="GET", url=URL, status=status, headers=header_map, body=body)


# -- the property -----------------------------------------------------------------------------


def total(
    call: Callable[[], Any],
    *,
    allowed: tuple[type[BaseException], ...] = (D360Error,),
    result: type | tuple[type, ...] | None = None,
) -> Any:
    """Run ``call``: it returns (an instance of ``result`` if given) or raises ``allowed``.

    Either way the outcome must print.  Returns the result, or the exception raised.
    """
    raised: BaseException | None = None
    try:
        value = call()
    except allowed as exc:
        raised = exc
    if raised is not None:
        text = str(raised) + repr(raised)
        assert "SIGNATURE" not in text, "a signed URL leaked into an error"
        return raised
    if result is not None:
        assert isinstance(value, result), f"{type(value).__name__} is not a {result}"
    repr(value)
    return value


# -- Response and error decoding with random headers --------------------------------------------


@FUZZ
@given(
    status=st.integers(100, 599),
    body=bodies(json_values),
    header_map=headers(),
    now=st.floats(0, 4e9),
)
def test_responses_and_errors_with_random_headers(
    status: int, body: bytes, header_map: CIMultiDictProxy[str], now: float
) -> None:
    # The transport builds the rate-limit state from the same headers.
    state = total(lambda: parse_rate_limit(header_map, now=now), allowed=())
    made = Response(
        method="GET", url=URL, status=status, headers=header_map, body=body, rate_limit=state
    )
    assert "SIGNATURE" not in made.url + repr(made)
    for prop in ("content_type", "request_id", "trace_id"):
        value = total(lambda prop=prop: getattr(made, prop))
        assert value is None or isinstance(value, str)
    total(made.json)
    if 200 <= status < 300:
        total(lambda: unwrap_v3(made))
        total(lambda: check_v2(made))
        return
    error = total(lambda: error_from_response(made, now=now), allowed=(), result=D360Error)
    assert error.status == status
    assert "\n" not in error.message
    if isinstance(error, RateLimited) and error.retry_at is not None:
        assert now <= error.retry_at <= now + MAX_DELAY + 1


# -- the resources' body decoders with every model ----------------------------------------------

_MODEL_DECODERS: list[tuple[str, Callable[[Response], Any], st.SearchStrategy[Any], type]] = [
    ("v3 export", exports._DECODE, _envelope_v3(shaped(Export) | json_values), Export),
    ("v3 drive task", drive._DECODE, _envelope_v3(shaped(DriveTask)), DriveTask),
    ("v3 import", imports._DECODE, _envelope_v3(shaped(Import)), Import),
    (
        "v3 log detail",
        decode_v3(ApiReferenceLogDetail),
        _envelope_v3(shaped(ApiReferenceLogDetail)),
        ApiReferenceLogDetail,
    ),
    (
        "v2 delete status",
        v2._DECODE_DELETE,
        _envelope_v2(st.fixed_dictionaries({"task_status": shaped(V2DeleteFileStatus)})),
        V2DeleteFileStatus,
    ),
    ("v2 export", v2._DECODE_EXPORT, _envelope_v2(shaped(V2Export)), V2Export),
    (
        "v2 import (nested)",
        decode_v2(V2Import),
        _envelope_v2(st.fixed_dictionaries({"data": shaped(V2Import)})),
        V2Import,
    ),
    ("sd task", _decode_task, shaped(SmartDocumentorTask), SmartDocumentorTask),
]


@pytest.mark.parametrize(
    ("decode", "values", "model"),
    [pytest.param(d, v, m, id=name) for name, d, v, m in _MODEL_DECODERS],
)
@FUZZ
@given(data=st.data())
def test_model_decoders(
    decode: Callable[[Response], Any],
    values: st.SearchStrategy[Any],
    model: type,
    data: st.DataObject,
) -> None:
    body = data.draw(bodies(values))
    header_map = data.draw(headers())
    status = data.draw(st.sampled_from([200, 200, 201, 203]))
    total(lambda: decode(response(status, body, header_map)), result=model)


_HANDLES = [ExportStarted, ImportStarted, ApiReferenceImport]
_locations = st.one_of(
    header_values,
    st.builds(
        lambda tail: f"https://apihub.document360.io/v3/projects/p/exports/{tail}", st.text()
    ),
)


@pytest.mark.parametrize("model", _HANDLES, ids=[m.__name__ for m in _HANDLES])
@FUZZ
@given(
    body=st.just(b"") | bodies(_envelope_v3(shaped(_HANDLES[0])) | shaped(_HANDLES[0])),
    location=st.none() | _locations,
    header_map=headers(),
)
@example(body=b"", location="http://[::1", header_map=NO_HEADERS)  # not a URL: no id
@example(body=b'{"data": null}', location="https://h/v3/x/%zz/", header_map=NO_HEADERS)
def test_accepted_decoders(
    model: type, body: bytes, location: str | None, header_map: CIMultiDictProxy[str]
) -> None:
    pairs = CIMultiDict(header_map)
    if location is not None:
        pairs["Operation-Location"] = location
    decode = decode_accepted(model, "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d")
    total(lambda: decode(response(202, body, CIMultiDictProxy(pairs))), result=model)


@FUZZ
@given(
    body=bodies(_envelope_v3(st.lists(shaped(api_references.ApiReferenceLog), max_size=3))),
    header_map=headers(),
)
def test_log_page_decoder(body: bytes, header_map: CIMultiDictProxy[str]) -> None:
    total(lambda: api_references._decode_page(response(200, body, header_map)), result=tuple)


@FUZZ
@given(
    body=bodies(
        st.lists(shaped(SmartDocumentorTask), max_size=2)
        | st.fixed_dictionaries(
            {"items": st.lists(shaped(SmartDocumentorTask), max_size=2) | json_values},
            optional={"totalCount": _field_values, "pageNumber": _field_values},
        )
        | json_values
    ),
    header_map=headers(),
)
def test_smartdocumentor_page_decoder(body: bytes, header_map: CIMultiDictProxy[str]) -> None:
    decode = _decode_page(1, 25)
    total(lambda: decode(response(200, body, header_map)))


@FUZZ
@given(
    body=bodies(
        st.fixed_dictionaries(
            {},
            optional={
                "access_token": _field_values,
                "expires_in": _field_values
                | st.text(string.digits + "²³¹٣۵ ", min_size=1, max_size=5),
                "token_type": st.just("Bearer"),
            },
        )
    ),
    header_map=headers(),
)
@example(body='{"access_token": "a", "expires_in": "\u00b2"}'.encode(), header_map=NO_HEADERS)
@example(body=b'{"access_token": "a", "expires_in": "' + b"9" * 5000 + b'"}', header_map=NO_HEADERS)
@example(body=b'{"access_token": "a", "expires_in": 1' + b"0" * 400 + b"}", header_map=NO_HEADERS)
@example(body=b'{"access_token": "a", "expires_in": NaN}', header_map=NO_HEADERS)
@example(body=b'{"access_token": "a", "expires_in": Infinity}', header_map=NO_HEADERS)
def test_token_answer_decoder(body: bytes, header_map: CIMultiDictProxy[str]) -> None:
    outcome = total(lambda: ClientCredentialsAuth._decode(response(200, body, header_map)))
    if not isinstance(outcome, BaseException):
        value, lifetime = outcome
        assert isinstance(value, str)
        assert value
        assert 0 < lifetime < math.inf


# -- status normalisers --------------------------------------------------------------------------

_statuses = (
    json_values
    | st.integers(-3, 40)
    | st.sampled_from(
        ["Completed", "in progress", "FAILED", "To Review", "PreProcessingFailed", "Deleted"]
    )
)


@FUZZ
@given(value=_statuses, flag=st.none() | st.booleans(), more=st.lists(_statuses, max_size=3))
def test_status_normalisers(value: Any, flag: bool | None, more: list[Any]) -> None:
    task_text, integration, integration_text = [*more, None, None, None][:3]
    readings = [
        normalise_v3(value),
        normalise_v2(value),
        normalise_v2_task(value, flag),
        normalise_smartdocumentor(
            task_status=value,
            task_status_text=task_text,
            integration_status=integration,
            integration_status_text=integration_text,
        ),
    ]
    for reading in readings:
        assert isinstance(reading, StatusReading)
        assert isinstance(reading.phase, Phase)
        raw = reading.raw_status
        assert raw is None or (isinstance(raw, str | int) and not isinstance(raw, bool))
        json.dumps(raw)  # goes into checkpoints as is
        assert all(isinstance(w, str) for w in reading.warnings)
        if reading.phase is Phase.UNKNOWN:
            assert not reading.phase.is_terminal


# -- rate-limit headers ----------------------------------------------------------------------------


@FUZZ
@given(value=header_values, server_now=st.floats(-1e12, 1e12))
def test_parse_retry_after(value: str, server_now: float) -> None:
    wait = total(lambda: parse_retry_after(value, server_now=server_now), allowed=())
    assert wait is None or 0.0 <= wait <= MAX_DELAY


# A count of 309+ digits once read as float("inf") and made math.floor raise OverflowError.
@pytest.mark.parametrize("name", ["X-RateLimit-Limit", "X-RateLimit-Remaining"])
def test_a_huge_rate_limit_number(name: str) -> None:
    state = parse_rate_limit({name: "9" * 400}, now=0.0)
    assert state.limit in (None, MAX_COUNT)
    assert state.remaining in (None, MAX_COUNT)


@FUZZ
@given(header_map=headers(), now=st.floats(-1e12, 1e12))
def test_parse_rate_limit(header_map: CIMultiDictProxy[str], now: float) -> None:
    state = total(lambda: parse_rate_limit(header_map, now=now), allowed=())
    for count in (state.limit, state.remaining):
        assert count is None or 0 <= count <= MAX_COUNT
    for delay in (state.reset_after, state.retry_after):
        assert delay is None or 0.0 <= delay <= MAX_DELAY


# -- checkpoints and target specs (documented to raise ValueError) --------------------------------

_specs = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(
            [
                *("v3.export", "v3.drive_task", "v3.import", "v3.api_reference"),
                *("v2.delete_file", "v2.export", "v2.import", "smartdocumentor.task", "nope"),
                *("exports", "sd-tasks", "v2_delete", " V3.Export "),  # older spellings
            ]
        )
        | json_values,
        "project_id": st.uuids().map(str) | json_values,
        "id": st.uuids().map(str) | st.text(string.hexdigits, max_size=24) | json_values,
        "since": _timestamps | json_values,
        "id_type": st.just("external") | json_values,
    },
)
_records = st.fixed_dictionaries(
    {},
    optional={
        "key": st.text(max_size=20) | json_values,
        "spec": _specs | json_values,
        "last_raw": _statuses,
        "last_phase": st.sampled_from([p.value for p in Phase]) | json_values,
        "polls": st.integers(-2, 10**30) | json_values,
        "done": st.booleans() | json_values,
    },
)
_checkpoints = (
    st.fixed_dictionaries(
        {},
        optional={"version": st.just(1) | json_values, "targets": st.lists(_records, max_size=3)},
    )
    | json_values
)


@FUZZ
@given(document=_checkpoints, mangle=st.sampled_from(["json", "sealed", "bytes", "cut"]))
def test_checkpoint_loading(document: Any, mangle: str) -> None:
    text: str | bytes = json.dumps(document)
    if mangle == "sealed":  # a valid envelope, so the payload's own validation is exercised
        body = text.encode()
        digest = hashlib.sha256(body).hexdigest()
        text = f"d360-async checkpoint v2 length={len(body)} sha256={digest}\n{text}"
    elif mangle == "bytes":
        text = text.encode()
    elif mangle == "cut":
        text = text[: len(text) // 2]
    total(lambda: load_checkpoint(text), allowed=(ValueError,), result=list)


_IDS = {"project_id": str(uuid.UUID(int=1)), "id": str(uuid.UUID(int=2))}


@FUZZ
@given(spec=_specs | json_values)
@example(spec={"kind": "v3.export", **_IDS, "since": "2024-01-01T00:00:00Z"})  # a stray since
@example(spec={"kind": "v3.api_reference", **_IDS, "since": []})  # not a timestamp
def test_target_from_spec(spec: Any) -> None:
    client = Client(api_token="t", v2_api_token="v", base_url="http://127.0.0.1:9")
    target = total(lambda: client.target_from_spec(spec), allowed=(ValueError,))
    if not isinstance(target, BaseException):
        # Written back by its canonical name, whatever spelling it was read under.
        assert target.to_spec()["kind"] == TargetKind.parse(spec["kind"]).value


@FUZZ
@given(document=_checkpoints)
def test_resuming_a_watch_from_any_checkpoint(document: Any) -> None:
    client = Client(api_token="t", v2_api_token="v", base_url="http://127.0.0.1:9")
    total(
        lambda: watch(resume=json.dumps(document), resolver=client.target_from_spec),
        allowed=(ValueError,),
    )


def test_the_strategies_reach_valid_models() -> None:
    # A fuzzer that only ever produced garbage would prove little: make sure the shaped
    # bodies decode to real models often enough.
    decoded = 0

    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    @given(value=_envelope_v3(shaped(Export)))
    def probe(value: Any) -> None:
        nonlocal decoded
        try:
            exports._DECODE(response(200, json.dumps(value).encode(), NO_HEADERS))
        except D360Error:
            return
        decoded += 1

    probe()
    assert decoded >= 5
