"""The hub's tests use the real redis-server of the rate-limiter tests (same fixtures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_ratelimit_conftest", Path(__file__).parent.parent / "ratelimit" / "conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

RedisServer = _module.RedisServer
redis_server = _module.redis_server
private_redis_server = _module.private_redis_server

__all__ = ["RedisServer", "private_redis_server", "redis_server"]
