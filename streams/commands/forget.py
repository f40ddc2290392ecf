"""``freshpaint-iterable forget`` / ``unforget``: the right to be forgotten (GDPR).

``forget`` does two things (``streams.forgetting``, shared with the deletion topic, ``FPI_DELETION_TOPIC``), in
this order, each idempotent (run it again after a failure):

1. Iterable: ``POST /api/users/forget`` for each identifier given, with the configured key. Iterable
   deletes the user and answers 409 ``ForgottenUserError`` to their later data; the sender turns that
   into a ``forgotten`` dead letter without the request (no email in it), never a retry.
2. The worker: one control record per identifier (``streams.stages.Control``) in a frame on the by-person
   topic, on the partition the worker's partitioner gives the person key. Only the worker writes its tables:
   the apply agent that owns the person's partition deletes their ``identities`` entry (a tombstone in
   the changelog, so compaction removes their email) and sets a marker keyed by a SHA-256 of the person key;
   from then on their events are dropped ``forgotten`` (counted, not dead-lettered). A faust table's
   changelog written from outside would not be seen by the running worker. The by-person topic rather than
   the replay topic: the apply stage is the one that keeps person state, the records reach it in order with
   the person's events, and ``dead-letters redrive`` writes frames to an internal topic the same way.
   The same record also goes to every partition of the by-device topic: the resolve agent of each deletes
   the ``aliases`` links to the person it indexed there (tombstones) and stores no new one until ``unforget``
   (``AliasTable.forget``). Not with ``FPI_SOURCE_KEYED_BY_DEVICE``: that worker has no by-device topic.

``unforget`` calls ``users/unforget`` and clears the markers. What is not removed (links stored before the
index existed or beyond its bound, held events of devices not linked yet, the internal and dead-letter topics
until their retention): README, "The right to be forgotten".
"""

from __future__ import annotations

import asyncio

import click

from streams.forgetting import ForgetReport, forget_person, person_keys
from streams.settings import load_settings
from streams.stages import Control

__all__ = ["forget", "unforget"]


def _run(email: str | None, user_id: str | None, control: Control) -> None:
    if not person_keys(email, user_id):
        raise click.UsageError("give --email, --user-id, or both")
    settings = load_settings()
    report: ForgetReport = asyncio.run(forget_person(settings, email, user_id, control))
    done = "forgotten" if control is Control.FORGET else "unforgotten"
    where = f"every project of {settings.projects_file}" if settings.projects_file else settings.iterable_url
    click.echo(f"Iterable: {done} ({where})")
    for marker, partition in report.written:
        click.echo(f"worker: {control.value} record for {marker} on {settings.by_person_topic}[{partition}]"
                   f" and {report.by_device} partitions of {settings.app_id}-by-device")
    if settings.source_keyed_by_device:
        click.echo("worker: FPI_SOURCE_KEYED_BY_DEVICE is set: the person's aliases links are not deleted")


_EMAIL = click.option("--email", help="The person's email (their person key when they have no user id).")
_USER_ID = click.option("--user-id", "user_id", help="The person's user id (their person key when they have one).")


@click.command()
@_EMAIL
@_USER_ID
def forget(email: str | None, user_id: str | None) -> None:
    """Forget a person (GDPR): Iterable's users/forget, then the worker deletes their identity and drops
    their events (reason forgotten) until `unforget`.

    Give every identifier the person has (--email and --user-id): each is forgotten in Iterable, and the
    worker drops events that carry either.
    """
    _run(email, user_id, Control.FORGET)


@click.command()
@_EMAIL
@_USER_ID
def unforget(email: str | None, user_id: str | None) -> None:
    """Undo `forget`: Iterable's users/unforget, and the worker sends the person's new events again
    (what was deleted stays deleted)."""
    _run(email, user_id, Control.UNFORGET)
