"""Targets: one long-running operation each, in the shape the watch consumes, and the registry
that rebuilds them from a checkpoint.

Every status-bearing resource builds a [ResourceTarget][d360_async.ResourceTarget] with
``.target(...)``.  A target is plain data plus one coroutine: its identity (``key``, ``kind``), the
rate-limit budget its polls draw from, and a ``poll`` that fetches the status once (at
[Priority.POLL][d360_async.Priority.POLL], so direct calls sharing the budget go first) and
normalises it.

``to_spec()`` gives a small JSON object (``{"kind", "project_id", "id", ...}``) that a watch
checkpoint stores; [target_from_spec][d360_async.target_from_spec] turns it back into a target with
the credentials of the client(s) resuming the watch.  No credential is ever part of a spec.

Each resource module registers the kinds it builds with `register_kind`: the kind, the resource
class that builds it, and how a spec becomes that resource's ``.target(...)`` call.  A client
says which resources it holds (`TargetSource`); rebuilding a spec finds the resource of the
registered class among them.  No attribute name is looked up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from d360_async._core._errors import MissingCredential
from d360_async._core._kinds import TargetKind
from d360_async._core._ratelimit._protocol import RateLimiter, RateLimitKey, Ticket
from d360_async._core._status import StatusReading
from d360_async._core._target_protocol import Observation, Target

__all__ = [
    "ResourceTarget",
    "TargetSource",
    "observation",
    "project_and_id",
    "register_kind",
    "registered_kinds",
    "resource_target",
    "spec_field",
    "target_from_spec",
]

S = TypeVar("S")
R = TypeVar("R")

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
        kind: TargetKind,
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
    def kind(self) -> TargetKind:
        """The operation kind, e.g. ``TargetKind.V3_EXPORT`` (equal to ``"v3.export"``);
        durations are learnt per kind."""
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


def resource_target(
    kind: TargetKind,
    poll: PollFn[S],
    *,
    ident: str | int,
    project: str | None,
    rate_key: RateLimitKey,
    limiter: RateLimiter,
    spec: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> ResourceTarget[S]:
    """A target of ``kind``, keyed and described the one way every resource does it.

    The key is ``kind/project/ident`` (``kind/ident`` outside a project) unless ``key`` says
    otherwise; the spec holds the kind, the project, the id and ``spec``'s extra fields.
    """
    where = (str(ident),) if project is None else (project, str(ident))
    described: dict[str, Any] = {"kind": kind.value}
    if project is not None:
        described["project_id"] = project
    described["id"] = ident
    described.update(spec or {})
    return ResourceTarget(
        kind=kind,
        key=key if key is not None else "/".join((kind.value, *where)),
        spec=described,
        rate_key=rate_key,
        limiter=limiter,
        poll=poll,
    )


@runtime_checkable
class TargetSource(Protocol):
    """What can rebuild targets: a client, saying which resources it holds."""

    def _target_resources(self) -> Iterable[object]:
        """Every resource of this client that builds targets."""
        ...


SpecBuilder = Callable[[Any, Mapping[str, Any]], Target[Any]]

_REGISTRY: dict[TargetKind, tuple[type, SpecBuilder]] = {}


def register_kind(
    kind: TargetKind, owner: type[R], build: Callable[[R, Mapping[str, Any]], Target[Any]]
) -> None:
    """Declare that resources of class ``owner`` build targets of ``kind``, and how: ``build``
    turns a spec into the resource's ``.target(...)`` call (checking its fields with
    `spec_field`)."""
    known = _REGISTRY.get(kind)
    if known is not None and known[0] is not owner:
        raise RuntimeError(f"{kind} is already built by {known[0].__name__}")
    _REGISTRY[kind] = (owner, build)


def registered_kinds() -> frozenset[TargetKind]:
    """The kinds some resource has registered."""
    return frozenset(_REGISTRY)


def spec_field(spec: Mapping[str, Any], name: str) -> Any:
    """``spec[name]``, or a `ValueError` naming the missing field."""
    if name not in spec:
        raise ValueError(f"target spec has no {name!r}")
    return spec[name]


def project_and_id(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    """The ``project_id`` and ``id`` of a V3 spec (checked by the ``.target`` they go to)."""
    return spec_field(spec, "project_id"), spec_field(spec, "id")


def target_from_spec(source: Any, spec: Mapping[str, Any]) -> Target[Any]:
    """Rebuild a target from [ResourceTarget.to_spec][d360_async.ResourceTarget.to_spec] output.

    ``source`` is a [Client][d360_async.Client], a
    [SmartDocumentorClient][d360_async.smartdocumentor.SmartDocumentorClient], one of their
    resources (``client.exports``), or an iterable of them (for a checkpoint of a watch that
    mixed clients); the first one that holds the resource registered for the target's kind,
    with the credential it needs, builds it.  The ids in the spec are
    validated again, exactly as if they were typed in.  The spec's ``kind`` is read with
    [TargetKind.parse][d360_async.TargetKind.parse], so older spellings load too.

    Raises:
        ValueError: the spec is not an object, names an unknown kind, lacks a field, holds an
            invalid id, or no given client can build that kind.

    Added in version 0.1.0.
    """
    if not isinstance(spec, Mapping):
        raise ValueError("target spec must be a JSON object")
    raw_kind = spec.get("kind")
    try:
        kind = TargetKind.parse(raw_kind)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"unknown target kind {raw_kind!r}") from None
    entry = _REGISTRY.get(kind)
    if entry is None:
        raise ValueError(f"unknown target kind {raw_kind!r}")
    owner, build = entry
    sources: Iterable[Any] = (
        list(source)
        if isinstance(source, Iterable) and not isinstance(source, str | bytes | Mapping)
        else [source]
    )
    for candidate in sources:
        # A client offers the resources it holds; a resource may also be given by itself.
        held = candidate._target_resources() if isinstance(candidate, TargetSource) else ()
        for resource in (*held, candidate):
            if isinstance(resource, owner):
                try:
                    return build(resource, spec)
                except MissingCredential:
                    break  # this client lacks the token: maybe the next one has it
    raise ValueError(f"none of the given clients can build a {kind.value!r} target")
