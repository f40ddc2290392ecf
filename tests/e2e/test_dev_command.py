"""The README's run command: `freshpaint-iterable dev` on embedded defaults (its own broker and
emulator), and its summary agrees with what `explain` says of the bundled sample."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streams.explain import explain_lines
from streams.mapping import MappingConfig
from tests.support import REPO

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

SAMPLE = REPO / "tests" / "data" / "sample_events.jsonl"


def test_dev_runs_the_sample_and_prints_a_matching_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FPI_")}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, "-m", "streams", "dev", "--run-dir", str(tmp_path / "run"), "--timeout", "150"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    records = list(explain_lines(SAMPLE.read_text().splitlines(), MappingConfig()))
    requests = [request for record in records for request in record["requests"]]
    events = {r["body"]["id"] for r in requests if r["path"] == "/api/events/track"}
    purchases = {r["body"]["id"] for r in requests if r["path"] == "/api/commerce/trackPurchase"}
    summary = f"events stored: {len(events)} (duplicate ids received: 0), purchases stored: {len(purchases)}"
    assert summary in out
    drops = Counter(r["reason"] for r in records if r["decision"] == "drop")
    for reason, count in drops.items():
        assert re.search(rf"│ {reason}\s+│ {count}\s+│", out), f"{reason}={count} missing from:\n{out}"
    errors = sum(1 for r in records if r["decision"] == "error")
    assert out.count("not an event (line") == errors
    assert "local broker stopped" in out and "worker stopped" in out
