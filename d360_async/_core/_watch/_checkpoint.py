"""Watch checkpoints: a sealed envelope around versioned JSON, never pickle.

A checkpoint is what a process needs to pick a watch up where a previous one stopped without
reporting anything twice: for every target, its JSON spec (enough for a resolver to rebuild it),
the last status *delivered to the consumer* and whether its final transition was delivered.
Transitions still buffered when the checkpoint is taken are not counted as delivered.

Format, version 2: one header line, then the payload, a JSON object:

```python
d360-async checkpoint v2 length=183 sha256=9f2c…(64 hex digits)
{"targets":[{"key":"v3.export/p/e","spec":{...},"last_raw":"InProgress",
             "last_phase":"running","polls":7,"done":false}]}
```

``length`` is the payload's size in bytes (UTF-8) and ``sha256`` its digest, so a file cut
short, padded, or with any byte changed is refused as a whole instead of being half-believed.
The payload is a dict other code may add fields to (`dump_checkpoint` takes ``extra``;
`open_checkpoint` returns every field); readers ignore the fields they do not know.

JSON is chosen over pickle because checkpoints cross process and version boundaries and may be
stored where others can write: loading one must never run code.  Loading checks the envelope,
bounds the size and nesting, validates every field and raises
[CheckpointError][d360_async.CheckpointError] (a ``ValueError``) with the offending path,
whatever the input: bytes or text of any shape.

``write_checkpoint_file`` replaces a file
atomically (temporary file beside it, ``fsync``, ``os.replace``, ``fsync`` of the directory), so
a process killed at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from d360_async._core._errors import CheckpointError
from d360_async._core._phase import Phase
from d360_async._core._status import RawStatus

__all__ = [
    "CHECKPOINT_VERSION",
    "MAX_CHECKPOINT_BYTES",
    "MAX_SPEC_DEPTH",
    "CheckpointEntry",
    "dump_checkpoint",
    "load_checkpoint",
    "open_checkpoint",
    "read_entries",
    "seal_checkpoint",
    "write_checkpoint_file",
]

CHECKPOINT_VERSION: Final = 2

MAX_CHECKPOINT_BYTES: Final = 256 * 1024 * 1024
"""The largest checkpoint accepted, in bytes (10,000 targets take about 3 MB)."""

MAX_SPEC_DEPTH: Final = 16
"""How deeply a target's spec may nest (specs are flat in practice)."""

_MAX_POLLS: Final = 2**63 - 1

_MAGIC: Final = b"d360-async checkpoint v"
_HEADER: Final = re.compile(
    rb"d360-async checkpoint v([0-9]{1,6}) length=([0-9]{1,12}) sha256=([0-9a-f]{64})\n"
)
_TARGET_FIELDS: Final = "targets"


@attrs.frozen(slots=True)
class CheckpointEntry:
    """One target in a checkpoint.

    Attributes:
        key: the target's [key][d360_async.Target.key].
        spec: the target's [to_spec()][d360_async.Target.to_spec], for a resolver to rebuild it.
        last_raw: the raw status of the last ``CHANGED`` transition delivered (meaningful only
            when ``last_phase`` is not None).
        last_phase: the phase of that transition; None when none was delivered.
        polls: polls made so far (the count continues after resume).
        done: the target's final transition was delivered; it is not polled again.
    """

    key: str
    spec: Mapping[str, Any]
    last_raw: RawStatus | None = None
    last_phase: Phase | None = None
    polls: int = 0
    done: bool = False


# -- writing --------------------------------------------------------------------------------------


def seal_checkpoint(payload: Mapping[str, Any]) -> str:
    """Wrap a payload object in the version-2 envelope (header line with length and digest).

    Raises:
        ValueError: the payload is not JSON-serialisable (NaN included).
    """
    try:
        body = json.dumps(dict(payload), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the checkpoint payload is not JSON-serialisable ({exc})") from None
    raw = body.encode("utf-8")
    digest = hashlib.sha256(raw).hexdigest()
    return f"d360-async checkpoint v{CHECKPOINT_VERSION} length={len(raw)} sha256={digest}\n{body}"


def dump_checkpoint(
    entries: Iterable[CheckpointEntry],
    extra: Mapping[str, Any] | None = None,
    **fields: Any,
) -> str:
    """Serialise ``entries`` (and more payload fields) to a sealed checkpoint.

    ``extra`` and keyword ``fields`` (``dump_checkpoint(entries, priors=...)``) become payload
    fields beside ``targets``; a field given as None is left out.

    Raises:
        ValueError: a spec, raw status or field is not JSON-serialisable, or a field
            redefines ``targets``.
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
    payload = {k: v for k, v in {**(extra or {}), **fields}.items() if v is not None}
    if _TARGET_FIELDS in payload:
        raise ValueError("extra checkpoint fields cannot redefine 'targets'")
    payload[_TARGET_FIELDS] = targets
    return seal_checkpoint(payload)


def write_checkpoint_file(path: str | os.PathLike[str], text: str | bytes) -> None:
    """Replace ``path`` with ``text`` atomically and durably.

    The bytes go to ``.<name>.tmp`` beside it, are flushed and ``fsync``-ed, then renamed over
    ``path`` (``os.replace``), and the directory is ``fsync``-ed; a crash at any point leaves
    the old file or the new one, never a mix or an empty file. One writer per path: two
    processes saving to the same file at once would share the temporary name. Blocking: from
    async code use [Watch.save_checkpoint][d360_async.Watch.save_checkpoint].
    """
    target = Path(path)
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    temporary = target.with_name(f".{target.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)
    _sync_directory(target.parent)


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse it
        pass
    finally:
        os.close(fd)


# -- reading --------------------------------------------------------------------------------------


def open_checkpoint(text: str | bytes) -> dict[str, Any]:
    """Check the envelope and return the payload object, every field included.

    Raises:
        CheckpointError: not a checkpoint, another version, too large, cut short, changed,
            not JSON, nested too deeply, or not an object.
    """
    if isinstance(text, str):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            raise CheckpointError("checkpoint is not valid text (unpaired surrogates)") from None
    elif isinstance(text, bytes | bytearray | memoryview):
        data = bytes(text)
    else:
        raise CheckpointError(f"checkpoint must be str or bytes, not {type(text).__name__}")
    if len(data) > MAX_CHECKPOINT_BYTES + 200:
        raise CheckpointError(f"checkpoint is larger than {MAX_CHECKPOINT_BYTES} bytes")
    if not data.startswith(_MAGIC):
        if data.lstrip().startswith(b"{"):
            raise CheckpointError(
                "checkpoint has no d360-async envelope (a version-1 checkpoint, or JSON written "
                f"by hand?); this library reads version {CHECKPOINT_VERSION}"
            )
        raise CheckpointError("this is not a d360-async checkpoint (no header line)")
    match = _HEADER.match(data)
    if match is None:
        raise CheckpointError("checkpoint header line is damaged")
    version = int(match.group(1))
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint version {version} is not supported (this library reads version "
            f"{CHECKPOINT_VERSION})"
        )
    length = int(match.group(2))
    body = data[match.end() :]
    if length > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"checkpoint is larger than {MAX_CHECKPOINT_BYTES} bytes")
    if len(body) != length:
        raise CheckpointError(
            f"checkpoint is damaged: the header says {length} bytes, the file holds {len(body)}"
            + (" (cut short)" if len(body) < length else "")
        )
    if hashlib.sha256(body).hexdigest() != match.group(3).decode("ascii"):
        raise CheckpointError("checkpoint is damaged: its content does not match its checksum")
    return _parse_payload(body)


def _parse_payload(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except RecursionError:
        raise CheckpointError("checkpoint payload is nested too deeply") from None
    except (TypeError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise CheckpointError(f"checkpoint payload is not valid JSON: {_reason(exc)}") from None
    if not isinstance(document, dict):
        raise CheckpointError("checkpoint payload must be a JSON object")
    return document


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at byte {exc.pos}"
    return type(exc).__name__


def load_checkpoint(text: str | bytes) -> list[CheckpointEntry]:
    """Check, parse and validate a checkpoint produced by `dump_checkpoint`.

    Raises:
        CheckpointError: see `open_checkpoint`; or a malformed or duplicated entry.
    """
    return read_entries(open_checkpoint(text))


def read_entries(payload: Mapping[str, Any]) -> list[CheckpointEntry]:
    """The validated target entries of a payload returned by `open_checkpoint`.

    Raises:
        CheckpointError: ``targets`` missing or not a list, or a malformed or duplicated entry.
    """
    targets = payload.get(_TARGET_FIELDS)
    if not isinstance(targets, list):
        raise CheckpointError("checkpoint 'targets' must be a list")
    entries: list[CheckpointEntry] = []
    seen: set[str] = set()
    for index, record in enumerate(targets):
        entry = _entry(record, f"targets[{index}]")
        if entry.key in seen:
            raise CheckpointError(f"checkpoint lists target {_shown(entry.key)} twice")
        seen.add(entry.key)
        entries.append(entry)
    return entries


def _shown(key: str) -> str:
    return repr(key if len(key) <= 200 else key[:200] + "…")


def _entry(record: object, where: str) -> CheckpointEntry:
    if not isinstance(record, dict):
        raise CheckpointError(f"{where} must be an object")
    key = record.get("key")
    if not isinstance(key, str) or not key:
        raise CheckpointError(f"{where}.key must be a non-empty string")
    spec = record.get("spec")
    if not isinstance(spec, dict):
        raise CheckpointError(f"{where}.spec must be an object")
    if _too_deep(spec, MAX_SPEC_DEPTH):
        raise CheckpointError(f"{where}.spec is nested more than {MAX_SPEC_DEPTH} levels deep")
    last_raw = record.get("last_raw")
    # bool is an int subclass; a status is never a JSON boolean.
    if last_raw is not None and (isinstance(last_raw, bool) or not isinstance(last_raw, str | int)):
        raise CheckpointError(f"{where}.last_raw must be a string, an integer or null")
    phase_value = record.get("last_phase")
    last_phase: Phase | None = None
    if phase_value is not None:
        try:
            last_phase = Phase(phase_value)
        except (ValueError, TypeError):
            raise CheckpointError(
                f"{where}.last_phase {phase_value!r:.40} is not a phase"
            ) from None
    polls = record.get("polls", 0)
    if type(polls) is not int or not 0 <= polls <= _MAX_POLLS:
        raise CheckpointError(f"{where}.polls must be a non-negative 64-bit integer")
    done = record.get("done", False)
    if type(done) is not bool:
        raise CheckpointError(f"{where}.done must be a boolean")
    return CheckpointEntry(
        key=key, spec=spec, last_raw=last_raw, last_phase=last_phase, polls=polls, done=done
    )


def _too_deep(value: Any, budget: int) -> bool:
    """Whether a JSON value nests containers more than ``budget`` levels deep."""
    if isinstance(value, dict):
        children: Iterable[Any] = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return False
    if budget == 0:
        return True
    return any(_too_deep(child, budget - 1) for child in children)
