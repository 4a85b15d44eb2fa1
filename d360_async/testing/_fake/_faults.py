"""Fault injection for the fake server: rates drawn from a seeded RNG, or one-shot scripts."""

from __future__ import annotations

import random
from collections.abc import Iterable

import attrs

from ._config import (
    API_ROUTES,
    FAULT_KINDS,
    ROUTES,
    STATUS_ROUTES,
    FaultKind,
    resolve_routes,
)

__all__ = ["FakeFaults", "Fault"]

# Where each fault makes sense. A fault named for a route outside this set is a ValueError.
_JSON_ROUTES = ROUTES - {"download"}
_APPLICABLE: dict[FaultKind, frozenset[str]] = {
    "http_500": ROUTES,
    "http_503": ROUTES,
    "abort": ROUTES,
    "slow": ROUTES,
    "malformed_json": _JSON_ROUTES,
    "html_502": ROUTES,
    "truncated": ROUTES,
    "unknown_status": STATUS_ROUTES,
    "extra_fields": _JSON_ROUTES,
    "missing_fields": _JSON_ROUTES,
    "expired_link": frozenset({"download"}),
}
_DEFAULT_ROUTES: dict[FaultKind, frozenset[str]] = {
    kind: (API_ROUTES & routes if kind != "expired_link" else routes)
    for kind, routes in _APPLICABLE.items()
}


@attrs.frozen(slots=True)
class Fault:
    """One fault, as configured and as applied to a request.

    Attributes:
        kind: the fault kind.
        routes: the route names it applies to.
        rate: probability per matching request (for rate-based faults; 0 for one-shots).
        delay: seconds a ``slow`` response waits before answering.
        retry_after: the ``Retry-After`` seconds sent with ``http_503``.
    """

    kind: FaultKind
    routes: frozenset[str]
    rate: float = 0.0
    delay: float = 10.0
    retry_after: int = 1


@attrs.define(slots=True)
class _OneShot:
    fault: Fault
    remaining: int


class FakeFaults:
    """The fault injector of one [FakeDocument360][d360_async.testing.FakeDocument360]
    (``fake.faults``).

    Two ways to inject a fault, both limited to chosen routes (route names or fnmatch patterns
    such as ``"v3.*"``; by default every API route, i.e. all but ``"download"`` and
    ``"sd.token"``, and for ``expired_link`` only ``"download"``):

    - ``fake.faults.set("http_500", 0.1)``: each matching request gets the fault with that
      probability, drawn from the server's seeded RNG (several kinds on one route share one
      draw, so their rates add up and must not exceed 1).
    - ``fake.faults.next("abort", count=2, route="v3.exports.get")``: the next ``count``
      matching requests get the fault, before any rate is considered (scripts run in order).

    Fault kinds: ``http_500`` (the vendor's 500 body), ``http_503`` (+ ``Retry-After``),
    ``abort`` (connection closed, no response), ``slow`` (answer after ``delay`` seconds),
    ``malformed_json`` (200 with unparseable JSON), ``html_502`` (a gateway HTML page),
    ``truncated`` (``Content-Length`` larger than the body, then the connection closes),
    ``unknown_status`` (a status value never seen), ``extra_fields`` (unexpected keys added),
    ``missing_fields`` (optional keys removed), ``expired_link`` (a download refused with 403
    as if its signature had expired). A faulted response never changes an operation's
    lifecycle and never counts as its terminal status having been served; a ``slow`` response
    that is eventually delivered in full does count.

    Note that aiohttp's client silently resends an idempotent request once when the server
    drops the connection, so one ``abort`` is invisible to an aiohttp caller; script
    ``count=2`` to make the failure reach it.
    """

    __slots__ = ("_by_route", "_one_shots", "_rng", "_rules")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rules: dict[FaultKind, Fault] = {}
        self._one_shots: list[_OneShot] = []
        # route -> [(cumulative probability, fault)], rebuilt whenever a rate changes
        self._by_route: dict[str, list[tuple[float, Fault]]] = {}

    def __repr__(self) -> str:
        rates = {kind: fault.rate for kind, fault in self._rules.items()}
        return f"<FakeFaults rates={rates} scheduled={self.scheduled}>"

    @property
    def rates(self) -> dict[FaultKind, float]:
        """The configured probability of each rate-based fault kind."""
        return {kind: fault.rate for kind, fault in self._rules.items()}

    @property
    def scheduled(self) -> int:
        """How many one-shot faults are still waiting for a matching request."""
        return sum(shot.remaining for shot in self._one_shots)

    def set(
        self,
        kind: FaultKind,
        rate: float,
        *,
        routes: str | Iterable[str] | None = None,
        delay: float = 10.0,
        retry_after: int = 1,
    ) -> None:
        """Inject ``kind`` into a fraction ``rate`` of matching requests (0 turns it off).

        Args:
            kind: the fault kind.
            rate: probability per matching request, within [0, 1].
            routes: route names or fnmatch patterns (default: see the class docstring).
            delay: for ``slow``: seconds before the answer.
            retry_after: for ``http_503``: the ``Retry-After`` value in seconds.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate!r}")
        fault = self._make(kind, routes, rate=rate, delay=delay, retry_after=retry_after)
        rules = dict(self._rules)
        if rate == 0.0:
            rules.pop(kind, None)
        else:
            rules[kind] = fault
        by_route = self._index(rules)
        self._rules = rules
        self._by_route = by_route

    def next(
        self,
        kind: FaultKind,
        count: int = 1,
        *,
        route: str | Iterable[str] | None = None,
        delay: float = 10.0,
        retry_after: int = 1,
    ) -> None:
        """Inject ``kind`` into the next ``count`` matching requests.

        Args:
            kind: the fault kind.
            count: how many requests get it.
            route: route names or fnmatch patterns (default: see the class docstring).
            delay: for ``slow``: seconds before the answer.
            retry_after: for ``http_503``: the ``Retry-After`` value in seconds.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count!r}")
        fault = self._make(kind, route, rate=0.0, delay=delay, retry_after=retry_after)
        self._one_shots.append(_OneShot(fault, count))

    def clear(self) -> None:
        """Remove every rate and every scheduled one-shot fault."""
        self._rules = {}
        self._by_route = {}
        self._one_shots = []

    def pick(self, route: str) -> Fault | None:
        """Decide the fault for one request on ``route`` (used by the server)."""
        if self._one_shots:
            for index, shot in enumerate(self._one_shots):
                if route in shot.fault.routes:
                    shot.remaining -= 1
                    if shot.remaining == 0:
                        del self._one_shots[index]
                    return shot.fault
        table = self._by_route.get(route)
        if table is None:
            return None
        draw = self._rng.random()
        for cumulative, fault in table:
            if draw < cumulative:
                return fault
        return None

    @staticmethod
    def _make(
        kind: FaultKind,
        routes: str | Iterable[str] | None,
        *,
        rate: float,
        delay: float,
        retry_after: int,
    ) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; kinds are {FAULT_KINDS}")
        if delay < 0:
            raise ValueError("delay must not be negative")
        if retry_after < 0:
            raise ValueError("retry_after must not be negative")
        resolved = resolve_routes(routes, _DEFAULT_ROUTES[kind])
        usable = resolved & _APPLICABLE[kind]
        if not usable:
            raise ValueError(f"fault {kind!r} does not apply to routes {sorted(resolved)}")
        return Fault(kind, usable, rate, delay, retry_after)

    @staticmethod
    def _index(rules: dict[FaultKind, Fault]) -> dict[str, list[tuple[float, Fault]]]:
        by_route: dict[str, list[tuple[float, Fault]]] = {}
        for kind in FAULT_KINDS:  # a fixed order keeps draws reproducible
            fault = rules.get(kind)
            if fault is None:
                continue
            for route in fault.routes:
                table = by_route.setdefault(route, [])
                cumulative = (table[-1][0] if table else 0.0) + fault.rate
                if cumulative > 1.0 + 1e-9:
                    raise ValueError(f"fault rates on route {route!r} add up to more than 1")
                table.append((cumulative, fault))
        return by_route
