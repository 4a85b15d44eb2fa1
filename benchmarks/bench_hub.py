"""Hub: four processes watching the same exports, one poll per export through Redis.

One fake server (its own process), one real ``redis-server``, and four worker processes
started together, each watching the same ``N`` exports (300 by default) through its own
``Client``: every worker shares one budget through a ``RedisRateLimiter``, and, in the ``hub``
runs, polls through an ``ObservationHub`` on the same Redis.  Runs, on fresh exports of the
same lifecycle each:

* **alone**: one process, no hub: the polls of one process (the yardstick);
* **no hub**: four processes, shared budget only: what the hub saves;
* **hub**: four processes with the hub;
* **hub, kill -9**: the same, and the worker holding the most leases is killed with SIGKILL
  while the exports run; the others must take its exports over within the lease TTL.

Figures: polls the server served (a status answer per export, counted by the fake), their
ratio to the alone run and to the polls each process *used* (its own plus those it read from
the stream, which is exact where the alone run is a second sample of random lifecycles),
whether every surviving process got every change exactly once in order (for each export,
exactly the raw statuses the server served for it, to whichever process polled, ending in
its true outcome; the fake records them, ``FakeOperation.served_statuses``), and the
takeover delay after the kill (from the kill to the first survivor holding each of the killed
worker's leases, sampled every 20 ms).

The same scenario is the multi-process test of the hub (``tests/hub/test_hub_processes.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from multiprocessing.connection import Connection
from typing import Any

from d360_async import TargetKind

from ._harness import MP, Section, ServerProcess, Table, TargetCheck, fmt, log, redis_server

__all__ = ["Scenario", "run_hub", "run_scenario"]

API_TOKEN = "test-api-token"
PROCESSES = 4
TARGETS = 300
QUICK_TARGETS = 60
LIMIT, WINDOW = 2000, 5.0  # 400 requests a second: the budget does not bind
PENDING = (3.0, 4.0)
RUNNING = (5.0, 7.0)
INTERVAL = 1.0
LEASE_TTL = 2.0
KILL_AT = 4.5  # seconds after the start
SAMPLE = 0.02


def server_seed(fake: Any, n: int) -> list[str]:
    ids: list[str] = fake.seed(TargetKind.V3_EXPORT, n, pending=PENDING, running=RUNNING)
    return ids


def server_truth(fake: Any, ids: list[str]) -> dict[str, Any]:
    ops = {op.id: op for op in fake.operations(TargetKind.V3_EXPORT)}
    return {
        "polls": sum(ops[i].polls for i in ids),
        "outcomes": {i: ops[i].outcome for i in ids},
        "served": {i: list(ops[i].served_statuses) for i in ids},
        "delays": sorted(ops[i].detection_delay for i in ids if ops[i].detection_delay is not None),
        "rate_limited": fake.stats.rate_limited,
    }


class Scenario:
    """One run: ``processes`` workers over ``targets`` fresh exports."""

    def __init__(
        self,
        *,
        processes: int = PROCESSES,
        targets: int = TARGETS,
        hub: bool = True,
        kill: bool = False,
        lease_ttl: float = LEASE_TTL,
    ) -> None:
        self.processes = processes
        self.targets = targets
        self.hub = hub
        self.kill = kill
        self.lease_ttl = lease_ttl

    @property
    def label(self) -> str:
        if self.processes == 1 and not self.hub:
            return "alone"
        return ("hub" if self.hub else "no hub") + (", kill -9" if self.kill else "")


# -- the worker process -----------------------------------------------------------------------


def _worker_main(conn: Connection, **kw: Any) -> None:
    try:
        result = asyncio.run(_worker(conn, **kw))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    conn.send(("ok", result))


async def _worker(
    conn: Connection,
    *,
    url: str,
    redis_url: str,
    prefix: str,
    project_id: str,
    warm_id: str,
    hub: bool,
    lease_ttl: float,
    victim_at: float | None,
) -> dict[str, Any]:
    from d360_async import Client, ObservationHub, PollPolicy, RateLimitConfig, RedisRateLimiter

    config = RateLimitConfig(rate=float(LIMIT), period=WINDOW)
    loop = asyncio.get_running_loop()
    seen: dict[str, list[list[Any]]] = {}
    acquired: dict[str, list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        limiter = await stack.enter_async_context(
            RedisRateLimiter(redis_url, config=config, prefix=f"{prefix}:rl")
        )
        observation_hub = None
        if hub:
            observation_hub = await stack.enter_async_context(
                ObservationHub(
                    redis_url,
                    prefix=prefix,
                    lease_ttl=lease_ttl,
                    operation_timeout=lease_ttl / 4,
                )
            )
        client = await stack.enter_async_context(
            Client(api_token=API_TOKEN, base_url=url, rate_limiter=limiter, hub=observation_hub)
        )
        await client.exports.get(project_id, warm_id)  # connections and scripts warm
        conn.send(("ready", None))
        # The exports are created when every worker is ready, so that each is seen pending.
        start_at, ids = await loop.run_in_executor(None, conn.recv)
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def sample() -> None:
            held: set[Any] = set()
            while observation_hub is not None:
                now_held = observation_hub.held()
                for topic in now_held - held:
                    acquired.setdefault(topic[1], []).append(time.time())
                held = now_held
                await asyncio.sleep(SAMPLE)

        async def report_held() -> None:
            assert victim_at is not None
            assert observation_hub is not None
            await asyncio.sleep(max(0.0, start_at + victim_at - time.time()))
            keys = sorted(topic[1] for topic in observation_hub.held())
            conn.send(("held", (keys, time.time())))  # the parent may kill us now

        targets = [client.exports.target(project_id, i) for i in ids]
        policy = PollPolicy(interval=INTERVAL, max_interval=2.0)
        tasks = [asyncio.create_task(sample())]
        if victim_at is not None:
            tasks.append(asyncio.create_task(report_held()))
        try:
            async with client.watch(targets, policy=policy, max_concurrency=64) as w:
                async for t in w:
                    seen.setdefault(t.key, []).append([t.kind.value, t.phase.value, t.raw_status])
                stats = w.stats()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        hub_stats = None if observation_hub is None else observation_hub.stats()
    return {
        "seen": seen,
        "polls": stats.polls,
        "shared": stats.shared,
        "acquired": acquired,
        "hub": None
        if hub_stats is None
        else {
            "published": hub_stats.published,
            "received": hub_stats.received,
            "takeovers": hub_stats.takeovers,
            "outages": hub_stats.outages,
        },
    }


# -- the parent -------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, server: ServerProcess, redis_url: str) -> dict[str, Any]:
    """Run ``scenario`` on a running fake server and Redis; returns its figures."""
    (warm_id,) = server.call("benchmarks.bench_hub:server_seed", 1)
    project_id = server.call("benchmarks.bench_hub:server_project")
    prefix = f"bench-hub-{secrets.token_hex(4)}"
    workers = []
    ids: list[str] = []
    killed_at: float | None = None
    victim_keys: list[str] = []
    results: list[dict[str, Any] | None] = []
    try:
        for _ in range(scenario.processes):
            parent, child = MP.Pipe()
            proc = MP.Process(
                target=_worker_main,
                args=(child,),
                kwargs={
                    "url": server.url,
                    "redis_url": redis_url,
                    "prefix": prefix,
                    "project_id": project_id,
                    "warm_id": warm_id,
                    "hub": scenario.hub,
                    "lease_ttl": scenario.lease_ttl,
                    "victim_at": KILL_AT if scenario.kill else None,
                },
                daemon=True,
            )
            proc.start()
            child.close()
            workers.append((parent, proc))
        for parent, _ in workers:
            _expect(parent, "ready", 60, "start")
        ids = server.call("benchmarks.bench_hub:server_seed", scenario.targets)
        start_at = time.time() + 0.3
        for parent, _ in workers:
            parent.send((start_at, ids))
        victim = -1
        if scenario.kill:
            # Every worker says which leases it holds; the one holding most is killed.
            reports = [_expect(parent, "held", 30, "report its leases")[0] for parent, _ in workers]
            victim = max(range(len(reports)), key=lambda i: len(reports[i]))
            victim_keys = reports[victim]
            workers[victim][1].kill()  # SIGKILL: no lease given back, no goodbye
            killed_at = time.time()
            workers[victim][1].join(5)
        for n, (parent, _) in enumerate(workers):
            if n == victim:
                results.append(None)
                continue
            results.append(_expect(parent, "ok", 120, "finish"))
    finally:
        for parent, proc in workers:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            parent.close()
    truth = server.call("benchmarks.bench_hub:server_truth", ids)
    survivors = [r for r in results if r is not None]
    stories_ok, story_problems = _check_stories(survivors, ids, truth)
    takeover: list[float] = []
    for key in victim_keys:
        after = [
            t
            for r in survivors
            for t in r["acquired"].get(key, [])
            if killed_at is not None and t >= killed_at
        ]
        # A lease nobody took: its export finished (every survivor read the end) first.
        if after:
            takeover.append(min(after) - (killed_at or 0.0))
    used = [r["polls"] + r["shared"] for r in survivors]
    delays = truth["delays"]
    return {
        "delay_p50": delays[len(delays) // 2] if delays else None,
        "delay_max": delays[-1] if delays else None,
        "label": scenario.label,
        "processes": scenario.processes,
        "targets": scenario.targets,
        "server_polls": truth["polls"],
        "rate_limited": truth["rate_limited"],
        "polls_per_process": [r["polls"] for r in survivors],
        "used_per_process": used,
        "stories_ok": stories_ok,
        "story_problems": story_problems[:5],
        "victim_leases": len(victim_keys),
        "taken_over": len(takeover),
        "takeover_max": max(takeover) if takeover else None,
        "takeover_p50": sorted(takeover)[len(takeover) // 2] if takeover else None,
        "lease_ttl": scenario.lease_ttl,
        "hub": [r["hub"] for r in survivors],
    }


def _expect(parent: Connection, status: str, within: float, what: str) -> Any:
    """The next message of a worker, which must be ``status``; its value."""
    if not parent.poll(within):
        raise RuntimeError(f"a worker did not {what} within {within:g} s")
    got, value = parent.recv()
    if got != status:
        raise RuntimeError(f"a worker failed to {what}: {value}")
    return value


def server_project(fake: Any) -> str:
    project: str = fake.project_id
    return project


def _check_stories(
    survivors: list[dict[str, Any]], ids: list[str], truth: dict[str, Any]
) -> tuple[bool, list[str]]:
    """Every process delivered, for every export, exactly the statuses the server served for
    it (to whichever process polled), each change once, in order, ending in its outcome."""
    problems: list[str] = []
    for n, result in enumerate(survivors):
        seen = result["seen"]
        if len(seen) != len(ids):
            problems.append(f"process {n}: {len(seen)} of {len(ids)} exports")
        for key, story in seen.items():
            export_id = key.rsplit("/", 1)[1]
            end = "succeeded" if truth["outcomes"].get(export_id) == "succeeded" else "failed"
            served = truth["served"].get(export_id, [])
            if any(kind != "changed" for kind, _, _ in story):
                problems.append(f"process {n} {export_id}: {story}")
            elif [raw for _, _, raw in story] != served:
                problems.append(f"process {n} {export_id}: {story}, server served {served}")
            elif story[-1][1] != end:
                problems.append(f"process {n} {export_id}: ended {story[-1][1]}, not {end}")
    return not problems, problems


def run_hub(quick: bool = False) -> Section:
    from d360_async.testing import FakeRateLimit

    n = QUICK_TARGETS if quick else TARGETS
    section = Section(name="hub", title="Hub: four processes, one poll per export", command="")
    runs = [
        Scenario(processes=1, hub=False, targets=n),
        Scenario(hub=False, targets=n),
        Scenario(targets=n),
        Scenario(targets=n, kill=True),
    ]
    results: list[dict[str, Any]] = []
    rate_limit = FakeRateLimit(limit=LIMIT, window=WINDOW, algorithm="fixed_window")
    with (
        ServerProcess(rate_limit=rate_limit, latency=(0.002, 0.006), seed=17) as server,
        redis_server() as redis_url,
    ):
        for scenario in runs:
            log(f"hub: {scenario.processes} processes, {scenario.label}, {n} exports")
            results.append(run_scenario(scenario, server, redis_url))
    alone = results[0]["server_polls"]
    table = Table(
        f"{n} exports (pending {PENDING[0]:g}-{PENDING[1]:g} s, running {RUNNING[0]:g}-"
        f"{RUNNING[1]:g} s), interval {INTERVAL:g} s; one budget ({LIMIT} per {WINDOW:g} s) "
        f"through a RedisRateLimiter; lease TTL {LEASE_TTL:g} s",
        [
            "run",
            "processes",
            "server polls",
            "vs alone",
            "vs polls used (min)",
            "every change once, in order",
            "taken over after kill",
            "detection delay p50 / max",
            "429s",
        ],
    )
    for r in results:
        used = min(r["used_per_process"]) if r["used_per_process"] else 0
        story = "yes" if r["stories_ok"] else "NO: " + "; ".join(r["story_problems"][:2])
        if not r["hub"][0] and r["processes"] > 1:
            story = "- (each process polls alone)"
        takeover = "-"
        if r["victim_leases"]:
            takeover = (
                f"{r['taken_over']} of {r['victim_leases']} leases, max "
                f"{fmt(r['takeover_max'], 2)} s, p50 {fmt(r['takeover_p50'], 2)} s"
            )
        table.rows.append(
            [
                r["label"],
                str(r["processes"]),
                str(r["server_polls"]),
                f"{r['server_polls'] / alone:.2f}x" if alone else "-",
                f"{r['server_polls'] / used:.3f}x" if used else "-",
                story,
                takeover,
                f"{fmt(r['delay_p50'], 2)} s / {fmt(r['delay_max'], 2)} s",
                str(r["rate_limited"]),
            ]
        )
    section.tables.append(table)
    hub, killed = results[2], results[3]
    ratio = hub["server_polls"] / alone if alone else float("inf")
    exact = hub["server_polls"] / min(hub["used_per_process"])
    section.targets += [
        TargetCheck(
            "4 processes with the hub: server polls vs one process",
            "<= 1.1x",
            f"{ratio:.2f}x vs alone ({exact:.3f}x the polls each process used)",
            ratio <= 1.1 and exact <= 1.1,
        ),
        TargetCheck(
            "every process: every change once, in order",
            "all exports, all processes",
            "yes" if hub["stories_ok"] and killed["stories_ok"] else "no",
            hub["stories_ok"] and killed["stories_ok"],
        ),
        TargetCheck(
            "kill -9 of a lease holder: takeover",
            f"within the lease TTL ({LEASE_TTL:g} s)",
            f"max {fmt(killed['takeover_max'], 2)} s ({killed['taken_over']} leases)"
            if killed["takeover_max"] is not None
            else "no lease to take over",
            killed["takeover_max"] is not None and killed["takeover_max"] <= LEASE_TTL + SAMPLE,
        ),
    ]
    section.notes += [
        "'vs alone' compares with one process watching the same number of fresh exports "
        "alone (a second sample of random lifecycles, so a few percent of noise); 'vs polls "
        "used' divides by the polls each process used, its own plus those it read from the "
        "stream (exact: 1.000x means no poll was made that a process did not use).",
        "Detection delay: from an export's real end to the first poll that saw it, counted "
        "by the server. The four processes share the machine's cores (and, with the hub, "
        "each reads every other's polls from the stream), so each polls its share more "
        "slowly than one process alone does; on separate cores the holder's pace is the "
        "policy's.",
        "Takeover: from the SIGKILL to the first survivor holding each lease the killed "
        f"worker held, sampled every {SAMPLE * 1000:g} ms; a lease is renewed every third of "
        "its TTL, so it expires at most one TTL after the kill and survivors ask at that "
        "moment (PTTL).",
    ]
    section.data = {"results": results}
    return section
