"""The connector of a session the client creates: aiohttp's, with a cheaper read timeout.

aiohttp bounds the silence of a connection (``sock_read``, our `Timeouts.read`) with a loop
timer it cancels and re-arms on every chunk received, and cancels again when the response
ends: two timers armed and two cancelled per small response. Cancelled timers stay in the
event loop's heap until it is rebuilt, and every push compares timers in Python, so on a busy
client this bookkeeping costs more than the rest of aiohttp's reading.

`LazyReadTimeoutProtocol` keeps aiohttp's rule (the read fails once nothing arrived for
``sock_read`` seconds while a response is awaited) with one timer per connection that is
never cancelled on the hot path: each chunk only moves a deadline, and the timer, when it
fires, either finds the deadline passed (the read times out, as before), or re-arms for the
deadline, or finds no response awaited and stops. A connection kept alive between requests
thus arms about one timer per ``sock_read`` seconds instead of two per request.

This reaches into aiohttp's protocol class (its read-timeout methods are private), so it is
used only when that class still has the methods it replaces (`lazy_timeout_supported`);
otherwise the session gets aiohttp's own connector and behaves the same, a little slower.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

__all__ = ["LazyReadTimeoutProtocol", "lazy_timeout_supported", "tcp_connector"]

_REPLACED = ("_reschedule_timeout", "_drop_timeout", "_on_read_timeout", "start_timeout")


class LazyReadTimeoutProtocol(ResponseHandler):
    """aiohttp's response protocol with a read timeout that moves a deadline per chunk
    instead of re-arming a timer (module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        # When the silence runs out, on the loop's clock; None while no response is awaited.
        self._read_deadline: float | None = None

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._read_deadline = None
            return
        loop = self._loop
        deadline = loop.time() + timeout
        self._read_deadline = deadline
        handle = self._read_timeout_handle
        if handle is None or handle.when() > deadline:
            # None armed, or armed later than this deadline (for a longer timeout before).
            if handle is not None:
                handle.cancel()
            self._read_timeout_handle = loop.call_at(deadline, self._read_timer)

    def _drop_timeout(self) -> None:
        # The timer stays armed: when it fires it finds no deadline and stops.
        self._read_deadline = None

    def _read_timer(self) -> None:
        self._read_timeout_handle = None
        deadline = self._read_deadline
        if deadline is None:
            return
        loop = self._loop
        if loop.time() < deadline:
            self._read_timeout_handle = loop.call_at(deadline, self._read_timer)
            return
        self._read_deadline = None
        self._on_read_timeout()

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        # Nothing more can be read: release the timer now rather than when it fires.
        self._read_deadline = None
        handle = self._read_timeout_handle
        if handle is not None:
            handle.cancel()
            self._read_timeout_handle = None


def lazy_timeout_supported() -> bool:
    """Whether aiohttp's protocol still has the read-timeout methods and attributes
    `LazyReadTimeoutProtocol` relies on."""
    return all(callable(getattr(ResponseHandler, name, None)) for name in _REPLACED)


def tcp_connector(**kwargs: Any) -> aiohttp.TCPConnector:
    """An ``aiohttp.TCPConnector(**kwargs)`` whose connections use `LazyReadTimeoutProtocol`
    when aiohttp allows it (module docstring)."""
    connector = aiohttp.TCPConnector(**kwargs)
    factory = getattr(connector, "_factory", None)
    if (
        lazy_timeout_supported()
        and isinstance(factory, functools.partial)
        and factory.func is ResponseHandler
    ):
        lazy: Any = functools.partial(LazyReadTimeoutProtocol, *factory.args, **factory.keywords)
        connector._factory = lazy
    return connector
