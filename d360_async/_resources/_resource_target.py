"""Targets: one long-running operation each, in the shape the watch consumes.

Every status-bearing resource builds a [ResourceTarget][d360_async.ResourceTarget] with
``.target(...)``.  A target is plain data plus one coroutine: its identity (``key``, ``kind``), the
rate-limit budget its polls draw from, and a ``poll`` that fetches the status once (at
[Priority.POLL][d360_async.Priority.POLL], so direct calls sharing the budget go first) and
normalises it.

``to_spec()`` gives a small JSON object (``{"kind", "project_id", "id", ...}``) that a watch
checkpoint stores; [target_from_spec][d360_async.target_from_spec] turns it back into a target with
the credentials of the client(s) resuming the watch.  No credential is ever part of a spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Generic, TypeVar

from d360_async._core._errors import MissingCredential
from d360_async._core._ratelimit._protocol import RateLimiter, RateLimitKey, Ticket
from d360_async._core._status import StatusReading
from d360_async._core._target_protocol import Observation, Target

__all__ = [
    "KIND_API_REFERENCE",
    "KIND_DRIVE_TASK",
    "KIND_EXPORT",
    "KIND_IMPORT",
    "KIND_SD_TASK",
    "KIND_V2_DELETE_FILE",
    "KIND_V2_EXPORT",
    "KIND_V2_IMPORT",
    "TARGET_KINDS",
    "ResourceTarget",
    "observation",
    "target_from_spec",
]

S = TypeVar("S")

KIND_DRIVE_TASK: Final = "v3.drive_task"
KIND_EXPORT: Final = "v3.export"
KIND_IMPORT: Final = "v3.import"
KIND_API_REFERENCE: Final = "v3.api_reference"
KIND_V2_DELETE_FILE: Final = "v2.delete_file"
KIND_V2_EXPORT: Final = "v2.export"
KIND_V2_IMPORT: Final = "v2.import"
KIND_SD_TASK: Final = "smartdocumentor.task"

TARGET_KINDS: Final = frozenset(
    {
        KIND_DRIVE_TASK,
        KIND_EXPORT,
        KIND_IMPORT,
        KIND_API_REFERENCE,
        KIND_V2_DELETE_FILE,
        KIND_V2_EXPORT,
        KIND_V2_IMPORT,
        KIND_SD_TASK,
    }
)

PollFn = Callable[[Ticket | None], Awaitable[Observation[S]]]


def observation(reading: StatusReading, snapshot: S) -> Observation[S]:
    """An [Observation][d360_async.Observation] from a status reading and the model it was read
    from."""
    return Observation(
        phase=reading.phase,
        raw_status=reading.raw_status,
        snapshot=snapshot,
        warnings=reading.warnings,
    )


class ResourceTarget(Generic[S]):
    """One operation of one resource, implementing [Target][d360_async.Target].

    Two targets are equal when their ``key`` is: the key names the operation, whichever client
    built the target object.

    Added in version 0.1.0.
    """

    __slots__ = ("_key", "_kind", "_limiter", "_poll", "_rate_key", "_spec")

    def __init__(
        self,
        *,
        kind: str,
        key: str,
        spec: Mapping[str, Any],
        rate_key: RateLimitKey,
        limiter: RateLimiter,
        poll: PollFn[S],
    ) -> None:
        self._kind = kind
        self._key = key
        self._spec = dict(spec)
        self._rate_key = rate_key
        self._limiter = limiter
        self._poll = poll

    @property
    def key(self) -> str:
        """Unique and stable identity, e.g. ``"v3.export/<project>/<export>"``."""
        return self._key

    @property
    def kind(self) -> str:
        """The operation kind, e.g. ``"v3.export"``; durations are learnt per kind."""
        return self._kind

    @property
    def rate_key(self) -> RateLimitKey:
        """The budget this target's polls draw from."""
        return self._rate_key

    @property
    def limiter(self) -> RateLimiter:
        """The limiter this target's polls go through."""
        return self._limiter

    async def poll(self, *, ticket: Ticket | None = None) -> Observation[S]:
        """Fetch the status once and normalise it (see [Target][d360_async.Target])."""
        return await self._poll(ticket)

    def to_spec(self) -> dict[str, Any]:
        """The JSON object [target_from_spec][d360_async.target_from_spec] rebuilds this target
        from."""
        return dict(self._spec)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._key}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResourceTarget):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return hash((ResourceTarget, self._key))


# Which attribute path of a client leads to the factory for each kind, and how the spec's
# fields become its arguments.
def _v3(
    path: tuple[str, ...], *, since: bool = False
) -> Callable[[Any, Mapping[str, Any]], Target[Any]]:
    def build(source: Any, spec: Mapping[str, Any]) -> Target[Any]:
        factory = _resolve(source, path)
        # Only API-reference targets take ``since``; other kinds ignore a stray one.
        extra = {}
        if since and spec.get("since") is not None:
            if not isinstance(spec["since"], str):
                raise ValueError("target spec 'since' must be an ISO 8601 timestamp")
            extra["since"] = spec["since"]
        result: Target[Any] = factory(_field(spec, "project_id"), _field(spec, "id"), **extra)
        return result

    return build


def _v2(path: tuple[str, ...]) -> Callable[[Any, Mapping[str, Any]], Target[Any]]:
    def build(source: Any, spec: Mapping[str, Any]) -> Target[Any]:
        result: Target[Any] = _resolve(source, path)(_field(spec, "id"))
        return result

    return build


def _sd(source: Any, spec: Mapping[str, Any]) -> Target[Any]:
    factory = _resolve(source, ("tasks", "target"))
    if spec.get("id_type") == "external":
        result: Target[Any] = factory(external_id=_field(spec, "id"))
    else:
        result = factory(task_id=_field(spec, "id"))
    return result


_BUILDERS: Final[Mapping[str, Callable[[Any, Mapping[str, Any]], Target[Any]]]] = {
    KIND_DRIVE_TASK: _v3(("drive", "target")),
    KIND_EXPORT: _v3(("exports", "target")),
    KIND_IMPORT: _v3(("imports", "target")),
    KIND_API_REFERENCE: _v3(("api_references", "target"), since=True),
    KIND_V2_DELETE_FILE: _v2(("v2", "delete_file_target")),
    KIND_V2_EXPORT: _v2(("v2", "exports", "target")),
    KIND_V2_IMPORT: _v2(("v2", "imports", "target")),
    KIND_SD_TASK: _sd,
}


class _CannotBuild(Exception):
    pass


def _resolve(source: Any, path: tuple[str, ...]) -> Callable[..., Any]:
    current = source
    for name in path:
        current = getattr(current, name, None)
        if current is None:
            raise _CannotBuild(".".join(path))
    if not callable(current):
        raise _CannotBuild(".".join(path))
    return current  # type: ignore[no-any-return]


def _field(spec: Mapping[str, Any], name: str) -> Any:
    if name not in spec:
        raise ValueError(f"target spec has no {name!r}")
    return spec[name]


def target_from_spec(source: Any, spec: Mapping[str, Any]) -> Target[Any]:
    """Rebuild a target from [ResourceTarget.to_spec][d360_async.ResourceTarget.to_spec] output.

    ``source`` is a [Client][d360_async.Client], a
    [SmartDocumentorClient][d360_async.smartdocumentor.SmartDocumentorClient], or an iterable of
    them (for a checkpoint of a watch that mixed clients); the first one that offers the target's
    kind builds it.  The ids in the spec are validated again, exactly as if they were typed in.

    Raises:
        ValueError: the spec is not an object, names an unknown kind, lacks a field, holds an
            invalid id, or no given client can build that kind.

    Added in version 0.1.0.
    """
    if not isinstance(spec, Mapping):
        raise ValueError("target spec must be a JSON object")
    kind = spec.get("kind")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise ValueError(f"unknown target kind {kind!r}")
    sources: Iterable[Any] = (
        list(source)
        if isinstance(source, Iterable) and not isinstance(source, str | bytes | Mapping)
        else [source]
    )
    for candidate in sources:
        try:
            return builder(candidate, spec)
        except (_CannotBuild, MissingCredential):
            continue
    raise ValueError(f"none of the given clients can build a {kind!r} target")
