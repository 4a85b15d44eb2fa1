"""docs/examples/otel_console.py runs as the Observability page says, and prints what it says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "otel_console.py"


def test_the_console_example_prints_spans_in_one_trace_and_the_metrics() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    finals = re.findall(r"^# v3\.export/\S+: (succeeded|failed)$", out, re.MULTILINE)
    assert len(finals) == 3
    # The console exporter prints one JSON object per span; pick ours out.
    decoder = json.JSONDecoder()
    spans, at = [], 0
    while (start := out.find('{\n    "name"', at)) != -1:
        span, at = decoder.raw_decode(out, start)
        spans.append(span)
    polls = [s for s in spans if s["name"] == "GET /v3/projects/{id}/exports/{id}"]
    (root,) = [s for s in spans if s["name"] == "watch exports"]
    assert len(polls) >= 3
    assert {s["context"]["trace_id"] for s in polls} == {root["context"]["trace_id"]}
    assert {s["parent_id"] for s in polls} == {root["context"]["span_id"]}
    for name in ("d360.requests", "d360.rate_limit.limit", "d360.watch.transitions"):
        assert f'"name": "{name}"' in out, name
