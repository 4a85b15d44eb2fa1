"""The ``d360-async`` command line, declared with argparse (no extra dependency)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar

from d360_async import __version__

from ._exit import UsageError
from ._kinds import KINDS
from ._options import (
    DEMO_BUDGET,
    parse_positive_float,
    parse_positive_int,
    parse_rate,
    parse_region,
)

__all__ = ["build_parser", "parse_command_line"]

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line as a `UsageError` (one line, exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _typed(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    """Adapt one of our parsers to argparse, which only reports ArgumentTypeError nicely."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = name
    return convert


def _add_common(
    parser: argparse.ArgumentParser, *, rate_help: str | None = None, remote: bool = True
) -> None:
    """The options every command shares; ``remote=False`` leaves out those that only make
    sense against a real API (a shared Redis budget, an overall timeout)."""
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--json",
        action="store_true",
        help="write machine-readable JSON (one object per line) instead of a display",
    )
    group.add_argument(
        "--rate-limit",
        metavar="N/PERIOD",
        type=_typed(parse_rate, "rate limit"),
        help=rate_help
        or "requests allowed per period before the server says otherwise, e.g. 60/min "
        "(default 60/min, the vendor's lowest plan; the limiter then follows the headers)",
    )
    if remote:
        group.add_argument(
            "--redis-url",
            metavar="URL",
            help="share the rate-limit budget with other processes through this Redis "
            "(needs the 'redis' extra)",
        )
    group.add_argument(
        "--max-concurrency",
        metavar="N",
        type=_typed(parse_positive_int, "count"),
        help="at most N requests in flight at once",
    )
    if remote:
        group.add_argument(
            "--timeout",
            metavar="SECONDS",
            type=_typed(parse_positive_float, "seconds"),
            help="give up waiting after this many seconds (operations still running count as "
            "timed out: exit code 1)",
        )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="log to stderr (-v: info, -vv: debug); credentials are never logged",
    )


def _add_rate(group: Any, text: str) -> None:
    group.add_argument(
        "--rate-limit", metavar="N/PERIOD", type=_typed(parse_rate, "rate limit"), help=text
    )


def _add_api(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the API is")
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--region",
        type=_typed(parse_region, "region"),
        help="eu (default), us or ca",
    )
    where.add_argument(
        "--base-url",
        metavar="URL",
        help="any base URL (a proxy, a test server); for sd-tasks, the SmartDocumentor host",
    )


PANEL_HELP = (
    "The live panel (and the plain progress line): done = operations that have ended; "
    "requests = requests this client sent, against the budget; 429s received = answers "
    "'429 Too Many Requests' this client got (0 means the limiter stayed within the budget); "
    "eta = a rough estimate of the time left."
)
DEMO_PANEL_HELP = (
    f"{PANEL_HELP} The demo adds: 429s sent by the server = the fake server's own count of "
    "429 answers (it agrees with '429s received' unless something between them interferes); "
    "delay p50 = the median detection delay, from when the fake finished an operation to when "
    "the watch reported it. The final table: failed = reported failed by the server (the fake "
    "fails a few on purpose); errors = could not be watched to the end; polls/op = status "
    "requests per operation. The lifecycles are scaled to --count: 50 operations take about a "
    "tenth of the time 500 take."
)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each sub-command stores its handler name in ``command``."""
    parser = _Parser(
        prog="d360-async",
        description="Watch Document360 long-running operations from the shell.",
        epilog="Credentials come from the environment: D360_API_TOKEN (V3), "
        "D360_V2_API_TOKEN (V2), SD_CLIENT_ID and SD_CLIENT_SECRET (SmartDocumentor). "
        "Exit codes: 0 all succeeded, 1 something failed or timed out, 2 usage error, "
        "3 authentication error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log to stderr (-vv for debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    kinds = ", ".join(KINDS)

    demo = commands.add_parser(
        "demo",
        help="watch hundreds of operations on a local fake Document360",
        description="Start a fake Document360 on 127.0.0.1, start exports, drive tasks and V2 "
        "deletions through the real client, and watch them all within the fake's rate limit.",
        epilog=DEMO_PANEL_HELP,
    )
    demo.add_argument(
        "--count",
        type=_typed(parse_positive_int, "count"),
        default=500,
        help="how many operations to start (default 500); the lifecycles are scaled with it",
    )
    demo.add_argument(
        "--seed", type=int, default=None, help="random seed for the lifecycles (default: random)"
    )
    _add_common(
        demo,
        rate_help=f"the fake server's budget per token, e.g. 600/min (default {DEMO_BUDGET}, "
        f"{DEMO_BUDGET.per_second:g} per second on average); the client learns it from the "
        "response headers",
        remote=False,
    )
    # Development switches, kept out of --help: shrink every lifecycle so tests take seconds.
    demo.add_argument(
        "--time-scale",
        type=_typed(parse_positive_float, "scale"),
        default=1.0,
        help=argparse.SUPPRESS,
    )
    demo.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)

    watch = commands.add_parser(
        "watch",
        help="watch operations until they finish",
        description="Poll operations until each one ends, within the rate limit.",
        epilog=PANEL_HELP,
    )
    watch.add_argument("kind", metavar="KIND", help=f"one of: {kinds}")
    watch.add_argument("ids", metavar="ID", nargs="*", help="operation ids")
    watch.add_argument(
        "--project", metavar="PROJECT_ID", help="the project (a UUID; needed by the V3 kinds)"
    )
    watch.add_argument(
        "--ids-file",
        metavar="FILE",
        help="read ids from FILE, one per line ('-' for stdin; '#' starts a comment)",
    )
    pacing = watch.add_argument_group("watch options")
    pacing.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_typed(parse_positive_float, "seconds"),
        help="poll one operation at most this often (default 1; the budget decides the rest)",
    )
    pacing.add_argument(
        "--priors",
        metavar="FILE",
        help="start from the durations learned by an earlier run (a --save-priors file or a "
        "watch checkpoint), so polls go where finishes are likely from the first one",
    )
    pacing.add_argument(
        "--save-priors",
        metavar="FILE",
        help="write the durations learned by this run to FILE when it ends",
    )
    _add_api(watch)
    _add_common(watch)

    status = commands.add_parser(
        "status", help="show one operation's status", description="Fetch one status once."
    )
    status.add_argument("kind", metavar="KIND", help=f"one of: {kinds}")
    status.add_argument("id", metavar="ID", help="operation id")
    status.add_argument(
        "--project", metavar="PROJECT_ID", help="the project (a UUID; needed by the V3 kinds)"
    )
    _add_api(status)
    _add_common(status)

    from ._fake import add_fake_parser

    add_fake_parser(commands, _typed, _add_rate)

    export = commands.add_parser(
        "export",
        help="start an export, optionally wait for it and download it",
        description="Start a V3 export; --wait watches it, --download saves the archive.",
        epilog=PANEL_HELP,
    )
    export.add_argument(
        "--project", metavar="PROJECT_ID", required=True, help="the project to export (a UUID)"
    )
    export.add_argument(
        "--workspace",
        metavar="WORKSPACE_ID",
        required=True,
        help="the workspace (version) of the project to export",
    )
    export.add_argument(
        "--format", metavar="FORMAT", default="pdf", help="export format (default pdf)"
    )
    export.add_argument("--lang", metavar="CODE", help="language code, e.g. en")
    export.add_argument("--wait", action="store_true", help="watch until the export ends")
    export.add_argument(
        "--download", metavar="PATH", help="save the finished export here (implies --wait)"
    )
    _add_api(export)
    _add_common(export)
    return parser


def parse_command_line(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse ``argv``, letting ``watch`` ids come after options too.

    argparse cannot mix a ``nargs="*"`` positional with options inside a sub-command
    (``watch exports --project P ID ID``), and ``parse_intermixed_args`` does not support
    sub-commands, so ids left over after the options are collected here.
    """
    args, extras = parser.parse_known_args(argv)
    stray = [arg for arg in extras if arg.startswith("-") and arg != "-"]
    if args.command == "watch" and not stray:
        args.ids = [*args.ids, *extras]
        return args
    if extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    return args
