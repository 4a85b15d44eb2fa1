"""What an observation hub writes into a Redis Stream, and how it is read back.  Pure: no I/O.

One stream entry is one poll of one target by the process holding its lease: a flat mapping of
short string fields (the form ``XADD`` takes), so a reader needs no schema beyond this module:

| field | meaning |
|---|---|
| ``v`` | `WIRE_VERSION`; entries of another version are skipped |
| ``o`` | the writer's instance id (a process skips its own entries) |
| ``k``, ``t`` | the target's kind and key (the topic) |
| ``p``, ``r``, ``w`` | a successful poll: phase value, raw status (JSON), warnings (JSON list) |
| ``s`` | the poll's snapshot (JSON, see below); empty when it could not be encoded |
| ``x``, ``m``, ``c``, ``a`` | a failed poll: exception class, message, HTTP status, ``retry_at`` |
| ``e`` | ``"release"``: the writer gave the topic's lease back (take it over now) |

Snapshots are the library's own models (`d360_async._core._models`), encoded field by field with
tags for the values JSON lacks (datetimes, UUIDs, tuples, nested models) and rebuilt only as
those classes: nothing in a stream can make a reader build anything else (no pickle).  An
unknown class, a malformed value, a field the model does not have: the snapshot is dropped
(``None``), the observation is kept.  A malformed entry as a whole decodes to None.
Exceptions are rebuilt as the library's [D360Error][d360_async.D360Error] subclass of the same
name, anything else as [WatchError][d360_async.WatchError]; their messages were already
scrubbed of secrets when raised.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import attrs

from d360_async._core import _errors, _models
from d360_async._core._errors import D360Error, WatchError
from d360_async._core._phase import Phase
from d360_async._core._status import RawStatus
from d360_async._core._target_protocol import Observation
from d360_async._core._watch._sharing import Topic

__all__ = [
    "WIRE_VERSION",
    "Wire",
    "decode_entry",
    "decode_snapshot",
    "encode_entry",
    "encode_release",
    "encode_snapshot",
]

WIRE_VERSION: Final = "1"

_MAX_DEPTH: Final = 8

_MODELS: Final[dict[str, type[Any]]] = {
    name: value
    for name, value in vars(_models).items()
    if isinstance(value, type) and attrs.has(value) and value.__module__ == _models.__name__
}
"""The classes a snapshot may be rebuilt as."""


class _Unencodable(Exception):
    pass


@attrs.frozen(slots=True)
class Wire:
    """One decoded stream entry.

    Attributes:
        topic: ``(kind, key)`` of the target polled.
        origin: the instance id of the process that polled.
        observation: what a successful poll saw (None for a failed one).
        failure: the exception a failed poll raised (None for a successful one).
        released: not a poll: the writer gave the topic's lease back.
    """

    topic: Topic
    origin: str
    observation: Observation[Any] | None
    failure: D360Error | None
    released: bool = False


# -- snapshots ------------------------------------------------------------------------------------


def _encode(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _Unencodable("too deep")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Unencodable("not finite")
        return value
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"$u": str(value)}
    if isinstance(value, tuple):
        return {"$t": [_encode(item, depth + 1) for item in value]}
    if isinstance(value, list):
        return [_encode(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise _Unencodable("non-string key")
        return {"$d": {key: _encode(item, depth + 1) for key, item in value.items()}}
    cls = type(value)
    if _MODELS.get(cls.__name__) is cls:
        return {
            "$m": cls.__name__,
            "f": {
                field.alias: _encode(getattr(value, field.name), depth + 1)
                for field in attrs.fields(cls)
                if field.init
            },
        }
    raise _Unencodable(f"cannot encode a {cls.__name__}")


def _decode(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("too deep")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_decode(item, depth + 1) for item in value]
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise ValueError("not a tagged value")
    if "$dt" in value:
        return datetime.fromisoformat(_str(value["$dt"]))
    if "$u" in value:
        return uuid.UUID(_str(value["$u"]))
    if "$t" in value:
        items = value["$t"]
        if not isinstance(items, list):
            raise ValueError("$t must hold a list")
        return tuple(_decode(item, depth + 1) for item in items)
    if "$d" in value:
        mapping = value["$d"]
        if not isinstance(mapping, dict):
            raise ValueError("$d must hold an object")
        return {_str(key): _decode(item, depth + 1) for key, item in mapping.items()}
    if "$m" in value:
        cls = _MODELS.get(_str(value["$m"]))
        fields = value.get("f")
        if cls is None or not isinstance(fields, dict):
            raise ValueError("unknown model")
        known = {field.alias for field in attrs.fields(cls) if field.init}
        if not set(fields) <= known:
            raise ValueError("unknown field")
        return cls(**{_str(key): _decode(item, depth + 1) for key, item in fields.items()})
    raise ValueError("unknown tag")


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def encode_snapshot(snapshot: Any) -> str:
    """The JSON of a snapshot; ``""`` when it is not one of the library's models (or holds
    something that cannot be carried)."""
    try:
        return json.dumps(_encode(snapshot, 0), separators=(",", ":"), allow_nan=False)
    except (_Unencodable, ValueError, TypeError):
        return ""


def decode_snapshot(text: str) -> Any:
    """The snapshot `encode_snapshot` wrote; None for ``""`` or anything malformed."""
    if not text:
        return None
    try:
        return _decode(json.loads(text), 0)
    except (ValueError, TypeError, RecursionError):
        return None


# -- entries --------------------------------------------------------------------------------------


def encode_entry(
    topic: Topic,
    origin: str,
    observation: Observation[Any] | None,
    failure: Exception | None,
) -> dict[str, str]:
    """The stream fields for one poll (exactly one of ``observation`` and ``failure``)."""
    fields = {"v": WIRE_VERSION, "o": origin, "k": topic[0], "t": topic[1]}
    if observation is not None:
        fields["p"] = observation.phase.value
        fields["r"] = json.dumps(observation.raw_status)
        fields["w"] = json.dumps([str(w) for w in observation.warnings])
        fields["s"] = encode_snapshot(observation.snapshot)
        return fields
    if failure is None:
        raise ValueError("give an observation or a failure")
    if isinstance(failure, D360Error):
        fields["x"] = type(failure).__name__
        fields["m"] = failure.message
        fields["c"] = "" if failure.status is None else str(failure.status)
        retry_at = getattr(failure, "retry_at", None)
        fields["a"] = "" if retry_at is None else repr(float(retry_at))
    else:
        fields["x"] = "WatchError"
        fields["m"] = f"the polling process hit {type(failure).__name__}"
        fields["c"] = fields["a"] = ""
    return fields


def encode_release(topic: Topic, origin: str) -> dict[str, str]:
    """The stream fields saying that ``origin`` gave ``topic``'s lease back."""
    return {"v": WIRE_VERSION, "o": origin, "k": topic[0], "t": topic[1], "e": "release"}


def _text(fields: Mapping[Any, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        value = fields.get(name.encode())
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def decode_entry(fields: Mapping[Any, Any]) -> Wire | None:
    """Read one stream entry (keys and values as str or bytes); None when it is not one this
    version wrote or is malformed."""
    if _text(fields, "v") != WIRE_VERSION:
        return None
    origin, kind, key = _text(fields, "o"), _text(fields, "k"), _text(fields, "t")
    if not origin or not kind or not key:
        return None
    topic = (kind, key)
    if _text(fields, "e") == "release":
        return Wire(topic, origin, None, None, released=True)
    phase_text = _text(fields, "p")
    if phase_text is not None:
        try:
            phase = Phase(phase_text)
            raw = json.loads(_text(fields, "r") or "null")
            warnings = json.loads(_text(fields, "w") or "[]")
        except ValueError:
            return None
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            return None
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            return None
        raw_status: RawStatus = raw
        observation = Observation(
            phase=phase,
            raw_status=raw_status,
            snapshot=decode_snapshot(_text(fields, "s") or ""),
            warnings=tuple(warnings),
        )
        return Wire(topic, origin, observation, None)
    name, message = _text(fields, "x"), _text(fields, "m")
    if name is None or message is None:
        return None
    status_text, retry_text = _text(fields, "c") or "", _text(fields, "a") or ""
    try:
        status = int(status_text) if status_text else None
        retry_at = float(retry_text) if retry_text else None
    except ValueError:
        return None
    cls = getattr(_errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, D360Error)):
        cls = WatchError
    failure: D360Error
    if issubclass(cls, _errors.RateLimited):
        failure = cls(message, status=status, retry_at=retry_at)
    else:
        try:
            failure = cls(message, status=status)
        except TypeError:
            failure = WatchError(message, status=status)
    return Wire(topic, origin, None, failure)
