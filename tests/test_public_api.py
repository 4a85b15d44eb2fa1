"""The public surface is exactly the names listed here: no more, no fewer, each one ours.

The lists are written out by hand on purpose: adding, renaming or removing a public name must
change this file too, so that the change is seen (and recorded in CHANGELOG.md).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pathlib
import types
import typing
from typing import Any

import pytest

import d360_async

EXPECTED: dict[str, list[str]] = {
    "d360_async": [
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
        "Clock",
        "Client",
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
    ],
    "d360_async.smartdocumentor": [
        "ClientCredentialsAuth",
        "DEFAULT_BASE_URL",
        "SmartDocumentorClient",
        "SmartDocumentorPage",
        "SmartDocumentorTask",
        "SmartDocumentorTasks",
    ],
    "d360_async.testing": [
        "API_ROUTES",
        "DEFAULT_PROJECT_ID",
        "FAULT_KINDS",
        "FakeDocument360",
        "FakeFaults",
        "FakeLifecycle",
        "FakeOperation",
        "FakeRateLimit",
        "FakeStats",
        "Fault",
        "FaultKind",
        "ManualClock",
        "Outcome",
        "ROUTES",
        "STATUS_ROUTES",
        "token_fingerprint",
    ],
    "d360_async.contrib.fastapi": [
        "D360Client",
        "STATE_KEY",
        "WatchEventStream",
        "d360_lifespan",
        "get_client",
        "open_client",
        "public_error",
        "transition_payload",
        "watch_events",
    ],
    "d360_async.ids": [
        "external_id",
        "safe_token",
        "sd_task_id",
        "uuid_id",
    ],
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_all_is_exactly_the_expected_names(module: str) -> None:
    names = list(importlib.import_module(module).__all__)
    assert len(names) == len(set(names)), "a name is listed twice"
    assert sorted(names) == sorted(EXPECTED[module])


def test_no_public_name_of_the_package_is_missing_from_all() -> None:
    public = {
        name
        for name, value in vars(d360_async).items()
        # Submodules are attributes of a package once imported; they are not API names.
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public -= {"annotations", "TYPE_CHECKING", "Any"}
    lazy = {"RedisRateLimiter"}  # imported on first use, for the optional redis extra
    assert public | lazy == {n for n in d360_async.__all__ if not n.startswith("__")}


def _kind_of(value: Any) -> str:
    if inspect.isclass(value) or inspect.isfunction(value):
        return "definition"
    if isinstance(value, types.UnionType) or typing.get_origin(value) is not None:
        return "alias"
    if isinstance(value, str | int | frozenset | tuple):
        return "constant"
    return type(value).__name__


@pytest.mark.parametrize(
    ("module", "name"), [(m, n) for m in sorted(EXPECTED) for n in EXPECTED[m]]
)
def test_every_exported_name_is_ours_and_documented(module: str, name: str) -> None:
    value = getattr(importlib.import_module(module), name)
    kind = _kind_of(value)
    assert kind in {"definition", "alias", "constant"}, f"{name} is a {kind}"
    if kind == "definition":
        # Defined in this package (not a re-exported foreign object), with a docstring for
        # the reference page.
        assert value.__module__.split(".")[0] == "d360_async", value.__module__
        assert inspect.getdoc(value), f"{name} has no docstring"


def test_version_is_the_installed_one() -> None:
    assert d360_async.__version__ == importlib.metadata.version("d360-async")


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = d360_async.NoSuchThing  # type: ignore[attr-defined]


def test_py_typed_shipped() -> None:
    assert (pathlib.Path(d360_async.__file__).parent / "py.typed").is_file()
