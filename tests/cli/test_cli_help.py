"""Help texts: every option explained, the same defaults everywhere, the panel's labels."""

from __future__ import annotations

import argparse

import pytest

from d360_async.cli._demo import DEFAULT_BUDGET, lifecycle_scale, plan_demo
from d360_async.cli._display import ProgressView
from d360_async.cli._parser import DEMO_PANEL_HELP, PANEL_HELP, build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


@pytest.mark.parametrize("command", ["demo", "watch", "status", "export"])
def test_every_option_has_help(command: str) -> None:
    sub = _subparsers()[command]
    undocumented = [
        action.option_strings or [action.dest]
        for action in sub._actions
        if action.help is None  # argparse.SUPPRESS hides development switches on purpose
    ]
    assert not undocumented


def test_the_demo_help_states_the_budget_the_banner_shows() -> None:
    text = _subparsers()["demo"].format_help()
    assert f"default {DEFAULT_BUDGET}" in " ".join(text.split())
    assert str(DEFAULT_BUDGET) == "300/10s"


def test_the_demo_has_no_options_it_ignores() -> None:
    text = _subparsers()["demo"].format_help()
    assert "--redis-url" not in text
    assert "--timeout" not in text


@pytest.mark.parametrize("command", ["demo", "watch", "export"])
def test_the_panel_labels_are_explained(command: str) -> None:
    text = " ".join(_subparsers()[command].format_help().split())
    for label in ("done =", "requests =", "429s received =", "eta ="):
        assert label in text
    if command == "demo":
        assert "429s sent by the server =" in text
        assert "delay p50 =" in text
        assert DEMO_PANEL_HELP.startswith(PANEL_HELP)


def test_the_plain_progress_line_uses_the_explained_label() -> None:
    view = ProgressView(title="t", total=2, done=1, phases={}, elapsed=1.0, throttled=0)
    assert "429s_received=0" in view.plain_line()


@pytest.mark.parametrize(
    ("count", "scale"), [(1, 0.1), (50, 0.1), (100, 0.2), (250, 0.5), (500, 1.0), (5000, 1.0)]
)
def test_the_demo_lifecycles_follow_the_count(count: int, scale: float) -> None:
    assert lifecycle_scale(count) == pytest.approx(scale)
    plan = plan_demo(count, budget=DEFAULT_BUDGET, scale=lifecycle_scale(count), seed=1)
    exports = plan.counts[0][0]
    # The slowest export of a 50-operation demo ends ten times sooner than one of 500.
    assert plan.scaled(exports.running)[1] == pytest.approx(exports.running[1] * scale)
