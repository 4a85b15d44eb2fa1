"""Watch checkpoints: versioned JSON, never pickle.

A checkpoint is what a process needs to pick a watch up where a previous one stopped without
reporting anything twice: for every target, its JSON spec (enough for a resolver to rebuild it),
the last status *delivered to the consumer* and whether its final transition was delivered.
Transitions still buffered when the checkpoint is taken are not counted as delivered, so a crash
can repeat nothing and lose nothing.

Format, version 1::

    {"version": 1,
     "targets": [{"key": "v3.export/p/e", "spec": {...}, "last_raw": "InProgress",
                  "last_phase": "running", "polls": 7, "done": false}, ...]}

JSON is chosen over pickle because checkpoints cross process and version boundaries and may be
stored where others can write: loading one must never run code.  Loading validates every field
and raises :class:`ValueError` with the offending path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from .._phase import Phase
from .._target import RawStatus

__all__ = ["CHECKPOINT_VERSION", "CheckpointEntry", "dump_checkpoint", "load_checkpoint"]

CHECKPOINT_VERSION: Final = 1


@attrs.frozen(slots=True)
class CheckpointEntry:
    """One target in a checkpoint.

    Attributes:
        key: the target's :attr:`~d360_async.Target.key`.
        spec: the target's :meth:`~d360_async.Target.to_spec`, for a resolver to rebuild it.
        last_raw: the raw status of the last ``CHANGED`` transition delivered (meaningful only
            when ``last_phase`` is not None).
        last_phase: the phase of that transition; None when none was delivered.
        polls: polls made so far (the count continues after resume).
        done: the target's final transition was delivered; it is not polled again.
    """

    key: str
    spec: Mapping[str, Any]
    last_raw: RawStatus = None
    last_phase: Phase | None = None
    polls: int = 0
    done: bool = False


def dump_checkpoint(entries: Iterable[CheckpointEntry]) -> str:
    """Serialise ``entries`` to checkpoint JSON.

    Raises:
        ValueError: a spec or raw status is not JSON-serialisable.
    """
    targets = []
    for entry in entries:
        record = {
            "key": entry.key,
            "spec": dict(entry.spec),
            "last_raw": entry.last_raw,
            "last_phase": None if entry.last_phase is None else entry.last_phase.value,
            "polls": entry.polls,
            "done": entry.done,
        }
        try:
            json.dumps(record, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"target {entry.key!r} cannot be checkpointed: its spec or status is not "
                f"JSON-serialisable ({exc})"
            ) from exc
        targets.append(record)
    return json.dumps(
        {"version": CHECKPOINT_VERSION, "targets": targets},
        allow_nan=False,
        separators=(",", ":"),
    )


def load_checkpoint(text: str | bytes) -> list[CheckpointEntry]:
    """Parse and validate checkpoint JSON produced by :func:`dump_checkpoint`.

    Raises:
        ValueError: not JSON, an unsupported version, or a malformed or duplicated entry.
    """
    try:
        document = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("checkpoint must be a JSON object")
    version = document.get("version")
    if type(version) is not int:
        raise ValueError("checkpoint has no integer 'version'")
    if version != CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint version {version} is not supported (this library reads version "
            f"{CHECKPOINT_VERSION})"
        )
    targets = document.get("targets")
    if not isinstance(targets, list):
        raise ValueError("checkpoint 'targets' must be a list")
    entries: list[CheckpointEntry] = []
    seen: set[str] = set()
    for index, record in enumerate(targets):
        entry = _entry(record, f"targets[{index}]")
        if entry.key in seen:
            raise ValueError(f"checkpoint lists target {entry.key!r} twice")
        seen.add(entry.key)
        entries.append(entry)
    return entries


def _entry(record: object, where: str) -> CheckpointEntry:
    if not isinstance(record, dict):
        raise ValueError(f"{where} must be an object")
    key = record.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError(f"{where}.key must be a non-empty string")
    spec = record.get("spec")
    if not isinstance(spec, dict):
        raise ValueError(f"{where}.spec must be an object")
    last_raw = record.get("last_raw")
    # bool is an int subclass; a status is never a JSON boolean.
    if last_raw is not None and (isinstance(last_raw, bool) or not isinstance(last_raw, str | int)):
        raise ValueError(f"{where}.last_raw must be a string, an integer or null")
    phase_value = record.get("last_phase")
    last_phase: Phase | None = None
    if phase_value is not None:
        try:
            last_phase = Phase(phase_value)
        except ValueError:
            raise ValueError(f"{where}.last_phase {phase_value!r} is not a phase") from None
    polls = record.get("polls", 0)
    if type(polls) is not int or polls < 0:
        raise ValueError(f"{where}.polls must be a non-negative integer")
    done = record.get("done", False)
    if type(done) is not bool:
        raise ValueError(f"{where}.done must be a boolean")
    return CheckpointEntry(
        key=key, spec=spec, last_raw=last_raw, last_phase=last_phase, polls=polls, done=done
    )
