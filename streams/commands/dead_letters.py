"""``freshpaint-iterable dead-letters list|show|redrive|purge``: inspect, re-drive and purge the dead-letter topic.

The dead-letter topic (``FPI_DEAD_LETTER_TOPIC``) is read from its start up to its end offsets
when the command starts, with a consumer that has no consumer group (``streams.commands.replay``):
nothing is committed, so every run sees every record. A record is named by its position in the
dead-letter topic, ``partition:offset``.

Re-drive sends a record back to where it can succeed now that its cause is fixed:

* a failed Iterable request (``request`` set) -> the requests topic, keyed by its person key, so
  the sender tries it again;
* an event that failed at mapping (``event``) -> the replay topic, re-encoded in the source wire
  format, so it goes through the whole pipeline again;
* a record that did not decode (``original_bytes``) -> the replay topic, the bytes unchanged.

Each carries the ``fpi-source`` header of its original source record, so if it fails again its
new dead letter names the same source. The dead-letter topic is append-only: re-driven records
stay there, and re-driving twice is harmless because Iterable ids are deterministic.

Purge (the right to be forgotten): Kafka cannot delete single records of a topic (``DeleteRecords`` only cuts a
partition's start), so ``purge`` copies every record that does not name the person to a new topic (same
partition, key, value, headers and timestamp) and the operator switches the worker to it and deletes the old one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import click

from streams.codecs import load_schemas
from streams.errors import DecodeError
from streams.model import DeadLetter, Event
from streams.replay import REPLAY_SOURCE_HEADER, parse_time
from streams.settings import Settings, load_settings
from streams.topics import DEAD_LETTER_RETENTION_MS

__all__ = [
    "RedriveReport",
    "StoredLetter",
    "dead_letters",
    "letter_json",
    "letter_row",
    "mask_key",
    "names_other_project",
    "names_person",
    "purge_person",
    "read_dead_letters",
    "redrive_letters",
    "redrive_target",
    "selected",
]

LIST_LIMIT = 100
"""Rows ``list`` prints when ``--limit`` is not given (the counts always cover every match)."""

UNREADABLE = "(unreadable)"


def _settings() -> Settings:
    """The settings, refused (``ConfigError``) when they or the schemas cannot be used."""
    settings = load_settings()
    load_schemas()
    return settings


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """One record of the dead-letter topic: where it is, its key, and the decoded letter (or why
    it did not decode)."""

    partition: int
    offset: int
    key: bytes | None
    letter: DeadLetter | None
    error: str | None = None

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"


def mask_key(key: bytes | None) -> str:
    """A key shown without its content (person keys may be emails): length and a hash prefix, so
    two records of the same person can still be matched."""
    if key is None:
        return "null"
    return f"<{len(key)} bytes sha256:{hashlib.sha256(key).hexdigest()[:12]}>"


def _kind(letter: DeadLetter) -> str:
    if letter.request is not None:
        return letter.request.endpoint.value
    if letter.event is not None:
        return letter.event.type.value
    return "undecoded"


def _message_id(letter: DeadLetter) -> str | None:
    if letter.request is not None:
        return letter.request.source_event_id
    if letter.event is not None:
        return letter.event.message_id
    return None


def letter_row(stored: StoredLetter) -> dict[str, str]:
    """The ``list`` row of a record: no detail, body, key or identifier, so no emails."""
    letter = stored.letter
    if letter is None:
        return {
            "position": stored.position,
            "reason": UNREADABLE,
            "failed_at": "",
            "source": "",
            "kind": "",
            "message_id": "",
        }
    source = (
        f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
        if letter.source_topic is not None
        else ""
    )
    return {
        "position": stored.position,
        "reason": letter.reason,
        "failed_at": letter.failed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source,
        "kind": _kind(letter),
        "message_id": _message_id(letter) or "",
    }


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _event_json(event: Event) -> dict[str, Any]:
    return {
        "type": event.type.value,
        "message_id": event.message_id,
        "timestamp": _time(event.timestamp),
        "anonymous_id": event.anonymous_id,
        "user_id": event.user_id,
        "email": event.email,
        "event_name": event.event_name,
        "previous_id": event.previous_id,
        "properties": dict(event.properties),
        "traits": dict(event.traits),
        "context": dict(event.context),
        "page": None
        if event.page is None
        else {name: getattr(event.page, name) for name in ("url", "path", "title", "referrer", "search")},
    }


def letter_json(stored: StoredLetter) -> dict[str, Any]:
    """Everything in one record, for ``show``. The Kafka key and the request's person key are
    masked; the event and request body are shown in full (they may hold emails)."""
    import orjson

    out: dict[str, Any] = {"position": stored.position, "key": mask_key(stored.key)}
    letter = stored.letter
    if letter is None:
        out["error"] = stored.error
        return out
    response: Any = letter.iterable_response
    if response is not None:
        with contextlib.suppress(orjson.JSONDecodeError):
            response = orjson.loads(response)
    request = letter.request
    out.update(
        {
            "reason": letter.reason,
            "detail": letter.detail,
            "failed_at": _time(letter.failed_at),
            "source": {
                "topic": letter.source_topic,
                "partition": letter.source_partition,
                "offset": letter.source_offset,
            },
            "iterable": {
                "status": letter.iterable_status,
                "code": letter.iterable_code,
                "response": response,
            },
            "event": None if letter.event is None else _event_json(letter.event),
            "request": None
            if request is None
            else {
                "endpoint": request.endpoint.value,
                "body": dict(request.body),
                "person_key": mask_key(request.person_key.encode()),
                "source_event_id": request.source_event_id,
                "attempt": request.attempt,
                "first_seen_at": _time(request.first_seen_at),
            },
            "original_bytes_base64": None
            if letter.original_bytes is None
            else base64.b64encode(letter.original_bytes).decode(),
        }
    )
    return out


def selected(
    letters: Iterable[StoredLetter],
    *,
    reasons: frozenset[str] = frozenset(),
    since: datetime | None = None,
    positions: frozenset[str] = frozenset(),
) -> Iterable[StoredLetter]:
    """The records matching every given criterion: reason in ``reasons``, failed at or after
    ``since``, position in ``positions``. Unreadable records have no reason or time: they match
    when neither ``reasons`` nor ``since`` is given."""
    for stored in letters:
        if positions and stored.position not in positions:
            continue
        letter = stored.letter
        if letter is None:
            if not reasons and since is None:
                yield stored
            continue
        if reasons and letter.reason not in reasons:
            continue
        if since is not None and letter.failed_at < since:
            continue
        yield stored


def redrive_target(stored: StoredLetter, settings: Settings,
                   project: str = "") -> tuple[str, bytes | None, bytes] | None:
    """``(topic, key, value)`` a record is re-driven as, or ``None`` when it holds nothing to send.

    ``project``: the project (``FPI_PROJECTS_FILE``) a failed request goes to; a request letter does not
    record it (the dead-letter format is published). Raises ``InvalidEvent`` when a stored event cannot be
    re-encoded.
    """
    from streams.codecs import FrameItem, encode_event, encode_frame, encode_request

    letter = stored.letter
    if letter is None:
        return None
    if letter.request is not None:
        # The requests topic carries frames (streams.app); a re-driven request is a frame of one.
        person = letter.request.person_key.encode()
        source = (letter.source_topic, letter.source_partition, letter.source_offset)
        request = dataclasses.replace(letter.request, project=project) if project else letter.request
        frame = encode_frame([FrameItem(person, encode_request(request), source)])
        return settings.requests_topic, person, frame
    if letter.event is not None:
        event = letter.event
        # The key `produce` gives a source record: device id, else user id (the first stage re-keys).
        key = event.anonymous_id or event.user_id
        return (
            settings.replay_topic,
            key.encode() if key else None,
            encode_event(event, settings.avro_format),
        )
    if letter.original_bytes is not None:
        return settings.replay_topic, stored.key, letter.original_bytes
    return None


def names_other_project(stored: StoredLetter, project: str) -> bool:
    """Whether ``stored`` is a request letter the sender wrote for another project than ``project`` (its detail
    starts ``project '<name>':``, as ``ProjectSenders`` writes it)."""
    letter = stored.letter
    if letter is None or letter.request is None or not letter.detail.startswith("project '"):
        return False
    return not letter.detail.startswith(f"project {project!r}:")


async def read_dead_letters(settings: Settings, topic: str | None = None) -> AsyncIterator[StoredLetter]:
    """Every record of the dead-letter topic up to its end offsets now, decoded."""
    from streams.brokers import client_options
    from streams.codecs import decode_dead_letter
    from streams.commands._kafka_io import read_ranges, whole_topic
    from streams.errors import StreamsError

    topic = topic or settings.dead_letter_topic
    options = client_options(settings)
    ranges = await whole_topic(options, topic)
    async for message in read_ranges(options, topic, ranges):
        try:
            letter: DeadLetter | None = decode_dead_letter(message.value)
            error = None
        except (StreamsError, ValueError, TypeError, EOFError) as exc:
            letter, error = None, f"{type(exc).__name__}: {exc}"
        yield StoredLetter(message.partition, message.offset, message.key, letter, error)


@dataclass(slots=True)
class RedriveReport:
    """What ``redrive`` sent where: positions by destination topic, and what it could not send."""

    sent: dict[str, list[str]] = field(default_factory=dict)
    by_reason: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.sent.values())


async def redrive_letters(settings: Settings, letters: Sequence[StoredLetter], project: str = "") -> RedriveReport:
    """Produce each record to its ``redrive_target`` (failed requests to ``project``) and wait for the broker's
    acks. A record with nothing to send (or an event that no longer encodes) is listed in ``skipped``."""
    from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

    from streams.brokers import client_options, start_client
    from streams.errors import InvalidEvent

    report = RedriveReport()
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **client_options(settings))
    await start_client(producer, settings.kafka_bootstrap)
    pending: list[asyncio.Future[Any]] = []
    try:
        for stored in letters:
            try:
                target = redrive_target(stored, settings, project)
            except InvalidEvent:
                target = None
            if target is None:
                report.skipped.append(stored.position)
                continue
            topic, key, value = target
            letter = stored.letter
            assert letter is not None
            headers = (
                [
                    (
                        REPLAY_SOURCE_HEADER,
                        f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}".encode(),
                    )
                ]
                if letter.source_topic is not None
                else []
            )
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            report.sent.setdefault(topic, []).append(stored.position)
            report.by_reason[letter.reason] += 1
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return report


def names_person(key: bytes | None, value: bytes, letter: DeadLetter | None, email: str | None,
                 user_id: str | None) -> bool:
    """Whether a dead-letter record names the person: the email anywhere in its key or bytes (case-insensitive:
    an address is specific enough); the user id in a decoded letter's event (user id, previous id) or request
    (person key, body ``userId``), or anywhere in the bytes of a record that does not decode."""
    raw = ((key or b"") + b"\0" + value).lower()
    if email and email.strip().lower().encode() in raw:
        return True
    if not user_id:
        return False
    user_id = user_id.strip()
    if letter is None:
        return user_id.lower().encode() in raw
    event, request = letter.event, letter.request
    if event is not None and user_id in (event.user_id, event.previous_id):
        return True
    return request is not None and user_id in (request.person_key, request.body.get("userId"))


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What ``purge_person`` copied and left out (positions in the old topic)."""

    copied: int
    left_out: list[str]
    created: bool


async def purge_person(settings: Settings, to: str, email: str | None, user_id: str | None,
                       source: str | None = None) -> PurgeReport:
    """Copy every record of the dead-letter topic (``source``, else ``FPI_DEAD_LETTER_TOPIC``) up to its end
    now that does not name the person to ``to``, in the same partition, and wait for the broker's acks. ``to`` is
    created like the dead-letter topic (its partitions, retention) when missing; an existing one must be empty."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]

    from streams.brokers import client_options, partitions_of, start_client
    from streams.codecs import decode_dead_letter
    from streams.commands._kafka_io import read_ranges, whole_topic
    from streams.errors import StreamsError
    from streams.topics import TopicSpec, _new_topic

    source = source or settings.dead_letter_topic
    if to == source:
        raise click.UsageError("--to must name a new topic, not the one purged")
    options = client_options(settings)
    ranges = await whole_topic(options, source)
    admin = AIOKafkaAdminClient(**options)
    await start_client(admin, settings.kafka_bootstrap)
    try:
        created = to not in await admin.list_topics()
        if created:
            spec = TopicSpec(to, len(ranges), retention_ms=DEAD_LETTER_RETENTION_MS)
            await admin.create_topics([_new_topic(NewTopic, spec, settings)])
    finally:
        await admin.close()
    if not created:
        if len(await partitions_of(options, to)) != len(ranges):
            raise click.ClickException(f"topic {to!r} exists with another partition count than {source!r}")
        if any(r.size for r in await whole_topic(options, to)):
            raise click.ClickException(f"topic {to!r} exists and is not empty: name a new topic")
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **options)
    await start_client(producer, settings.kafka_bootstrap)
    left_out: list[str] = []
    pending: list[asyncio.Future[Any]] = []
    try:
        async for message in read_ranges(options, source, ranges):
            try:
                letter: DeadLetter | None = decode_dead_letter(message.value)
            except (StreamsError, ValueError, TypeError, EOFError):
                letter = None
            if names_person(message.key, message.value or b"", letter, email, user_id):
                left_out.append(f"{message.partition}:{message.offset}")
                continue
            pending.append(await producer.send(to, message.value, key=message.key, partition=message.partition,
                                               timestamp_ms=message.timestamp, headers=list(message.headers or [])))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return PurgeReport(len(pending), left_out, created)


async def _collect(
    settings: Settings, keep: Callable[[Iterable[StoredLetter]], Iterable[StoredLetter]], limit: int | None
) -> tuple[list[StoredLetter], Counter[str], int]:
    """The first ``limit`` matching records, the count of every match by reason, and the number
    of records read."""
    rows: list[StoredLetter] = []
    counts: Counter[str] = Counter()
    read = 0
    async for stored in read_dead_letters(settings):
        read += 1
        for match in keep([stored]):
            counts[match.letter.reason if match.letter else UNREADABLE] += 1
            if limit is None or len(rows) < limit:
                rows.append(match)
    return rows, counts, read


_SELECT = [
    click.option(
        "--reason",
        "reasons",
        multiple=True,
        help="Only records with this reason (repeat or comma-separate for several).",
    ),
    click.option(
        "--since",
        default=None,
        help="Only records that failed at or after this time (ISO 8601, epoch ms, or 2h / 3d ago).",
    ),
    click.option(
        "--limit",
        type=click.IntRange(min=1),
        default=None,
        help="At most this many records (list: rows shown, default 100; counts cover all).",
    ),
]


def _with_select(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SELECT):
        command = option(command)
    return command


def _criteria(
    reasons: tuple[str, ...], since: str | None, positions: tuple[str, ...] = ()
) -> Callable[[Iterable[StoredLetter]], Iterable[StoredLetter]]:
    names = frozenset(r.strip() for value in reasons for r in value.split(",") if r.strip())
    try:
        since_at = parse_time(since, datetime.now(UTC)) if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    wanted = frozenset(positions)
    return lambda letters: selected(letters, reasons=names, since=since_at, positions=wanted)


@click.group(name="dead-letters")
def dead_letters() -> None:
    """Inspect the dead-letter topic (FPI_DEAD_LETTER_TOPIC) and re-drive records whose cause is fixed.

    \b
    Records are read without a consumer group (nothing committed) and named by their position
    in the dead-letter topic, partition:offset. `list` shows counts by reason and rows without
    any personal data; `show` prints whole records; `redrive` sends records back: failed
    Iterable requests to the requests topic (the sender retries them), events that failed at
    mapping and records that did not decode to the replay topic (the whole pipeline). The topic
    is append-only, so re-driven records stay listed; re-driving twice is harmless (Iterable ids
    are deterministic).
    """


@dead_letters.command(name="list")
@_with_select
def list_(reasons: tuple[str, ...], since: str | None, limit: int | None) -> None:
    """Counts by reason and one row per record: position, reason, time, source topic[partition]@offset,
    event type or Iterable endpoint, message id (a table on a terminal, tab-separated when piped).
    No emails, keys or details are printed."""
    from rich.console import Console
    from rich.table import Table

    settings = _settings()
    rows, counts, read = asyncio.run(_collect(settings, _criteria(reasons, since), limit or LIST_LIMIT))
    console = Console()
    console.print(
        f"{settings.dead_letter_topic}: {read} records, {sum(counts.values())} matching",
        markup=False,
        highlight=False,
    )
    for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        console.print(f"  {reason}: {count}", markup=False, highlight=False)
    columns = ("position", "reason", "failed_at", "source", "kind", "message_id")
    if rows and console.is_terminal:
        table = Table(*(name.replace("_", " ") for name in columns))
        for stored in rows:
            row = letter_row(stored)
            table.add_row(*(row[name] for name in columns))
        console.print(table)
    elif rows:
        # Piped: tab-separated, never truncated, for grep and cut.
        click.echo("\t".join(columns))
        for stored in rows:
            row = letter_row(stored)
            click.echo("\t".join(row[name] for name in columns))
    if counts[UNREADABLE]:
        raise DecodeError(_unreadable(counts[UNREADABLE], read, settings.dead_letter_topic, rows))


def _unreadable(count: int, read: int, topic: str, rows: Sequence[StoredLetter]) -> str:
    first = next((stored for stored in rows if stored.letter is None), None)
    example = f" (at {first.position}: {' '.join((first.error or '').split())[:200]})" if first else ""
    return (f"{count} of {read} records in {topic} could not be decoded as dead letters{example}: check that "
            "FPI_DEAD_LETTER_TOPIC is this processor's dead-letter topic and FPI_AVRO_DIR its schemas")


@dead_letters.command()
@click.argument("position")
def show(position: str) -> None:
    """Print the record at POSITION (partition:offset of the dead-letter topic) as JSON.

    The Kafka key is masked, but the event, request body and Iterable response are printed in
    full: they may contain emails and other personal data, since that is what you asked to see.
    """
    import orjson

    settings = _settings()
    rows, _, _ = asyncio.run(_collect(settings, _criteria((), None, (position,)), 1))
    if not rows:
        raise click.ClickException(f"no record at {position} in {settings.dead_letter_topic}")
    click.echo(orjson.dumps(letter_json(rows[0]), option=orjson.OPT_INDENT_2).decode())


@dead_letters.command()
@_with_select
@click.argument("positions", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Re-drive every record (no other selection needed).")
@click.option("--project", default="", help="With FPI_PROJECTS_FILE: the project failed requests go to (a letter "
              "does not record it); letters that name another project in their detail are left out.")
def redrive(
    reasons: tuple[str, ...],
    since: str | None,
    limit: int | None,
    positions: tuple[str, ...],
    everything: bool,
    project: str,
) -> None:
    """Re-drive the selected records (by --reason, --since, positions partition:offset, or --all).

    Failed Iterable requests go to the requests topic (retried by the sender); events that failed
    at mapping and undecoded records go to the replay topic (the whole pipeline). Prints what was
    re-driven, by destination and reason, with positions.
    """
    if not (reasons or since or positions or everything):
        raise click.UsageError("select records with --reason, --since, positions, or --all")
    settings = _settings()

    async def run() -> tuple[RedriveReport, Counter[str]]:
        rows, counts, _ = await _collect(settings, _criteria(reasons, since, positions), limit)
        if project:
            rows = [row for row in rows if not names_other_project(row, project)]
        return await redrive_letters(settings, rows, project), counts

    report, counts = asyncio.run(run())
    click.echo(
        f"re-drove {report.total} of {sum(counts.values())} matching records "
        f"from {settings.dead_letter_topic}"
    )
    for reason, count in sorted(report.by_reason.items()):
        click.echo(f"  reason {reason}: {count}")
    for topic, sent in sorted(report.sent.items()):
        click.echo(f"  -> {topic}: {len(sent)} ({', '.join(sent[:50])}{', ...' if len(sent) > 50 else ''})")
    if report.skipped:
        click.echo(f"  skipped (nothing to re-drive): {', '.join(report.skipped)}")


@dead_letters.command()
@click.option("--email", help="The person's email: records holding it anywhere are left out.")
@click.option("--user-id", "user_id", help="The person's user id: records whose event or request names it.")
@click.option("--to", "to", required=True, help="The new topic to copy the other records to (created like the "
              "dead-letter topic when missing; an existing one must be empty).")
@click.option("--from", "source", default=None, help="The topic to purge (default FPI_DEAD_LETTER_TOPIC).")
def purge(email: str | None, user_id: str | None, to: str, source: str | None) -> None:
    """Copy every dead letter that does not name the person to a new topic (the right to be forgotten).

    \b
    Kafka cannot delete single records, so the old topic keeps them until you delete it:
      1. stop the worker (records it writes meanwhile would not be copied),
      2. freshpaint-iterable dead-letters purge --email E --user-id U --to NEW,
      3. set FPI_DEAD_LETTER_TOPIC=NEW, start the worker, delete the old topic.
    Until then the old topic's retention bounds how long the person's records stay.
    """
    if not ((email and email.strip()) or (user_id and user_id.strip())):
        raise click.UsageError("give --email, --user-id, or both")
    settings = _settings()
    old = source or settings.dead_letter_topic
    report = asyncio.run(purge_person(settings, to, email, user_id, source))
    click.echo(f"copied {report.copied} records from {old} to {to}{' (created)' if report.created else ''}; "
               f"left out {len(report.left_out)} naming the person"
               + (f" ({', '.join(report.left_out[:50])}{', ...' if len(report.left_out) > 50 else ''})"
                  if report.left_out else ""))
    click.echo(f"next: set FPI_DEAD_LETTER_TOPIC={to}, restart the worker, then delete {old}")
