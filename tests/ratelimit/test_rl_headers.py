"""The header matrix: every shape of rate-limit header Document360 (or a proxy) may send."""

from __future__ import annotations

import logging
from email.utils import formatdate

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from d360_async._core._ratelimit._headers import MAX_COUNT, MAX_DELAY, parse_http_date
from d360_async._limiters import RateLimitState, parse_rate_limit, parse_retry_after

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, our wall clock when the response arrived


def http_date(epoch: float) -> str:
    return formatdate(epoch, usegmt=True)


def parse(headers: dict[str, str], now: float = NOW) -> RateLimitState:
    return parse_rate_limit(headers, now=now)


# -- X-RateLimit-* ------------------------------------------------------------------------


def test_no_headers_is_empty() -> None:
    state = parse({"Content-Type": "application/json"})
    assert state == RateLimitState()
    assert state.is_empty


def test_remaining_alone_as_the_vendor_sends_before_exhaustion() -> None:
    state = parse({"X-RateLimit-Remaining": "42"})
    assert state == RateLimitState(remaining=42)
    assert not state.is_empty


@pytest.mark.parametrize(
    ("reset", "date", "expected"),
    [
        pytest.param("30", None, 30.0, id="delay"),
        pytest.param("0", None, 0.0, id="delay-zero"),
        pytest.param("2.5", None, 2.5, id="delay-decimal"),
        pytest.param(str(int(NOW) + 30), http_date(NOW), 30.0, id="epoch-with-date"),
        pytest.param(str(int(NOW) + 30), None, 30.0, id="epoch-without-date-uses-local-clock"),
        pytest.param(str(int(NOW + 30) * 1000), http_date(NOW), 30.0, id="epoch-milliseconds"),
        pytest.param(str(int(NOW) - 30), http_date(NOW), 0.0, id="epoch-in-the-past"),
        pytest.param("1000000000", http_date(NOW), 0.0, id="epoch-threshold-is-an-epoch"),
        pytest.param("999999999", None, MAX_DELAY, id="just-below-threshold-is-a-huge-delay"),
        pytest.param("-5", None, 0.0, id="negative-delay"),
        pytest.param(http_date(NOW + 45), http_date(NOW), 45.0, id="http-date"),
    ],
)
def test_reset_epoch_or_delay(reset: str, date: str | None, expected: float) -> None:
    headers = {"X-RateLimit-Reset": reset}
    if date is not None:
        headers["Date"] = date
    assert parse(headers).reset_after == pytest.approx(expected)


def test_full_set_when_exhausted() -> None:
    state = parse(
        {
            "Date": http_date(NOW),
            "X-RateLimit-Limit": "60",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(NOW) + 17),
        }
    )
    assert state == RateLimitState(limit=60, remaining=0, reset_after=17.0)


def test_missing_limit_and_reset() -> None:
    state = parse({"X-RateLimit-Remaining": "0"})
    assert state.limit is None
    assert state.reset_after is None
    assert state.remaining == 0


@pytest.mark.parametrize("skew", [-600.0, -90.0, 0.0, 90.0, 600.0])
def test_server_clock_skew_is_corrected_from_date(skew: float) -> None:
    """The server's clock runs ``skew`` seconds ahead of ours; its epochs follow its clock."""
    server_now = NOW + skew
    state = parse(
        {
            "Date": http_date(server_now),
            "X-RateLimit-Reset": str(int(server_now) + 20),
            "Retry-After": http_date(server_now + 7),
        }
    )
    assert state.reset_after == pytest.approx(20.0)
    assert state.retry_after == pytest.approx(7.0)


def test_date_has_second_resolution_so_the_delay_errs_long() -> None:
    # The server answered at .9 of a second; Date truncates, so the delay is over-estimated.
    server_now = NOW + 0.9
    state = parse({"Date": http_date(server_now), "X-RateLimit-Reset": str(int(NOW) + 10)})
    assert state.reset_after is not None
    assert 10.0 - 0.9 <= state.reset_after <= 10.0


def test_names_are_case_insensitive() -> None:
    state = parse(
        {"x-ratelimit-limit": "100", "X-RATELIMIT-REMAINING": "7", "x-RateLimit-Reset": "9"}
    )
    assert state == RateLimitState(limit=100, remaining=7, reset_after=9.0)


def test_case_insensitive_multidict_with_repeats_is_read_conservatively() -> None:
    headers = CIMultiDict(
        [
            ("X-RateLimit-Remaining", "9"),
            ("x-ratelimit-remaining", "4"),
            ("X-RateLimit-Reset", "10"),
            ("X-RateLimit-Reset", "12"),
        ]
    )
    state = parse_rate_limit(headers, now=NOW)
    assert state.remaining == 4
    assert state.reset_after == 12.0


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        pytest.param("X-RateLimit-Limit", "60, 60", 60, id="folded-duplicate"),
        pytest.param("X-RateLimit-Limit", "10, 10;w=1, 1000;w=3600", 10, id="ietf-policies"),
        pytest.param("X-RateLimit-Remaining", "5, 3", 3, id="folded-remaining-min"),
        pytest.param("X-RateLimit-Remaining", "5, junk", 5, id="folded-with-garbage"),
        pytest.param("X-RateLimit-Remaining", "7.9", 7, id="decimal-floored"),
        pytest.param("X-RateLimit-Remaining", " 8 ", 8, id="whitespace"),
    ],
)
def test_folded_and_decorated_counts(header: str, value: str, expected: int) -> None:
    state = parse({header: value})
    assert (state.limit if header.endswith("Limit") else state.remaining) == expected


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        pytest.param("X-RateLimit-Remaining", "0", 0, id="remaining-zero"),
        pytest.param("X-RateLimit-Remaining", "-3", 0, id="remaining-negative-clamped"),
        pytest.param("X-RateLimit-Remaining", "1" + "0" * 30, MAX_COUNT, id="remaining-huge"),
        pytest.param("X-RateLimit-Limit", "1" + "0" * 30, MAX_COUNT, id="limit-huge"),
        pytest.param("X-RateLimit-Limit", "0", None, id="limit-zero-ignored"),
        pytest.param("X-RateLimit-Limit", "-60", None, id="limit-negative-ignored"),
        pytest.param("X-RateLimit-Limit", "0.5", None, id="limit-below-one-ignored"),
    ],
)
def test_count_clamps(header: str, value: str, expected: int | None) -> None:
    state = parse({header: value})
    assert (state.limit if header.endswith("Limit") else state.remaining) == expected


GARBAGE = ["", "   ", "abc", "nan", "NaN", "inf", "-inf", "1e3", "0x10", "12abc", "1_000", "--1"]


@pytest.mark.parametrize("value", GARBAGE)
@pytest.mark.parametrize(
    "header",
    ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"],
)
def test_garbage_is_ignored_with_a_debug_log(
    header: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="d360_async.ratelimit"):
        state = parse({header: value})
    assert state == RateLimitState()
    if value.strip():
        assert header.lower() in caplog.text.lower()
        assert all(record.levelno == logging.DEBUG for record in caplog.records)


def test_garbage_date_falls_back_to_the_local_clock(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="d360_async.ratelimit"):
        state = parse({"Date": "yesterday-ish", "X-RateLimit-Reset": str(int(NOW) + 12)})
    assert state.reset_after == pytest.approx(12.0)
    assert "Date" in caplog.text


def test_obsolete_date_formats() -> None:
    expected = 784111777.0  # 1994-11-06T08:49:37Z
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == expected
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == expected
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == expected
    assert parse_http_date("Wed, 99 Oct 2015 07:28:00 GMT") is None
    assert parse_http_date("") is None


def test_repeated_date_header_uses_the_first() -> None:
    headers = CIMultiDict([("Date", http_date(NOW + 60)), ("Date", http_date(NOW + 99))])
    headers["X-RateLimit-Reset"] = str(int(NOW) + 70)
    assert parse_rate_limit(headers, now=NOW).reset_after == pytest.approx(10.0)


# -- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("30", 30.0, id="seconds"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="decimal-tolerated"),
        pytest.param("-5", 0.0, id="negative-clamped"),
        pytest.param("99999999999", MAX_DELAY, id="huge-clamped"),
        pytest.param(http_date(NOW + 120), 120.0, id="http-date"),
        pytest.param(http_date(NOW - 120), 0.0, id="http-date-in-the-past"),
        pytest.param(http_date(NOW + 10 * 86400), MAX_DELAY, id="http-date-far-future"),
        pytest.param("Wednesday soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    result = parse_retry_after(value, server_now=NOW)
    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_retry_after_http_date_is_read_against_the_server_date() -> None:
    server_now = NOW + 300  # the server is five minutes ahead of us
    state = parse({"Date": http_date(server_now), "Retry-After": http_date(server_now + 30)})
    assert state.retry_after == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="ms-alone"),
        pytest.param({"retry-after-ms": "1500", "Retry-After": "2"}, 1.5, id="ms-preferred"),
        pytest.param({"retry-after-ms": "junk", "Retry-After": "2"}, 2.0, id="ms-garbage"),
        pytest.param({"retry-after-ms": "-10"}, 0.0, id="ms-negative"),
        pytest.param({"retry-after-ms": "1" + "0" * 12}, MAX_DELAY, id="ms-huge"),
        pytest.param({"Retry-After": "5, 7"}, 7.0, id="folded-takes-longest"),
    ],
)
def test_retry_after_variants(headers: dict[str, str], expected: float) -> None:
    assert parse(headers).retry_after == pytest.approx(expected)


def test_a_vendor_429() -> None:
    """The shape of the vendor's documented 429 (export-status page)."""
    state = parse(
        {
            "Content-Type": "application/problem+json",
            "Date": http_date(NOW),
            "Retry-After": "17",
            "X-RateLimit-Limit": "60",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(NOW) + 17),
        }
    )
    assert state == RateLimitState(limit=60, remaining=0, reset_after=17.0, retry_after=17.0)


def test_from_headers_is_the_same_parser() -> None:
    headers = {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "4"}
    assert RateLimitState.from_headers(headers, NOW) == parse(headers)


_NAMES = st.sampled_from(
    [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Retry-After",
        "retry-after-ms",
        "Date",
        "Other",
    ]
)


@given(
    st.dictionaries(_NAMES, st.text(max_size=40) | st.integers().map(str), max_size=7),
    st.floats(min_value=0, max_value=4e9),
)
def test_never_raises_and_stays_in_bounds(headers: dict[str, str], now: float) -> None:
    state = parse_rate_limit(headers, now=now)
    if state.limit is not None:
        assert 1 <= state.limit <= MAX_COUNT
    if state.remaining is not None:
        assert 0 <= state.remaining <= MAX_COUNT
    for delay in (state.reset_after, state.retry_after):
        if delay is not None:
            assert 0.0 <= delay <= MAX_DELAY


# -- how values were sent, and the fast paths ---------------------------------------------


@pytest.mark.parametrize(
    ("headers", "epoch", "date"),
    [
        pytest.param({"X-RateLimit-Reset": "30"}, False, False, id="delay"),
        pytest.param({"X-RateLimit-Reset": "2.5"}, False, False, id="delay-decimal"),
        pytest.param({"X-RateLimit-Reset": str(int(NOW) + 30)}, True, False, id="epoch"),
        pytest.param({"X-RateLimit-Reset": http_date(NOW + 30)}, True, False, id="reset-date"),
        pytest.param({"Retry-After": "30"}, False, False, id="retry-seconds"),
        pytest.param({"Retry-After": http_date(NOW + 30)}, False, True, id="retry-date"),
    ],
)
def test_how_a_wait_was_sent_is_flagged(headers: dict[str, str], epoch: bool, date: bool) -> None:
    state = parse({"Date": http_date(NOW), **headers})
    assert (state.reset_is_epoch, state.retry_is_date) == (epoch, date)
    # The flags say how, not what: they take no part in equality.
    assert state == RateLimitState(
        limit=state.limit,
        remaining=state.remaining,
        reset_after=state.reset_after,
        retry_after=state.retry_after,
    )


def test_the_last_date_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from d360_async._core._ratelimit import _headers

    calls: list[str] = []
    real = _headers.parse_http_date

    def counting(value: str) -> float | None:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(_headers, "parse_http_date", counting)
    date = http_date(NOW + 1234)
    for offset in range(5):
        state = parse({"Date": date, "X-RateLimit-Reset": str(int(NOW) + 1240 + offset)})
        assert state.reset_after == pytest.approx(6.0 + offset)
    assert calls == [date]


def test_date_is_not_read_when_nothing_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from d360_async._core._ratelimit import _headers

    def failing(value: str) -> float | None:
        raise AssertionError("Date parsed for nothing")

    monkeypatch.setattr(_headers, "parse_http_date", failing)
    headers = {"Date": http_date(NOW + 99), "X-RateLimit-Remaining": "7"}
    assert parse(headers) == RateLimitState(remaining=7)
    headers |= {"X-RateLimit-Limit": "60", "X-RateLimit-Reset": "12", "Retry-After": "3"}
    assert parse(headers) == RateLimitState(limit=60, remaining=7, reset_after=12, retry_after=3)


def test_a_garbage_date_is_reported_every_time(caplog: pytest.LogCaptureFixture) -> None:
    headers = {"Date": "not a date", "X-RateLimit-Reset": str(int(NOW) + 5)}
    with caplog.at_level(logging.DEBUG, logger="d360_async.ratelimit"):
        parse(headers)
        parse(headers)
    assert sum("Date" in record.getMessage() for record in caplog.records) == 2


def test_a_remaining_only_state_is_shared_but_garbage_still_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert parse({"X-RateLimit-Remaining": "12"}) is parse({"x-ratelimit-remaining": "12"})
    with caplog.at_level(logging.DEBUG, logger="d360_async.ratelimit"):
        for _ in range(2):
            assert parse({"X-RateLimit-Remaining": "12, junk"}).remaining == 12
    assert len(caplog.records) == 2


@given(
    st.lists(
        st.tuples(_NAMES, st.text(max_size=30) | st.integers(-5, 10**10).map(str)),
        max_size=8,
    ),
    st.floats(min_value=0, max_value=4e9),
)
def test_a_case_insensitive_multidict_reads_like_any_mapping(
    items: list[tuple[str, str]], now: float
) -> None:
    """aiohttp's headers take a faster path: it must agree with the general one."""
    multidict = CIMultiDict(items)
    folded: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        folded[key] = value if key not in folded else f"{folded[key]}, {value}"
    fast = parse_rate_limit(multidict, now=now)
    general = parse_rate_limit(folded, now=now)
    assert fast == general
    assert (fast.reset_is_epoch, fast.retry_is_date) == (
        general.reset_is_epoch,
        general.retry_is_date,
    )


# -- the plain-number fast path -------------------------------------------------------------

_PLAIN_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=2 * MAX_COUNT).map(str),
    st.sampled_from(
        [
            "0",
            "1",
            str(MAX_COUNT),
            str(MAX_COUNT + 1),
            "3599",
            "3601",
            "999999999",
            "1000000000",
            str(int(NOW) + 30),
            str(int(NOW) - 30),
            str(int(NOW + 30) * 1000),
            "99999999999",
            "100000000000",
            "-1",
            "2.5",
            " 7",
            "\u00b2",
            "10;w=60",
            "",
        ]
    ),
)
_DATES = st.sampled_from([None, http_date(NOW), http_date(NOW + 7), "not a date", ""])


@given(limit=_PLAIN_VALUES, remaining=_PLAIN_VALUES, reset=_PLAIN_VALUES, date=_DATES)
def test_the_plain_number_path_reads_what_the_general_path_reads(
    limit: str | None, remaining: str | None, reset: str | None, date: str | None
) -> None:
    # `parse_rate_limit` reads the usual all-whole-number answer without the general parser;
    # whatever it returns must be what the general parser makes of the same headers, to the
    # flags that take no part in equality.
    from d360_async._core._ratelimit._headers import _collect, _parse_raw

    headers = CIMultiDict[str]()
    for name, value in (
        ("X-RateLimit-Limit", limit),
        ("X-RateLimit-Remaining", remaining),
        ("X-RateLimit-Reset", reset),
        ("Date", date),
    ):
        if value is not None:
            headers[name] = value
    fast = parse_rate_limit(headers, now=NOW)
    general = _parse_raw(_collect(headers), NOW)
    assert fast == general
    assert (fast.reset_is_epoch, fast.retry_is_date, fast.date) == (
        general.reset_is_epoch,
        general.retry_is_date,
        general.date,
    )


def test_header_spellings_are_read_whatever_their_case() -> None:
    # The slot of each spelling is remembered; a new spelling of a known name still counts.
    first = parse({"x-ratelimit-limit": "60", "X-RATELIMIT-REMAINING": "5"})
    second = parse({"X-RateLimit-Limit": "60", "x-RateLimit-remaining": "5", "Server": "x"})
    assert first == second == RateLimitState(limit=60, remaining=5)
