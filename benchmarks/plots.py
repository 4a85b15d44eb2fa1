"""The pictures of the results page: detection-delay CDFs and admitted requests over time.

Written by ``make bench`` into ``docs/assets/bench/`` (shown in docs/benchmarks.md).
matplotlib is a development dependency; without it the plots are skipped, never the figures.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PLOTS_DIR", "admitted_rate", "delay_cdfs"]

PLOTS_DIR = Path(__file__).resolve().parent.parent / "docs" / "assets" / "bench"


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the dev extra
        return None
    return plt


def _finish(plt: Any, fig: Any, ax: Any, title: str, path: Path, legend: str) -> Path:
    """Grid, wrapped title, legend; write the file and free the figure."""
    ax.grid(alpha=0.3)
    ax.set_title(textwrap.fill(title, 95), fontsize=9)
    ax.legend(fontsize=8, loc=legend)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def delay_cdfs(
    series: Mapping[str, Sequence[float]], *, title: str, path: Path, floor_label: str
) -> Path | None:
    """One detection-delay CDF per poller, the floor dashed; returns the file written."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=110)
    for label, values in series.items():
        ordered = sorted(v for v in values if math.isfinite(v))
        if not ordered:
            continue
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        style = "--" if label == floor_label else "-"
        width = 2.2 if label.startswith("d360-async") else 1.4
        ax.step(ordered, ys, where="post", linestyle=style, linewidth=width, label=label)
    ax.set_xlabel("detection delay (s): caller sees the end - server finished it")
    ax.set_ylabel("share of operations")
    ax.set_ylim(0, 1.0)
    ax.set_xlim(left=0)
    return _finish(plt, fig, ax, title, path, "lower right")


def admitted_rate(
    admitted: Mapping[str, Sequence[float]],
    *,
    budget: float,
    start: float,
    title: str,
    path: Path,
    bucket: float = 10.0,
) -> Path | None:
    """Requests the server admitted per second (averaged per ``bucket`` s) against the budget."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 3.6), dpi=110)
    end = 0.0
    for label, times in admitted.items():
        rel = [t - start for t in times if t >= start]
        if not rel:
            continue
        n = int(max(rel) // bucket) + 1
        counts = [0] * n
        for t in rel:
            counts[int(t // bucket)] += 1
        xs = [i * bucket for i in range(n + 1)]
        ys = [c / bucket for c in counts] + [counts[-1] / bucket]
        ax.step(xs, ys, where="post", label=label, linewidth=1.6)
        end = max(end, xs[-1])
    ax.axhline(budget, color="black", linestyle=":", linewidth=1.2, label="budget")
    ax.set_xlabel(f"seconds since the operations started ({bucket:g} s bins)")
    ax.set_ylabel("admitted requests / s")
    ax.set_xlim(0, max(end, bucket))
    ax.set_ylim(0, budget * 1.3)
    return _finish(plt, fig, ax, title, path, "lower left")
