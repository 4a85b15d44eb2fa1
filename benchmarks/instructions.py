"""Where a status check's CPU goes: instructions per check, counted by valgrind.

Not a section of ``make bench`` (it needs ``valgrind`` and takes a few minutes): run it as
``python -m benchmarks.instructions``. CPU time on a shared machine moves by tens of percent
from one minute to the next; the number of instructions a loop executes does not, so this
splits the overhead benchmark's gap into steps that each add one layer of the client:

* ``bare``: aiohttp ``GET`` + ``json()`` on a default session (the overhead benchmark's bare loop);
* ``session``: the same on the client's own session (its connector, timeouts, default headers);
* ``transport_nolimit``: ``Transport.request`` without the limiter (no JSON decoding);
* ``transport``: ``Transport.request`` (the limiter admits, settles and learns);
* ``client``: ``client.exports.get`` (envelope and typed model too);
* ``client_no_learning``: the same with ``Budget.record`` stubbed out (what the limiter's
  learning from each answer costs; the answers teach it nothing, so only for measuring);
* ``client_clamped``: ``client.exports.get`` against a second server announcing a limit of
  1e9, which the parser clamps (the overhead section's last row: every answer reads as a
  refill);
* ``client_telemetry``: ``client.exports.get`` as built by default (``telemetry=True``; the
  others run with ``telemetry=False``): with ``opentelemetry-api`` installed and no SDK
  configured, what the telemetry's check costs.

Each variant runs in its own process under ``valgrind --tool=callgrind`` twice, with
``small`` and ``large`` checks after the same warm-up, against one fake server in another
process (16 concurrent, 3 ms latency, the same announced limit as in the overhead section);
the figure is the
difference over the difference in checks, so start-up and warm-up cancel out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .bench_overhead import (
    CONCURRENCY,
    LATENCY,
    _loop,
    clamped_rate_limit,
    honest_rate_limit,
    token,
)

VARIANTS = (
    "bare",
    "session",
    "transport_nolimit",
    "transport",
    "client",
    "client_no_learning",
    "client_clamped",
    "client_telemetry",
)
_COLLECTED = re.compile(r"Collected : (\d+)")


async def _child(variant: str, checks: int, url: str, project: str, export: str) -> None:
    import aiohttp

    from d360_async import Client
    from d360_async._limiters import RateLimitConfig

    if variant == "client_no_learning":
        from d360_async._core._ratelimit._budget import Budget

        def _ignore(self: Any, *args: Any, **kwargs: Any) -> None:
            return None

        Budget.record = _ignore  # type: ignore[method-assign]
    status_url = f"{url}/v3/projects/{project}/exports/{export}"
    headers = {"Authorization": f"Bearer {token(variant)}", "Accept": "application/json"}
    path = f"/v3/projects/{project}/exports/{export}"
    async with (
        aiohttp.ClientSession() as plain,
        Client(
            api_token=token(variant),
            base_url=url,
            rate_limit=RateLimitConfig(rate=1e9, period=60.0),
            # (As built by default only for `client_telemetry`: with opentelemetry-api
            # installed and no SDK configured, its calls are skipped.)
            telemetry=variant == "client_telemetry",
        ) as client,
    ):
        transport = client.exports.transport
        auth = client.exports.auth
        own = await transport.session()

        async def bare(session: aiohttp.ClientSession = plain) -> Any:
            async with session.get(status_url, headers=headers) as response:
                response.raise_for_status()
                return await response.json()

        async def session() -> Any:
            return await bare(own)

        async def transport_nolimit() -> Any:
            return await transport.request("GET", path, auth=auth, project_id=project, limit=False)

        async def through_transport() -> Any:
            return await transport.request("GET", path, auth=auth, project_id=project)

        async def through_client() -> Any:
            return await client.exports.get(project, export)

        check = {
            "bare": bare,
            "session": session,
            "transport_nolimit": transport_nolimit,
            "transport": through_transport,
            "client": through_client,
            "client_no_learning": through_client,
            "client_clamped": through_client,
            "client_telemetry": through_client,
        }[variant]
        await _loop(check, 200, CONCURRENCY)  # warm up
        await _loop(check, checks, CONCURRENCY)


def _count(variant: str, checks: int, server: tuple[str, str, str], workdir: Path) -> int:
    out = workdir / f"callgrind.{variant}.{checks}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        variant,
        str(checks),
        *server,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{variant}: valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--small", type=int, default=500, help="checks of the first run")
    parser.add_argument("--large", type=int, default=1500, help="checks of the second run")
    parser.add_argument("--only", action="append", choices=VARIANTS, help="these variants")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        variant, checks, url, project, export = args.child
        asyncio.run(_child(variant, int(checks), url, project, export))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed", file=sys.stderr)
        return 2
    from ._harness import ServerProcess

    with (
        ServerProcess(rate_limit=honest_rate_limit(), latency=LATENCY, seed=1) as server,
        ServerProcess(rate_limit=clamped_rate_limit(), latency=LATENCY, seed=1) as old,
        tempfile.TemporaryDirectory() as tmp,
    ):
        ids = server.call("benchmarks.bench_overhead:server_seed", list(VARIANTS))
        old_ids = old.call("benchmarks.bench_overhead:server_seed", list(VARIANTS))
        figures: dict[str, int] = {}
        for variant in args.only or VARIANTS:
            chosen, seeded = (old, old_ids) if variant == "client_clamped" else (server, ids)
            where = (chosen.url, seeded["project_id"], seeded["export_id"])
            small = _count(variant, args.small, where, Path(tmp))
            large = _count(variant, args.large, where, Path(tmp))
            figures[variant] = (large - small) // (args.large - args.small)
            print(f"{variant:20} {figures[variant]:>9,} instructions per check", flush=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
