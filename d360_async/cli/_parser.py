"""The ``d360-async`` command line, declared with argparse (no extra dependency)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from .._version import __version__
from ._exit import UsageError
from ._kinds import KINDS
from ._options import (
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


def _add_common(parser: argparse.ArgumentParser, *, rate_help: str | None = None) -> None:
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
    )
    demo.add_argument(
        "--count",
        type=_typed(parse_positive_int, "count"),
        default=500,
        help="how many operations to start (default 500)",
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed for the lifecycles")
    _add_common(
        demo,
        rate_help="the fake server's budget, e.g. 600/min (default 30/s); the client learns "
        "it from the response headers",
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
    )
    watch.add_argument("kind", metavar="KIND", help=f"one of: {kinds}")
    watch.add_argument("ids", metavar="ID", nargs="*", help="operation ids")
    watch.add_argument("--project", metavar="PROJECT_ID", help="the project (V3 kinds)")
    watch.add_argument(
        "--ids-file",
        metavar="FILE",
        help="read ids from FILE, one per line ('-' for stdin; '#' starts a comment)",
    )
    _add_api(watch)
    _add_common(watch)

    status = commands.add_parser(
        "status", help="show one operation's status", description="Fetch one status once."
    )
    status.add_argument("kind", metavar="KIND", help=f"one of: {kinds}")
    status.add_argument("id", metavar="ID", help="operation id")
    status.add_argument("--project", metavar="PROJECT_ID", help="the project (V3 kinds)")
    _add_api(status)
    _add_common(status)

    export = commands.add_parser(
        "export",
        help="start an export, optionally wait for it and download it",
        description="Start a V3 export; --wait watches it, --download saves the archive.",
    )
    export.add_argument("--project", metavar="PROJECT_ID", required=True)
    export.add_argument("--workspace", metavar="WORKSPACE_ID", required=True)
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
