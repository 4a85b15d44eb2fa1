"""Fixtures for the reliability suite: a fault scenario runner and the checks it must pass.

Helpers are handed out as fixtures (never imported from this file), so the suite has no
import-path tricks.  The scenario runner drives the real :class:`~d360_async.Client` and its
watch against a real :class:`~d360_async.testing.FakeDocument360` on the real clock, with
lifecycles under a second, so one run of 500 operations takes a second or two.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from d360_async import (
    Client,
    Clock,
    D360Error,
    Hooks,
    Phase,
    PollPolicy,
    RateLimitConfig,
    RequestEvent,
    RetryPolicy,
    SystemClock,
    Timeouts,
    Transition,
    TransitionKind,
)
from d360_async.testing import FakeDocument360, FakeLifecycle, FakeRateLimit, FakeStats, ManualClock

# A retry policy with the library's default budgets (attempts, quota, costs, refill) and short
# backoffs, so runs take seconds; the request bound below is computed from these very values.
RETRY = RetryPolicy(backoff_base=0.02, backoff_cap=0.2, deadline=20.0)
# Responses slower than the read timeout are the ``slow`` fault; real answers take milliseconds.
TIMEOUTS = Timeouts(connect=2.0, read=0.2, total=2.0, download_read=2.0)
SLOW_DELAY = 0.4
POLICY = PollPolicy(interval=0.1, backoff=1.5, max_interval=0.6, watch_timeout=90.0)
LIFECYCLE = FakeLifecycle(pending=(0.05, 0.25), running=(0.1, 0.5), failure_ratio=0.2)

_RANK = {Phase.PENDING: 0, Phase.RUNNING: 1}


@attrs.define
class Scenario:
    """What to run: faults, population, budget."""

    faults: Mapping[str, float] = attrs.field(factory=dict)
    exports: int = 200
    drive_tasks: int = 150
    v2_deletes: int = 150
    download: bool = False
    rate: tuple[int, float] = (20_000, 1.0)  # fake limit per window, and the window
    latency: tuple[float, float] = (0.0, 0.002)
    max_concurrency: int = 32
    seed: int = 1
    record_times: bool = True
    lifecycle: FakeLifecycle = LIFECYCLE
    retry_after: int = 1  # the http_503 fault's Retry-After
    # Fake and client on one ManualClock: for runs whose time goes to waiting (Retry-After,
    # a tight budget). Not for the ``slow`` fault's point, aiohttp's read timeout, which the
    # clock does not drive; and no faster for runs that are all requests.
    manual_clock: bool = False

    @property
    def total(self) -> int:
        return self.exports + self.drive_tasks + self.v2_deletes


@attrs.define
class Outcome:
    """What a scenario run produced, for the checks and for the closing figures."""

    scenario: Scenario
    transitions: dict[str, list[Transition[Any]]]
    op_ids: dict[str, str]  # target key -> fake operation id
    truth: dict[str, Any]  # operation id -> FakeOperation
    stats: FakeStats
    attempts: int  # request attempts the transport made (hooks)
    first_attempts: int  # logical calls (attempt 1)
    downloads: dict[str, BaseException | bytes]  # export id -> bytes written, or the error
    leftovers: list[Path]  # files left in the download directory that should not be there
    requests_after_exit: int
    elapsed: float
    quota_left: int

    @property
    def finals(self) -> dict[str, Transition[Any]]:
        return {key: events[-1] for key, events in self.transitions.items()}

    def errors(self) -> Counter[str]:
        return Counter(
            type(t.error).__name__
            for t in self.finals.values()
            if t.kind is TransitionKind.ERROR and t.error is not None
        )

    def polls(self) -> int:
        return sum(t.polls for t in self.finals.values())

    def api_requests(self) -> int:
        return self.stats.requests - self.stats.by_route["download"]

    def unknowns(self) -> int:
        return sum(
            t.phase is Phase.UNKNOWN and t.kind is TransitionKind.CHANGED
            for events in self.transitions.values()
            for t in events
        )

    def figures(self) -> str:
        n = self.scenario.total
        download_errors = Counter(
            type(v).__name__ for v in self.downloads.values() if isinstance(v, BaseException)
        )
        return (
            f"{n} ops in {self.elapsed:.1f}s: {self.api_requests() / n:.2f} API requests/op "
            f"({self.polls()} polls, {self.attempts} attempts, "
            f"{self.attempts - self.first_attempts} retries), faults={dict(self.stats.faults)}, "
            f"429s={self.stats.rate_limited}, errors={dict(self.errors())}, "
            f"unknown transitions={self.unknowns()}, "
            f"downloads={len(self.downloads)} failed={dict(download_errors)}, "
            f"quota_left={self.quota_left}, requests={self.stats.requests} "
            f"<= bound {request_bound(self)}"
        )


async def run_scenario(scenario: Scenario, workdir: Path) -> Outcome:
    """Seed the fake, watch everything (downloading finished exports if asked), report."""
    limit, window = scenario.rate
    clock: Clock = ManualClock() if scenario.manual_clock else SystemClock()
    fake = FakeDocument360(
        clock=clock,
        rate_limit=FakeRateLimit(limit=limit, window=window),
        lifecycle=scenario.lifecycle,
        latency=scenario.latency,
        seed=scenario.seed,
        download_size=4096,
        record_times=scenario.record_times,
    )
    counts = Counter[str]()

    def on_request(event: RequestEvent) -> None:
        counts["attempts"] += 1
        counts["first"] += event.attempt == 1

    transitions: dict[str, list[Transition[Any]]] = {}
    downloads: dict[str, BaseException | bytes] = {}
    async with fake, _driven(clock):
        for kind, rate in scenario.faults.items():
            options: dict[str, Any] = {}
            if kind == "slow":
                options["delay"] = SLOW_DELAY
            if kind == "http_503":
                options["retry_after"] = scenario.retry_after
            fake.faults.set(kind, rate, **options)  # type: ignore[arg-type]
        async with Client(
            api_token=fake.api_token,
            v2_api_token=fake.v2_api_token,
            base_url=fake.url,
            rate_limit=RateLimitConfig(rate=float(limit), period=window),
            retry=RETRY,
            timeouts=TIMEOUTS,
            hooks=Hooks(on_request=(on_request,)),
            clock=clock,
        ) as client:
            op_ids: dict[str, str] = {}
            targets = []
            for export_id in fake.seed("v3.export", scenario.exports):
                target = client.exports.target(fake.project_id, export_id)
                op_ids[target.key] = export_id
                targets.append(target)
            for task_id in fake.seed("v3.drive_task", scenario.drive_tasks):
                target = client.drive.target(fake.project_id, task_id)
                op_ids[target.key] = task_id
                targets.append(target)
            for task_id in fake.seed("v2.delete_file", scenario.v2_deletes):
                target = client.v2.delete_file_target(task_id)
                op_ids[target.key] = task_id
                targets.append(target)

            async def download(export_id: str) -> None:
                dest = workdir / f"{export_id}.zip"
                try:
                    await client.exports.download(fake.project_id, export_id, dest)
                except D360Error as exc:
                    downloads[export_id] = exc
                else:
                    downloads[export_id] = await asyncio.to_thread(dest.read_bytes)

            started = clock.monotonic()
            async with (
                asyncio.TaskGroup() as group,
                client.watch(
                    targets, policy=POLICY, max_concurrency=scenario.max_concurrency
                ) as watch,
            ):
                async for transition in watch:
                    transitions.setdefault(transition.key, []).append(transition)
                    if (
                        scenario.download
                        and transition.final
                        and transition.phase is Phase.SUCCEEDED
                        and transition.target.kind == "v3.export"
                    ):
                        group.create_task(download(op_ids[transition.key]))
            elapsed = clock.monotonic() - started
            at_exit = fake.stats.requests
            await clock.sleep(0.05)  # anything still running would send a request now
            requests_after_exit = fake.stats.requests - at_exit
            quota_left = client._transport.retry_quota.available
        truth = {op_id: fake.operation(op_id) for op_id in op_ids.values()}
        expected = {
            f"{export_id}.zip" for export_id, v in downloads.items() if isinstance(v, bytes)
        }
        names = await asyncio.to_thread(lambda: [p.name for p in workdir.iterdir()])
        leftovers = [workdir / name for name in names if name not in expected]
        for export_id, value in downloads.items():
            if isinstance(value, bytes) and value != fake.download_bytes(export_id):
                downloads[export_id] = AssertionError(f"wrong bytes for {export_id}")
    return Outcome(
        scenario=scenario,
        transitions=transitions,
        op_ids=op_ids,
        truth=truth,
        stats=fake.stats,
        attempts=counts["attempts"],
        first_attempts=counts["first"],
        downloads=downloads,
        leftovers=leftovers,
        requests_after_exit=requests_after_exit,
        elapsed=elapsed,
        quota_left=quota_left,
    )


@asynccontextmanager
async def _driven(clock: Clock) -> AsyncIterator[None]:
    """Autoadvance a ManualClock for the block; the real clock moves by itself."""
    if isinstance(clock, ManualClock):
        async with clock.autoadvance():
            yield
    else:
        yield


def check_outcome(outcome: Outcome, *, max_429: int = 0, max_errors: int = 5) -> None:
    """Every guarantee the fault matrix asserts; raises AssertionError naming the first breach.

    ``max_errors`` bounds the operations that may end with a typed error instead of their
    status (1 % of 500): transient faults must not cost operations, only requests.
    """
    scenario = outcome.scenario
    assert len(outcome.transitions) == scenario.total, "every target yields at least once"
    errors = outcome.errors()
    assert sum(errors.values()) <= max_errors, f"operations lost to errors: {errors}"
    for key, events in outcome.transitions.items():
        _check_sequence(key, events)
        final = events[-1]
        truth = outcome.truth[outcome.op_ids[key]]
        if final.kind is TransitionKind.ERROR:
            assert isinstance(final.error, D360Error), f"{key}: untyped error {final.error!r}"
            continue
        assert final.kind is TransitionKind.CHANGED, f"{key}: ended with {final.kind}"
        expected = Phase.SUCCEEDED if truth.outcome == "succeeded" else Phase.FAILED
        assert final.phase is expected, f"{key}: {final.phase} but truly {truth.outcome}"
        assert final.raw_status == truth.raw_status, f"{key}: {final.raw_status!r}"
    # Downloads: the right bytes, or a typed error; nothing left beside the destinations.
    for export_id, value in outcome.downloads.items():
        if isinstance(value, BaseException):
            assert isinstance(value, D360Error), f"download {export_id}: {value!r}"
    assert outcome.leftovers == [], f"files left behind: {outcome.leftovers}"
    assert outcome.requests_after_exit == 0, "a request was sent after the watch ended"
    assert outcome.stats.rate_limited <= max_429, f"{outcome.stats.rate_limited} 429s"
    check_request_bound(outcome)


def _check_sequence(key: str, events: list[Transition[Any]]) -> None:
    """One final transition, last; each change differs from the one before and continues it;
    known phases never go backwards; transitions arrive in the order their polls were made.

    An unrecognised status (``unknown_status``) is reported as observed, as UNKNOWN with its
    raw value and a warning (docs/concepts.md), so ``RUNNING -> UNKNOWN -> RUNNING`` is three
    observed changes, not a duplicate; UNKNOWN has no place in the phase order.
    """
    finals = [t for t in events if t.final]
    assert len(finals) == 1, f"{key}: finals {finals}"
    assert events[-1].final, f"{key}: the final transition is not the last"
    last: tuple[Phase, object] | None = None
    previous: Phase | None = None
    rank = -1
    for t in events:
        if t.kind is not TransitionKind.CHANGED:
            continue
        assert t.previous == previous, f"{key}: previous {t.previous} after {previous}"
        pair = (t.phase, t.raw_status)
        assert pair != last, f"{key}: duplicate transition {pair}"
        last = pair
        if t.phase is Phase.UNKNOWN:
            assert t.warnings, f"{key}: an unknown status without a warning"
        else:
            current = _RANK.get(t.phase, 2)
            assert current >= rank, f"{key}: {t.phase} after {previous} goes backwards"
            rank = current
        previous = t.phase
    polls = [t.polls for t in events]
    assert polls == sorted(polls), f"{key}: poll counts out of order {polls}"


def request_bound(outcome: Outcome) -> int:
    """The most requests the retry policy and its quota allow for what was asked.

    * ``L`` logical calls (the watch's polls, plus each download's export reads) each make at
      most ``max_attempts`` attempts;
    * every retry except a 429's spends at least ``min(retry_cost, timeout_cost)`` tokens of a
      quota that starts at ``quota`` and gets ``success_refill`` back per successful call
      (at most ``L`` of them);
    * aiohttp itself resends an idempotent request once when a kept-alive connection turns
      out closed, which only an ``abort`` fault (no response at all) can cause;
    * downloads of signed links are not retried, at most two per download.
    """
    logical = outcome.first_attempts
    assert logical >= outcome.polls(), "every poll is a logical call"
    assert logical <= outcome.polls() + 2 * len(outcome.downloads)
    cheapest = min(RETRY.retry_cost, RETRY.timeout_cost)
    quota_retries = math.floor((RETRY.quota + RETRY.success_refill * logical) / cheapest)
    retries = min((RETRY.max_attempts - 1) * logical, quota_retries + outcome.stats.rate_limited)
    hidden = outcome.stats.faults["abort"]
    return logical + retries + hidden + 2 * len(outcome.downloads)


def check_request_bound(outcome: Outcome) -> None:
    retries = outcome.attempts - outcome.first_attempts
    logical = outcome.first_attempts
    assert outcome.attempts <= RETRY.max_attempts * logical
    cheapest = min(RETRY.retry_cost, RETRY.timeout_cost)
    assert (
        retries - outcome.stats.rate_limited
        <= (RETRY.quota + RETRY.success_refill * logical) / cheapest
    ), f"{retries} retries exceed the quota"
    bound = request_bound(outcome)
    assert outcome.stats.requests <= bound, f"{outcome.stats.requests} requests > bound {bound}"
    # The server saw every attempt (and at most the hidden resends on top).
    api = outcome.api_requests()
    assert outcome.attempts <= api <= outcome.attempts + outcome.stats.faults["abort"]


ScenarioRunner = Callable[[Scenario], Awaitable[Outcome]]


CliRunner = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def run_cli() -> CliRunner:
    """``await run_cli(*args, env={...})`` -> (exit code, stdout, stderr) of the installed CLI,
    with no ``D360_``/``SD_`` variable of the calling environment, bounded to 60 s."""

    async def run(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
        script = Path(sys.executable).with_name("d360-async")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "d360_async.cli"]
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("D360_", "SD_"))}
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**clean, "PYTHONWARNINGS": "default", **env},
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    return run


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # Through caplog, so every level is restored after the test: DEBUG left switched on would
    # make every later test capture (and keep) a record per request.
    caplog.set_level(logging.DEBUG)
    for name in ("d360_async", "aiohttp", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def scenario_cls() -> type[Scenario]:
    return Scenario


@pytest.fixture
def run_faults(tmp_path: Path) -> ScenarioRunner:
    """``await run_faults(Scenario(...))`` -> :class:`Outcome` (downloads go to tmp_path)."""
    counter = iter(range(1_000_000))

    async def run(scenario: Scenario) -> Outcome:
        workdir = tmp_path / f"run{next(counter)}"
        workdir.mkdir()
        return await run_scenario(scenario, workdir)

    return run


@pytest.fixture
def check() -> Callable[..., None]:
    """``check(outcome, max_429=0)``: every guarantee of the fault matrix."""
    return check_outcome


# -- a real redis-server that a test may stop and start again ------------------------------------


class RedisProcess:
    """``redis-server`` on a free local port, without persistence; ``stop``/``start`` at will."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self._answers():
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test alone (skipped where the binary is missing)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (CI installs the OS package redis-server)")
    server = RedisProcess(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
