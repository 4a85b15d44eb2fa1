"""d360-async: an asyncio client for the Document360 and SmartDocumentor APIs.

Everything public is importable from here (and ``d360_async.smartdocumentor``,
``d360_async.testing``, ``d360_async.contrib.fastapi``); modules whose names start with an
underscore are private.  ``RedisRateLimiter`` needs the ``redis`` extra and is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from d360_async._clients._client import Client
from d360_async._clock import Clock, SystemClock
from d360_async._core._config import (
    ConnectionLimits,
    Hooks,
    LimiterWaitEvent,
    Region,
    RequestEndEvent,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    Timeouts,
)
from d360_async._core._errors import (
    APIError,
    AuthenticationError,
    CheckpointError,
    ConnectError,
    ConnectTimeout,
    CredentialsUnavailable,
    D360Error,
    DownloadLinkExpired,
    ErrorDetail,
    ExportNotReady,
    MalformedResponse,
    MissingCredential,
    NotFound,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ServerError,
    TimeoutError,
    TransportError,
    ValidationError,
    WatchError,
)
from d360_async._core._kinds import TargetKind
from d360_async._core._models import (
    ApiReferenceImport,
    ApiReferenceLog,
    ApiReferenceLogDetail,
    DriveTask,
    Export,
    ExportStarted,
    Import,
    ImportStarted,
    LogMessage,
    OperationHandle,
    SmartDocumentorPage,
    SmartDocumentorTask,
    V2DeleteFileStatus,
    V2Export,
    V2Import,
)
from d360_async._core._phase import Phase
from d360_async._core._redact import RedactingFilter, redact_url
from d360_async._core._retry import RetryPolicy
from d360_async._core._target_protocol import Observation, Target
from d360_async._limiters import (
    LimiterStats,
    LocalRateLimiter,
    Priority,
    RateLimitConfig,
    RateLimiter,
    RateLimitKey,
    RateLimitState,
)
from d360_async._resources import (
    ApiReferencesResource,
    DownloadProgress,
    DriveResource,
    ExportsResource,
    ImportsResource,
    ResourceTarget,
    V2ExportsResource,
    V2ImportsResource,
    V2Resource,
    target_from_spec,
)
from d360_async._transport._auth import ApiTokenAuth, Auth, BearerAuth, TokenProvider
from d360_async._transport._telemetry import Telemetry
from d360_async._version import __version__
from d360_async._watch import (
    DurationModels,
    Eta,
    HubStats,
    ObservationHub,
    Outage,
    PollPolicy,
    Priors,
    TargetFinished,
    Transition,
    TransitionKind,
    Watch,
    WatchStats,
    load_priors,
    wait,
    watch,
)

if TYPE_CHECKING:
    from d360_async._limiters._redis import RedisRateLimiter

__all__ = [
    "APIError",
    "ApiReferenceImport",
    "ApiReferenceLog",
    "ApiReferenceLogDetail",
    "ApiReferencesResource",
    "ApiTokenAuth",
    "Auth",
    "AuthenticationError",
    "BearerAuth",
    "CheckpointError",
    "Client",
    "Clock",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLimits",
    "CredentialsUnavailable",
    "D360Error",
    "DownloadLinkExpired",
    "DownloadProgress",
    "DriveResource",
    "DriveTask",
    "DurationModels",
    "ErrorDetail",
    "Eta",
    "Export",
    "ExportNotReady",
    "ExportStarted",
    "ExportsResource",
    "Hooks",
    "HubStats",
    "Import",
    "ImportStarted",
    "ImportsResource",
    "LimiterStats",
    "LimiterWaitEvent",
    "LocalRateLimiter",
    "LogMessage",
    "MalformedResponse",
    "MissingCredential",
    "NotFound",
    "Observation",
    "ObservationHub",
    "OperationHandle",
    "Outage",
    "PermissionDenied",
    "Phase",
    "PollPolicy",
    "Priority",
    "Priors",
    "ProtocolError",
    "RateLimitConfig",
    "RateLimitKey",
    "RateLimitState",
    "RateLimited",
    "RateLimiter",
    "RedactingFilter",
    "RedisRateLimiter",
    "Region",
    "RequestEndEvent",
    "RequestEvent",
    "ResourceTarget",
    "ResponseEvent",
    "RetryEvent",
    "RetryPolicy",
    "ServerError",
    "SmartDocumentorPage",
    "SmartDocumentorTask",
    "SystemClock",
    "Target",
    "TargetFinished",
    "TargetKind",
    "Telemetry",
    "TimeoutError",
    "Timeouts",
    "TokenProvider",
    "Transition",
    "TransitionKind",
    "TransportError",
    "V2DeleteFileStatus",
    "V2Export",
    "V2ExportsResource",
    "V2Import",
    "V2ImportsResource",
    "V2Resource",
    "ValidationError",
    "Watch",
    "WatchError",
    "WatchStats",
    "__version__",
    "load_priors",
    "redact_url",
    "target_from_spec",
    "wait",
    "watch",
]


def __getattr__(name: str) -> Any:
    # The Redis limiter pulls in redis-py, an optional extra: import it only when asked for.
    if name == "RedisRateLimiter":
        from d360_async._limiters._redis import RedisRateLimiter

        return RedisRateLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _redact_library_logs() -> None:
    # Every logger of the library (those of modules that do not ask for it themselves too)
    # passes its records through the redacting filter.
    import logging

    from d360_async._core._redact import library_logger

    for name in [*logging.root.manager.loggerDict, "d360_async.ratelimit"]:
        if name == "d360_async" or name.startswith("d360_async."):
            library_logger(name)


_redact_library_logs()
