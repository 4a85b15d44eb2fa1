"""``d360-async fake``: the bundled fake Document360, in the foreground, until Ctrl-C.

It runs [FakeDocument360][d360_async.testing.FakeDocument360] on a local port, seeds the
operations asked for, and prints what a shell needs to use it: the URL, the tokens and project
as ``export`` lines (the names `Client()`, the examples and the other commands read), the
seeded ids, and commands to try.  Everything else the fake can do is an option: the rate limit
and how it is reported (its header dialect), lifecycles, faults, latency, the V2 quirks.

The rate-limit options forward to [FakeRateLimit][d360_async.testing.FakeRateLimit] field by
field: `RATE_LIMIT_FIELDS` below names the fields, and each field's type says which values
its option takes (a `Literal` gives the choices, a `bool` is on/off).  Exposing a new field is
one line there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from d360_async import TargetKind

from ._exit import CLIError, ExitCode, UsageError
from ._jsonl import JsonLines
from ._options import RateSpec, parse_int_within, parse_ratio

__all__ = [
    "DEFAULT_PORT",
    "RATE_LIMIT_FIELDS",
    "SEED_OPTIONS",
    "WORKSPACE_ID",
    "add_rate_limit_options",
    "banner",
    "parse_fault",
    "parse_range",
    "rate_limit_from",
    "run_fake",
]

DEFAULT_PORT: Final = 8360
WORKSPACE_ID: Final = "fake-workspace"
"""The fake accepts any workspace id; this is the one the printed lines suggest."""

# FakeRateLimit fields exposed as ``--rate-limit-<field>`` (``_`` written ``-``), with their
# help.  ``limit`` and ``window`` are set together by ``--rate-limit N/PERIOD``.  One line each.
RATE_LIMIT_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("algorithm", "how requests are counted"),
    ("reset_format", "X-RateLimit-Reset as an epoch or as a delay in seconds"),
    ("send_limit_and_reset", "when X-RateLimit-Limit and -Reset are sent"),
    ("headers", "whether X-RateLimit-* headers are sent at all"),
    ("dialect", "which rate-limit headers are sent, in which form"),
    ("burst", "the bucket size of token_bucket (default: the limit)"),
)

# ``--exports N`` and friends: the option for each kind the fake can seed.
SEED_OPTIONS: Final[Mapping[TargetKind, str]] = {
    TargetKind.V3_EXPORT: "--exports",
    TargetKind.V3_DRIVE_TASK: "--drive-tasks",
    TargetKind.V3_IMPORT: "--imports",
    TargetKind.V3_API_REFERENCE: "--api-references",
    TargetKind.V2_DELETE_FILE: "--v2-deletes",
    TargetKind.V2_EXPORT: "--v2-exports",
    TargetKind.V2_IMPORT: "--v2-imports",
    TargetKind.SMARTDOCUMENTOR_TASK: "--sd-tasks",
}

# Lifecycles long enough to type a command before the seeded operations end.
_PENDING: Final = (5.0, 20.0)
_RUNNING: Final = (20.0, 90.0)
_ON_OFF: Final = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}


def _option(field: str) -> str:
    return "--rate-limit-" + field.replace("_", "-")


def _dest(field: str) -> str:
    return "rate_limit_" + field


def _fields() -> dict[str, Any]:
    from d360_async.testing import FakeRateLimit

    attrs.resolve_types(FakeRateLimit)
    return {field.name: field for field in attrs.fields(FakeRateLimit)}


def _field_types() -> dict[str, Any]:
    return {name: field.type for name, field in _fields().items()}


def _without_none(kind: Any) -> Any:
    """``X | None`` as ``X`` (an option not given already means "not set")."""
    members = [m for m in typing.get_args(kind) if m is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(members) == 1:
        return members[0]
    return kind


def _number(kind: Any) -> Callable[[str], Any]:
    """The parser for a numeric field (anything else is passed on as text)."""
    if kind not in (int, float):
        return str

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def _shown_default(field: Any) -> str:
    default = field.default
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def add_rate_limit_options(group: argparse._ArgumentGroup) -> None:
    """One option per entry of `RATE_LIMIT_FIELDS`, its values taken from the field's type."""
    fields = _fields()
    for name, text in RATE_LIMIT_FIELDS:
        field = fields[name]
        shown = text if field.default is None else f"{text} (default {_shown_default(field)})"
        if field.type is bool:
            group.add_argument(
                _option(name), dest=_dest(name), choices=("on", "off"), type=str.lower, help=shown
            )
            continue
        kind = _without_none(field.type)
        if typing.get_origin(kind) is typing.Literal:
            choices = typing.get_args(kind)
            group.add_argument(_option(name), dest=_dest(name), choices=choices, help=shown)
        else:
            group.add_argument(
                _option(name), dest=_dest(name), metavar="N", type=_number(kind), help=shown
            )


def rate_limit_from(args: argparse.Namespace) -> Any:
    """The [FakeRateLimit][d360_async.testing.FakeRateLimit] the options describe, or ``None``
    for ``--no-rate-limit``; fields not given keep FakeRateLimit's own defaults."""
    from d360_async.testing import FakeRateLimit

    given = {
        field: getattr(args, _dest(field))
        for field, _ in RATE_LIMIT_FIELDS
        if getattr(args, _dest(field), None) is not None
    }
    rate: RateSpec | None = args.rate_limit
    if args.no_rate_limit:
        if given or rate is not None:
            raise UsageError("--no-rate-limit cannot be combined with other rate-limit options")
        return None
    types = _field_types()
    values: dict[str, Any] = {
        field: _ON_OFF[value] if types[field] is bool else value for field, value in given.items()
    }
    if rate is not None:
        values["limit"] = max(1, math.ceil(rate.requests))
        values["window"] = rate.period
    try:
        return FakeRateLimit(**values)
    except ValueError as exc:
        raise UsageError(f"invalid rate limit: {exc}") from None


def parse_range(text: str) -> tuple[float, float]:
    """``SECONDS`` or ``LOW-HIGH`` (``5``, ``2-10``, ``0.5-1.5``)."""
    low, sep, high = text.partition("-")
    try:
        bounds = (float(low), float(high) if sep else float(low))
    except ValueError:
        raise UsageError(f"expected SECONDS or LOW-HIGH, got {text!r}") from None
    if not all(math.isfinite(b) and b >= 0 for b in bounds) or bounds[1] < bounds[0]:
        raise UsageError(f"expected 0 <= LOW <= HIGH, got {text!r}")
    return bounds


def parse_fault(text: str) -> tuple[str, float, tuple[str, ...] | None]:
    """``KIND[=RATE][@ROUTE,ROUTE...]``: ``http_503``, ``abort=0.05``, ``slow=0.1@v3.*``.

    The rate defaults to 0.1; routes are the fake's route names or fnmatch patterns.
    """
    from d360_async.testing import FAULT_KINDS

    spec, _, routes = text.partition("@")
    kind, sep, rate_text = spec.partition("=")
    kind = kind.strip()
    if kind not in FAULT_KINDS:
        raise UsageError(f"unknown fault {kind!r}; one of: {', '.join(FAULT_KINDS)}")
    try:
        rate = float(rate_text) if sep else 0.1
    except ValueError:
        raise UsageError(f"invalid fault rate in {text!r}") from None
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"a fault rate is within [0, 1], got {text!r}")
    names = tuple(r.strip() for r in routes.split(",") if r.strip()) if routes else None
    return kind, rate, names


def _counts(args: argparse.Namespace) -> dict[TargetKind, int]:
    return {kind: n for kind in SEED_OPTIONS if (n := getattr(args, _seed_dest(kind)))}


def _seed_dest(kind: TargetKind) -> str:
    return "seed_" + kind.name.lower()


def _describe_limit(limit: Any) -> str:
    if limit is None:
        return "no rate limit"
    per = "token and project" if limit.per == "token_project" else "token"
    return f"rate limit {RateSpec(limit.limit, limit.window)} per {per}"


def banner(
    *, url: str, fake: Any, seeded: Mapping[TargetKind, list[str]], limit: Any, seed: int
) -> list[str]:
    """What ``d360-async fake`` prints once it listens (plain text, no secret of a real
    account in it: these are the fake's own credentials)."""
    lines = [
        f"Fake Document360 listening on {url} (seed {seed}, {_describe_limit(limit)}).",
        "Press Ctrl-C to stop it.",
        "",
        "Point the client, the examples and the other commands at it:",
        "",
        f"  export D360_BASE_URL={url}",
        f"  export D360_API_TOKEN={fake.api_token}",
        f"  export D360_V2_API_TOKEN={fake.v2_api_token}",
        f"  export D360_PROJECT_ID={fake.project_id}",
        f"  export D360_WORKSPACE_ID={WORKSPACE_ID}",
        f"  export SD_CLIENT_ID={fake.sd_client_id}",
        f"  export SD_CLIENT_SECRET={fake.sd_client_secret}",
    ]
    if seeded:
        lines += ["", "Seeded operations:"]
        for kind, ids in seeded.items():
            shown = " ".join(ids[:10]) + (f" ... ({len(ids)} in all)" if len(ids) > 10 else "")
            lines.append(f"  {kind}: {shown}")
    exports = seeded.get(TargetKind.V3_EXPORT, [])
    lines += [
        "",
        "Then try:",
        "",
        '  d360-async export --project "$D360_PROJECT_ID" --workspace "$D360_WORKSPACE_ID" '
        "--wait --download export.zip",
    ]
    if exports:
        lines += [
            f'  d360-async status {TargetKind.V3_EXPORT} {exports[0]} --project "$D360_PROJECT_ID"',
            f'  d360-async watch {TargetKind.V3_EXPORT} --project "$D360_PROJECT_ID" '
            + " ".join(exports[:10]),
        ]
    tasks = seeded.get(TargetKind.SMARTDOCUMENTOR_TASK, [])
    if tasks:
        lines.append(
            f'  d360-async watch {TargetKind.SMARTDOCUMENTOR_TASK} --base-url "$D360_BASE_URL" '
            f"{tasks[0]}"
        )
    return lines


def _build(args: argparse.Namespace, limit: Any) -> Any:
    from d360_async.testing import FakeDocument360, FakeLifecycle

    try:
        lifecycle = FakeLifecycle(
            pending=args.pending or _PENDING,
            running=args.running or _RUNNING,
            failure_ratio=args.failure_ratio,
        )
    except ValueError as exc:
        raise UsageError(f"invalid lifecycle: {exc}") from None
    fake = FakeDocument360(
        rate_limit=limit,
        lifecycle=lifecycle,
        seed=args.seed,
        latency=args.latency or 0.0,
        v2_complete_quirk=args.v2_complete_quirk,
        empty_401=args.empty_401,
        host=args.host,
        port=args.port,
    )
    for kind, rate, routes in args.fault or ():
        try:
            fake.faults.set(kind, rate, routes=routes)
        except ValueError as exc:
            raise UsageError(f"invalid fault {kind!r}: {exc}") from None
    return fake


async def _until_stopped(stop: asyncio.Event) -> None:
    """Wait for Ctrl-C (SIGINT) or SIGTERM; both stop the server the same, clean way."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def run_fake(args: argparse.Namespace, *, stop: asyncio.Event | None = None) -> int:
    """Run the fake until Ctrl-C (or until ``stop`` is set), then report and exit 0."""
    limit = rate_limit_from(args)
    fake = _build(args, limit)
    stop = stop if stop is not None else asyncio.Event()
    try:
        await fake.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CLIError(
            f"cannot listen on {args.host}:{args.port}: {reason} "
            "(choose another --port; 0 picks any free one)"
        ) from None
    try:
        seeded: dict[TargetKind, list[str]] = {
            kind: fake.seed(kind, n) for kind, n in _counts(args).items()
        }
        out: Callable[[str], None] = _printer()
        if args.json:
            JsonLines(sys.stdout).write(
                {
                    "type": "fake",
                    "url": fake.url,
                    "api_token": fake.api_token,
                    "v2_api_token": fake.v2_api_token,
                    "project_id": fake.project_id,
                    "workspace_id": WORKSPACE_ID,
                    "sd_client_id": fake.sd_client_id,
                    "sd_client_secret": fake.sd_client_secret,
                    "rate_limit": attrs.asdict(limit) if limit is not None else None,
                    "operations": seeded,
                }
            )
        else:
            for line in banner(url=fake.url, fake=fake, seeded=seeded, limit=limit, seed=args.seed):
                out(line)
        await _until_stopped(stop)
    finally:
        await fake.stop()
    stats = fake.stats
    if args.json:
        JsonLines(sys.stdout).write(
            {
                "type": "summary",
                "command": "fake",
                "requests": stats.requests,
                "rate_limited": stats.rate_limited,
                "exit_code": int(ExitCode.OK),
            }
        )
    else:
        _printer()(
            f"\nStopped after {stats.requests} requests ({stats.rate_limited} answered 429)."
        )
    return int(ExitCode.OK)


def _printer() -> Callable[[str], None]:
    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return write


def add_fake_parser(
    commands: Any, typed: Callable[..., Any], add_rate: Callable[[Any, str], None]
) -> None:
    """Declare ``d360-async fake`` and its options on the sub-command set ``commands``."""
    from d360_async.testing import FAULT_KINDS

    fake = commands.add_parser(
        "fake",
        help="run the bundled fake Document360 until Ctrl-C",
        description="Run the bundled fake Document360 server (V3, V2 and SmartDocumentor) on "
        "a local port, seed operations, and print the export lines that point the client, "
        "the examples and the other commands at it. Ctrl-C stops it cleanly.",
        epilog="Nothing it serves is real: the tokens it prints are its own.",
    )
    where = fake.add_argument_group("where it listens")
    where.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    where.add_argument(
        "--port",
        type=typed(_port, "port"),
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0 picks any free one)",
    )
    ops = fake.add_argument_group("operations")
    for kind, option in SEED_OPTIONS.items():
        ops.add_argument(
            option,
            dest=_seed_dest(kind),
            metavar="N",
            type=typed(_count, "count"),
            default=0,
            help=f"seed N {kind.label} operations ({kind}; default 0)",
        )
    ops.add_argument(
        "--seed", type=int, default=0, help="seed for lifecycles, ids and faults (default 0)"
    )
    ops.add_argument(
        "--pending",
        metavar="LOW-HIGH",
        type=typed(parse_range, "range"),
        help=f"seconds an operation stays pending (default {_PENDING[0]:g}-{_PENDING[1]:g})",
    )
    ops.add_argument(
        "--running",
        metavar="LOW-HIGH",
        type=typed(parse_range, "range"),
        help=f"seconds an operation runs (default {_RUNNING[0]:g}-{_RUNNING[1]:g})",
    )
    ops.add_argument(
        "--failure-ratio",
        metavar="R",
        type=typed(parse_ratio, "ratio"),
        default=0.0,
        help="share of operations that end failed, 0 to 1 (default 0)",
    )
    limits = fake.add_argument_group("rate limit and dialect")
    fields = _fields()
    default = RateSpec(fields["limit"].default, fields["window"].default)
    add_rate(
        limits,
        f"requests allowed per period per token, e.g. 600/min or 300/10s (default {default}, "
        "the vendor's lowest plan); reported in X-RateLimit-* headers, answered 429 beyond",
    )
    limits.add_argument(
        "--no-rate-limit", action="store_true", help="serve every request, send no rate headers"
    )
    add_rate_limit_options(limits)
    limits.add_argument(
        "--v2-complete-quirk",
        action="store_true",
        help="a finished V2 deletion says is_complete: true with status 2, as in the vendor's "
        "own example",
    )
    limits.add_argument(
        "--empty-401", action="store_true", help="answer 401 with an empty body, as a gateway may"
    )
    faults = fake.add_argument_group("faults")
    faults.add_argument(
        "--fault",
        metavar="KIND[=RATE][@ROUTES]",
        action="append",
        type=typed(parse_fault, "fault"),
        help=f"inject a fault into a share of requests (rate default 0.1; routes are route "
        f"names or patterns such as v3.*, comma-separated); KIND is one of: "
        f"{', '.join(FAULT_KINDS)}; repeatable",
    )
    faults.add_argument(
        "--latency",
        metavar="LOW-HIGH",
        type=typed(parse_range, "range"),
        help="seconds added to every response (default 0)",
    )
    output = fake.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        help="print the URL, credentials and ids as one JSON object, and a summary at the end",
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log to stderr (-v: info, -vv: debug, every request the fake serves)",
    )


def _port(text: str) -> int:
    return parse_int_within(text, 0, 65535, what="a port")


def _count(text: str) -> int:
    return parse_int_within(text, 0)
