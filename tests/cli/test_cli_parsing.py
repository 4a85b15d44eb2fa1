"""The CLI's pure parts: option parsing, id checks, exit codes, JSON lines, the tally."""

from __future__ import annotations

import io
import json
import math

import pytest

from d360_async._core._errors import (
    AuthenticationError,
    ConnectError,
    MissingCredential,
    NotFound,
    PermissionDenied,
)
from d360_async._core._phase import Phase
from d360_async.cli._credentials import Credentials, read_credentials
from d360_async.cli._display import (
    PlainDisplay,
    ProgressView,
    SummaryTable,
    format_duration,
    format_plain_table,
)
from d360_async.cli._exit import (
    ExitCode,
    UsageError,
    describe_error,
    exit_code_for,
)
from d360_async.cli._jsonl import JsonLines, iso_time
from d360_async.cli._kinds import API, lookup_kind, validate_id, validate_project
from d360_async.cli._options import RateSpec, parse_ids_text, parse_rate, parse_region
from d360_async.cli._tally import Tally, percentile

PROJECT = "9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d"


@pytest.mark.parametrize(
    ("text", "requests", "period"),
    [
        ("60/min", 60, 60),
        ("100/60s", 100, 60),
        ("10/s", 10, 1),
        ("1000/h", 1000, 3600),
        ("5/2.5s", 5, 2.5),
        ("100/60", 100, 60),
        (" 30 / 1 minute ", 30, 60),
        ("500/100ms", 500, 0.1),
    ],
    ids=lambda v: str(v),
)
def test_parse_rate(text: str, requests: float, period: float) -> None:
    rate = parse_rate(text)
    assert rate == RateSpec(requests=requests, period=pytest.approx(period))


@pytest.mark.parametrize(
    "text", ["", "60", "60/", "/min", "0/min", "60/0s", "60/fortnight", "-1/s", "x/s", "60/min/2"]
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="rate limit"):
        parse_rate(text)


def test_rate_spec_text() -> None:
    assert str(parse_rate("60/min")) == "60/min"
    assert str(parse_rate("100/10s")) == "100/10s"
    assert parse_rate("600/min").per_second == 10


def test_parse_region() -> None:
    assert parse_region("EU").name == "EU"
    with pytest.raises(UsageError, match="unknown region 'mars'"):
        parse_region("mars")


def test_parse_ids_text_skips_comments_and_blank_lines() -> None:
    lines = ["# ids to watch\n", "a1\n", "\n", "b2, c3  # trailing\n", "  d4\t\n"]
    assert parse_ids_text(lines) == ["a1", "b2", "c3", "d4"]


def test_kinds_and_ids() -> None:
    assert lookup_kind("export").name == "v3.export"
    assert lookup_kind("exports") is lookup_kind("v3.export")
    assert lookup_kind("V2-Deletes").api is API.V2
    with pytest.raises(UsageError, match="unknown kind"):
        lookup_kind("widgets")
    exports = lookup_kind("exports")
    assert validate_id(exports, PROJECT.upper()) == PROJECT
    with pytest.raises(UsageError, match="malformed V3 export id"):
        validate_id(exports, "../etc")
    assert validate_id(lookup_kind("sd-tasks"), "44") == 44
    with pytest.raises(UsageError, match="malformed SmartDocumentor task id"):
        validate_id(lookup_kind("sd-tasks"), "0")
    with pytest.raises(UsageError, match="need --project"):
        validate_project(exports, None)
    with pytest.raises(UsageError, match="does not apply"):
        validate_project(lookup_kind("v2-deletes"), PROJECT)


def test_credentials_come_from_the_environment_and_never_show() -> None:
    creds = read_credentials(API.V3, {"D360_API_TOKEN": "secret-value"})
    assert creds.api_token == "secret-value"
    assert "secret-value" not in repr(creds)
    assert repr(Credentials()) == "<Credentials none>"
    with pytest.raises(MissingCredential, match="D360_V2_API_TOKEN is not set") as info:
        read_credentials(API.V2, {"D360_API_TOKEN": "x"})
    assert type(info.value) is MissingCredential  # the library's one class, not a second
    assert exit_code_for(info.value) is ExitCode.AUTH
    with pytest.raises(MissingCredential, match="SD_CLIENT_SECRET"):
        read_credentials(API.SMARTDOCUMENTOR, {"SD_CLIENT_ID": "id", "SD_CLIENT_SECRET": " "})


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationError("no", status=401), ExitCode.AUTH),
        (PermissionDenied("no", status=403), ExitCode.AUTH),
        (NotFound("gone", status=404), ExitCode.FAILED),
        (ConnectError("could not connect", url="http://127.0.0.1:9/x"), ExitCode.FAILED),
        (ValueError("bad id"), ExitCode.USAGE),
        (UsageError("bad"), ExitCode.USAGE),
        (MissingCredential("unset"), ExitCode.AUTH),
        (RuntimeError("bug"), ExitCode.FAILED),
    ],
    ids=lambda v: type(v).__name__,
)
def test_exit_codes(error: Exception, code: ExitCode) -> None:
    assert exit_code_for(error) is code
    assert "\n" not in describe_error(error)


def test_describe_error_names_the_host_without_secrets() -> None:
    error = ConnectError(
        "could not connect", method="GET", url="https://user:pw@host.example:8443/x?sig=abc"
    )
    text = describe_error(error)
    assert text == "cannot reach https://host.example:8443: could not connect"


def test_iso_time() -> None:
    assert iso_time(0.0) == "1970-01-01T00:00:00Z"
    assert iso_time(None) is None
    assert iso_time(math.inf) == "inf"


def test_json_lines_are_compact_and_flushed() -> None:
    stream = io.StringIO()
    JsonLines(stream).write(
        {"type": "x", "phase": Phase.RUNNING, "t": math.nan, "e": ValueError("v")}
    )
    line = stream.getvalue()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert json.loads(line) == {"type": "x", "phase": "running", "t": None, "e": "v"}


def test_tally_outcomes_and_exit_code() -> None:
    tally = Tally(
        [("k1", "exports", "a"), ("k2", "exports", "b"), ("k3", "tasks", "c")], started_at=0.0
    )
    assert tally.by_phase()["waiting"] == 3
    tally.observe("k1", phase=Phase.PENDING, raw_status="Pending", polls=1, now=1.0)
    tally.observe("k1", phase=Phase.SUCCEEDED, raw_status="Completed", polls=2, now=2.0)
    tally.observe("k2", phase=Phase.FAILED, raw_status="Failed", polls=3, now=3.0)
    assert tally.done == 2
    assert tally.eta(3.0) == pytest.approx(1.5)
    assert tally.exit_code() is ExitCode.FAILED
    tally.give_up(4.0)
    summary = tally.summary(4.0)
    assert summary["succeeded"] == 1
    assert summary["failed"] == 1
    assert summary["timed_out"] == 1
    assert summary["polls"] == 5
    assert tally.by_outcome("tasks")["timed_out"] == 1
    ok = Tally([("k", "g", "i")], started_at=0.0)
    ok.observe("k", phase=Phase.SUCCEEDED, raw_status=3, polls=1, now=1.0)
    assert ok.exit_code() is ExitCode.OK
    ok.auth_failed = True
    assert ok.exit_code() is ExitCode.AUTH


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0


def test_plain_display_throttles_lines() -> None:
    now = [0.0]
    stream = io.StringIO()
    display = PlainDisplay(stream, interval=5.0, clock=lambda: now[0])
    view = ProgressView(title="t", total=2, done=1, phases={"running": 1}, elapsed=3.0)
    display.update(view)
    now[0] = 1.0
    display.update(view)
    now[0] = 6.0
    display.update(view)
    assert stream.getvalue().count("\n") == 2
    assert "1/2 done | running=1" in stream.getvalue()


def test_plain_table_and_durations() -> None:
    table = SummaryTable(title="T", headers=("kind", "n"), rows=(("exports", "12"), ("v2", "3")))
    assert format_plain_table(table).splitlines() == [
        "T",
        "kind      n",
        "-------  --",
        "exports  12",
        "v2        3",
    ]
    assert format_duration(None) == "-"
    assert format_duration(4.25) == "4.2s"
    assert format_duration(75) == "1m15s"
    assert format_duration(3720) == "1h02m"
