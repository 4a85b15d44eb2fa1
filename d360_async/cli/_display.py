"""Showing progress: a rich live panel on a terminal, plain lines anywhere else.

rich is an optional dependency (the ``cli`` extra).  Without it, or when the output is not a
terminal (CI logs, pipes), the same information is printed as one plain line every few
seconds, and tables are drawn with spaces.  Nothing here reads the clock or the network: the
caller builds a `ProgressView` and hands it over.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.progress import Progress, TaskID

__all__ = [
    "Display",
    "LiveDisplay",
    "PlainDisplay",
    "ProgressView",
    "SummaryTable",
    "TransferBar",
    "choose_display",
    "format_duration",
    "format_plain_table",
    "rich_available",
]

RICH_HINT = (
    "d360-async: rich is not installed; showing plain output (pip install 'd360-async[cli]')"
)


def rich_available() -> bool:
    """Whether rich can be imported (``sys.modules['rich'] = None`` counts as missing)."""
    if "rich" in sys.modules:
        return sys.modules["rich"] is not None
    try:
        return importlib.util.find_spec("rich") is not None
    except (ImportError, ValueError):
        return False


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


@attrs.frozen(slots=True, kw_only=True)
class ProgressView:
    """Everything a progress display shows at one instant."""

    title: str
    total: int
    done: int
    phases: Mapping[str, int]
    elapsed: float
    eta: float | None = None
    requests: int | None = None
    budget: str | None = None
    throttled: int | None = None
    notes: tuple[tuple[str, str], ...] = ()

    def plain_line(self) -> str:
        """The view as one line of text."""
        phases = " ".join(f"{name}={count}" for name, count in self.phases.items() if count)
        parts = [f"[{format_duration(self.elapsed)}] {self.done}/{self.total} done"]
        if phases:
            parts.append(phases)
        if self.requests is not None:
            used = f"requests={self.requests}"
            if self.budget:
                used += f" (budget {self.budget})"
            parts.append(used)
        if self.throttled is not None:
            parts.append(f"429s_received={self.throttled}")
        parts.append(f"eta={format_duration(self.eta)}")
        parts.extend(f"{name}={value}" for name, value in self.notes)
        return " | ".join(parts)


@attrs.frozen(slots=True, kw_only=True)
class SummaryTable:
    """A final table: a title, column headers, rows of cells, and lines printed under it.

    ``left`` is how many leading columns are left-aligned (labels); the rest are numbers,
    right-aligned.
    """

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    footer: tuple[str, ...] = ()
    left: int = 1


def format_plain_table(table: SummaryTable) -> str:
    """The table as aligned text: first column left-aligned, the others right-aligned."""
    widths = [len(h) for h in table.headers]
    for row in table.rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.ljust(widths[i]) if i < table.left else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    lines = [table.title, line(table.headers), line(["-" * w for w in widths])]
    lines.extend(line(row) for row in table.rows)
    lines.extend(table.footer)
    return "\n".join(lines)


class Display:
    """Shows nothing: the base class, and what ``--json`` uses."""

    def start(self) -> None:
        """Begin showing progress."""

    def update(self, view: ProgressView) -> None:
        """Show ``view`` (a display may skip updates that come too often)."""

    def stop(self, view: ProgressView | None = None) -> None:
        """Stop showing progress, leaving ``view`` as the last state when given."""

    def print(self, text: str) -> None:
        """Print a line of text."""

    def table(self, table: SummaryTable) -> None:
        """Print a summary table."""


class PlainDisplay(Display):
    """A progress line every ``interval`` seconds, and tables drawn with spaces.

    Used when the output is not a terminal or rich is missing.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._last_line: str | None = None

    def _emit(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()
        self._last_line = line

    def update(self, view: ProgressView) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return
        self._last = now
        self._emit(view.plain_line())

    def stop(self, view: ProgressView | None = None) -> None:
        if view is not None:
            line = view.plain_line()
            if line != self._last_line:
                self._emit(line)

    def print(self, text: str) -> None:
        self._emit(text)

    def table(self, table: SummaryTable) -> None:
        self._stream.write(format_plain_table(table) + "\n")
        self._stream.flush()


def _console(stream: IO[str], **options: Any) -> Console:
    from rich.console import Console

    return Console(file=stream, highlight=False, **options)


def _render(view: ProgressView) -> RenderableType:
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    styles = {
        "waiting": "dim",
        "pending": "yellow",
        "running": "cyan",
        "unknown": "magenta",
        "succeeded": "green",
        "failed": "red",
        "cancelled": "red",
    }
    always = ("waiting", "pending", "running", "succeeded", "failed")
    shown = {n: c for n, c in view.phases.items() if c or n in always}
    phases = Table.grid(padding=(0, 2))
    for _ in shown:
        phases.add_column(justify="right")
    phases.add_row(*[f"[{styles.get(name, '')}]{name}[/]" for name in shown])
    phases.add_row(*[f"[bold]{count}[/]" for count in shown.values()])

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column(max_width=72, no_wrap=True, overflow="ellipsis")
    facts.add_row("done", f"{view.done}/{view.total}")
    if view.requests is not None:
        used = str(view.requests)
        if view.budget:
            used += f"  [dim](budget {view.budget})[/]"
        facts.add_row("requests", used)
    if view.throttled is not None:
        style = "green" if view.throttled == 0 else "bold red"
        facts.add_row("429s received", f"[{style}]{view.throttled}[/]")
    facts.add_row("elapsed", format_duration(view.elapsed))
    facts.add_row("eta", format_duration(view.eta))
    for name, value in view.notes:
        facts.add_row(name, Text(value))

    bar = Table.grid(padding=(0, 2))
    bar.add_row(
        ProgressBar(total=max(view.total, 1), completed=view.done, width=50),
        f"{100 * view.done / max(view.total, 1):.0f}%",
    )
    return Panel(Group(phases, "", bar, "", facts), title=view.title, expand=False)


class LiveDisplay(Display):
    """A rich live panel, redrawn in place on a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self._console = _console(stream)
        self._live: Live | None = None

    def start(self) -> None:
        from rich.live import Live
        from rich.text import Text

        self._live = Live(
            Text("starting..."),
            console=self._console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    def update(self, view: ProgressView) -> None:
        if self._live is not None:
            self._live.update(_render(view), refresh=True)

    def stop(self, view: ProgressView | None = None) -> None:
        if self._live is None:
            return
        if view is not None:
            self._live.update(_render(view), refresh=True)
        self._live.stop()
        self._live = None

    def print(self, text: str) -> None:
        self._console.print(text, markup=False)

    def table(self, table: SummaryTable) -> None:
        from rich.table import Table

        grid = Table(title=table.title, title_justify="left")
        for index, header in enumerate(table.headers):
            grid.add_column(header, justify="left" if index < table.left else "right")
        for row in table.rows:
            grid.add_row(*row)
        self._console.print(grid)
        for line in table.footer:
            self._console.print(line, markup=False)


def choose_display(
    *,
    json_output: bool,
    stream: IO[str],
    warn: IO[str],
    interval: float = 5.0,
) -> Display:
    """The display for this run: none for ``--json``, live on a terminal, plain otherwise."""
    if json_output:
        return Display()
    if not rich_available():
        warn.write(RICH_HINT + "\n")
        return PlainDisplay(stream, interval=interval)
    if stream.isatty():
        return LiveDisplay(stream)
    return PlainDisplay(stream, interval=interval)


class TransferBar:
    """A download progress bar (rich) or a line per tenth of the file (plain)."""

    def __init__(self, stream: IO[str], *, description: str, live: bool) -> None:
        self._stream = stream
        self._description = description
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._printed = -1
        if live:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=_console(stream),
            )

    def __enter__(self) -> TransferBar:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, done: int, total: int | None) -> None:
        """``done`` bytes of ``total`` (``None`` when the size is unknown) have arrived."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, total=total)
            return
        if total:
            tenth = min(10, done * 10 // total)
            if tenth > self._printed:
                self._printed = tenth
                self._stream.write(f"{self._description}: {tenth * 10}% of {total} bytes\n")
                self._stream.flush()
