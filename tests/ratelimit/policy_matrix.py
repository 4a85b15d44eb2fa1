"""The pure limiter over a matrix of policies and dialects, and over random sliding windows.

A manual tool beside `policy_sim` (not a test): it prints the worst share of the budget used
over a few seeds, and the 429s, for each policy family x header dialect, on virtual time, in a
few seconds. The families are the policies benchmark's plus a token bucket of burst 100 and two
sliding windows it lacks (20 per 30 s, and 60 per minute, the vendor's own limit); those two
run three times as long, their windows being longer.

    cd tests/ratelimit && ../../.venv/bin/python policy_matrix.py [SEEDS]
    cd tests/ratelimit && ../../.venv/bin/python policy_matrix.py --random [RANDOM_SEED]
    cd tests/ratelimit && ../../.venv/bin/python policy_matrix.py --changes [SEEDS]
    cd tests/ratelimit && ../../.venv/bin/python policy_matrix.py --internet [SEEDS]

`--internet` runs the matrix at 5-150 ms each way (a server across the internet) instead of
2-20 ms.
"""

from __future__ import annotations

import random
import sys
from typing import Any

from policy_sim import simulate, simulate_drawn

from d360_async.testing import FakeRateLimit

FAMILIES: dict[str, dict[str, Any]] = {
    "aligned 100/10 s": {"algorithm": "fixed_window_aligned", "limit": 100, "window": 10.0},
    "first request 60/10 s": {"algorithm": "fixed_window", "limit": 60, "window": 10.0},
    "sliding 100/10 s": {"algorithm": "sliding_window", "limit": 100, "window": 10.0},
    "counter 100/10 s": {"algorithm": "sliding_counter", "limit": 100, "window": 10.0},
    "bucket 20 + 10/s": {"algorithm": "token_bucket", "limit": 10, "window": 1.0, "burst": 20},
    "bucket 100 + 10/s": {"algorithm": "token_bucket", "limit": 10, "window": 1.0, "burst": 100},
    "sliding 20/30 s": {"algorithm": "sliding_window", "limit": 20, "window": 30.0},
    "sliding 60/60 s": {"algorithm": "sliding_window", "limit": 60, "window": 60.0},
}
DIALECTS = ["x-ratelimit", "vendor_page", "remaining_only", "ietf", "gateway"]
LONG = ("sliding 20/30 s", "sliding 60/60 s")


def _worst(seeds: int, policy: FakeRateLimit, **kw: Any) -> tuple[str, int]:
    """One cell: the worst share over `seeds` runs and the 429s of them all, as printed."""
    runs = [simulate(policy, seed=seed, concurrency=32, **kw) for seed in range(seeds)]
    throttled = sum(run.throttled for run in runs)
    worst = min(run.share for run in runs)
    return f"{worst:.3f}" + (f" ({throttled} 429s)" if throttled else ""), throttled


INTERNET = (0.005, 0.15)


def matrix(seeds: int = 3, duration: float = 150.0, **kw: Any) -> int:
    """Print the matrix (`kw`: for every run, e.g. `latency`); returns the 429s in all."""
    print(f"{'':24}" + "".join(f"{d:>16}" for d in DIALECTS))
    total = 0
    for name, family in FAMILIES.items():
        cells: list[str] = []
        for dialect in DIALECTS:
            policy = FakeRateLimit(dialect=dialect, **family)
            length = duration * (3 if name in LONG else 1)
            cell, throttled = _worst(seeds, policy, duration=length, **kw)
            total += throttled
            cells.append(cell)
        print(f"{name:24}" + "".join(f"{cell:>16}" for cell in cells), flush=True)
    print(f"429s in all: {total}")
    return total


def random_sliding(seed: int = 0, n: int = 60) -> int:
    """Random sliding windows, as the property test draws its policies; print the weak ones and
    those with a 429, and return how many had a 429."""
    rng = random.Random(seed)
    tripped = 0
    for _ in range(n):
        dialect = rng.choice(DIALECTS)
        limit = rng.choice([30, 60, 100, 150])
        window = rng.choice([5.0, 10.0, 30.0])
        reset_format = rng.choice(["epoch", "delay"])
        latency = rng.choice([(0.001, 0.005), (0.002, 0.02)])
        skew, phase = rng.uniform(-30, 30), rng.random()
        concurrency, run_seed = rng.choice([4, 16]), rng.randint(0, 1000)
        run = simulate_drawn(
            "sliding_window",
            dialect,
            limit,
            window,
            reset_format=reset_format,
            latency=latency,
            skew=skew,
            phase=phase,
            concurrency=concurrency,
            seed=run_seed,
        )
        tripped += run.throttled > 0
        if run.throttled or run.share < 0.9:
            print(
                f"{dialect:15} {limit:4d} per {window:4.0f} s {reset_format:6} skew {skew:+6.1f}"
                f" concurrency {concurrency:2d} seed {run_seed:4d}: {run.share:.3f},"
                f" {run.throttled} 429s"
            )
    print(f"{n} random sliding windows, {tripped} with a 429")
    return tripped


CHANGES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "limit lowered 100 -> 60": ({"limit": 100}, {"limit": 60}),
    "limit raised 60 -> 100": ({"limit": 60}, {"limit": 100}),
    "window shortened 10 -> 5 s": ({"limit": 60, "window": 10.0}, {"limit": 60, "window": 5.0}),
    "window grown 5 -> 10 s": ({"limit": 60, "window": 5.0}, {"limit": 60, "window": 10.0}),
}
CHANGED_FAMILIES = ["fixed_window_aligned", "fixed_window", "sliding_window", "sliding_counter"]


def changes(seeds: int = 3, at: float = 60.0, duration: float = 150.0) -> int:
    """The policy changed under load, `at` seconds in: per family x dialect x change, the
    429s over `seeds` runs and the worst share of the new budget used from a window after the
    change on. Returns the 429s in all."""
    total = 0
    for change, (old, new) in CHANGES.items():
        print(f"{change}:")
        print(f"{'':24}" + "".join(f"{d:>16}" for d in DIALECTS))
        for algorithm in CHANGED_FAMILIES:
            cells: list[str] = []
            for dialect in DIALECTS:
                base = {"algorithm": algorithm, "window": 10.0, "dialect": dialect}
                before = FakeRateLimit(**{**base, **old})
                after = FakeRateLimit(**{**base, **new})
                cell, throttled = _worst(seeds, before, duration=duration, change=(at, after))
                total += throttled
                cells.append(cell)
            print(f"{algorithm:24}" + "".join(f"{cell:>16}" for cell in cells), flush=True)
    print(f"429s in all: {total}")
    return total


if __name__ == "__main__":
    if sys.argv[1:2] == ["--random"]:
        random_sliding(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    elif sys.argv[1:2] == ["--changes"]:
        changes(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    elif sys.argv[1:2] == ["--internet"]:
        matrix(int(sys.argv[2]) if len(sys.argv) > 2 else 3, latency=INTERNET)
    else:
        matrix(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
