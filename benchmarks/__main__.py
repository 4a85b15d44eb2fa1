"""``python -m benchmarks``: run the benchmarks and write ``benchmarks/results/latest.*``.

Sections, in order: ``overhead`` (client CPU per status check against bare aiohttp),
``limiter`` (acquire + complete cost), ``policies`` (budget used and 429s against every
server policy and header dialect), ``scale`` (a watch of 1,000 and 100,000 targets, and a
``keep_open`` service that 50,000 targets go through), ``budget`` (detection delay and budget
use against two peers, round robin and the reference floor, on fixed windows and on a token
bucket), ``warm`` (one small watch per request: cold, warm and given priors) and
``distributed`` (four processes sharing a Redis limiter against four independent ones) and
``hub`` (four processes watching the same exports through an ``ObservationHub``, with a
``kill -9`` of a lease holder).

``--only NAME`` (repeatable) reruns some sections and merges them into the existing results;
``--quick`` runs small versions of everything and writes ``quick.md``/``quick.json`` instead,
so a smoke run never overwrites the real figures.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from ._harness import RESULTS_DIR, Section, TargetCheck, log, machine_info, write_results

SECTIONS: dict[str, tuple[str, str]] = {
    # name: (module, title)
    "overhead": ("benchmarks.bench_overhead", "Overhead per status check"),
    "limiter": ("benchmarks.bench_overhead", "Rate limiter acquire + complete"),
    "scale": ("benchmarks.bench_scale", "Scale: one watch of many targets"),
    "policies": ("benchmarks.bench_policies", "Rate limiter: every server policy"),
    "budget": ("benchmarks.bench_budget", "Budget use and detection delay"),
    "warm": ("benchmarks.bench_warm", "Warm start: one small watch per request"),
    "distributed": ("benchmarks.bench_distributed", "Distributed: four processes, one budget"),
    "hub": ("benchmarks.bench_hub", "Hub: four processes, one poll per export"),
}


def _runner(name: str) -> Callable[[bool], Section]:
    module = importlib.import_module(SECTIONS[name][0])
    func: Callable[[bool], Section] = getattr(module, f"run_{name}")
    return func


def _failed(name: str, exc: BaseException, seconds: float, command: str) -> Section:
    """A section that could not run: reported, never silently dropped."""
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return Section(
        name=name,
        title=SECTIONS[name][1],
        command=command,
        targets=[TargetCheck("section ran", "completes", f"failed: {detail}", None)],
        notes=[f"The section failed: `{detail}` (see the run's stderr for the traceback)."],
        seconds=seconds,
        date=time.strftime("%Y-%m-%d %H:%M:%S"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the d360-async benchmarks and write benchmarks/results/.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SECTIONS),
        metavar="NAME",
        help=f"run only this section (repeatable; one of: {', '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small smoke version; writes quick.md/quick.json"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results directory (default: %(default)s)"
    )
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, title) in SECTIONS.items():
            print(f"{name:12} {title}")
        return 0

    names = [n for n in SECTIONS if args.only is None or n in args.only]
    stem = "quick" if args.quick else "latest"
    command = "python -m benchmarks" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    machine = machine_info()
    log(f"machine: {machine['cpu_model']}, {machine['cpu_cores_logical']} cores")
    started = time.perf_counter()
    sections: list[Section] = []
    failures = 0
    for name in names:
        log(f"section {name}: starting")
        t0 = time.perf_counter()
        load = [round(x, 2) for x in os.getloadavg()]
        section_command = f"python -m benchmarks --only {name}" + (" --quick" if args.quick else "")
        try:
            section = _runner(name)(args.quick)
        except Exception as exc:  # one broken section must not hide the others' figures
            traceback.print_exc()
            failures += 1
            section = _failed(name, exc, time.perf_counter() - t0, section_command)
        section.seconds = time.perf_counter() - t0
        section.command = section_command
        section.date = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        section.load_average = load
        sections.append(section)
        log(f"section {name}: done in {section.seconds:.0f} s")
        # Write after every section, so an interrupted run still leaves its figures.
        write_results(
            sections,
            directory=args.out,
            stem=stem,
            command=command,
            quick=args.quick,
            seconds=time.perf_counter() - started,
            merge=args.only is not None,
            machine=machine,
        )
    log(f"all done in {time.perf_counter() - started:.0f} s; see {args.out / (stem + '.md')}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
