"""No credential in any log record, repr, exception text or CLI output.

Representative scenarios run at DEBUG logging against a FakeDocument360 built with distinctive
credentials: every client call (V3, V2), error paths (404, 401 with a wrong token), a watch
under faults, downloads that succeed, expire, break off and fail, the SmartDocumentor token
flow (fetch, revoke, refresh, a refused secret), and the CLI's ``status`` and ``watch --json``
(and ``export --download``) as subprocesses at ``-vv``.  Then nothing they produced may contain
an API token, the V2 token, a client secret, a SmartDocumentor access token, a wrong token that
was tried, or the signature (``sig=``) of any download link that was handed out:

* every log record, formatted with its traceback;
* ``str``, ``repr`` and the formatted traceback (causes included) of every exception raised;
* ``repr`` of every object reachable from the clients, resources, targets, transitions,
  models, limiters, watches and errors (not descending into :class:`Secret` itself, nor into
  tracebacks, whose frames hold request headers like any Python program's);
* the CLI's stdout and stderr.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import os
import re
import traceback
import types
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from d360_async import (
    Client,
    D360Error,
    LocalRateLimiter,
    PollPolicy,
    RateLimitConfig,
    RetryPolicy,
    Timeouts,
)
from d360_async._core._redact import Secret
from d360_async._watch import watch
from d360_async.smartdocumentor import SmartDocumentorClient
from d360_async.testing import FakeDocument360, FakeLifecycle

V3_TOKEN = "v3tok-Hq7Zx2Lm9Pw4"
V2_TOKEN = "v2tok-Rb5Nc8Ks1Ty6"
SD_ID = "sd-client-reliability"
SD_SECRET = "sdsec-Gv3Fj6Wd0Ue2"
WRONG_TOKEN = "wrongtok-Xa4Vb7Yc2Zd"
WRONG_SECRET = "wrongsec-Pe8Qf1Rg5Sh"
FAST = RateLimitConfig(rate=1000.0, period=1.0)
RETRY = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)
LIFECYCLE = FakeLifecycle(
    pending=(0.05, 0.15), running=(0.05, 0.2), review=(0.05, 0.15), failure_ratio=0.3
)


class Evidence:
    """Everything the scenarios produced that must be free of secrets."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.roots: list[Any] = []
        self.secrets: set[str] = {V3_TOKEN, V2_TOKEN, SD_SECRET, WRONG_TOKEN, WRONG_SECRET}
        self.links: list[str] = []

    def keep(self, *objects: Any) -> None:
        self.roots.extend(objects)

    async def expect_error(self, awaitable: Any) -> BaseException:
        try:
            await awaitable
        except D360Error as exc:
            self.errors.append(exc)
            return exc
        raise AssertionError("expected an error")

    def link(self, url: str | None) -> None:
        if url:
            self.links.append(url)

    def signatures(self) -> set[str]:
        found = set()
        for url in self.links:
            for name, value in urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query):
                if name == "sig":
                    found |= {value, urllib.parse.quote(value, safe="")}
        return found


_SIGNED = re.compile(r"sig=(?!REDACTED)[^&\s'\"]+", re.IGNORECASE)


def _scan(text: str, secrets: Iterable[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}...) appeared in {where}: {text[:300]}"
    match = _SIGNED.search(text)
    assert match is None, f"a link signature appeared in {where}: {match.group(0)[:12]}..."


def record_links(fake: FakeDocument360, evidence: Evidence) -> None:
    """Remember every signed link the fake hands out, to look for its signature later."""
    downloads = fake._downloads  # the fake's private link minting, for the evidence
    mint = downloads.mint_link

    def minting(*args: Any, **kwargs: Any) -> str:
        link = mint(*args, **kwargs)
        evidence.link(link)
        return link

    downloads.mint_link = minting  # type: ignore[method-assign]


# -- the object walk --------------------------------------------------------------------------

_LEAVES = (str, bytes, bytearray, int, float, bool, type(None), complex)
_SKIP = (
    types.ModuleType,
    type,
    types.FrameType,
    types.TracebackType,
    types.CodeType,
    asyncio.AbstractEventLoop,
    Secret,
    logging.Logger,
)
_FOLLOW_MODULES = ("d360_async", "aiohttp", "multidict", "yarl", "attr", "builtins", "collections")


def _followed(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    return module.split(".")[0] in _FOLLOW_MODULES or isinstance(obj, BaseException)


def reachable(roots: Iterable[Any], limit: int = 100_000) -> Iterator[Any]:
    """Objects reachable from ``roots`` through this library's (and aiohttp's) own objects.

    Functions are followed into their closures and defaults but not their globals; modules,
    classes, frames, tracebacks, event loops and :class:`Secret` are not entered (a Secret's
    repr is checked, its value is not "reachable" output).
    """
    seen: set[int] = set()
    queue = collections.deque(roots)
    while queue:
        obj = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        assert len(seen) < limit, "object walk did not terminate"
        yield obj
        if isinstance(obj, (*_LEAVES, *_SKIP)) or not _followed(obj):
            continue
        if isinstance(obj, types.FunctionType):
            queue.extend(c.cell_contents for c in obj.__closure__ or () if _filled(c))
            queue.extend(obj.__defaults__ or ())
            continue
        if isinstance(obj, BaseException):
            queue.extend([obj.__cause__, obj.__context__, *obj.args, *vars(obj).values()])
            continue
        queue.extend(gc.get_referents(obj))


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - raises ValueError when empty
    except ValueError:
        return False
    return True


def check_reprs(roots: Iterable[Any], secrets: set[str]) -> int:
    count = 0
    for obj in reachable(roots):
        if isinstance(obj, (*_LEAVES, types.CellType)):
            continue
        try:
            text = repr(obj)
        except Exception:  # a half-built third-party object: its repr is not our concern
            continue
        _scan(text, secrets, f"repr of {type(obj).__qualname__}")
        count += 1
    return count


def check_errors(errors: Iterable[BaseException], secrets: set[str]) -> None:
    for exc in errors:
        for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc))):
            _scan(text, secrets, f"{type(exc).__name__} text")


def check_logs(records: Iterable[logging.LogRecord], secrets: set[str]) -> int:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    count = 0
    for record in records:
        text = formatter.format(record) + repr(record.args)
        _scan(text, secrets, f"log record of {record.name}")
        count += 1
    return count


# -- scenarios ----------------------------------------------------------------------------------


async def _client_calls(fake: FakeDocument360, evidence: Evidence, workdir: Path) -> None:
    async with Client(
        api_token=V3_TOKEN, v2_api_token=V2_TOKEN, base_url=fake.url, rate_limit=FAST, retry=RETRY
    ) as client:
        evidence.keep(client, client.rate_limiter)
        project = fake.project_id
        [export_id] = fake.seed("v3.export", 1, pending=0.0, running=0.0, failure_ratio=0.0)
        [task_id] = fake.seed("v3.drive_task", 1)
        [import_id] = fake.seed("v3.import", 1)
        [reference] = fake.seed("v3.api_reference", 1, pending=0.0, running=0.0, log_history=3)
        [v2_delete] = fake.seed("v2.delete_file", 1)
        [v2_export] = fake.seed("v2.export", 1, pending=0.0, running=0.0, failure_ratio=0.0)
        [v2_import] = fake.seed("v2.import", 1)
        started = await client.exports.create(project, workspace_id="ws-1", format="pdf")
        export = await client.exports.get(project, export_id)
        evidence.link(export.download_url)
        logs = [log async for log in client.api_references.logs(project, reference)]
        detail = await client.api_references.log(project, reference, str(logs[0].id))
        v2_export_status = await client.v2.exports.get(v2_export)
        evidence.link(v2_export_status.download_url)
        evidence.keep(
            started,
            export,
            logs,
            detail,
            v2_export_status,
            await client.drive.get_task(project, task_id),
            await client.imports.get(project, import_id),
            await client.v2.delete_file_status(v2_delete),
            await client.v2.imports.get(v2_import),
        )
        # Error paths.
        await evidence.expect_error(
            client.exports.get(project, "00000000-0000-4000-8000-000000000000")
        )
        await evidence.expect_error(client.v2.delete_file_status("ffffffffffffffffffffffff"))
        # Downloads: one that works, then refused, cut short, dropped and failing links.
        evidence.keep(await client.exports.download(project, export_id, workdir / "ok.zip"))
        for kind in ("expired_link", "truncated", "abort", "http_500"):
            fake.faults.next(kind, count=2, route="download")  # type: ignore[arg-type]
            await evidence.expect_error(
                client.exports.download(project, export_id, workdir / f"{kind}.zip")
            )
        evidence.link(fake.download_url(export_id))
    async with Client(api_token=WRONG_TOKEN, base_url=fake.url, rate_limit=FAST) as wrong:
        evidence.keep(wrong)
        await evidence.expect_error(wrong.exports.get(project, export_id))
    async with Client(v2_api_token=WRONG_TOKEN, base_url=fake.url, rate_limit=FAST) as wrong:
        await evidence.expect_error(wrong.v2.delete_file_status(v2_delete))


async def _watch_with_faults(fake: FakeDocument360, evidence: Evidence) -> None:
    for kind in ("http_500", "abort", "malformed_json", "html_502", "truncated", "slow"):
        fake.faults.set(kind, 0.05, delay=0.5)  # type: ignore[arg-type]
    async with Client(
        api_token=V3_TOKEN,
        v2_api_token=V2_TOKEN,
        base_url=fake.url,
        rate_limit=FAST,
        retry=RETRY,
        timeouts=Timeouts(read=0.2, total=1.0),
    ) as client:
        targets: list[Any] = [
            client.exports.target(fake.project_id, export_id)
            for export_id in fake.seed("v3.export", 20)
        ]
        targets += [client.v2.exports.target(i) for i in fake.seed("v2.export", 10)]
        targets += [client.v2.delete_file_target(i) for i in fake.seed("v2.delete_file", 10)]
        async with client.watch(targets, policy=PollPolicy(interval=0.05)) as client_watch:
            evidence.keep(client_watch)
            async for transition in client_watch:
                evidence.keep(transition)
                snapshot = transition.snapshot
                evidence.link(getattr(snapshot, "download_url", None))
                if transition.error is not None:
                    evidence.errors.append(transition.error)
            evidence.keep(client_watch.checkpoint())
        evidence.keep(client, targets)
    fake.faults.clear()


async def _smartdocumentor(fake: FakeDocument360, evidence: Evidence) -> None:
    async with SmartDocumentorClient(
        client_id=SD_ID, client_secret=SD_SECRET, base_url=fake.url, rate_limiter=_limiter()
    ) as sd:
        evidence.keep(sd, sd.auth, sd.tasks)
        [task] = fake.seed("smartdocumentor.task", 1, pending=0.0, running=0.0, review=0.0)
        evidence.keep(await sd.tasks.status(task_id=int(task)))
        evidence.secrets.update(sd.auth.secrets())
        fake.revoke_token(sd.auth.secrets()[-1])  # the next call gets a 401 and refreshes
        evidence.keep(await sd.tasks.status(task_id=int(task)))
        evidence.secrets.update(sd.auth.secrets())
        evidence.keep(await sd.tasks.list_paginated(page_size=5))
        targets = [sd.tasks.target(task_id=int(i)) for i in fake.seed("smartdocumentor.task", 5)]
        async with SmartDocumentorClient(
            client_id=SD_ID, client_secret=SD_SECRET, base_url=fake.url, rate_limiter=_limiter()
        ) as other:
            await evidence.expect_error(other.tasks.status(task_id=999_999))
            evidence.secrets.update(other.auth.secrets())
            evidence.keep(other)
        policy = PollPolicy(interval=0.05, watch_timeout=10.0)
        async with watch(targets, policy=policy) as sd_watch:
            async for transition in sd_watch:
                evidence.keep(transition)
        evidence.keep(targets)
    async with SmartDocumentorClient(
        client_id=SD_ID, client_secret=WRONG_SECRET, base_url=fake.url, rate_limiter=_limiter()
    ) as refused:
        evidence.keep(refused)
        await evidence.expect_error(refused.tasks.status(task_id=1))


def _limiter() -> LocalRateLimiter:
    return LocalRateLimiter(FAST)


async def test_no_secret_in_logs_reprs_or_errors(
    debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    evidence = Evidence()
    async with FakeDocument360(
        api_token=V3_TOKEN,
        v2_api_token=V2_TOKEN,
        sd_client_id=SD_ID,
        sd_client_secret=SD_SECRET,
        rate_limit=None,
        lifecycle=LIFECYCLE,
        download_size=8192,
    ) as fake:
        record_links(fake, evidence)
        await _client_calls(fake, evidence, tmp_path)
        await _watch_with_faults(fake, evidence)
        await _smartdocumentor(fake, evidence)
    secrets = evidence.secrets | evidence.signatures()
    assert len(evidence.signatures()) >= 2, "the scenarios handed out signed links"
    assert len([s for s in secrets if len(s) > 30]) >= 2, "SmartDocumentor tokens were issued"
    assert evidence.errors, "the error paths ran"
    check_errors(evidence.errors, secrets)
    logged = check_logs(debug_logs.records, secrets)
    assert logged > 100, "DEBUG logging was on"
    checked = check_reprs([*evidence.roots, *evidence.errors], secrets)
    assert checked > 500, f"only {checked} reprs checked"
    left = await asyncio.to_thread(os.listdir, tmp_path)
    assert left == ["ok.zip"], f"partial files left: {left}"


# -- the CLI ------------------------------------------------------------------------------------


CLI_ENV = {
    "D360_API_TOKEN": V3_TOKEN,
    "D360_V2_API_TOKEN": V2_TOKEN,
    "SD_CLIENT_ID": SD_ID,
    "SD_CLIENT_SECRET": SD_SECRET,
}


async def test_no_secret_in_cli_output(tmp_path: Path, run_cli: Any) -> None:
    async def _run_cli(*args: str, fake: FakeDocument360) -> tuple[int, str, str]:
        common = ("--base-url", fake.url, "--rate-limit", "500/s", "-vv")
        result: tuple[int, str, str] = await run_cli(*args, *common, env=CLI_ENV)
        return result

    evidence = Evidence()
    async with FakeDocument360(
        api_token=V3_TOKEN,
        v2_api_token=V2_TOKEN,
        sd_client_id=SD_ID,
        sd_client_secret=SD_SECRET,
        rate_limit=None,
        lifecycle=LIFECYCLE,
        download_size=8192,
    ) as fake:
        record_links(fake, evidence)
        fake.faults.set("http_500", 0.1, routes=["v3.exports.get", "v2.*", "sd.status"])
        fake.faults.next("expired_link", route="download")  # refused once, then fetched again
        exports = fake.seed("v3.export", 5)
        [done] = fake.seed("v3.export", 1, pending=0.0, running=0.0, failure_ratio=0.0)
        # The export the CLI creates is done at its first status (`export` polls once a
        # second; the watches above poll every 0.1 s).
        fake.lifecycle = FakeLifecycle(pending=0.0, running=0.0, failure_ratio=0.0)
        project = ("--project", fake.project_id)
        # Concurrently: each run is mostly the interpreter starting. Watches poll every 0.1 s
        # (not the default 1 s).
        brisk = ("--json", "--interval", "0.1")
        runs = await asyncio.gather(
            _run_cli("status", "exports", done, *project, fake=fake),
            _run_cli("status", "exports", done, *project, "--json", fake=fake),
            _run_cli("watch", "exports", *exports, *project, *brisk, fake=fake),
            _run_cli("watch", "v2-deletes", *fake.seed("v2.delete_file", 3), *brisk, fake=fake),
            _run_cli("watch", "sd-tasks", *fake.seed("smartdocumentor.task", 2), *brisk, fake=fake),
            _run_cli(
                "export",
                *project,
                "--workspace",
                "ws-1",
                "--download",
                str(tmp_path / "export.zip"),
                fake=fake,
            ),
        )
    secrets = evidence.secrets | evidence.signatures()
    assert len(evidence.signatures()) >= 2, "the CLI was handed signed links"
    for _, out, err in runs:
        _scan(out, secrets, "CLI stdout")
        _scan(err, secrets, "CLI stderr")
    assert all("DEBUG" in err for _, _, err in runs), "the CLI logged at DEBUG"
    assert [code for code, _, _ in runs[:2]] == [0, 0], runs[:2]
    assert runs[-1][0] == 0, runs[-1][2][-2000:]
    assert (tmp_path / "export.zip").exists()
