"""Checkpoints under kill -9 and under corruption.

* A child process watches 40 exports of a FakeDocument360 (a real server in this process) with
  the documented recipe: handle each transition (here: append it to a log and fsync), then
  ``await watch.save_checkpoint(path)``.  It is killed with SIGKILL at 30 random moments, each
  time resumed from the file, then run to the end.  Every resume must succeed, no transition
  may be lost, and a transition is repeated only inside the window the docs state: the one
  being handled when the process died (at most one per kill).
* 1,000 random corruptions of a real checkpoint (byte flips, truncations, insertions, deep
  nesting and huge numbers, sealed with a valid checksum or not) are each refused with
  ``CheckpointError`` or load to exactly the original entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from d360_async import CheckpointError, Phase
from d360_async._watch import (
    CheckpointEntry,
    dump_checkpoint,
    load_checkpoint,
    seal_checkpoint,
    watch,
)
from d360_async.testing import FakeDocument360, FakeLifecycle

KILLS = 30

CHILD = r"""
import asyncio, json, os, sys
from pathlib import Path
from d360_async import Client, PollPolicy, RateLimitConfig

url, token, project, ids_file, state, log, run = sys.argv[1:8]
ids = Path(ids_file).read_text().split()
state, log = Path(state), Path(log)

async def main() -> None:
    resume = state.read_bytes() if state.exists() else None
    async with Client(api_token=token, base_url=url,
                      rate_limit=RateLimitConfig(rate=500.0, period=1.0)) as client:
        targets = [client.exports.target(project, i) for i in ids]
        policy = PollPolicy(interval=0.05, max_interval=0.2, adaptive=False)
        async with client.watch(targets, resume=resume, policy=policy) as watch:
            print("READY", flush=True)
            with log.open("a") as out:
                async for t in watch:
                    # Handle the transition: record it durably...
                    out.write(json.dumps([int(run), t.key, t.kind.value, t.raw_status,
                                          t.final]) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                    # ...then save the checkpoint, as the docs say.
                    await watch.save_checkpoint(state)
    print("DONE", flush=True)

asyncio.run(main())
"""


async def _run_child(
    script: Path, args: list[str], kill: tuple[str, float] | None, log: Path
) -> tuple[bool, str, str]:
    """Run one child and kill it with SIGKILL: ``("after", s)`` s seconds after it reported
    READY, ``("save", s)`` s seconds after the next transition was logged (so the kill lands
    in or near the checkpoint save that follows). Returns (was killed, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = await asyncio.wait_for(process.stdout.readline(), 60)
    killed = False
    if kill is not None and ready.startswith(b"READY"):
        mode, delay = kill
        if mode == "save":
            size = _size(log)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and process.returncode is None:
                if _size(log) > size:
                    break
                await asyncio.sleep(0.0002)
        try:
            await asyncio.wait_for(process.wait(), delay)
        except TimeoutError:
            process.send_signal(signal.SIGKILL)
            killed = True
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return killed, (ready + out).decode(), err.decode()


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _log(path: Path) -> list[tuple[int, str, str, Any, bool]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [tuple(json.loads(line)) for line in lines]  # type: ignore[misc]


@pytest.mark.slow  # 31 child processes, 30 of them killed: `make test-slow`
async def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(16)
    lifecycle = FakeLifecycle(pending=(0.2, 4.0), running=(1.0, 120.0), failure_ratio=0.2)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    state, log = tmp_path / "watch.ckpt", tmp_path / "handled.jsonl"
    async with FakeDocument360(rate_limit=None, lifecycle=lifecycle, seed=16) as fake:
        ids = fake.seed("v3.export", 40)
        ids_file = tmp_path / "ids.txt"
        ids_file.write_text("\n".join(ids))
        kills = 0
        checks = 0
        run = 0
        while kills < KILLS:
            run += 1
            args = [fake.url, fake.api_token, fake.project_id, str(ids_file), str(state)]
            kill = ("after", rng.uniform(0.0, 0.6)) if run % 2 else ("save", rng.uniform(0, 0.003))
            killed, out, err = await _run_child(script, [*args, str(log), str(run)], kill, log)
            assert "READY" in out, f"run {run}: the resume failed:\n{err[-3000:]}"
            assert "Traceback" not in err, f"run {run}:\n{err[-3000:]}"
            if not killed:
                break  # everything had finished; the kill phase is over
            kills += 1
            # What the file says must be everything handled, but perhaps the very last one.
            saved = (
                {e.key: e for e in load_checkpoint(state.read_bytes())} if state.exists() else {}
            )
            checks += _check_saved(saved, _log(log))
            if kills == KILLS // 2:
                # Half way: let some of them finish while the process is down (an operation
                # that already ended, and may have been handled, keeps its end).
                for op_id in ids[: len(ids) // 2]:
                    if not fake.operation(op_id).terminal:
                        fake.finish(op_id, "succeeded")
        for op_id in ids:
            if not fake.operation(op_id).terminal:
                fake.finish(op_id, "failed")
        run += 1
        args = [fake.url, fake.api_token, fake.project_id, str(ids_file), str(state)]
        _, out, err = await _run_child(script, [*args, str(log), str(run)], None, log)
        assert "DONE" in out, err[-3000:]
        records = _log(log)
        truth = {
            client_key: fake.operation(op_id)
            for op_id in ids
            for client_key in [f"v3.export/{fake.project_id}/{op_id}"]
        }
    assert kills == KILLS, f"only {kills} kills landed while the watch was running"
    leftovers = {p.name for p in await asyncio.to_thread(lambda: list(tmp_path.iterdir()))}
    expected = {"child.py", "watch.ckpt", ".watch.ckpt.tmp", "ids.txt", "handled.jsonl"}
    assert leftovers <= expected, leftovers - expected
    # Nothing lost: every target's true end was handled, once final.
    finals = [r for r in records if r[4]]
    assert {r[1] for r in finals} == set(truth), "every target ended"
    for key, op in truth.items():
        ends = [r for r in finals if r[1] == key]
        assert ends[-1][3] == op.raw_status, (key, ends, op.raw_status)
    # Duplicates only in the at-least-once window: the last transition a killed run handled.
    last_of_run = {}
    for index, record in enumerate(records):
        last_of_run[record[0]] = index
    seen: dict[tuple[Any, ...], int] = {}
    duplicates = 0
    for index, (run_id, key, kind, raw, final) in enumerate(records):
        if kind != "changed":
            continue
        earlier = seen.get((key, raw, final))
        if earlier is not None:
            duplicates += 1
            first_run = records[earlier][0]
            assert last_of_run[first_run] == earlier, (
                f"{key} {raw} repeated although it was not the last thing run {first_run} did"
            )
            between = [r for r in records[earlier + 1 : index] if r[1] == key]
            assert not between, f"{key}: repeated after {between}, not as its next transition"
            assert run_id > first_run, "repeated by a later run (resumed from the file)"
        seen[(key, raw, final)] = index
    print(
        f"\n{kills} kills, {run} runs, {len(records)} transitions handled, {duplicates} "
        f"repeated (window: <= {kills}), {checks} checkpoint checks"
    )
    assert duplicates <= kills


def _check_saved(
    saved: dict[str, CheckpointEntry], records: list[tuple[int, str, str, Any, bool]]
) -> int:
    """The checkpoint left by a killed run holds every transition handled so far, except the
    last one of a killed run when nothing later was handled for that target (the process died
    between handling it and saving): the at-least-once window."""
    last_of_run: dict[int, int] = {}
    for index, record in enumerate(records):
        last_of_run[record[0]] = index
    unsaved = set(last_of_run.values())
    latest: dict[str, tuple[int, Any, bool]] = {}
    for index, (_, key, kind, raw, final) in enumerate(records):
        previous = latest.get(key, (index, None, False))
        latest[key] = (index, raw if kind == "changed" else previous[1], final or previous[2])
    checked = 0
    for key, (index, raw, final) in latest.items():
        if index in unsaved:
            continue  # the window
        entry = saved.get(key)
        assert entry is not None, f"{key} handled but not in the checkpoint"
        assert entry.done == final, (key, entry, raw, final)
        assert entry.last_raw == raw, (key, entry.last_raw, raw)
        checked += 1
    return checked


# -- corruption ---------------------------------------------------------------------------------


def _original() -> tuple[str, list[CheckpointEntry]]:
    entries = [
        CheckpointEntry(
            key=f"v3.export/p/e{i}",
            spec={"kind": "v3.export", "project_id": "p", "id": f"e{i}"},
            last_raw=["Queued", "InProgress", "Completed", 3][i % 4],
            last_phase=[Phase.PENDING, Phase.RUNNING, Phase.SUCCEEDED, None][i % 4],
            polls=i * 7,
            done=i % 4 == 2,
        )
        for i in range(20)
    ]
    return dump_checkpoint(entries), entries


def _deep(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for _ in range(depth):
        spec = {"a": spec}
    return spec


# Values each field can never hold (a valid but different value is a different checkpoint,
# not a corruption: the envelope protects against damage, the validation against nonsense).
_INVALID: dict[str, list[Any]] = {
    "key": [None, True, -5, 1.5, "", [], {}],
    "spec": [None, True, -5, 1.5, "", "x", [], _deep(17), _deep(500)],
    "last_raw": [True, False, 1.5, [], {}, {"a": 1}],
    "last_phase": [True, -5, 1.5, "", "bogus", "RUNNING", [], {}],
    "polls": [None, True, -5, 1.5, "", "7", [], {}, 2**64],
    "done": [None, -5, 1.5, "", "true", [], {}, 0, 1],
}


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def _corrupt(text: str, rng: random.Random) -> bytes:
    data = bytearray(text.encode())
    header_end = data.index(b"\n") + 1
    kind = rng.choice(["flip", "flip", "cut", "insert", "delete", "nest", "number", "reseal"])
    if kind == "flip":
        for _ in range(rng.choice([1, 1, 1, 2, 8])):
            data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    elif kind == "cut":
        del data[rng.randrange(len(data)) :]
    elif kind == "insert":
        at = rng.randrange(len(data) + 1)
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
    elif kind == "delete":
        at = rng.randrange(len(data))
        del data[at : at + rng.randint(1, 5)]
    else:
        body = text[header_end:]
        if kind == "nest":
            deep = _nest(rng.choice([17, 100, 5000, 200_000]))
            body = body.replace('"id":"e3"', f'"id":{deep}', 1)
        elif kind == "number":
            huge = rng.choice(["9" * 5000, "1" + "0" * 30, "-1", "1e999", "18446744073709551616"])
            body = body.replace('"polls":7', f'"polls":{huge}', 1)
        else:  # a valid envelope around a changed payload: the entry validation must hold
            payload = json.loads(body)
            record = rng.choice(payload["targets"])
            field = rng.choice(sorted(_INVALID))
            record[field] = rng.choice(_INVALID[field])
            return seal_checkpoint(payload).encode()
        if rng.random() < 0.5:  # sealed correctly, or left with the old checksum
            raw = body.encode()
            header = f"d360-async checkpoint v2 length={len(raw)} sha256="
            return (header + hashlib.sha256(raw).hexdigest() + "\n").encode() + raw
        return bytes(data[:header_end]) + body.encode()
    return bytes(data)


def test_a_thousand_corruptions_are_refused_or_harmless() -> None:
    text, entries = _original()
    rng = random.Random(1000)
    refused = harmless = 0
    reasons: dict[str, int] = {}
    for _ in range(1000):
        damaged = _corrupt(text, rng)
        try:
            loaded = load_checkpoint(damaged)
        except CheckpointError as exc:
            refused += 1
            reason = re.sub(r"\[\d+\]", "[i]", str(exc)).split(":")[0][:32]
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        # Accepted: only if it means exactly what the original meant (provably harmless).
        assert loaded == entries, f"accepted a changed checkpoint: {damaged[:200]!r}"
        harmless += 1
    print(f"\n1000 corruptions: {refused} refused, {harmless} harmless; {reasons}")
    assert refused + harmless == 1000
    assert refused >= 900


async def test_watch_refuses_a_damaged_resume_with_the_documented_error() -> None:
    text, _ = _original()
    for damaged in (text[: len(text) // 2], text.replace("e1", "e9", 1), _nest(100_000), ""):
        with pytest.raises(CheckpointError):
            watch([], resume=damaged)
        with pytest.raises(ValueError, match="checkpoint"):  # the documented base class
            watch([], resume=damaged)


def test_save_checkpoint_file_is_atomic_under_a_failing_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from d360_async._watch import write_checkpoint_file

    path = tmp_path / "state.ckpt"
    text, entries = _original()
    write_checkpoint_file(path, text)

    def failing(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(OSError, match="No space"):
        write_checkpoint_file(path, dump_checkpoint(entries[:3]))
    monkeypatch.undo()
    assert load_checkpoint(path.read_bytes()) == entries, "the old checkpoint is intact"
