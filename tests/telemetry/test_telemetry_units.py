"""The pure parts of the telemetry: URL templates, error types, hook composition."""

from __future__ import annotations

import pytest

from d360_async import Hooks, NotFound, ProtocolError, RateLimited, Telemetry
from d360_async._transport._telemetry import (
    _error_type,
    _status_class,
    instrument,
    url_template,
)


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (
            "/v3/projects/9a3b4c5d-6e7f-8a9b-0c1d-2e3f4a5b6c7d/exports/42",
            "/v3/projects/{id}/exports/{id}",
        ),
        ("/v3/projects/p1/drive/tasks/t-9", "/v3/projects/{id}/drive/tasks/{id}"),
        ("/v2/Drive/Folders/DeleteFile/Status/77", "/v2/Drive/Folders/DeleteFile/Status/{id}"),
        ("/v2/Project/Export/abc1", "/v2/Project/Export/{id}"),
        ("/api/v1.0/external/sdtask/status", "/api/v1.0/external/sdtask/status"),
        ("/connect/token", "/connect/token"),
        ("/", "/"),
        ("", ""),
    ],
    ids=["v3-export", "v3-drive", "v2-delete", "v2-export", "sd-status", "token", "root", "empty"],
)
def test_url_template_hides_ids_and_keeps_the_shape(path: str, template: str) -> None:
    assert url_template(path) == template


@pytest.mark.parametrize(
    ("status", "cls"), [(None, "none"), (200, "2xx"), (302, "3xx"), (429, "4xx"), (503, "5xx")]
)
def test_status_class(status: int | None, cls: str) -> None:
    assert _status_class(status) == cls


def test_error_type_prefers_the_status_then_the_exception_type() -> None:
    assert _error_type(NotFound("gone", status=404), None) == "404"
    assert _error_type(ProtocolError("cut"), None) == "ProtocolError"
    assert _error_type(RateLimited("paused", retry_at=1.0), None) == "RateLimited"
    assert _error_type(None, 503) == "503"
    assert _error_type(None, 200) is None
    assert _error_type(None, None) is None


def test_hooks_add_keeps_both_in_order() -> None:
    def a(_: object) -> None: ...

    def b(_: object) -> None: ...

    both = Hooks(on_request=[a], on_transition=[a]) + Hooks(on_request=[b], on_retry=[b])
    assert both.on_request == (a, b)
    assert both.on_retry == (b,)
    assert both.on_transition == (a,)
    assert both.on_response == ()


def test_hooks_add_keeps_idleness_only_where_no_callback_of_its_own_listens() -> None:
    def mine(_: object) -> None: ...

    def quiet() -> bool:
        return True

    def busy() -> bool:
        return False

    telemetry = Hooks(on_request=[mine])._idle_when(quiet)
    assert Hooks() == Hooks()._idle_when(quiet)  # no part of equality
    # Request callbacks of the user's own are always called: never idle.
    assert (Hooks(on_request=[print]) + telemetry)._idle is None
    assert (telemetry + Hooks(on_response=[print]))._idle is None
    # Watch-only hooks leave the telemetry's idleness as it is.
    assert (Hooks(on_transition=[print]) + telemetry)._idle is quiet
    assert (telemetry + Hooks(on_target_finished=[print]))._idle is quiet
    # Two idle sets are idle while both are.
    other = Hooks(on_retry=[mine])._idle_when(busy)
    both = (telemetry + other)._idle
    assert both is not None
    assert both() is False
    idle_both = (telemetry + Hooks(on_retry=[mine])._idle_when(quiet))._idle
    assert idle_both is not None
    assert idle_both() is True


def test_telemetry_hooks_are_idle_only_while_nothing_records() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    assert Telemetry().hooks()._idle is not None
    recording = Telemetry(tracer_provider=TracerProvider()).hooks()._idle
    assert recording is not None
    assert recording() is False


def test_instrument_leaves_hooks_alone_when_off_and_checks_its_argument() -> None:
    mine = Hooks(on_request=[print])
    assert instrument(object(), mine, False, "document360") is mine
    assert instrument(object(), None, False, "document360") is None
    with pytest.raises(TypeError, match="telemetry must be"):
        instrument(object(), mine, "yes", "document360")  # type: ignore[arg-type]
