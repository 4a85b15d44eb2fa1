"""What every benchmark shares: machine facts, timing, memory, loop lag, servers, results.

* :func:`machine_info`: the facts printed above every results table.
* :class:`Stopwatch`: wall and process CPU time of a block.
* :class:`LagTicker`: an asyncio task that measures event-loop lag and samples RSS.
* :class:`ServerProcess`: a :class:`~d360_async.testing.FakeDocument360` in a child process,
  so its CPU is never charged to the code being measured, driven through a small RPC.
* :class:`Section` and :func:`write_results`: the markdown and JSON results.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

__all__ = [
    "RESULTS_DIR",
    "LagTicker",
    "Section",
    "ServerProcess",
    "Stopwatch",
    "Table",
    "TargetCheck",
    "client_class",
    "fmt",
    "free_port",
    "log",
    "machine_info",
    "peak_rss_bytes",
    "percentile",
    "redis_server",
    "render_markdown",
    "rss_bytes",
    "summarise",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MP = mp.get_context("spawn")  # never fork a process that may hold a running event loop


# -- numbers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def summarise(values: Sequence[float]) -> dict[str, float]:
    """Count, p50, p90, p99 and max of a sample (NaN when empty)."""
    return {
        "n": float(len(values)),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def rss_bytes() -> int:
    """The resident set size of this process now."""
    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """The highest RSS this process has had since it started (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- machine ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _version_of(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return "not installed"
    return str(getattr(mod, "__version__", "unknown"))


def _redis_server_version() -> str:
    exe = shutil.which("redis-server")
    if exe is None:
        return "not installed"
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for part in out.stdout.split():
        if part.startswith("v="):
            return part[2:]
    return out.stdout.strip() or "unknown"


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_info() -> dict[str, Any]:
    """The facts a reader needs to judge the figures: hardware, software, date."""
    vm = psutil.virtual_memory()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "ram_gib": round(vm.total / 2**30, 1),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "aiohttp": _version_of("aiohttp"),
        "aiolimiter": _version_of("aiolimiter"),
        "d360_async": _version_of("d360_async"),
        "redis_py": _version_of("redis"),
        "redis_server": _redis_server_version(),
        "git_commit": _git_commit(),
        "load_average_at_start": [round(x, 2) for x in load],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def client_class() -> Any:
    """``d360_async.Client`` (from its private module while the public export is missing)."""
    import d360_async

    cls = getattr(d360_async, "Client", None)
    if cls is None:
        from d360_async._clients._client import Client as cls
    return cls


# -- timing ----------------------------------------------------------------------------------


class Stopwatch:
    """Wall time and this process's CPU time (user + system) spent inside a ``with`` block."""

    __slots__ = ("_cpu0", "_wall0", "cpu", "wall")

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._wall0 = 0.0
        self._cpu0 = 0.0

    def __enter__(self) -> Self:
        self._wall0 = time.perf_counter()
        self._cpu0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self._cpu0
        self.wall = time.perf_counter() - self._wall0


class LagTicker:
    """Measures event-loop lag: a task that sleeps ``interval`` and records how late it woke.

    It also samples this process's RSS every ``rss_every`` ticks, so :attr:`peak_rss` sees
    the high-water mark while the loop is busy.  Use as ``async with LagTicker() as ticker``.
    """

    def __init__(self, interval: float = 0.01, *, rss_every: int = 10) -> None:
        self.interval = interval
        self.rss_every = rss_every
        self.lags: list[float] = []
        self.peak_rss = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        process = psutil.Process()
        ticks = 0
        while True:
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - expected))
            ticks += 1
            if ticks % self.rss_every == 0:
                self.peak_rss = max(self.peak_rss, int(process.memory_info().rss))

    async def __aenter__(self) -> Self:
        self.peak_rss = rss_bytes()
        self._task = asyncio.create_task(self._run(), name="lag-ticker")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.peak_rss = max(self.peak_rss, rss_bytes())

    def summary_ms(self) -> dict[str, float]:
        """Lag p50/p99/max in milliseconds."""
        lags = [x * 1000.0 for x in self.lags]
        return {
            "ticks": float(len(lags)),
            "p50": percentile(lags, 50),
            "p99": percentile(lags, 99),
            "max": max(lags) if lags else math.nan,
        }


# -- the fake server in its own process -------------------------------------------------------


def _plain(value: Any) -> Any:
    """Make a result safe to send between processes (attrs/dataclass objects become dicts)."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    try:
        import attrs

        if attrs.has(type(value)):
            return attrs.asdict(value, recurse=True)
    except ImportError:  # pragma: no cover - attrs is a dependency of the library
        pass
    return value


def resolve(path: str) -> Callable[..., Any]:
    """``"package.module:function"`` to the function."""
    module, _, name = path.partition(":")
    func = getattr(importlib.import_module(module), name)
    if not callable(func):
        raise TypeError(f"{path} is not callable")
    return func  # type: ignore[no-any-return]


async def _serve(conn: Connection, factory: str, kwargs: Mapping[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    server_cm = resolve(factory)(**kwargs)
    async with server_cm as server:
        conn.send(("ok", {"url": server.url, "pid": os.getpid()}))
        while True:
            name, args, kw = await loop.run_in_executor(None, conn.recv)
            if name == "stop":
                conn.send(("ok", None))
                return
            try:
                if name == "call":
                    func, *rest = args
                    result = resolve(func)(server, *rest, **kw)
                elif name == "cpu":
                    times = psutil.Process().cpu_times()
                    result = times.user + times.system
                elif name == "clock":
                    result = time.monotonic()
                else:
                    result = getattr(server, name)(*args, **kw)
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    result = await result
                conn.send(("ok", _plain(result)))
            except Exception as exc:  # reported to the parent, which raises it
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _server_main(conn: Connection, factory: str, kwargs: Mapping[str, Any]) -> None:
    try:
        asyncio.run(_serve(conn, factory, kwargs))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"server process failed: {type(exc).__name__}: {exc}"))
        raise


class ServerProcess:
    """A server (by default :class:`FakeDocument360`) running in a child process.

    ``factory`` names an async context manager factory (``"module:callable"``) whose value
    has a ``url``; ``kwargs`` are passed to it in the child (they must pickle).  Methods of
    the server are called with :meth:`call_method`; a module-level function taking the server
    as its first argument runs in the child with :meth:`call`.  Results come back as plain
    data.  Calls are synchronous (a pipe round trip, well under a millisecond): use them
    between measurements, not inside a timed loop.
    """

    def __init__(self, factory: str = "d360_async.testing:FakeDocument360", **kwargs: Any) -> None:
        self._factory = factory
        self._kwargs = kwargs
        self._conn: Connection | None = None
        self._process: Any = None
        self._lock = threading.Lock()
        self.url = ""
        self.pid = 0

    def start(self, timeout: float = 60.0) -> Self:
        parent, child = MP.Pipe()
        process = MP.Process(
            target=_server_main,
            args=(child, self._factory, self._kwargs),
            name="bench-fake-server",
            daemon=True,
        )
        process.start()
        child.close()
        self._conn, self._process = parent, process
        if not parent.poll(timeout):
            self.stop()
            raise RuntimeError("the server process did not start in time")
        try:
            status, value = parent.recv()
        except EOFError:
            status, value = "error", "the server process exited before it was ready"
        if status != "ok":
            self.stop()
            raise RuntimeError(value)
        self.url, self.pid = value["url"], value["pid"]
        return self

    def _request(self, name: str, args: tuple[Any, ...], kw: Mapping[str, Any]) -> Any:
        if self._conn is None:
            raise RuntimeError("the server process is not running")
        with self._lock:
            self._conn.send((name, args, dict(kw)))
            status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"server call {name} failed: {value}")
        return value

    def call_method(self, name: str, *args: Any, **kw: Any) -> Any:
        """Call ``server.<name>(*args, **kw)`` in the child (awaited if it is a coroutine)."""
        return self._request(name, args, kw)

    def call(self, func: str, *args: Any, **kw: Any) -> Any:
        """Run ``func(server, *args, **kw)`` in the child; ``func`` is ``"module:function"``."""
        return self._request("call", (func, *args), kw)

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        return float(self._request("cpu", (), {}))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and wait for its process; safe to call twice."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            with contextlib.suppress(OSError, EOFError):
                conn.send(("stop", (), {}))
                if conn.poll(timeout):
                    conn.recv()
            conn.close()
        if process is not None:
            process.join(timeout)
            if process.is_alive():
                process.terminate()
                process.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_server(timeout: float = 10.0) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free 127.0.0.1 port, no persistence; yields its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- results ---------------------------------------------------------------------------------


@dataclass
class Table:
    """One markdown table: a title, column names and rows of already formatted cells."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class TargetCheck:
    """One target from the issue: what it asks, what was measured, whether it was met.

    ``met`` is ``None`` when the figure could not be measured (the reason goes in ``value``).
    """

    name: str
    goal: str
    value: str
    met: bool | None


@dataclass
class Section:
    """The results of one benchmark: tables, targets, notes, raw figures and how to rerun."""

    name: str
    title: str
    command: str
    tables: list[Table] = field(default_factory=list)
    targets: list[TargetCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    date: str = ""
    load_average: list[float] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Section:
        return cls(
            name=raw["name"],
            title=raw["title"],
            command=raw["command"],
            tables=[Table(**t) for t in raw.get("tables", [])],
            targets=[TargetCheck(**t) for t in raw.get("targets", [])],
            notes=list(raw.get("notes", [])),
            data=dict(raw.get("data", {})),
            seconds=float(raw.get("seconds", 0.0)),
            date=str(raw.get("date", "")),
            load_average=[float(x) for x in raw.get("load_average") or []],
        )


def _json_safe(value: Any) -> Any:
    """NaN and infinities become ``None`` so the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(_cell(c) for c in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(str(c)) for c in row) + " |" for row in rows]
    return lines


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "not measured"}[met]


def render_markdown(document: Mapping[str, Any]) -> str:
    """The readable form of a results document (the structure :func:`write_results` saves)."""
    machine = document["machine"]
    sections = [Section.from_json(s) for s in document["sections"].values()]
    quick = " (quick smoke run: small workloads, figures not representative)"
    out = [
        "## Benchmark results",
        "",
        f"Generated {document['generated_at']} by `{document['command']}`"
        f"{quick if document.get('quick') else ''}"
        f", {document.get('seconds', 0.0):.0f} s in all.",
        "",
        "**Machine**: "
        f"{machine['cpu_model']}, {machine['cpu_cores_logical']} logical cores, "
        f"{machine['ram_gib']} GiB RAM; {machine['os']}; {machine['python']}; "
        f"aiohttp {machine['aiohttp']}, aiolimiter {machine['aiolimiter']}, "
        f"redis-server {machine['redis_server']}; d360-async {machine['d360_async']} "
        f"(commit {machine['git_commit']}); load average at start "
        f"{', '.join(str(x) for x in machine['load_average_at_start'])}.",
        "",
        "### Targets",
        "",
    ]
    rows = [
        [s.title, t.name, t.goal, t.value, _verdict(t.met)] for s in sections for t in s.targets
    ]
    out += _markdown_table(["section", "target", "goal", "measured", "verdict"], rows)
    for section in sections:
        out += ["", f"### {section.title}", ""]
        load = (
            f"; 1-minute load average {section.load_average[0]:.2f} at start"
            if section.load_average
            else ""
        )
        out += [
            f"Reproduce: `{section.command}` (ran {section.date}, {section.seconds:.0f} s{load}).",
            "",
        ]
        for table in section.tables:
            if table.title:
                out += [f"*{table.title}*", ""]
            out += [*_markdown_table(table.columns, table.rows), ""]
        for note in section.notes:
            out += [f"- {note}"]
    return "\n".join(out).rstrip() + "\n"


def write_results(
    sections: Sequence[Section],
    *,
    directory: Path = RESULTS_DIR,
    stem: str = "latest",
    command: str,
    quick: bool = False,
    seconds: float = 0.0,
    merge: bool = False,
    machine: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``<stem>.json`` and ``<stem>.md``; with ``merge``, keep sections not rerun.

    Files are written to a temporary name and renamed, so a reader never sees half a file.
    Returns the document written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stem}.json"
    previous: dict[str, Any] = {}
    if merge and json_path.exists():
        with contextlib.suppress(ValueError, OSError):
            previous = json.loads(json_path.read_text())
    merged: dict[str, Any] = dict(previous.get("sections", {})) if merge else {}
    for section in sections:
        merged[section.name] = asdict(section)
    order = ["overhead", "limiter", "scale", "budget", "distributed"]
    ordered = dict(
        sorted(merged.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    )
    document: dict[str, Any] = {
        "schema": 1,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": quick,
        "seconds": seconds if not merge else sum(float(s["seconds"]) for s in ordered.values()),
        "machine": dict(machine) if machine is not None else machine_info(),
        "sections": ordered,
    }
    document = _json_safe(document)
    for path, text in (
        (json_path, json.dumps(document, indent=2, sort_keys=False) + "\n"),
        (directory / f"{stem}.md", render_markdown(document)),
    ):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return document


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A number for a table cell; ``n/a`` for a missing or NaN value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def log(message: str) -> None:
    """Progress on stderr, so a long run shows what it is doing."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
