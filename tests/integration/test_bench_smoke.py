"""The benchmark harness works: each ``bench/bench_*.py --smoke`` runs on the real broker and prints
figures that make sense, and the workload is what its docstring promises (checked by ``explain``).

Smoke runs never write ``bench/RESULTS.md`` (checked too).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.workload import BLOCK, events, expected
from streams.explain import explain_lines
from streams.mapping import MappingConfig
from tests.support import REPO

pytestmark = [pytest.mark.integration]

RESULTS = REPO / "bench" / "RESULTS.md"


def _run(module: str, kafka_bootstrap: str, timeout: float = 100) -> str:
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap}
    proc = subprocess.Popen([sys.executable, "-m", f"bench.{module}", "--smoke"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # its workers and emulator die with it (PR_SET_PDEATHSIG in bench/_harness.py)
        stdout, stderr = proc.communicate(timeout=30)
        raise AssertionError(f"{module} --smoke took over {timeout}s:\n{stdout[-3000:]}\n{stderr[-3000:]}") from None
    assert proc.returncode == 0, f"{module} failed:\n{stdout[-3000:]}\n{stderr[-3000:]}"
    return stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1).replace(",", ""))


def test_workload_mix_is_what_explain_says() -> None:
    import orjson

    tag = "mix"
    lines = [orjson.dumps(m) for m in events(2 * BLOCK, tag)]
    outcome: Counter[str] = Counter()
    event_ids: set[str] = set()
    purchase_ids: set[str] = set()
    for record in explain_lines(lines, MappingConfig()):
        outcome[record["reason"] or "/".join(r["path"] for r in record["requests"])] += 1
        for request in record["requests"]:
            if request["path"] == "/api/events/track":
                event_ids.add(request["body"]["id"])
            elif request["path"] == "/api/commerce/trackPurchase":
                purchase_ids.add(request["body"]["id"])
    assert outcome == {"/api/users/update": 4, "/api/events/track": 32, "/api/commerce/trackPurchase": 2,
                       "anonymous": 2}
    want = expected(2 * BLOCK, tag)
    assert (want.event_ids, want.purchase_ids) == (event_ids, purchase_ids)
    assert 800 < sum(len(line) for line in lines) / len(lines) < 1400  # "about 1 KB"


def test_benchmarks_run_in_smoke_mode(kafka_bootstrap: str) -> None:
    before = RESULTS.read_text()
    # Two lanes side by side keep the whole smoke set under a minute on two cores.
    lanes = (("bench_e2e", "bench_latency", "bench_ceiling"),
             ("bench_profile", "bench_scale", "bench_tables", "bench_startup"))
    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        done = pool.map(lambda lane: {m: _run(m, kafka_bootstrap) for m in lane}, lanes)
        out = {module: text for lane in done for module, text in lane.items()}

    assert 0 < _number(r"total:\s+([\d.]+) µs/event", out["bench_profile"]) < 100_000

    e2e = out["bench_e2e"]
    assert _number(r"worker : ([\d,]+) source events/s", e2e) > 0
    assert _number(r"naive  : ([\d,]+) source events/s", e2e) > 0
    assert _number(r"ratio  : ([\d.]+)x", e2e) > 0
    assert _number(r"duplicates (\d+)", e2e) == 0
    assert _number(r"ack only, same topic: ([\d,]+) records/s", e2e) > 0  # CPU may round to 0 on 1,000 records
    assert _number(r"with the worker's inline delivery ([\d,]+) records/s", e2e) > 0
    assert _number(r"bare   : aiokafka getmany \+ commit per batch, no work, same topic: ([\d,]+) records/s", e2e) > 0
    if "budget : n/a" not in e2e:  # py-spy installed: the parts add up to the measured total
        parts = re.search(r"budget : (.*) = ([\d.]+) us/event of ([\d.]+) measured", e2e)
        assert parts, e2e
        named = dict(part.rsplit(" ", 1) for part in parts.group(1).split(", "))
        assert set(named) == {"decode", "hop", "resolve", "map", "encode", "tables", "send", "HTTP", "our glue",
                              "framework", "other", "unattributed", "GC"}
        assert abs(sum(float(v) for v in named.values()) - float(parts.group(3))) <= 0.1 * len(named)
        assert float(parts.group(2)) == pytest.approx(float(parts.group(3)), abs=0.1)

    ceiling = out["bench_ceiling"]
    assert _number(r"429s: (\d+)", ceiling) == 0
    assert 0 < _number(r"-> ([\d.]+)% of the ceiling", ceiling) <= 100
    assert "bound by /api/commerce/trackPurchase" in ceiling  # 5% purchases at the hidden 150 calls/s
    assert 0 <= _number(r"/api/events/trackBulk: [\d.]+ calls/s of 10 = (\d+)% of its budget", ceiling) <= 100

    latency = out["bench_latency"]
    p50, p99 = _number(r"p50 ([\d.]+) s", latency), _number(r"p99 ([\d.]+) s", latency)
    assert 0 < p50 <= p99 < 30

    assert _number(r"two workers / one: ([\d.]+)x", out["bench_scale"]) > 0

    tables = out["bench_tables"]
    assert _number(r"rocksdb://: start-up to first delivery ([\d.]+) s", tables) > 0
    assert _number(r"memory://: start-up to first delivery ([\d.]+) s", tables) > 0
    startup = out["bench_startup"]
    assert 0 < _number(r"4 partitions: ready after +([\d.]+) s fresh", startup) < 60
    assert RESULTS.read_text() == before, "a smoke run must not write RESULTS.md"
