"""``watch``, ``status`` and ``export``: the commands that talk to the real API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import IO, Any

import attrs

from d360_async import (
    AuthenticationError,
    D360Error,
    LimiterStats,
    PermissionDenied,
    Phase,
    PollPolicy,
    Priors,
    Target,
    TargetKind,
    Transition,
    TransitionKind,
    TransportError,
    load_priors,
    redact_url,
    watch,
)

from ._connect import Connection, check_base_url, connect
from ._credentials import read_credentials
from ._display import (
    Display,
    LiveDisplay,
    ProgressView,
    SummaryTable,
    TransferBar,
    choose_display,
    format_duration,
)
from ._exit import ExitCode, UsageError, describe_error
from ._jsonl import JsonLines, iso_time, to_jsonable
from ._kinds import API, KINDS, Kind, lookup_kind, validate_id, validate_project
from ._options import RateSpec, parse_ids_text
from ._tally import Tally

__all__ = [
    "Adder",
    "Feed",
    "budget_figures",
    "read_ids",
    "run_export",
    "run_status",
    "run_watch",
    "summary_table",
    "transition_record",
    "watch_targets",
]

_MAX_LISTED_FAILURES = 20


# -- inputs ----------------------------------------------------------------------------------


def read_ids(
    ids: Iterable[str], ids_file: str | None, *, stdin: IO[str] | None = None
) -> list[str]:
    """Ids from the command line and ``--ids-file`` (``-``: stdin), duplicates dropped."""
    collected = list(ids)
    if ids_file is not None:
        if ids_file == "-":
            collected.extend(parse_ids_text(stdin or sys.stdin))
        else:
            try:
                with open(ids_file, encoding="utf-8") as handle:
                    collected.extend(parse_ids_text(handle))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise UsageError(f"cannot read ids file {ids_file!r}: {reason}") from None
    return list(dict.fromkeys(collected))


def _base_url(args: argparse.Namespace, kind: Kind) -> str | None:
    """``--base-url``; else, unless ``--region`` is given, ``D360_BASE_URL`` (as `Client()`
    reads it) for the Document360 kinds.  SmartDocumentor has a host of its own."""
    if args.base_url is not None:
        return check_base_url(args.base_url)
    from_env = os.environ.get("D360_BASE_URL", "").strip()
    if from_env and args.region is None and kind.api is not API.SMARTDOCUMENTOR:
        try:
            return check_base_url(from_env)
        except UsageError:
            raise UsageError(
                f"D360_BASE_URL must be an absolute http(s) URL, got {from_env!r}"
            ) from None
    return None


def _open(
    args: argparse.Namespace, kind: Kind, project: str | None
) -> AbstractAsyncContextManager[Connection]:
    """The `connect` context for the shared options (credentials read first)."""
    credentials = read_credentials(kind.api)
    return connect(
        kind,
        credentials,
        project=project,
        base_url=_base_url(args, kind),
        region=args.region,
        rate=args.rate_limit,
        redis_url=args.redis_url,
        max_concurrency=args.max_concurrency,
    )


# -- transitions -------------------------------------------------------------------------------


def transition_record(transition: Transition[Any], ident: str, operation: str) -> dict[str, Any]:
    """The ``--json`` line for one transition."""
    error = transition.error
    return {
        "type": "transition",
        "id": ident,
        "operation": operation,
        "kind": transition.kind.value,
        "previous": transition.previous.value if transition.previous is not None else None,
        "phase": transition.phase.value,
        "raw_status": to_jsonable(transition.raw_status),
        "observed_at": iso_time(transition.observed_at),
        "polls": transition.polls,
        "final": transition.final,
        "error": describe_error(error) if error is not None else None,
        "eta": None
        if transition.eta is None
        else {
            "seconds": round(transition.eta.seconds, 1),
            "low": round(transition.eta.low, 1),
            "high": round(transition.eta.high, 1),
        },
    }


def _is_auth_error(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, AuthenticationError | PermissionDenied):
            return True
        error = error.__cause__
    return False


def _record_transition(tally: Tally, transition: Transition[Any], now: float) -> None:
    kind = transition.kind
    error = transition.error
    if kind is TransitionKind.ERROR:
        text: str | None = describe_error(error) if error is not None else "ended on an error"
    else:
        text = None
    tally.observe(
        transition.target.key,
        phase=transition.phase if kind is TransitionKind.CHANGED else None,
        raw_status=transition.raw_status,
        polls=transition.polls,
        now=now,
        error=text,
        timed_out=kind is TransitionKind.TIMED_OUT,
        stalled=kind is TransitionKind.STALLED,
    )
    if transition.final and kind is TransitionKind.CHANGED and not transition.phase.is_terminal:
        # ``until=`` stopped it in a live phase: it ended the way its caller wanted.
        tally.get(transition.target.key).outcome = "succeeded"
    if _is_auth_error(error):
        tally.auth_failed = True


@contextlib.asynccontextmanager
async def _ticking(
    display: Display, view: Callable[[], ProgressView], every: float
) -> AsyncIterator[None]:
    """Refresh ``display`` every ``every`` seconds while the block runs."""

    async def tick() -> None:
        while True:
            display.update(view())
            await asyncio.sleep(every)

    display.start()
    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        display.stop(view())


def budget_figures(stats: list[LimiterStats], rate: RateSpec | None) -> tuple[int, int, str | None]:
    """Requests sent, 429s seen, and the budget as text, over every rate-limit key."""
    requests = sum(s.requests for s in stats)
    throttled = sum(s.throttled for s in stats)
    keys = f" x {len(stats)} keys" if len(stats) > 1 else ""
    limits = sorted({s.limit for s in stats if s.limit})
    if rate is not None:
        budget: str | None = f"{rate}{keys}"
    elif limits:
        budget = "/".join(str(limit) for limit in limits) + f" per window{keys}"
    else:
        budget = None
    return requests, throttled, budget


Adder = Callable[[Target[Any], str, str], None]
"""``add(target, group, ident)``: put one more operation under watch."""

Feed = Callable[[Adder, Tally], Coroutine[Any, Any, None]]
"""Starts operations while the watch runs and hands each one to ``add``."""


async def watch_targets(
    targets: list[tuple[Target[Any], str, str]],
    *,
    stats: Callable[[], list[LimiterStats]],
    policy: PollPolicy,
    json_out: JsonLines | None,
    display: Display,
    title: str,
    rate: RateSpec | None = None,
    echo: IO[str] | None = None,
    max_concurrency: int | None = None,
    expected: int = 0,
    feed: Feed | None = None,
    extra_notes: Callable[[], tuple[tuple[str, str], ...]] = tuple,
    on_transition: Callable[[Transition[Any], float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    priors: Priors | None = None,
    save_priors: Callable[[str], None] | None = None,
) -> Tally:
    """Watch ``(target, group, id)`` triples to the end, reporting as configured.

    With ``feed``, more operations are started while the watch runs; ``expected`` is then
    the final number of operations, and the watch ends once all of them have ended.
    """
    started = clock()
    tally = Tally(
        ((t.key, group, ident) for t, group, ident in targets),
        started_at=started,
        expected=expected,
    )
    idents = {t.key: (group, ident) for t, group, ident in targets}
    recent: deque[str] = deque(maxlen=6)
    live = isinstance(display, LiveDisplay)
    model_eta: list[float | None] = [None, -math.inf]  # [seconds left, when computed]

    def eta(now: float) -> float | None:
        """The learned models' expected time for all (refreshed every 2 s: O(targets)),
        falling back to the tally's extrapolation while some kind has no model yet."""
        if stream.live == 0:
            return tally.eta(now)
        if now - (model_eta[1] or 0.0) >= 2.0:
            found = stream.eta_all()
            model_eta[:] = [None if found is None else found.seconds, now]
        if model_eta[0] is not None:
            return max(0.0, model_eta[0] - (now - (model_eta[1] or now)))
        return tally.eta(now)

    def view() -> ProgressView:
        now = clock()
        requests, throttled, budget = budget_figures(stats(), rate)
        notes = extra_notes()
        if live and recent:
            notes += (("latest", recent[-1]),)
        return ProgressView(
            title=title,
            total=tally.total,
            done=tally.done,
            phases=tally.by_phase(),
            elapsed=tally.elapsed(now),
            eta=eta(now),
            requests=requests,
            budget=budget,
            throttled=throttled,
            notes=notes,
        )

    stream = watch(
        [t for t, _, _ in targets],
        policy=policy,
        keep_open=feed is not None,
        max_concurrency=max_concurrency if max_concurrency is not None else 16,
        priors=priors,
    )
    async with _ticking(display, view, 0.25 if live else 1.0), stream:

        def add(target: Target[Any], group: str, ident: str) -> None:
            idents[target.key] = (group, ident)
            tally.add(target.key, group, ident)
            stream.add(target)

        feeding = asyncio.create_task(feed(add, tally)) if feed is not None else None
        try:
            if tally.total == 0 or (feed is not None and tally.done >= tally.total):
                return tally
            async for transition in stream:
                now = clock()
                _record_transition(tally, transition, now)
                if on_transition is not None:
                    on_transition(transition, now)
                group, ident = idents.get(transition.target.key, ("?", transition.target.key))
                if json_out is not None:
                    json_out.write(transition_record(transition, ident, group))
                else:
                    line = _transition_line(transition, ident, group, tally.elapsed(now))
                    recent.append(line)
                    if echo is not None:
                        echo.write(line + "\n")
                        echo.flush()
                if feed is not None and tally.done >= tally.total:
                    break
        finally:
            if feeding is not None:
                if not feeding.done():
                    feeding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeding
            if save_priors is not None:
                save_priors(stream.priors())
    tally.give_up(clock())
    return tally


def _transition_line(transition: Transition[Any], ident: str, group: str, elapsed: float) -> str:
    kind = transition.kind
    previous = transition.previous.value if transition.previous is not None else "-"
    text = f"[{format_duration(elapsed)}] {group} {ident}: "
    if kind is TransitionKind.CHANGED:
        text += f"{previous} -> {transition.phase.value} ({transition.raw_status})"
    elif kind is TransitionKind.ERROR:
        error = transition.error
        text += f"error: {describe_error(error) if error is not None else 'unknown'}"
    else:
        text += kind.value.replace("_", " ")
    return text


def summary_table(tally: Tally, title: str) -> SummaryTable:
    rows: list[tuple[str, ...]] = []
    for group in tally.groups():
        records = [r for r in tally.records if r.group == group]
        out = tally.by_outcome(group)
        polls = sum(r.polls for r in records) / max(1, len(records))
        rows.append(
            (
                group,
                str(len(records)),
                str(out["succeeded"]),
                str(out["failed"] + out["cancelled"]),
                str(out["timed_out"]),
                str(out["error"]),
                f"{polls:.1f}",
            )
        )
    footer: list[str] = []
    bad = [r for r in tally.records if r.outcome not in ("succeeded", None)]
    for record in bad[:_MAX_LISTED_FAILURES]:
        why = record.error or (record.outcome or "").replace("_", " ")
        footer.append(f"  {record.group} {record.ident}: {why}")
    if len(bad) > _MAX_LISTED_FAILURES:
        footer.append(f"  ... and {len(bad) - _MAX_LISTED_FAILURES} more")
    return SummaryTable(
        title=title,
        headers=("kind", "total", "succeeded", "failed", "timed out", "errors", "polls/op"),
        rows=tuple(rows),
        footer=tuple(footer),
    )


# -- watch -----------------------------------------------------------------------------------


def _policy(args: argparse.Namespace) -> PollPolicy:
    policy = PollPolicy(watch_timeout=args.timeout) if args.timeout else PollPolicy()
    interval = getattr(args, "interval", None)
    if interval:
        policy = attrs.evolve(
            policy, interval=interval, max_interval=max(interval, policy.max_interval)
        )
    return policy


def _read_priors(args: argparse.Namespace) -> str | None:
    path = getattr(args, "priors", None)
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
        load_priors(text)
    except OSError as exc:
        raise UsageError(f"cannot read --priors {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--priors {path} is not a priors or checkpoint file: {exc}") from None
    return text


def _priors_writer(args: argparse.Namespace) -> Callable[[str], None] | None:
    path = getattr(args, "save_priors", None)
    if not path:
        return None

    def write(text: str) -> None:
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)  # atomic: a reader never sees half a file

    return write


def _echo(display: Display, json_out: JsonLines | None) -> IO[str] | None:
    """Plain output lists every transition; the live panel and ``--json`` do not."""
    return sys.stdout if json_out is None and not isinstance(display, LiveDisplay) else None


async def _preflight(target: Target[Any]) -> None:
    """One status read before watching: a refused credential or an unreachable host is
    reported once, clearly, instead of as one error per operation."""
    try:
        await target.poll()
    except (AuthenticationError, PermissionDenied, TransportError):
        raise
    except D360Error:
        pass  # not found, bad status...: the watch reports it for that operation alone


async def run_watch(args: argparse.Namespace) -> int:
    """``d360-async watch KIND ID...``."""
    kind = lookup_kind(args.kind)
    project = validate_project(kind, args.project)
    texts = read_ids(args.ids, args.ids_file)
    if not texts:
        raise UsageError("no ids given: pass IDs or --ids-file FILE")
    ids = [validate_id(kind, text) for text in texts]
    json_out = JsonLines(sys.stdout) if args.json else None
    async with _open(args, kind, project) as conn:
        triples = [(conn.make_target(i), kind.name, str(i)) for i in ids]
        await _preflight(triples[0][0])
        display = choose_display(json_output=args.json, stream=sys.stdout, warn=sys.stderr)
        tally = await watch_targets(
            triples,
            stats=conn.stats,
            policy=_policy(args),
            json_out=json_out,
            display=display,
            title=f"d360-async watch {kind.name}",
            rate=args.rate_limit,
            echo=_echo(display, json_out),
            max_concurrency=args.max_concurrency,
            priors=_read_priors(args),
            save_priors=_priors_writer(args),
        )
        requests, throttled, _ = budget_figures(conn.stats(), None)
    if json_out is not None:
        summary = tally.summary(time.monotonic())
        json_out.write(
            {
                "type": "summary",
                "command": "watch",
                **summary,
                "requests": requests,
                "throttled": throttled,
            }
        )
    else:
        display.table(summary_table(tally, f"{tally.done}/{tally.total} operations ended"))
    return int(tally.exit_code())


# -- status ----------------------------------------------------------------------------------


def _snapshot_fields(snapshot: Any) -> dict[str, Any]:
    """The snapshot as plain data, every URL stripped of its signature."""
    data = to_jsonable(snapshot)
    return _redact_urls(data) if isinstance(data, dict) else {"value": data}


def _redact_urls(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return redact_url(value)
    if isinstance(value, dict):
        return {k: _redact_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_urls(v) for v in value]
    return value


async def run_status(args: argparse.Namespace) -> int:
    """``d360-async status KIND ID``: fetch one status once.

    Exit code 1 when the operation failed or was cancelled, else 0 (whatever its phase).
    """
    kind = lookup_kind(args.kind)
    project = validate_project(kind, args.project)
    ident = validate_id(kind, args.id)
    async with _open(args, kind, project) as conn:
        target = conn.make_target(ident)
        async with asyncio.timeout(args.timeout):
            observation = await target.poll()
    phase = observation.phase
    snapshot = _snapshot_fields(observation.snapshot)
    code = ExitCode.FAILED if phase in (Phase.FAILED, Phase.CANCELLED) else ExitCode.OK
    if args.json:
        out = JsonLines(sys.stdout)
        out.write(
            {
                "type": "status",
                "id": str(ident),
                "operation": kind.name,
                "phase": phase.value,
                "raw_status": to_jsonable(observation.raw_status),
                "terminal": phase.is_terminal,
                "snapshot": snapshot,
                "warnings": list(observation.warnings),
            }
        )
        out.write(
            {
                "type": "summary",
                "command": "status",
                "id": str(ident),
                "phase": phase.value,
                "exit_code": int(code),
            }
        )
    else:
        display = choose_display(json_output=False, stream=sys.stdout, warn=sys.stderr)
        rows: list[tuple[str, ...]] = [
            ("kind", kind.name),
            ("id", str(ident)),
            ("phase", phase.value),
            ("raw status", str(observation.raw_status)),
        ]
        shown = {str(ident), str(observation.raw_status)}
        rows.extend(
            (name, "-" if value is None else str(value))
            for name, value in snapshot.items()
            if str(value) not in shown  # the id and the status are already in the table
        )
        rows.extend(("warning", text) for text in observation.warnings)
        display.table(
            SummaryTable(
                title=f"{kind.title} {ident}",
                headers=("field", "value"),
                rows=tuple(rows),
                left=2,
            )
        )
    return int(code)


# -- export ----------------------------------------------------------------------------------


async def run_export(args: argparse.Namespace) -> int:
    """``d360-async export --project P --workspace W [--wait] [--download PATH]``."""
    kind = KINDS[TargetKind.V3_EXPORT]
    project = validate_project(kind, args.project)
    download = Path(args.download) if args.download else None
    if download is not None and not download.parent.is_dir():
        raise UsageError(f"cannot write {str(download)!r}: its directory does not exist")
    json_out = JsonLines(sys.stdout) if args.json else None
    display = choose_display(json_output=args.json, stream=sys.stdout, warn=sys.stderr)
    async with _open(args, kind, project) as conn:
        if conn.client is None:  # pragma: no cover - exports always use the V3 client
            raise UsageError("exports need the Document360 API")
        started = await conn.client.exports.create(
            project or "", workspace_id=args.workspace, format=args.format, lang_code=args.lang
        )
        export_id = str(started.id)
        if json_out is not None:
            json_out.write({"type": "export", "event": "started", "id": export_id})
        else:
            display.print(f"export {export_id} started")
        if not (args.wait or download is not None):
            if json_out is not None:
                json_out.write(
                    {
                        "type": "summary",
                        "command": "export",
                        "id": export_id,
                        "outcome": "started",
                        "error": None,
                        "path": None,
                        "bytes": None,
                        "exit_code": int(ExitCode.OK),
                    }
                )
            return int(ExitCode.OK)
        target = conn.make_target(export_id)
        tally = await watch_targets(
            [(target, kind.name, export_id)],
            stats=conn.stats,
            policy=_policy(args),
            json_out=json_out,
            display=display,
            title=f"export {export_id}",
            rate=args.rate_limit,
            echo=_echo(display, json_out),
        )
        record = tally.get(target.key)
        path: Path | None = None
        if record.outcome == "succeeded" and download is not None:
            with TransferBar(
                sys.stdout, description="download", live=isinstance(display, LiveDisplay)
            ) as bar:
                path = await conn.client.exports.download(
                    project or "",
                    export_id,
                    download,
                    progress=bar.advance if json_out is None else None,
                )
    code = tally.exit_code()
    size = path.stat().st_size if path is not None else None
    if json_out is not None:
        json_out.write(
            {
                "type": "summary",
                "command": "export",
                "id": export_id,
                "outcome": record.outcome,
                "error": record.error,
                "path": str(path) if path is not None else None,
                "bytes": size,
                "exit_code": int(code),
            }
        )
    elif record.outcome != "succeeded":
        why = record.error or (record.outcome or "unfinished").replace("_", " ")
        display.print(f"export {export_id} did not succeed: {why}")
    elif path is not None:
        display.print(f"export {export_id} saved to {path} ({size} bytes)")
    else:
        display.print(f"export {export_id} completed")
    return int(code)
