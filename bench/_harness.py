"""What every end-to-end benchmark needs: a broker, an emulator process, worker processes, process
statistics from /proc, the machine description and the RESULTS.md section writer.

The broker: ``KAFKA_BOOTSTRAP`` when set, else a private one started with ``dev/kafka/broker.sh`` on
free ports with its own ``KAFKA_RUN_DIR`` (the shared development broker is never touched).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from streams._support import LocalBroker, free_port, isolated_worker_env
from streams._support import process_memory_kib as memory_kb

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
EMULATOR_KEY = "bench-key-0123456789abcdef"
_TICK = os.sysconf("SC_CLK_TCK")
MIN_WINDOW_SECONDS = 1e-3


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- processes ------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (/proc/<pid>/stat utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the benchmark process dies (Linux prctl)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Process:
    """A child process with its output in a log file; stopped by its own pid only, and terminated
    when the benchmark process dies (so a killed benchmark leaves no workers behind)."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        log = log_path.open("ab")
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=REPO, preexec_fn=_die_with_parent)
        log.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """Yield a bootstrap address: ``KAFKA_BOOTSTRAP``, else a private broker for this run."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    run_dir = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    print("starting a private Kafka broker (dev/kafka/broker.sh)", file=sys.stderr)
    try:
        with LocalBroker(run_dir) as private:
            yield private.bootstrap
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


class Emulator:
    """``python -m streams emulator`` in its own process (it must not share the worker's core)."""

    def __init__(self, workdir: Path, rate_limits: bool, hidden_limits: Mapping[str, float] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "streams", "emulator", "--port", str(self.port), "--api-key", EMULATOR_KEY]
        if not rate_limits:
            args.append("--no-rate-limits")
        for path, rate in (hidden_limits or {}).items():
            args += ["--hidden-limit", f"{path}={rate:g}"]
        self.process = Process(args, {}, workdir / f"emulator-{self.port}.log")
        # One client for every poll: httpx.get() builds a new client, and with it a TLS context that
        # loads the CA bundle (~15 ms of CPU): at 10 polls/s the harness took a sixth of a core from
        # the worker it measures.
        self.http = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/_emulator/counters", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or not self.process.alive():
                raise RuntimeError(f"emulator did not start:\n{self.process.log_tail()}")
            time.sleep(0.1)

    def counters(self) -> dict[str, Any]:
        result: dict[str, Any] = self.http.get("/_emulator/counters").json()
        return result

    def timeline(self) -> dict[str, Any]:
        """Calls answered per path and second (``"<path> 429"`` for refusals), and the limits enforced."""
        result: dict[str, Any] = self.http.get("/_emulator/timeline").json()
        return result

    def arrivals(self) -> dict[str, float]:
        result: dict[str, float] = self.http.get("/_emulator/arrivals", timeout=120).json()["arrivals"]
        return result

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def stop(self) -> None:
        self.http.close()
        self.process.stop()


def worker_env(bootstrap: str, emulator_url: str, data_dir: Path, source_topic: str,
               **overrides: str) -> dict[str, str]:
    """A worker with its own app id and topics reading ``source_topic``, pointed at the emulator."""
    env = isolated_worker_env(unique("bench"), bootstrap, emulator_url, EMULATOR_KEY, data_dir, 4)
    env |= {"FPI_SOURCE_TOPIC": source_topic, "FPI_LOG_LEVEL": "warning"}
    env.update(overrides)
    return env


def start_worker(env: Mapping[str, str], log_path: Path) -> Process:
    return Process([sys.executable, "-m", "streams", "worker"], env, log_path)


async def create_topic(bootstrap: str, topic: str, partitions: int = 4,
                       config: Mapping[str, str] | None = None) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=dict(config or {}))])
    finally:
        await admin.close()


# --- measuring ------------------------------------------------------------------------------

class Sampler:
    """Samples CPU seconds and peak RSS of processes; peak RSS is read while they are alive."""

    def __init__(self, *processes: Process) -> None:
        self.processes = processes
        self.hwm_kb = dict.fromkeys((p.pid for p in processes), 0)

    def cpu(self) -> float:
        total = 0.0
        for p in self.processes:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += cpu_seconds(p.pid)
        return total

    def sample(self) -> None:
        for p in self.processes:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                self.hwm_kb[p.pid] = max(self.hwm_kb[p.pid], memory_kb(p.pid))

    def peak_rss_mb(self) -> float:
        return max(self.hwm_kb.values()) / 1024


def wait_delivered(emulator: Emulator, events: int, purchases: int, timeout: float, sampler: Sampler,
                   workers: tuple[Process, ...], on_first: Callable[[], object] | None = None) -> dict[str, float]:
    """Poll the emulator until ``events`` events and ``purchases`` purchases arrived.

    ``on_first`` is called when the first record arrived (where the measured window starts).

    Returns CPU seconds of the workers when the first record arrived and when the last did.
    Raises ``TimeoutError`` (with the worker's log tail) when it takes longer than ``timeout``.
    """
    deadline = time.monotonic() + timeout
    cpu_first: float | None = None
    while True:
        counters = emulator.counters()
        sampler.sample()
        got_events, got_purchases = counters["unique_event_ids"], counters["unique_purchase_ids"]
        if cpu_first is None and (got_events or got_purchases):
            cpu_first = sampler.cpu()
            if on_first is not None:
                on_first()
        if got_events >= events and got_purchases >= purchases:
            return {"cpu_first": cpu_first or 0.0, "cpu_last": sampler.cpu()}
        dead = [w for w in workers if not w.alive()]
        if dead or time.monotonic() > deadline:
            what = "worker exited" if dead else f"timed out after {timeout:.0f}s"
            raise TimeoutError(f"{what}: {got_events}/{events} events, {got_purchases}/{purchases} purchases\n"
                               f"{workers[0].log_tail()}")
        # Each poll costs the emulator a counters page: poll gently once records flow.
        time.sleep(0.1 if cpu_first is None else 0.5)


def span(arrivals: Mapping[str, float], ids: set[str] | frozenset[str] | None = None) -> tuple[float, float]:
    """First and last arrival time of ``ids`` (all arrivals when ``None``)."""
    times = [t for i, t in arrivals.items() if ids is None or i in ids]
    return min(times), max(times)


def window_seconds(first: float, last: float) -> float:
    """``last - first``, at least a millisecond: a smoke run's records can all arrive in one call at one instant,
    and a rate over a zero window is meaningless, not infinite."""
    return max(last - first, MIN_WINDOW_SECONDS)


def machine() -> str:
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else model
    return (f"{os.cpu_count()} vCPU ({model}), {mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()}, "
            f"CPython {platform.python_version()}")


def load_average() -> str:
    return "{:.2f} / {:.2f} / {:.2f}".format(*os.getloadavg())


def command_line() -> str:
    """The command as run from the repository root, with the interpreter that ran it."""
    module = Path(sys.argv[0]).stem
    python = Path(sys.executable)
    shown = python.relative_to(REPO) if python.is_relative_to(REPO) else python
    return " ".join([f"{shown} -m bench.{module}", *sys.argv[1:]])


def now_text() -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%MZ}"


def record(title: str, body: str, *, smoke: bool) -> None:
    """Replace (or append) the ``## title`` section of RESULTS.md; smoke runs never write."""
    if smoke:
        return
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)
    print(f"(updated section '{title}' in {RESULTS.relative_to(REPO)})")


def run_workers(bootstrap: str, workdir: Path, topic: str, emulator: Emulator, events: int, purchases: int,
                *, workers: int = 1, timeout: float = 900, **overrides: str) -> dict[str, Any]:
    """Start ``workers`` worker processes (one app id) on ``topic`` and wait for the deliveries.

    Returns the arrival span, worker CPU over it, peak RSS, the emulator's counters and arrivals.
    """
    env = worker_env(bootstrap, emulator.url, workdir / "data-0", topic, **overrides)
    processes = []
    for n in range(workers):
        env_n = {**env, "FPI_WEB_PORT": str(free_port()), "FPI_DATA_DIR": str(workdir / f"data-{n}")}
        processes.append(start_worker(env_n, workdir / f"worker-{n}.log"))
    sampler = Sampler(*processes)
    emulator_sampler = Sampler(emulator.process)
    emulator_cpu0 = emulator_sampler.cpu()
    try:
        cpu = wait_delivered(emulator, events, purchases, timeout, sampler, tuple(processes))
        sampler.sample()
    finally:
        for process in processes:
            process.stop()
    counters = emulator.counters()
    arrivals = emulator.arrivals()
    first, last = span(arrivals)
    return {"first": first, "last": last, "seconds": window_seconds(first, last),
            "cpu": cpu["cpu_last"] - cpu["cpu_first"],
            "cpu_total": cpu["cpu_last"], "peak_rss_mb": sampler.peak_rss_mb(),
            "emulator_cpu": emulator_sampler.cpu() - emulator_cpu0, "counters": counters, "arrivals": arrivals,
            "timeline": emulator.timeline()}
