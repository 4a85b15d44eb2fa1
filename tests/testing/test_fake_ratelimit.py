"""The fake server's rate limiting: the pure limiter and every header configuration."""

from __future__ import annotations

import email.utils
import math

import aiohttp
import pytest

from d360_async.testing import DEFAULT_PROJECT_ID, FakeDocument360, FakeRateLimit, ManualClock
from d360_async.testing._fake._ratelimit import ServerRateLimiter

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


# ---------------------------------------------------------------------------- pure limiter


def test_fixed_window_counts_and_reopens() -> None:
    limiter = ServerRateLimiter(FakeRateLimit(limit=2, window=10.0))
    first = limiter.admit("k", 100.0)
    assert (first.allowed, first.remaining, first.reset_after) == (True, 1, 10.0)
    assert limiter.admit("k", 104.0).remaining == 0
    refused = limiter.admit("k", 106.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(4.0)
    assert limiter.admit("other", 106.0).allowed  # keys are independent
    reopened = limiter.admit("k", 110.0)
    assert (reopened.allowed, reopened.remaining, reopened.reset_after) == (True, 1, 10.0)


def test_token_bucket_refills_continuously() -> None:
    limiter = ServerRateLimiter(FakeRateLimit(limit=2, window=10.0, algorithm="token_bucket"))
    assert limiter.admit("k", 0.0).remaining == 1
    drained = limiter.admit("k", 0.0)
    assert drained.remaining == 0
    assert drained.reset_after == pytest.approx(10.0)  # two tokens at 0.2/s
    refused = limiter.admit("k", 1.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(4.0)  # 0.2 tokens held, 0.8 to go
    assert limiter.admit("k", 5.0).allowed
    limiter.reset()
    assert limiter.admit("k", 5.0).remaining == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": 0},
        {"window": 0.0},
        {"algorithm": "leaky"},
        {"reset_format": "iso"},
        {"send_limit_and_reset": "never"},
        {"per": "ip"},
    ],
    ids=["limit", "window", "algorithm", "reset_format", "send", "per"],
)
def test_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - attrs' in_() and our validators
        FakeRateLimit(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- over HTTP


def export_url(fake: FakeDocument360, export_id: str, project: str = DEFAULT_PROJECT_ID) -> str:
    return f"{fake.url}/v3/projects/{project}/exports/{export_id}"


async def hit(
    session: aiohttp.ClientSession, url: str, token: str
) -> tuple[int, dict[str, str], bytes]:
    async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, dict(response.headers), await response.read()


async def test_epoch_reset_always_sent(clock: ManualClock, session: aiohttp.ClientSession) -> None:
    limit = FakeRateLimit(limit=3, window=60.0)
    async with FakeDocument360(clock=clock, rate_limit=limit) as fake:
        url = export_url(fake, fake.seed("v3.export")[0])
        status, headers, _ = await hit(session, url, fake.api_token)
        assert status == 200
        assert headers["X-RateLimit-Limit"] == "3"
        assert headers["X-RateLimit-Remaining"] == "2"
        assert int(headers["X-RateLimit-Reset"]) == math.ceil(fake.epoch() + 60.0)
        date = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
        assert abs(date - fake.epoch()) < 1.5


async def test_delay_reset_only_when_exhausted_then_429(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    limit = FakeRateLimit(
        limit=2, window=10.0, reset_format="delay", send_limit_and_reset="when_exhausted"
    )
    async with FakeDocument360(clock=clock, rate_limit=limit) as fake:
        url = export_url(fake, fake.seed("v3.export")[0])
        _, first, _ = await hit(session, url, fake.api_token)
        assert first["X-RateLimit-Remaining"] == "1"
        assert "X-RateLimit-Limit" not in first
        assert "X-RateLimit-Reset" not in first
        clock.advance(2.5)
        _, last, _ = await hit(session, url, fake.api_token)
        assert last["X-RateLimit-Remaining"] == "0"
        assert last["X-RateLimit-Limit"] == "2"
        assert last["X-RateLimit-Reset"] == "8"  # 7.5 s left, rounded up
        status, refused, body = await hit(session, url, fake.api_token)
        assert status == 429
        assert refused["Retry-After"] == "8"
        assert refused["Content-Type"].startswith("application/problem+json")
        assert b'"TOO_MANY_REQUESTS"' in body
        assert fake.stats.rate_limited == 1
        assert fake.stats.by_status[429] == 1
        assert len(fake.stats.admitted_times) == 2
        clock.advance(7.5)
        assert (await hit(session, url, fake.api_token))[0] == 200


async def test_headers_off_still_sends_retry_after(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    limit = FakeRateLimit(limit=1, window=2.0, headers=False)
    async with FakeDocument360(clock=clock, rate_limit=limit) as fake:
        url = export_url(fake, fake.seed("v3.export")[0])
        _, ok, _ = await hit(session, url, fake.api_token)
        assert not any(name in ok for name in RATE_HEADERS)
        clock.advance(0.5)
        status, refused, _ = await hit(session, url, fake.api_token)
        assert status == 429
        assert not any(name in refused for name in RATE_HEADERS)
        assert refused["Retry-After"] == "2"  # 1.5 s, rounded up


async def test_token_bucket_over_http(clock: ManualClock, session: aiohttp.ClientSession) -> None:
    limit = FakeRateLimit(limit=2, window=2.0, algorithm="token_bucket", reset_format="delay")
    async with FakeDocument360(clock=clock, rate_limit=limit) as fake:
        url = export_url(fake, fake.seed("v3.export")[0])
        statuses = [(await hit(session, url, fake.api_token))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        clock.advance(1.0)  # one token back
        status, headers, _ = await hit(session, url, fake.api_token)
        assert status == 200
        assert headers["X-RateLimit-Remaining"] == "0"
        assert headers["X-RateLimit-Reset"] == "2"


async def test_budget_per_token_and_project(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=FakeRateLimit(limit=1)) as fake:
        [a] = fake.seed("v3.export", project_id="project-a")
        [b] = fake.seed("v3.export", project_id="project-b")
        fake.accept_token("second")
        assert (await hit(session, export_url(fake, a, "project-a"), fake.api_token))[0] == 200
        assert (await hit(session, export_url(fake, b, "project-b"), fake.api_token))[0] == 200
        assert (await hit(session, export_url(fake, a, "project-a"), "second"))[0] == 200
        assert (await hit(session, export_url(fake, a, "project-a"), fake.api_token))[0] == 429


async def test_budget_per_token_only(clock: ManualClock, session: aiohttp.ClientSession) -> None:
    limit = FakeRateLimit(limit=1, per="token")
    async with FakeDocument360(clock=clock, rate_limit=limit) as fake:
        [a] = fake.seed("v3.export", project_id="project-a")
        [b] = fake.seed("v3.export", project_id="project-b")
        assert (await hit(session, export_url(fake, a, "project-a"), fake.api_token))[0] == 200
        assert (await hit(session, export_url(fake, b, "project-b"), fake.api_token))[0] == 429
        fake.reset_rate_limits()
        assert (await hit(session, export_url(fake, b, "project-b"), fake.api_token))[0] == 200


async def test_v2_shares_the_limiter_and_sd_has_its_own(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(
        clock=clock,
        rate_limit=FakeRateLimit(limit=1),
        sd_rate_limit=FakeRateLimit(limit=1, reset_format="delay"),
    ) as fake:
        url = f"{fake.url}/v2/Project/Export/{fake.seed('v2.export')[0]}"
        for expected in (200, 429):
            async with session.get(url, headers={"api_token": fake.v2_api_token}) as response:
                assert response.status == expected
                assert "Retry-After" in response.headers or expected == 200
        form = {
            "grant_type": "client_credentials",
            "client_id": fake.sd_client_id,
            "client_secret": fake.sd_client_secret,
        }
        async with session.post(f"{fake.url}/connect/token", data=form) as response:
            token = (await response.json())["access_token"]  # never rate limited
        sd_url = f"{fake.url}/api/v1.0/external/sdtask/status"
        task = fake.seed("smartdocumentor.task")[0]
        for expected in (200, 429):
            async with session.get(
                sd_url, params={"taskId": task}, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == expected
        assert fake.stats.rate_limited == 2


async def test_no_rate_limit_sends_no_headers(
    fake: FakeDocument360, session: aiohttp.ClientSession
) -> None:
    url = export_url(fake, fake.seed("v3.export")[0])
    for _ in range(100):
        status, headers, _ = await hit(session, url, fake.api_token)
        assert status == 200
    assert not any(name in headers for name in RATE_HEADERS)
    assert "Date" in headers


async def test_clock_skew_moves_date_and_epoch_reset(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, clock_skew=-300.0) as fake:
        url = export_url(fake, fake.seed("v3.export")[0])
        _, headers, _ = await hit(session, url, fake.api_token)
        date = email.utils.parsedate_to_datetime(headers["Date"]).timestamp()
        assert date == pytest.approx(fake.epoch(), abs=1.5)
        assert fake.epoch() == clock.time() - 300.0
        fake.clock_skew = 0.0
        _, unskewed, _ = await hit(session, url, fake.api_token)
        later = email.utils.parsedate_to_datetime(unskewed["Date"]).timestamp()
        assert later - date == pytest.approx(300.0, abs=1.5)
        # The epoch reset is reported on the server's own (skewed) clock.
        assert int(headers["X-RateLimit-Reset"]) == pytest.approx(date + 60.0, abs=1.5)


# ---------------------------------------------------------------------------- every policy

from d360_async.testing._fake._ratelimit import budget_used, rate_headers  # noqa: E402


def test_aligned_window_resets_on_clock_multiples() -> None:
    limiter = ServerRateLimiter(
        FakeRateLimit(limit=2, window=10.0, algorithm="fixed_window_aligned")
    )
    # Server clock 0 is epoch 1007: the window closes at epoch 1010, three seconds later.
    first = limiter.admit("k", 0.0, 1007.0)
    assert (first.remaining, first.reset_after) == (1, pytest.approx(3.0))
    assert limiter.admit("k", 1.0, 1008.0).remaining == 0
    refused = limiter.admit("k", 2.0, 1009.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)
    reopened = limiter.admit("k", 3.0, 1010.0)
    assert (reopened.allowed, reopened.remaining) == (True, 1)
    assert reopened.reset_after == pytest.approx(10.0)


def test_sliding_window_frees_one_slot_per_aged_request() -> None:
    limiter = ServerRateLimiter(FakeRateLimit(limit=2, window=10.0, algorithm="sliding_window"))
    assert limiter.admit("k", 0.0).remaining == 1
    assert limiter.admit("k", 4.0).remaining == 0
    refused = limiter.admit("k", 9.0)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(1.0)  # the request at 0 leaves at 10
    again = limiter.admit("k", 10.0)
    assert again.allowed
    assert not limiter.admit("k", 11.0).allowed  # 4 and 10 are still inside
    assert limiter.admit("k", 14.0).allowed


def test_sliding_counter_weighs_the_previous_window_by_what_is_left_of_it() -> None:
    # Windows of 10 s aligned to the clock: [100, 110), [110, 120), ...
    limiter = ServerRateLimiter(FakeRateLimit(limit=10, window=10.0, algorithm="sliding_counter"))
    # A first window counts like a fixed window: nothing came before it.
    admitted = [limiter.admit("k", 101.0 + i * 0.1, 101.0 + i * 0.1) for i in range(11)]
    assert [d.remaining for d in admitted[:10]] == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert not admitted[10].allowed
    assert admitted[0].reset_after == pytest.approx(9.0)  # the aligned window's end
    # Its end does not bring the budget back: all 10 still weigh fully at 110.
    at_end = limiter.admit("k", 110.0, 110.0)
    assert not at_end.allowed
    assert at_end.retry_after == pytest.approx(1.0)  # a tenth of 10 fades per second
    # A quarter into the next window, a quarter of the previous count has faded: 2.5 fit,
    # so two are admitted, the second with nothing left (Remaining is rounded down).
    quarter = [limiter.admit("k", 112.5, 112.5) for _ in range(3)]
    assert [d.allowed for d in quarter] == [True, True, False]
    assert [d.remaining for d in quarter[:2]] == [1, 0]
    # Refused, it says when the fading leaves room: 7.5 + 2 = 9.5 weighted now, 10 - 1 needed.
    assert quarter[2].retry_after == pytest.approx(0.5)
    assert limiter.admit("k", 113.0, 113.0).allowed
    # A window with no request in it forgets the count before it.
    fresh = limiter.admit("k", 131.0, 131.0)
    assert (fresh.allowed, fresh.remaining) == (True, 9)


def test_sliding_counter_retry_after_is_the_first_moment_a_request_fits() -> None:
    # Greedy: whenever refused, come back exactly when told; just before that is refused.
    config = FakeRateLimit(limit=20, window=10.0, algorithm="sliding_counter")
    limiter = ServerRateLimiter(config, record=True)
    shadow = ServerRateLimiter(config)
    t = 1000.37
    refusals = 0
    told = False
    while t < 1090.0:
        decision = limiter.admit("k", t, t)
        shadow_decision = shadow.admit("k", t, t)
        assert shadow_decision == decision
        if decision.allowed:
            told = False
            t += 0.05
            continue
        assert not told, "refused at the moment the last refusal named"
        told = True
        refusals += 1
        early = t + decision.retry_after - 0.01
        if decision.retry_after > 0.02:
            assert not shadow.admit("k", early, early).allowed
            limiter.admit("k", early, early)  # keep both limiters in step
        t += decision.retry_after + 1e-6
    assert refusals > 10
    # A greedy client spends what the counter allows. The measure allows `limit` per aligned
    # window; once the window before was full, the last request of a window still finds a
    # sliver of it weighing, so the most a window holds is `limit - 1`.
    times = limiter.admission_times("k")
    use = budget_used(config, times)
    assert use.share >= (config.limit - 1) / config.limit - 0.005


def test_a_policy_changed_under_load_keeps_what_was_spent() -> None:
    sliding = ServerRateLimiter(FakeRateLimit(limit=4, window=10.0, algorithm="sliding_window"))
    for t in (0.0, 1.0, 2.0, 3.0):
        assert sliding.admit("k", t).allowed
    sliding.reconfigure(FakeRateLimit(limit=2, window=10.0, algorithm="sliding_window"))
    refused = sliding.admit("k", 4.0)
    assert (refused.allowed, refused.limit) == (False, 2)
    # Room comes once all but one of the four are gone: when the one at 2 s leaves.
    assert refused.retry_after == pytest.approx(8.0)
    assert not sliding.admit("k", 11.99).allowed
    assert sliding.admit("k", 12.0).allowed
    fixed = ServerRateLimiter(FakeRateLimit(limit=10, window=10.0))
    for _ in range(5):
        fixed.admit("k", 0.0)
    fixed.reconfigure(FakeRateLimit(limit=3, window=10.0))
    assert not fixed.admit("k", 5.0).allowed  # 5 spent of 3: nothing until the window ends
    assert fixed.admit("k", 10.0).remaining == 2
    bucket = ServerRateLimiter(FakeRateLimit(limit=10, window=1.0, algorithm="token_bucket"))
    bucket.admit("k", 0.0)
    bucket.reconfigure(FakeRateLimit(limit=10, window=1.0, algorithm="token_bucket", burst=3))
    assert bucket.admit("k", 0.0).remaining == 2  # nine tokens, clamped to the new three


def test_token_bucket_burst_differs_from_refill() -> None:
    config = FakeRateLimit(limit=10, window=1.0, algorithm="token_bucket", burst=3)
    limiter = ServerRateLimiter(config)
    assert [limiter.admit("k", 0.0).allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.admit("k", 0.1).allowed  # one token per 0.1 s
    assert not limiter.admit("k", 0.1).allowed
    assert config.capacity == 3
    assert config.sustained_rate == 10.0


def _headers(config: FakeRateLimit, remaining: int, reset_after: float = 4.2) -> dict[str, str]:
    decision_limiter = ServerRateLimiter(config)
    decision = decision_limiter.admit("k", 0.0, 1000.0)
    decision = attrs_evolve(decision, remaining=remaining, reset_after=reset_after)
    headers: dict[str, str] = {}
    rate_headers(config, decision, 1000.0, headers)
    return headers


def attrs_evolve(decision: object, **changes: object) -> object:
    import attrs

    return attrs.evolve(decision, **changes)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("dialect", "remaining", "expected"),
    [
        (
            "x-ratelimit",
            5,
            {"X-RateLimit-Remaining": "5", "X-RateLimit-Limit": "60", "X-RateLimit-Reset": "1005"},
        ),
        ("vendor_page", 5, {"X-RateLimit-Remaining": "5"}),
        (
            "vendor_page",
            0,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "60", "X-RateLimit-Reset": "5"},
        ),
        ("remaining_only", 0, {"X-RateLimit-Remaining": "0"}),
        ("ietf", 5, {"RateLimit-Policy": '"default";q=60;w=60', "RateLimit": '"default";r=5;t=5'}),
        (
            "github",
            5,
            {
                "X-RateLimit-Remaining": "5",
                "X-RateLimit-Limit": "60",
                "X-RateLimit-Used": "55",
                "X-RateLimit-Reset": "1005",
            },
        ),
        ("none", 5, {}),
    ],
)
def test_dialects_write_their_headers(
    dialect: str, remaining: int, expected: dict[str, str]
) -> None:
    config = FakeRateLimit(dialect=dialect)  # type: ignore[arg-type]
    assert _headers(config, remaining) == expected


def test_gateway_dialect_announces_the_next_token() -> None:
    config = FakeRateLimit(
        limit=10, window=1.0, algorithm="token_bucket", burst=2, dialect="gateway"
    )
    limiter = ServerRateLimiter(config)
    sent = []
    for at in (0.0, 0.0, 0.05):
        headers: dict[str, str] = {}
        rate_headers(config, limiter.admit("k", at), at, headers)
        sent.append(headers)
    assert sent[0] == {
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Reset": "0",
    }
    assert sent[1]["X-RateLimit-Remaining"] == "0"
    assert sent[1]["X-RateLimit-Reset"] == "1"  # 0.1 s to the next token, in whole seconds


def test_budget_used_counts_whole_windows() -> None:
    aligned = FakeRateLimit(limit=10, window=10.0, algorithm="fixed_window_aligned")
    # 10 per window in [10, 20) and [20, 30), 5 in the partial windows at either end.
    times = [5.0 + i * 0.5 for i in range(10)] + [10 + i for i in range(10)]
    times += [20 + i for i in range(5)] + [30.5]
    use = budget_used(aligned, times)
    assert (use.start, use.end) == (10.0, 30.0)
    assert use.admitted == 15
    assert use.allowed == 20.0
    assert use.share == pytest.approx(0.75)
    bucket = FakeRateLimit(limit=10, window=1.0, algorithm="token_bucket", burst=20)
    assert budget_used(bucket, [0.0, 1.0]).allowed == pytest.approx(30.0)


def test_server_reports_budget_use_per_key() -> None:
    fake = FakeDocument360(
        rate_limit=FakeRateLimit(limit=3, window=1.0, algorithm="sliding_window")
    )
    assert fake.budget_use() == {}


async def test_set_rate_limit_changes_the_policy_of_a_running_server(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    async with FakeDocument360(clock=clock, rate_limit=FakeRateLimit(limit=3, window=60.0)) as fake:
        url = export_url(fake, fake.seed("v3.export")[0])
        _, first, _ = await hit(session, url, fake.api_token)
        assert first["X-RateLimit-Remaining"] == "2"
        fake.set_rate_limit(FakeRateLimit(limit=10, window=60.0))
        _, raised, _ = await hit(session, url, fake.api_token)
        assert (raised["X-RateLimit-Limit"], raised["X-RateLimit-Remaining"]) == ("10", "8")
    async with FakeDocument360(clock=clock, rate_limit=None) as unlimited:
        with pytest.raises(RuntimeError, match="does not rate-limit"):
            unlimited.set_rate_limit(FakeRateLimit())
