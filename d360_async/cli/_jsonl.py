"""The ``--json`` output: one compact JSON object per line, safe to pipe into ``jq``.

Every line has a ``"type"``: ``"transition"`` (one per status change), ``"status"`` (the
``status`` command), ``"export"`` (the ``export`` command, once started), ``"demo"`` (the
demo's plan, first line), ``"summary"`` (last line of ``watch``, ``export`` and ``demo``).
Values are plain JSON: phases as their lowercase names, times as ISO 8601 UTC strings, errors
as one line of text with no secret in it.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import pathlib
import uuid
from collections.abc import Mapping
from typing import IO, Any

import attrs

from ._exit import describe_error

__all__ = ["JsonLines", "iso_time", "to_jsonable"]


def iso_time(value: object) -> str | None:
    """An ISO 8601 UTC timestamp from a datetime or an epoch in seconds (``None`` passes)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, int | float) and math.isfinite(value):
        return iso_time(dt.datetime.fromtimestamp(float(value), dt.UTC))
    return str(value)


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to something `json.dumps` accepts, recursively."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, dt.datetime):
        return iso_time(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | pathlib.PurePath):
        return str(value)
    if isinstance(value, BaseException):
        return describe_error(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if attrs.has(type(value)):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    return str(value)


class JsonLines:
    """Writes one JSON object per line to ``stream`` and flushes, so a pipe sees it at once."""

    __slots__ = ("_stream",)

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(
            to_jsonable(record), separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        self._stream.write(line + "\n")
        self._stream.flush()
