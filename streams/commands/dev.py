"""``freshpaint-iterable dev``: the whole product on one machine, on embedded defaults.

Starts what is not configured (a local Kafka broker from ``dev/kafka/broker.sh`` unless
``FPI_KAFKA_BOOTSTRAP`` is set, in which case the run uses an app id and topics of its own, never the
production names; the Iterable emulator unless ``FPI_ITERABLE_API_KEY`` is set),
a worker process, produces the bundled sample of Freshpaint events, waits until the worker has
handled them, prints what Iterable received and what was dropped and why, and stops everything it
started, also on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import click
import httpx

from streams._support import BROKER_SCRIPT, LocalBroker, free_port, metric_by, metric_samples
from streams.bundled import bundled

__all__ = ["dev"]

DEFAULT_SAMPLE = bundled("_data", "tests/data").joinpath("sample_events.jsonl")
LOCAL_KEY = "local-dev-key"


def _mask(email: str | None) -> str:
    if not email or "@" not in email:
        return email or "-"
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"


@contextlib.contextmanager
def _local_broker(run_dir: Path, say: Callable[[str], None]) -> Iterator[str]:
    if not BROKER_SCRIPT.exists():
        raise click.ClickException("no dev/kafka/broker.sh here: set FPI_KAFKA_BOOTSTRAP to your Kafka")
    broker = LocalBroker(run_dir / "kafka")
    say(f"starting a local Kafka broker on {broker.bootstrap} (jars from Maven Central, cached)")
    try:
        broker.run("start")
    except RuntimeError as exc:
        raise click.ClickException(f"the local broker did not start: {exc}") from None
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        say("local broker stopped")


@contextlib.contextmanager
def _worker(
    env: dict[str, str], log_path: Path, say: Callable[[str], None]
) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "worker"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    say(f"worker started (pid {proc.pid}, log {log_path})")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        say("worker stopped")


def _wait(predicate: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes],
          log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines() or ["(no output)"]
            raise click.ClickException(f"the worker exited ({proc.returncode}) while waiting for {what}; its "
                                       f"last log line: {lines[-1]} (whole log: {log_path})")
        with contextlib.suppress(httpx.HTTPError):
            if predicate():
                return
        time.sleep(0.5)
    raise click.ClickException(f"timed out after {timeout:.0f}s waiting for {what}; see {log_path}")


_WAITING_FOR = {
    "no partitions assigned": "partitions to be assigned (joining the consumer group)",
    "rebalancing": "the rebalance to finish (partitions assigned, tables recovered from their changelogs)",
}


def _readiness(web: str, say: Callable[[str], None]) -> Callable[[], bool]:
    """A predicate for ``_wait``: whether the worker's /readyz says ready; says each new phase once."""
    said: set[str] = set()

    def ready() -> bool:
        try:
            answer = httpx.get(f"{web}/readyz", timeout=2)
        except httpx.HTTPError:
            phases = ["the worker to start (its topics checked or created, then faust and its web server)"]
        else:
            if answer.status_code == 200:
                return True
            phases = [_WAITING_FOR.get(problem, problem) for problem in answer.json().get("problems", [])]
        for phase in phases:
            if phase not in said:
                said.add(phase)
                say(f"waiting for {phase}")
        return False

    return ready


def _run_names() -> dict[str, str]:
    """An app id and topics of this run's own, for a Kafka that may also serve production."""
    import secrets

    run = f"fpi-dev-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return {"FPI_APP_ID": run, "FPI_SOURCE_TOPIC": f"{run}.events", "FPI_REPLAY_TOPIC": f"{run}.replay",
            "FPI_BY_PERSON_TOPIC": f"{run}.by-person", "FPI_REQUESTS_TOPIC": f"{run}.requests",
            "FPI_DEAD_LETTER_TOPIC": f"{run}.dead-letter"}


async def _reach(settings: Any) -> None:
    """Raises ``BrokerUnavailable`` when the configured Kafka does not answer."""
    from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

    from streams.brokers import client_options, start_client

    admin = AIOKafkaAdminClient(**client_options(settings))
    await start_client(admin, settings.kafka_bootstrap, timeout=30)
    await admin.close()


@click.command()
@click.option("--sample", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSON lines of Freshpaint events to produce (default: the bundled sample).")
@click.option("--timeout", type=float, default=180.0, show_default=True,
              help="Seconds to wait for the worker to start and to handle the sample.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".dev-run"),
              show_default=True, help="Where logs and the local broker's data go.")
@click.option("--keep-running", is_flag=True, help="After the summary, keep everything up until Ctrl-C.")
def dev(sample: Path | None, timeout: float, run_dir: Path, keep_running: bool) -> None:
    """Run the processor locally on embedded defaults and show what reaches Iterable.

    \b
    Starts, unless configured otherwise:
      a Kafka broker (else FPI_KAFKA_BOOTSTRAP is used, with an app id and topics of this run's own),
      the Iterable emulator (else FPI_ITERABLE_API_KEY / FPI_ITERABLE_REGION are used),
      a worker process,
    then produces the sample, waits, prints a summary and stops what it started.
    """
    from rich.console import Console

    console = Console()

    def say(text: str) -> None:
        console.print(f"[dim]>[/dim] {text}")

    events: Traversable = sample or DEFAULT_SAMPLE
    if not events.is_file():
        raise click.ClickException(f"no sample file at {events}; pass --sample FILE")
    run_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops everything as Ctrl-C does
    try:
        with contextlib.ExitStack() as stack:
            _run(stack, console, say, events, timeout, run_dir, keep_running)
    except KeyboardInterrupt:
        console.print("interrupted: everything started here has been stopped")
        sys.exit(130)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _run(stack: contextlib.ExitStack, console: Any, say: Callable[[str], None], sample: Traversable, timeout: float,
         run_dir: Path, keep_running: bool) -> None:
    from streams.codecs import load_schemas
    from streams.emulator import EmulatorConfig, EmulatorServer
    from streams.explain import explain_lines
    from streams.model import QUIET_DROPS
    from streams.settings import load_settings
    from streams.wiring import build_mapping_config

    settings = load_settings()
    load_schemas()
    mapping_config = build_mapping_config(settings)  # a bad transformations file fails here, early
    env = dict(os.environ)
    if "FPI_KAFKA_BOOTSTRAP" in os.environ:
        bootstrap = settings.kafka_bootstrap
        asyncio.run(_reach(settings))
        names = _run_names()
        env.update(names)
        settings = settings.model_copy(update={name.removeprefix("FPI_").lower(): value
                                               for name, value in names.items()})
        say(f"using the configured Kafka at {bootstrap}, with this run's own app id and topics "
            f"{names['FPI_APP_ID']}.* (never the production names; they stay on the cluster afterwards)")
    else:
        bootstrap = stack.enter_context(_local_broker(run_dir, say))
    emulator: EmulatorServer | None = None
    if settings.iterable_api_key is None:
        emulator = stack.enter_context(EmulatorServer(EmulatorConfig(api_keys=(LOCAL_KEY,),
                                                                     project_type=settings.mapping_config().project_type)))
        say(f"Iterable emulator on {emulator.url} ({settings.mapping_config().project_type.value}-based project)")
        env.update(FPI_ITERABLE_BASE_URL=emulator.url, FPI_ITERABLE_API_KEY=LOCAL_KEY)
    else:
        say(f"sending to the real Iterable at {settings.iterable_url}")
    web_port = free_port()
    env.update(FPI_KAFKA_BOOTSTRAP=bootstrap, FPI_WEB_PORT=str(web_port), FPI_WEB_BIND="127.0.0.1",
               FPI_DATA_DIR=str(run_dir / "data"))
    env.setdefault("FPI_SEND_LINGER_SECONDS", "0.1")
    log_path = run_dir / "worker.log"
    proc = stack.enter_context(_worker(env, log_path, say))
    web = f"http://127.0.0.1:{web_port}"
    _wait(_readiness(web, say), timeout, "the worker to be ready", proc, log_path)
    say("worker ready: partitions assigned, tables recovered")

    lines = sample.read_text(encoding="utf-8").splitlines()
    expected = list(explain_lines(lines, mapping_config))
    valid = [record for record in expected if record["decision"] != "error"]
    want_requests = sum(len(record["requests"]) for record in valid)
    want_dead = sum(1 for record in valid if record["decision"] == "drop" and record["reason"] not in QUIET_DROPS)

    report = asyncio.run(_produce(lines, settings.model_copy(update={"kafka_bootstrap": bootstrap})))
    say(f"produced {report.sent} events to {settings.source_topic}; "
        f"{len(report.bad)} lines of the sample are not events and were refused")
    say(f"waiting for the worker to handle them ({want_requests} Iterable requests, {want_dead} dead letters "
        "expected)")

    def handled() -> bool:
        samples = metric_samples(httpx.get(f"{web}/metrics", timeout=5).text)
        seen = sum(metric_by(samples, "fpi_events_in_total", "type").values())
        dead = sum(metric_by(samples, "fpi_dead_letters_total", "reason").values())
        sent = sum(metric_by(samples, "fpi_iterable_batch_items_count", "endpoint").values())
        return seen >= report.sent and dead >= want_dead and (sent > 0 or want_requests == 0) and (
            emulator is None or _emulator_items(emulator) >= want_requests)

    _wait(handled, timeout, "the sample to be handled", proc, log_path)
    metrics_text = httpx.get(f"{web}/metrics", timeout=5).text
    _summary(console, emulator, metrics_text, report)
    if keep_running:
        say("everything keeps running; Ctrl-C stops it")
        while proc.poll() is None:
            time.sleep(1)


async def _produce(lines: list[str], settings: Any) -> Any:
    from streams.brokers import client_options
    from streams.commands.produce import produce_lines

    return await produce_lines(lines, bootstrap=settings.kafka_bootstrap, topic=settings.source_topic,
                               fmt=settings.avro_format, kafka_options=client_options(settings))


def _emulator_items(emulator: Any) -> int:
    counters = emulator.state.project.counters
    return int(counters.unique_event_ids + counters.unique_purchase_ids + counters.user_updates)


def _summary(console: Any, emulator: Any, metrics_text: str, report: Any) -> None:
    from rich.table import Table

    samples = metric_samples(metrics_text)

    if emulator is not None:
        project = emulator.state.project
        users = Table(title="What Iterable received (emulator)", title_justify="left")
        for column in ("user", "email", "profile fields", "events", "purchases"):
            users.add_column(column)
        for user in project.users:
            purchases = [p for p in project.purchases.values() if _owned_by(p, user)]
            users.add_row(user.user_id or "-", _mask(user.email), str(len(user.data_fields)),
                          str(len(user.event_ids)), str(len(purchases)))
        console.print(users)
        console.print(f"events stored: {len(project.events)} (duplicate ids received: "
                      f"{project.counters.duplicate_event_ids}), purchases stored: {len(project.purchases)}")
    calls = Table(title="Iterable calls", title_justify="left")
    calls.add_column("endpoint")
    calls.add_column("calls")
    calls.add_column("items")
    items = metric_by(samples, "fpi_iterable_batch_items_sum", "endpoint")
    http_calls = metric_by(samples, "fpi_iterable_http_requests_total", "endpoint")
    for endpoint, count in sorted(http_calls.items()):
        calls.add_row(endpoint, str(count), str(items.get(endpoint, "-")))
    console.print(calls)
    drops = Table(title="Not sent, and why", title_justify="left")
    drops.add_column("reason")
    drops.add_column("count")
    drops.add_column("where it went")
    dead = metric_by(samples, "fpi_dead_letters_total", "reason")
    for reason, count in sorted(metric_by(samples, "fpi_events_dropped_total", "reason").items()):
        drops.add_row(reason, str(count), "dead-letter topic" if reason in dead else "counted only")
    for reason, count in sorted(dead.items()):
        if reason not in metric_by(samples, "fpi_events_dropped_total", "reason"):
            drops.add_row(reason, str(count), "dead-letter topic")
    for bad in report.bad:
        drops.add_row(f"not an event (line {bad.line_number})", "1", f"refused by produce: {bad.reason}")
    console.print(drops)


def _owned_by(record: Any, user: Any) -> bool:
    email, user_id = user.email, user.user_id
    return bool((email and record.get("email") == email) or (user_id and record.get("userId") == user_id))
