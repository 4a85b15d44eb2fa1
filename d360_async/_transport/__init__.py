"""Layer 2, the transport: the aiohttp session manager, auth, the retry loop, telemetry.

`_transport` owns (or borrows) the `aiohttp.ClientSession`, maps aiohttp's exceptions to the
library's, runs the retry loop the core's `_retry` decides and acquires a limiter ticket per
attempt; `_auth` holds static tokens and async token providers; `_lifecycle` is the
``async with``/``aclose`` the clients share (its states are the core's `Lifecycle`);
`_telemetry` is the optional OpenTelemetry instrumentation.

What it may import: `d360_async._core`, aiohttp, asyncio, anyio, opentelemetry (optional).
Never the limiters' implementations (it talks to the `RateLimiter` protocol), the resources,
the watch or the clients.
"""
