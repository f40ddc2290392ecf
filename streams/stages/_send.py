"""Stage "send": deliver requests to Iterable in rounds; what Iterable will not take becomes a dead letter."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from streams.codecs import FrameItem, decode_request
from streams.errors import Reason
from streams.iterable import Abandoned, Outcome
from streams.model import IterableRequest

from ._dead_letters import DeadLetterSink
from ._records import InputRecord

__all__ = ["Deliverer", "SendStage"]

Ack = Callable[[Sequence[InputRecord]], Awaitable[None]]


class Deliverer(Protocol):
    """``SenderService.deliver``: an outcome per request, or ``Abandoned`` once ``abandon()`` ended it.

    Deliveries may overlap: a person's requests in a later one wait for that person's in an earlier one,
    so ``deliver`` hands its requests over before its first await (the order of the calls is the order)."""

    async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]: ...


def _never_given_up(frame: Any) -> bool:
    return False


class SendStage:
    """Delivers the requests of a batch of frames, in rounds of at most ``round_items`` requests.

    ``submit`` lets up to ``in_flight`` batches deliver at once, so that one endpoint's budget is not idle
    while another endpoint's calls finish a batch (issue 19); the sender keeps each person's requests in
    order across them. Frames are acked in the order their
    batches came, each only once every request in it has an outcome (at least once). A batch whose requests
    all have their outcomes no longer counts against ``in_flight`` while it waits for an earlier one to be
    acked (at most ``held`` batches are kept in all): a long batch (hundreds of purchases at a rate-limited
    endpoint) would otherwise keep the next batches from starting once the ones after it finished, and the
    endpoints' lanes would run dry before it ends.

    A frame may be given up while its requests wait (an Iterable outage during a rebalance or a
    stop): ``given_up(frame)`` says so, and its delivery is then left to the next owner of its
    partition: ``handle`` returns no frame to ack, and the sender was told to abandon (see
    ``faust_patches.bound_wait_for_acks``).
    """

    def __init__(self, sender: Deliverer, dead_letters: DeadLetterSink, round_items: int,
                 given_up: Callable[[Any], bool] = _never_given_up, in_flight: int = 3,
                 held: int | None = None) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self.held = held if held is not None else 4 * in_flight
        if self.held < in_flight:
            raise ValueError("held must be at least in_flight")
        self.sender = sender
        self.dead_letters = dead_letters
        self.round_items = round_items
        self.given_up = given_up
        self.in_flight = in_flight
        self._running: set[asyncio.Task[None]] = set()
        self._delivering: set[asyncio.Task[None]] = set()
        """Batches of ``_running`` whose requests do not all have an outcome yet."""
        self._progress = asyncio.Event()
        """Set when a batch finished delivering or ended."""
        self._last: asyncio.Task[None] | None = None
        self._handed: asyncio.Event | None = None
        """Set once the last submitted batch handed all its requests to the sender."""
        self._failed = False

    async def handle(self, batch: Sequence[InputRecord], *, turn: asyncio.Event | None = None,
                     handed: asyncio.Event | None = None) -> list[InputRecord]:
        """The frames to ack: those of ``batch`` not given up before it started, once every request in
        them has an outcome; none when they were given up (or the delivery abandoned) meanwhile.

        With ``turn``, no request goes to the sender before it is set; ``handed`` is set once the last
        round went to the sender (or none will): batches overlap, but the sender gets their requests in
        the order of the batches, which is what keeps each person's order (``Sender.deliver``)."""
        try:
            frames = [frame for frame in batch if not self.given_up(frame)]
            items = [pair for frame in frames
                     for pair in await self.dead_letters.frame_items(frame, decode_request)]
            if turn is not None:
                await turn.wait()
            for start in range(0, len(items), self.round_items):
                if any(self.given_up(frame) for frame in frames):
                    return []
                last = start + self.round_items >= len(items)
                try:
                    await self._deliver_round(items[start:start + self.round_items], handed if last else None)
                except Abandoned:
                    return []
            return frames
        finally:
            if handed is not None:
                handed.set()

    async def submit(self, batch: Sequence[InputRecord], ack: Ack, on_error: Callable[[BaseException], None]) -> None:
        """Start handling ``batch``; return once fewer than ``in_flight`` batches are delivering (and fewer
        than ``held`` wait for their acks).

        ``ack`` gets the frames ``handle`` returned, batch after batch in the order of ``submit``; a bug
        in a batch goes to ``on_error`` (the worker stops) and nothing after it is acked."""
        handed = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._handle_then_ack(batch, self._last, self._handed, handed, ack, on_error))
        self._last, self._handed = task, handed
        self._running.add(task)
        self._delivering.add(task)
        task.add_done_callback(self._ended)
        while len(self._delivering) >= self.in_flight or len(self._running) >= self.held:
            self._progress.clear()
            await self._progress.wait()

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._delivered(task)

    def _delivered(self, task: asyncio.Task[None] | None) -> None:
        if task is not None:
            self._delivering.discard(task)
        self._progress.set()

    async def cancel(self) -> None:
        """End every batch still running, unacked (the agent stops: their records are delivered again)."""
        running = set(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._last = self._handed = None

    async def _handle_then_ack(self, batch: Sequence[InputRecord], previous: asyncio.Task[None] | None,
                               turn: asyncio.Event | None, handed: asyncio.Event, ack: Ack,
                               on_error: Callable[[BaseException], None]) -> None:
        try:
            try:
                frames = await self.handle(batch, turn=turn, handed=handed)
            finally:
                self._delivered(asyncio.current_task())
            if previous is not None:
                await asyncio.wait({previous})
            if self._failed or (previous is not None and previous.cancelled()):
                return  # an earlier batch was not acked: neither is this one (acks stay in order)
            await ack(frames)
        except Exception as exc:
            self._failed = True
            on_error(exc)

    async def _deliver_round(self, items: Sequence[tuple[FrameItem, IterableRequest]],
                             handed: asyncio.Event | None = None) -> None:
        requests = [request for _, request in items]
        if handed is not None:
            # Wakes the next batch only after this coroutine went on into deliver(), which hands the
            # requests over before its first await.
            handed.set()
        outcomes = await self.sender.deliver(requests)
        now = datetime.now(UTC)
        for (item, _), outcome in zip(items, outcomes, strict=True):
            if not outcome.delivered:
                topic, partition, offset = item.source
                # The key is the person key (maybe an email): a forgotten person's letter has none.
                key = None if outcome.reason == Reason.FORGOTTEN.value else item.key
                await self.dead_letters(outcome.to_dead_letter(failed_at=now, source_topic=topic,
                                                               source_partition=partition, source_offset=offset),
                                        key)
