"""Parsing of option values that argparse cannot check by itself, without any I/O.

Each parser raises `UsageError` with a message meant for a person;
argparse turns it into ``d360-async: error: ...`` and exit code 2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import attrs

from d360_async import Region

from ._exit import UsageError

__all__ = [
    "DEMO_BUDGET",
    "RateSpec",
    "parse_ids_text",
    "parse_int_within",
    "parse_positive_float",
    "parse_positive_int",
    "parse_rate",
    "parse_ratio",
    "parse_region",
]

# Period units accepted after the slash, in seconds. "m" is minutes, as in "60/m".
_UNITS: Final[dict[str, float]] = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}
_RATE_RE: Final = re.compile(
    r"\s*(?P<count>\d+(?:\.\d+)?)\s*/\s*(?P<amount>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]*)\s*",
    re.IGNORECASE,
)


@attrs.frozen(slots=True)
class RateSpec:
    """``requests`` per ``period`` seconds, as given by ``--rate-limit N/PERIOD``."""

    requests: float
    period: float

    @property
    def per_second(self) -> float:
        return self.requests / self.period

    @property
    def per_minute(self) -> float:
        return self.requests * 60.0 / self.period

    def __str__(self) -> str:
        count = f"{self.requests:g}"
        if self.period == 1.0:
            return f"{count}/s"
        if self.period == 60.0:
            return f"{count}/min"
        if self.period == 3600.0:
            return f"{count}/h"
        return f"{count}/{self.period:g}s"


DEMO_BUDGET: Final = RateSpec(requests=300, period=10.0)
"""The demo's (and `d360-async fake`'s) budget: 300 requests per 10 s per token, 30 per second
on average: enough to follow 500 operations in about a minute, tight enough that a careless
poller would trip it."""


def parse_rate(text: str) -> RateSpec:
    """Parse ``N/PERIOD``: ``60/min``, ``100/60s``, ``10/s``, ``1000/h``, ``5/2.5s``.

    A bare period without a number means one unit (``60/min`` is 60 per minute); a number
    without a unit means seconds (``100/60`` is 100 per 60 s).
    """
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise UsageError(
            f"invalid rate limit {text!r}: expected N/PERIOD such as 60/min, 100/60s or 10/s"
        )
    count = float(match["count"])
    amount = float(match["amount"]) if match["amount"] else 1.0
    unit = match["unit"].lower()
    if not unit and not match["amount"]:
        raise UsageError(f"invalid rate limit {text!r}: the period is missing (try 60/min)")
    scale = _UNITS.get(unit or "s")
    if scale is None:
        units = "ms, s, min, h"
        raise UsageError(f"invalid rate limit {text!r}: unknown unit {unit!r} (use {units})")
    period = amount * scale
    if count <= 0 or period <= 0:
        raise UsageError(f"invalid rate limit {text!r}: both numbers must be positive")
    return RateSpec(requests=count, period=period)


def parse_region(text: str) -> Region:
    """``eu``, ``us`` or ``ca`` (any case) to a [Region][d360_async.Region]."""
    try:
        return Region.parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_positive_float(text: str) -> float:
    """A number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise UsageError(f"expected a positive number, got {text!r}")
    return value


def parse_positive_int(text: str) -> int:
    """An integer greater than zero."""
    return parse_int_within(text, 1)


def parse_int_within(
    text: str, low: int, high: int | None = None, *, what: str = "a whole number"
) -> int:
    """An integer from ``low`` to ``high`` (no upper bound when ``None``)."""
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"expected {what}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"from {low} to {high}"
        raise UsageError(f"expected {what} {bound}, got {text!r}")
    return value


def parse_ratio(text: str) -> float:
    """A number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"expected a ratio from 0 to 1, got {text!r}")
    return value


def parse_ids_text(lines: Iterable[str]) -> list[str]:
    """Ids from a file: one per line; blank lines and ``#`` comments are skipped.

    Commas and whitespace also separate ids, so a pasted ``a, b c`` works.
    """
    ids: list[str] = []
    for line in lines:
        content = line.split("#", 1)[0]
        ids.extend(part for part in re.split(r"[\s,]+", content) if part)
    return ids
