"""The ``d360-async`` console script.

Commands: ``demo`` (hundreds of operations on a local fake server), ``fake`` (that fake
server on its own, until Ctrl-C), ``watch`` (follow real operations until they end),
``status`` (one status, once) and ``export`` (start an export, wait for it, download it).
See ``docs/cli.md``.

`main` parses the command line, runs the command and *returns* the exit code, so tests
can call it; the console script wrapper generated from ``pyproject.toml`` passes that value to
`sys.exit`, as does ``python -m d360_async.cli``.  Every error a user can cause ends as one
line on stderr and a documented exit code, never a traceback:

* 0: every operation succeeded;
* 1: an operation failed, was cancelled, ended with an error or timed out, or the API could
  not be reached;
* 2: usage error (bad option, malformed id, unknown region, unreadable ids file);
* 3: authentication error (credential missing from the environment, or refused).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from ._exit import CLIError, ExitCode, describe_error, exit_code_for
from ._jsonl import JsonLines
from ._parser import build_parser, parse_command_line

__all__ = ["ExitCode", "main"]

_PROG = "d360-async"


def _configure_logging(verbosity: int) -> None:
    if verbosity <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("d360_async")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def _error(message: str) -> None:
    sys.stderr.write(f"{_PROG}: error: {message}\n")
    sys.stderr.flush()


async def _dispatch(args: argparse.Namespace) -> int:
    # Imported here so that `d360-async --help` stays fast and a broken optional part of the
    # library cannot stop the others from working.
    if args.command == "demo":
        from ._demo import run_demo

        return await run_demo(args)
    if args.command == "fake":
        from ._fake import run_fake

        return await run_fake(args)
    from ._commands import run_export, run_status, run_watch

    handlers = {"watch": run_watch, "status": run_status, "export": run_export}
    return await handlers[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``d360-async`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parse_command_line(parser, words)
    except CLIError as exc:
        return _fail(words, exc.message, int(exc.code))
    except SystemExit as exc:  # --help and --version print, then "exit" 0
        return exc.code if isinstance(exc.code, int) else 0
    _configure_logging(int(getattr(args, "verbose", 0) or 0))
    try:
        return int(asyncio.run(_dispatch(args)))
    except KeyboardInterrupt:
        return _fail(words, "interrupted", 130)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, and keep the interpreter from
        # failing again while flushing stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return int(ExitCode.FAILED)
    except Exception as exc:  # the one place where every error ends (groups included)
        error = _unwrap(exc)
        logging.getLogger("d360_async").debug("command failed", exc_info=error)
        return _fail(words, describe_error(error), int(exit_code_for(error)))


def _fail(words: list[str], message: str, code: int) -> int:
    """Report a run that ended on an error: one line on stderr and, with ``--json``, the
    closing ``summary`` object on stdout, so a script reading stdout always gets one."""
    _error(message)
    if "--json" in words:
        command = next((w for w in words if not w.startswith("-")), None)
        # When stdout is gone or closed, stderr has said it all.
        with contextlib.suppress(BrokenPipeError, ValueError):
            JsonLines(sys.stdout).write(
                {"type": "summary", "command": command, "error": message, "exit_code": code}
            )
    return code


def _unwrap(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
