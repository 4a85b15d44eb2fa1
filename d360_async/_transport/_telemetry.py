"""OpenTelemetry traces and metrics, built on [Hooks][d360_async.Hooks] and nothing else.

Native instrumentation as OpenTelemetry asks of a library: only ``opentelemetry-api`` is used
(the ``otel`` extra), through the *global* providers unless a [Telemetry][d360_async.Telemetry]
names others, so nothing is recorded until the application configures the SDK.  Without the
API installed, this module still imports and every client runs without telemetry.

What is emitted, decided once here:

* **One CLIENT span per call** (one ``await client.exports.get(...)``, one watch poll), from
  the moment it asks the limiter to its end, named after the method and the URL's template
  (ids replaced by ``{id}``).  Attributes follow the HTTP client semantic conventions
  (``http.request.method``, redacted ``url.full``, ``url.template``, ``server.address``,
  ``server.port``, ``http.response.status_code``, ``error.type``,
  ``http.request.resend_count``); events record each limiter wait (``d360.rate_limit.wait``)
  and each retry (``d360.retry`` with reason and delay).  The conventions draw one span per
  physical attempt; the library draws one per call so that waits and retry delays, the time
  the caller experiences, are inside the span; ``http.request.resend_count`` counts the
  resends it made.
* **Trace context** (``traceparent``) goes out on every API request.  While an attempt is in
  flight the span is the current one and HTTP instrumentation is suppressed for it, so
  ``opentelemetry-instrumentation-aiohttp-client`` adds no second span for the same request.
  Downloads from a signed link (another host, not the API) carry no trace header and no span
  of ours.
* **Metrics** per attempt, per limiter wait, per transition and per finished target; gauges of
  each rate-limit key's learned limit, remaining budget and reset, labelled by the key's
  fingerprint, never its credential.
* **Nothing secret**: URLs come redacted from the hooks, errors are described by their type and
  status only (never by their message), and keys by fingerprint.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import attrs

from d360_async._core._config import (
    Hooks,
    LimiterWaitEvent,
    RequestEndEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
)
from d360_async._core._errors import D360Error
from d360_async._core._watch._values import TargetFinished, Transition, TransitionKind
from d360_async._version import __version__

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by the no-extra test in a subprocess
    AVAILABLE = False
else:
    AVAILABLE = True

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from d360_async._core._ratelimit._protocol import LimiterStats, RateLimiter

__all__ = ["AVAILABLE", "SCOPE", "Telemetry", "instrument", "url_template"]

SCOPE: Final = "d360_async"
"""The instrumentation scope name of every span and metric."""

_SCHEMA_URL: Final = "https://opentelemetry.io/schemas/1.26.0"

_RECHECK: Final = 0.5
"""Seconds between two looks at whether the application configured global providers."""

# Path segments that name a resource (a collection, an action), not an instance; anything
# else with a digit in it is an id.  Vendor paths, e.g. "/v3/projects/{project_id}/exports",
# "/v2/Drive/Folders/DeleteFile/Status/{task_id}" (Document360 API reference).
_VERSION = re.compile(r"v\d+(?:\.\d+)*")
_DIGIT = re.compile(r"\d")


def url_template(path: str) -> str:
    """The low-cardinality form of a request path: segments with a digit become ``{id}``.

    ``/v3/projects/p1/exports/42`` gives ``/v3/projects/{id}/exports/{id}``; the version
    segment stays.
    """
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part and _DIGIT.search(part) and not _VERSION.fullmatch(part):
            parts[i] = "{id}"
    return "/".join(parts)


def _status_class(status: int | None) -> str:
    return "none" if status is None else f"{status // 100}xx"


def _error_type(error: BaseException | None, status: int | None) -> str | None:
    """``error.type`` as the conventions define it: the status code, else the exception type."""
    if isinstance(error, D360Error) and error.status is not None:
        return str(error.status)
    if error is not None:
        return type(error).__name__
    if status is not None and status >= 400:
        return str(status)
    return None


@attrs.define(slots=True, eq=False)
class _Call:
    """What the telemetry remembers about one call until its end event."""

    span: Span
    attributes: dict[str, str | int]  # shared by this call's metric points
    token: object | None = None  # the context attached while an attempt is in flight
    pending: bool = False  # an attempt was sent and neither answered nor failed yet
    attempt: int = 0
    status: int | None = None


# Every instrument: (the meter's factory, name, unit, description), by attribute (or, for the
# observable gauges, by the callback that reports them).
_INSTRUMENTS: Final[dict[str, tuple[str, str, str, str]]] = {
    "request_duration": (
        "histogram",
        "http.client.request.duration",
        "s",
        "Duration of HTTP client requests (one point per attempt).",
    ),
    "requests": (
        "counter",
        "d360.requests",
        "{request}",
        "Requests sent (attempts), by API, method and status class.",
    ),
    "throttled": (
        "counter",
        "d360.rate_limit.throttled",
        "{response}",
        "429 Too Many Requests answers.",
    ),
    "limiter_wait": (
        "histogram",
        "d360.rate_limit.wait",
        "s",
        "Time an attempt waited for the rate limiter to admit it.",
    ),
    "_observe_limit": (
        "observable_gauge",
        "d360.rate_limit.limit",
        "{request}",
        "The last X-RateLimit-Limit the server announced, per rate-limit key.",
    ),
    "_observe_remaining": (
        "observable_gauge",
        "d360.rate_limit.remaining",
        "{request}",
        "The estimated remaining budget of the current window, per key.",
    ),
    "_observe_reset": (
        "observable_gauge",
        "d360.rate_limit.reset",
        "s",
        "Seconds until the server's rate-limit window resets, per key.",
    ),
    "targets": (
        "up_down_counter",
        "d360.watch.targets",
        "{target}",
        "Watched targets by the phase last seen (finished ones leave it).",
    ),
    "transitions": (
        "counter",
        "d360.watch.transitions",
        "{transition}",
        "Transitions handed to watch consumers, by kind.",
    ),
    "polls": (
        "histogram",
        "d360.watch.polls",
        "{poll}",
        "Polls a watched target took, recorded when it finished.",
    ),
    "target_duration": (
        "histogram",
        "d360.watch.target.duration",
        "s",
        "Time from a target's first sight to its terminal transition.",
    ),
}


def _instrument(meter: Any, key: str, **extra: Any) -> Any:
    """Create instrument `key` of `_INSTRUMENTS` on `meter`."""
    factory, name, unit, description = _INSTRUMENTS[key]
    create = getattr(meter, f"create_{factory}")
    return create(name, unit=unit, description=description, **extra)


class Telemetry:
    """Where a client's spans and metrics go.

    Clients use the global tracer and meter providers by default (``telemetry=True``), so an
    application that configured the OpenTelemetry SDK needs no code change; pass a
    ``Telemetry`` with explicit providers to send one client's signals elsewhere, or
    ``telemetry=False`` to emit nothing.  Needs the ``otel`` extra (``opentelemetry-api``).

    Added in version 0.1.0.

    Args:
        tracer_provider: the provider spans come from (default: the global one).
        meter_provider: the provider instruments come from (default: the global one).

    Raises:
        ImportError: ``opentelemetry-api`` is not installed.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if not AVAILABLE:
            raise ImportError(
                "Telemetry needs opentelemetry-api: pip install 'd360-async[otel]'"
            ) from None
        self._tracer = trace.get_tracer(
            SCOPE, __version__, tracer_provider=tracer_provider, schema_url=_SCHEMA_URL
        )
        meter = metrics.get_meter(
            SCOPE, __version__, meter_provider=meter_provider, schema_url=_SCHEMA_URL
        )
        self._calls: dict[int, _Call] = {}
        self._owners: weakref.WeakSet[Any] = weakref.WeakSet()
        self._phases: dict[str, str] = {}  # watched target key -> phase it is counted in
        self._suppress = getattr(otel_context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
        self._global_traces = tracer_provider is None
        self._global_metrics = meter_provider is None
        self._live = not (self._global_traces and self._global_metrics)
        self._checked_at = -_RECHECK  # monotonic time of the last look at the globals

        self.request_duration = _instrument(meter, "request_duration")
        self.requests = _instrument(meter, "requests")
        self.throttled = _instrument(meter, "throttled")
        self.limiter_wait = _instrument(meter, "limiter_wait")
        _instrument(meter, "_observe_limit", callbacks=[self._observe_limit])
        _instrument(meter, "_observe_remaining", callbacks=[self._observe_remaining])
        _instrument(meter, "_observe_reset", callbacks=[self._observe_reset])
        self.targets = _instrument(meter, "targets")
        self.transitions = _instrument(meter, "transitions")
        self.polls = _instrument(meter, "polls")
        self.target_duration = _instrument(meter, "target_duration")

    def __repr__(self) -> str:
        return f"<Telemetry calls_open={len(self._calls)} clients={len(self._owners)}>"

    def hooks(self, service: str = "document360") -> Hooks:
        """The [Hooks][d360_async.Hooks] that feed this telemetry, for one kind of client.

        Clients add them to their own hooks; a [Watch][d360_async.Watch] built directly gets
        them through ``hooks=``.

        Args:
            service: ``"document360"`` (the API is told from the path: ``v3``, ``v2``) or
                ``"smartdocumentor"``; the ``d360.api`` attribute.
        """
        feed = _Feed(self, service)
        return Hooks(
            on_request=[feed.on_request],
            on_response=[feed.on_response],
            on_retry=[feed.on_retry],
            on_limiter_wait=[feed.on_limiter_wait],
            on_request_end=[feed.on_request_end],
            on_transition=[self.on_transition],
            on_target_finished=[self.on_target_finished],
        )._idle_when(self._idle)

    def _idle(self) -> bool:
        """Whether a call starting now would record nothing (no SDK configured yet): the
        transport then builds no events for it at all."""
        return not self._recording()

    def recording(self) -> bool:
        """Whether anything records what this telemetry emits.

        False only while both signals go to global providers that the application has not
        set yet: calls then skip the telemetry's work (it would all go to no-ops).  Once a
        global provider is set, it cannot be unset, so the answer stays True.
        """
        if self._live:
            return True
        self._checked_at = time.monotonic()
        traces = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        # The API's placeholder meter provider has no public name; any other one records.
        meters = type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"
        self._live = (self._global_traces and traces) or (self._global_metrics and meters)
        return self._live

    def _recording(self) -> bool:
        """[recording][d360_async.Telemetry.recording], looking at the globals at most every
        half second: calls made within half a second of the SDK's set-up may go unrecorded."""
        if self._live:
            return True
        if time.monotonic() - self._checked_at < _RECHECK:
            return False
        return self.recording()

    def observe(self, owner: object) -> None:
        """Report the rate-limit gauges of a client (held weakly; closed clients drop out)."""
        self._owners.add(owner)

    # -- watch events ---------------------------------------------------------------------

    def on_transition(self, transition: Transition[Any]) -> None:
        """Count one watch transition and move its target between the by-phase counts."""
        if not self._recording():
            return
        kind = transition.target.kind
        phase = transition.phase.value
        self.transitions.add(
            1,
            {
                "d360.transition.kind": transition.kind.value,
                "d360.target.kind": kind,
                "d360.phase": phase,
            },
        )
        if transition.kind is TransitionKind.CHANGED:
            key = transition.target.key
            before = self._phases.get(key)
            if before != phase:
                if before is not None:
                    self.targets.add(-1, {"d360.target.kind": kind, "d360.phase": before})
                self.targets.add(1, {"d360.target.kind": kind, "d360.phase": phase})
                self._phases[key] = phase

    def on_target_finished(self, finished: TargetFinished) -> None:
        """Record a finished target's polls and time to its end; drop it from the counts."""
        before = self._phases.pop(finished.key, None)
        if before is not None:
            self.targets.add(-1, {"d360.target.kind": finished.kind, "d360.phase": before})
        if not self._recording():
            return
        last = finished.transition
        if last is not None:
            outcome = last.kind.value
        else:
            outcome = "abandoned" if finished.abandoned else "removed"
        attributes = {"d360.target.kind": finished.kind, "d360.outcome": outcome}
        self.polls.record(finished.polls, attributes)
        if (
            last is not None
            and last.kind is TransitionKind.CHANGED
            and last.phase.is_terminal
            and finished.first_seen_at is not None
        ):
            seconds = (finished.finished_at - finished.first_seen_at).total_seconds()
            self.target_duration.record(
                max(0.0, seconds),
                {"d360.target.kind": finished.kind, "d360.phase": last.phase.value},
            )

    # -- rate-limit gauges ----------------------------------------------------------------

    def _stats(self) -> Iterator[LimiterStats]:
        """Every key of every observed client's limiter, each limiter once."""
        seen: set[int] = set()
        for owner in list(self._owners):
            limiter: RateLimiter | None = getattr(owner, "rate_limiter", None)
            if limiter is None or id(limiter) in seen or getattr(owner, "closed", False):
                continue
            seen.add(id(limiter))
            # Metric readers may collect from their own thread while the event loop updates
            # the limiter; a snapshot that raced with an update is skipped, not half-read.
            for _ in range(3):
                try:
                    stats = list(limiter.stats())
                except RuntimeError:
                    continue
                yield from stats
                break

    def _gauge(self, field: str) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        for stats in self._stats():
            value = getattr(stats, field)
            if value is None:
                continue
            key = stats.key
            attributes: dict[str, str] = {
                "d360.rate_limit.key": key.token_fingerprint,
                "server.address": key.host.rsplit(":", 1)[0],
            }
            if key.project_id is not None:
                attributes["d360.project_id"] = key.project_id
            yield Observation(value, attributes)

    def _observe_limit(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._gauge("limit")

    def _observe_remaining(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._gauge("remaining")

    def _observe_reset(self, _options: CallbackOptions) -> Iterable[Observation]:
        return self._gauge("reset_after")


class _Feed:
    """The request-side hooks of one client: spans and request metrics."""

    __slots__ = ("_service", "_telemetry")

    def __init__(self, telemetry: Telemetry, service: str) -> None:
        self._telemetry = telemetry
        self._service = service

    def _api(self, path: str) -> str:
        if self._service != "document360":
            return self._service
        version = path.split("/", 2)[1] if path.startswith("/") else ""
        return version if _VERSION.fullmatch(version) else self._service

    def _call(self, call: int, method: str, url: str, waited: float = 0.0) -> _Call | None:
        """The call's record, starting its span (back-dated by a first wait) if new.

        None when nothing records (no SDK configured yet): the call is then not followed.
        """
        calls = self._telemetry._calls
        found = calls.get(call)
        if found is not None:
            return found
        if not self._telemetry._recording():
            return None
        parts = urllib.parse.urlsplit(url)
        template = url_template(parts.path)
        span_attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.full": url,
            "url.template": template,
            "server.address": parts.hostname or "",
        }
        if parts.port is not None:
            span_attributes["server.port"] = parts.port
        api = self._api(parts.path)
        span_attributes["d360.api"] = api
        start = time.time_ns() - int(waited * 1e9)
        span = self._telemetry._tracer.start_span(
            f"{method} {template}",
            kind=SpanKind.CLIENT,
            attributes=span_attributes,
            start_time=start,
        )
        metric_attributes: dict[str, str | int] = {
            "d360.api": api,
            "http.request.method": method,
            "server.address": parts.hostname or "",
        }
        record = calls[call] = _Call(span, metric_attributes)
        return record

    def _settle(self, record: _Call, error: BaseException | None) -> None:
        """Leave the attempt's context, and count an attempt that got no answer."""
        if record.token is not None:
            otel_context.detach(record.token)  # type: ignore[arg-type]
            record.token = None
        if record.pending:
            record.pending = False
            attributes = dict(record.attributes)
            attributes["d360.status_class"] = "none"
            attributes["error.type"] = _error_type(error, None) or "unknown"
            self._telemetry.requests.add(1, attributes)

    def on_limiter_wait(self, event: LimiterWaitEvent) -> None:
        record = self._call(event.call, event.method, event.url, waited=event.waited)
        if record is None:
            return
        priority = event.priority.name.lower()
        telemetry = self._telemetry
        telemetry.limiter_wait.record(
            event.waited,
            {
                "d360.api": record.attributes["d360.api"],
                "d360.rate_limit.key": event.key.token_fingerprint,
                "d360.rate_limit.priority": priority,
            },
        )
        if event.waited > 0:
            record.span.add_event(
                "d360.rate_limit.wait",
                {
                    "d360.rate_limit.waited": event.waited,
                    "d360.rate_limit.priority": priority,
                    "d360.rate_limit.key": event.key.token_fingerprint,
                    "d360.attempt": event.attempt,
                },
            )

    def on_request(self, event: RequestEvent) -> None:
        record = self._call(event.call, event.method, event.url)
        if record is None:
            return
        self._settle(record, None)
        record.attempt = event.attempt
        record.pending = True
        span = record.span
        if event.attempt > 1:
            span.set_attribute("http.request.resend_count", event.attempt - 1)
        ctx = trace.set_span_in_context(span)
        suppress = self._telemetry._suppress
        if suppress is not None:
            # Tells HTTP instrumentations (aiohttp-client) this request has its span already.
            ctx = otel_context.set_value(suppress, True, ctx)
        propagate.inject(event.headers, context=ctx)
        record.token = otel_context.attach(ctx)

    def on_response(self, event: ResponseEvent) -> None:
        record = self._telemetry._calls.get(event.call)
        if record is None:
            return
        if record.token is not None:
            otel_context.detach(record.token)  # type: ignore[arg-type]
            record.token = None
        record.pending = False
        record.status = status = event.status
        telemetry = self._telemetry
        attributes = dict(record.attributes)
        attributes["d360.status_class"] = _status_class(status)
        attributes["http.response.status_code"] = status
        telemetry.requests.add(1, attributes)
        duration = dict(record.attributes)
        duration["http.response.status_code"] = status
        if status >= 400:
            duration["error.type"] = str(status)
        telemetry.request_duration.record(event.elapsed, duration)
        if status == 429:
            telemetry.throttled.add(1, record.attributes)
        record.span.set_attribute("http.response.status_code", status)

    def on_retry(self, event: RetryEvent) -> None:
        record = self._telemetry._calls.get(event.call)
        if record is None:
            return
        self._settle(record, event.error)
        record.span.add_event(
            "d360.retry",
            {
                "d360.attempt": event.attempt,
                "d360.retry.delay": event.delay,
                "d360.retry.reason": _error_type(event.error, None) or "unknown",
            },
        )

    def on_request_end(self, event: RequestEndEvent) -> None:
        calls = self._telemetry._calls
        record = calls.get(event.call) or self._call(event.call, event.method, event.url)
        if record is None:
            return
        error = event.error
        self._settle(record, error)
        del calls[event.call]
        span = record.span
        if error is not None:
            if isinstance(error, D360Error) and error.status is not None:
                span.set_attribute("http.response.status_code", error.status)
            kind = _error_type(error, None)
            if kind is not None:
                span.set_attribute("error.type", kind)
            if isinstance(error, BaseException) and not isinstance(error, Exception):
                span.set_attribute("d360.cancelled", True)  # cancelled: not the request's fault
            else:
                span.set_status(Status(StatusCode.ERROR, kind))
        span.end()


_default: Telemetry | None = None


def _global() -> Telemetry:
    global _default
    if _default is None:
        _default = Telemetry()
    return _default


def instrument(
    owner: object, hooks: Hooks | None, telemetry: bool | Telemetry, service: str
) -> Hooks | None:
    """The hooks a client's transport gets: the user's, then the telemetry's when enabled."""
    if telemetry is False or (telemetry is True and not AVAILABLE):
        return hooks
    if not isinstance(telemetry, Telemetry):
        if telemetry is not True:
            raise TypeError("telemetry must be True, False or a Telemetry")
        telemetry = _global()
    telemetry.observe(owner)
    own = telemetry.hooks(service)
    return own if hooks is None else hooks + own
