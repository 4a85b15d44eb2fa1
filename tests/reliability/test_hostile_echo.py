"""A hostile server that echoes everything: no credential or signature may come back out.

The echo server (a real aiohttp server on 127.0.0.1) answers with the status it is told to, and
repeats every request header, query value and form value in the error body: in the title, the
detail, the trace id, every structured error, V2 ``errors`` and ``WWW-Authenticate``; for a 2xx
it sends an unreadable body that repeats them too.  Every status the client handles is swept
for V3, V2, a token-provider client and SmartDocumentor's OAuth flow; signed download links
(handed out by a FakeDocument360) are answered with each status and with a redirect loop.

Nothing they produce may contain a token, the V2 token, the client secret, an OAuth access
token or a link signature: exception ``str``, ``repr`` and formatted traceback (chain included),
every log record at DEBUG (traceback included), every hook event, and the CLI's output.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import traceback
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from d360_async import (
    Client,
    D360Error,
    DownloadLinkExpired,
    Hooks,
    LocalRateLimiter,
    ProtocolError,
    RateLimitConfig,
    RetryPolicy,
)
from d360_async.smartdocumentor import SmartDocumentorClient
from d360_async.testing import FakeDocument360

V3_TOKEN = "v3tok-Echo7Zx2Lm9Pw4"
V2_TOKEN = "v2tok-Echo5Nc8Ks1Ty6"
SD_ID = "sd-client-echo"
SD_SECRET = "sdsec-Echo3Fj6Wd0Ue2"
OAUTH = ["oauth-access-Echo1Qa2Wb3", "oauth-access-Echo4Ec5Rd6", "oauth-access-Echo7Tf8Yg9"]
SIGNATURE = "sigEcho%2Bq9Zr3Xt5Vw7%3D"  # as it appears in the link (percent-encoded)
PROJECT = "11111111-2222-4333-8444-555555555555"
EXPORT = "66666666-7777-4888-9999-000000000000"
STATUSES = [400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504, 200]
# A 429 that names no reset (the ``html`` shape sends no headers) pauses its key for one
# period: a tenth of a second here, not a whole one.
FAST = RateLimitConfig(rate=100.0, period=0.1)
NO_RETRY = RetryPolicy(max_attempts=1)
# SmartDocumentor's token request keeps its retries (so retry logs and hooks are scanned too),
# with back-offs of milliseconds instead of the default half-second-and-up.
QUICK_RETRY = RetryPolicy(backoff_base=0.001, backoff_cap=0.005)


class EchoServer:
    """Answers ``status`` to everything, repeating every header, query and form value."""

    def __init__(self) -> None:
        self.status = 500
        self.shape = "problem"  # problem | v2 | text | html | empty
        self.redirect_loop = False
        self.requests = 0
        self.served: set[tuple[int, str]] = set()  # (status, shape) answered
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> EchoServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        status, shape = self.status, self.shape
        # A base URL of ``{url}/as/STATUS/SHAPE`` picks the answer for one client only.
        if match := re.match(r"/as/(\d+)/(\w+)/", request.path):
            status, shape = int(match[1]), match[2]
        self.served.add((status, shape))
        values = [f"{name}: {value}" for name, value in request.headers.items()]
        values += [f"{name}={value}" for name, value in request.query.items()]
        values += [value for value in request.query.values()]  # the bare values too
        values.append(str(request.rel_url))
        if request.can_read_body:
            body = await request.text()
            values.append(body)
            values += [v for _, v in urllib.parse.parse_qsl(body)]
        if self.redirect_loop and request.path.startswith("/blob"):
            raise web.HTTPFound(location=f"{self.url}{request.rel_url}&hop={self.requests}")
        echoed = " | ".join(values)
        auth = request.headers.get("Authorization", "none")
        headers = {
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{auth}"',
            "Retry-After": "1000",
            "X-Request-Id": auth,
            "X-Trace-Id": echoed[:200],
        }
        if status == 200 and shape == "v2":  # V2 reports failures in a 200
            failure = {
                "success": False,
                "errors": [{"error_code": v, "description": v} for v in values],
            }
            return web.json_response(failure, status=200, headers=headers)
        if status == 200:
            text = f"<html><title>{echoed}</title></html>"
            return web.Response(status=200, text=text, content_type="application/json")
        if shape == "empty":
            return web.Response(status=status, headers=headers)
        if shape == "text":
            return web.Response(status=status, text=echoed, headers=headers)
        if shape == "html":
            text = f"<html><head><title>{echoed}</title></head><body>{echoed}</body></html>"
            return web.Response(status=status, text=text, content_type="text/html")
        if shape == "v2":
            payload: dict[str, Any] = {
                "success": False,
                "errors": [{"error_code": v, "description": v} for v in values],
                "warnings": [{"description": v} for v in values],
                "information": echoed,
            }
        else:
            payload = {
                "type": f"https://errors/{auth}",
                "title": f"token '{auth}' is not valid",
                "status": status,
                "detail": f"refused {echoed}",
                "message": echoed,
                "error": auth,
                "error_description": echoed,
                "traceId": auth,
                "trace_id": auth,
                "request_id": echoed,
                "errors": [
                    {"code": v, "message": v, "field": v, "details": {"echo": values}}
                    for v in values
                ],
            }
        return web.json_response(payload, status=status, headers=headers)


class Evidence:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.events: list[object] = []
        self.secrets = {V3_TOKEN, V2_TOKEN, SD_SECRET, *OAUTH}
        self.secrets |= {SIGNATURE, urllib.parse.unquote(SIGNATURE)}

    async def expect(self, awaitable: Any) -> BaseException:
        try:
            await awaitable
        except BaseException as exc:  # a builtin escaping is itself a failure, checked later
            self.errors.append(exc)
            return exc
        raise AssertionError("expected an error")

    def hooks(self) -> Hooks:
        def record(event: Any) -> None:
            self.events.append(event)

        return Hooks(on_request=(record,), on_response=(record,), on_retry=(record,))


_SIGNED = re.compile(r"sig(?:=|%3D|\"?\s*:\s*\"?)(?!REDACTED)[A-Za-z0-9%+/]{6,}", re.IGNORECASE)


def scan(text: str, secrets: Iterable[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:10]}...) appeared in {where}: {text[:400]}"
    match = _SIGNED.search(text)
    assert match is None, f"a link signature appeared in {where}: {match.group(0)[:16]}"


def _provider() -> Any:
    tokens = iter(OAUTH)

    async def provider() -> str:
        return next(tokens, OAUTH[-1])

    return provider


async def _sweep_api(echo: EchoServer, evidence: Evidence) -> int:
    """Every status, every body shape, for V3 (static and provider tokens), V2 and SD.

    Fresh clients for each status: a 429 or 503 with ``Retry-After: 1000`` pauses a key, and
    the calls after it would be refused without reaching the server."""
    count = 0
    for shape in ("problem", "v2", "text", "html", "empty"):
        echo.shape = shape
        for status in STATUSES:
            echo.status = status
            options: dict[str, Any] = {
                "base_url": echo.url,
                "rate_limit": FAST,
                "retry": NO_RETRY,
                "hooks": evidence.hooks(),
            }
            async with (
                Client(api_token=V3_TOKEN, v2_api_token=V2_TOKEN, **options) as client,
                Client(api_token=_provider(), **options) as rotating,
                SmartDocumentorClient(
                    client_id=SD_ID,
                    client_secret=SD_SECRET,
                    base_url=echo.url,
                    rate_limiter=LocalRateLimiter(FAST),
                    retry=QUICK_RETRY,
                    hooks=evidence.hooks(),
                ) as sd,
            ):
                calls = [
                    client.exports.get(PROJECT, EXPORT),
                    client.exports.create(PROJECT, workspace_id="ws-1", format="pdf"),
                    client.v2.delete_file_status("ffffffffffffffffffffffff"),
                    rotating.exports.get(PROJECT, EXPORT),
                    sd.tasks.status(task_id=7),
                ]
                for call in calls:
                    error = await evidence.expect(call)
                    assert isinstance(error, D360Error), f"{shape} {status}: {error!r}"
                    count += 1
    return count


async def _sweep_downloads(echo: EchoServer, evidence: Evidence, workdir: Path) -> None:
    """Signed links to the echo server: every status, then a redirect loop."""
    async with FakeDocument360(api_token=V3_TOKEN, rate_limit=None) as fake:
        [export_id] = fake.seed("v3.export", 1, pending=0.0, running=0.0, failure_ratio=0.0)

        def link(*args: Any, **kwargs: Any) -> str:
            return f"{echo.url}/blob/export.zip?sv=2024-01-01&se=2099-01-01&sp=r&sig={SIGNATURE}"

        fake._downloads.mint_link = link  # type: ignore[method-assign]
        async with Client(
            api_token=V3_TOKEN, base_url=fake.url, rate_limit=FAST, hooks=evidence.hooks()
        ) as client:
            echo.shape = "text"
            for status in [s for s in STATUSES if s != 200]:
                echo.status = status
                error = await evidence.expect(
                    client.exports.download(fake.project_id, export_id, workdir / "x.zip")
                )
                assert isinstance(error, D360Error), f"download {status}: {error!r}"
                if status == 403:
                    assert isinstance(error, DownloadLinkExpired)
            echo.redirect_loop = True
            error = await evidence.expect(
                client.exports.download(fake.project_id, export_id, workdir / "x.zip")
            )
            echo.redirect_loop = False
            assert isinstance(error, ProtocolError), repr(error)
            assert "redirect" in str(error), str(error)
            assert error.cause_type == "TooManyRedirects"
            assert error.__cause__ is None
            assert error.__context__ is None


async def test_an_echoing_server_gets_no_secret_back_out(
    debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    evidence = Evidence()
    async with EchoServer() as echo:
        count = await _sweep_api(echo, evidence)
        await _sweep_downloads(echo, evidence, tmp_path)
    assert count == 5 * len(STATUSES) * 5
    assert echo.requests >= count, "every call reached the echo server"
    # The server really echoed: the raw bodies held the secrets (so the checks below can fail).
    for exc in evidence.errors:
        assert isinstance(exc, D360Error), f"not a library error: {exc!r}"
        for text in (str(exc), repr(exc), "".join(traceback.format_exception(exc))):
            scan(text, evidence.secrets, f"{type(exc).__name__} ({exc.status})")
        for detail in exc.errors:
            scan(repr(detail), evidence.secrets, "an ErrorDetail")
    messages = {type(exc).__name__ for exc in evidence.errors}
    assert {"AuthenticationError", "NotFound", "ServerError", "RateLimited"} <= messages
    assert any("***" in str(exc) or "REDACTED" in str(exc) for exc in evidence.errors), (
        "something was scrubbed"
    )
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in debug_logs.records:
        scan(formatter.format(record) + repr(record.args), evidence.secrets, f"log {record.name}")
    assert len(debug_logs.records) > 100, "DEBUG logging was on"
    for event in evidence.events:
        scan(repr(event), evidence.secrets, f"hook event {type(event).__name__}")
        error = getattr(event, "error", None)
        if error is not None:
            scan("".join(traceback.format_exception(error)), evidence.secrets, "hook error")
    assert len(evidence.events) > count


def test_scrub_is_the_one_step_and_knows_every_live_secret() -> None:
    from d360_async._core._redact import Secret, scrub

    held = Secret("held-secret-Zq81")
    text = (
        "token 'Bearer abcdef123456' and held-secret-Zq81 and held-secret-Zq81%2F, "
        "https://x/y?sv=1&sig=s1gn4ture&ok=1, api_token: v2-secret-raw, "
        '{"sig": "s1gn4ture"} episode=3 code=12'
    )
    scrubbed = scrub(text)
    for leaked in ("abcdef123456", "held-secret-Zq81", "s1gn4ture", "v2-secret-raw"):
        assert leaked not in scrubbed, scrubbed
    assert "episode=3" in scrubbed
    assert "ok=1" in scrubbed
    assert scrub(scrubbed) == scrubbed
    del held


# -- the CLI ------------------------------------------------------------------------------------


async def test_the_cli_prints_no_echoed_secret(run_cli: Any) -> None:
    env = {"D360_API_TOKEN": V3_TOKEN, "D360_V2_API_TOKEN": V2_TOKEN}

    async def _run_cli(url: str, *args: str, verbose: bool) -> tuple[int, str, str]:
        common = ("--base-url", url, "--rate-limit", "500/s", *(["-vv"] if verbose else []))
        result: tuple[int, str, str] = await run_cli(*args, *common, env=env)
        return result

    evidence = Evidence()
    async with EchoServer() as echo:
        # All at once (each run is mostly an interpreter starting), each answered its own way.
        project = ("--project", PROJECT)
        runs: list[tuple[int, str, str]] = await asyncio.gather(
            *(
                run
                for status, shape in [
                    (401, "problem"),
                    (404, "v2"),
                    (500, "text"),
                    (400, "problem"),
                ]
                for url in [f"{echo.url}/as/{status}/{shape}"]
                for run in (
                    _run_cli(url, "status", "exports", EXPORT, *project, verbose=False),
                    _run_cli(url, "status", "exports", EXPORT, *project, "--json", verbose=True),
                    _run_cli(
                        url, "watch", "exports", EXPORT, *project, "--timeout", "1", verbose=False
                    ),
                )
            )
        )
        assert echo.requests >= len(runs), "the CLI reached the echo server"
        assert echo.served == {(401, "problem"), (404, "v2"), (500, "text"), (400, "problem")}
    for code, out, err in runs:
        assert code != 0, (out, err)
        scan(out, evidence.secrets, "CLI stdout")
        scan(err, evidence.secrets, "CLI stderr")
    assert any("DEBUG" in err for _, _, err in runs), "the CLI logged at DEBUG"
    assert any(out or err for _, out, err in runs)
    json.dumps([r[1] for r in runs])  # plain text
