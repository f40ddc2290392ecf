"""Stage "send": deliver requests to Iterable in rounds; what Iterable will not take becomes a dead letter."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from streams.codecs import FrameItem, decode_request
from streams.errors import Reason
from streams.iterable import Abandoned, Outcome
from streams.model import IterableRequest

from ._dead_letters import DeadLetterSink
from ._records import InputRecord

__all__ = ["Deliverer", "SendStage"]


class Deliverer(Protocol):
    """``SenderService.deliver``: an outcome per request, or ``Abandoned`` once ``abandon()`` ended it."""

    async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]: ...


def _never_given_up(frame: Any) -> bool:
    return False


class SendStage:
    """Delivers the requests of a batch of frames, in rounds of at most ``round_items`` requests.

    A frame may be given up while its requests wait (an Iterable outage during a rebalance or a
    stop): ``given_up(frame)`` says so, and its delivery is then left to the next owner of its
    partition: ``handle`` returns no frame to ack, and the sender was told to abandon (see
    ``faust_patches.bound_wait_for_acks``).
    """

    def __init__(self, sender: Deliverer, dead_letters: DeadLetterSink, round_items: int,
                 given_up: Callable[[Any], bool] = _never_given_up) -> None:
        self.sender = sender
        self.dead_letters = dead_letters
        self.round_items = round_items
        self.given_up = given_up

    async def handle(self, batch: Sequence[InputRecord]) -> list[InputRecord]:
        """The frames to ack: those of ``batch`` not given up before it started, once every request in
        them has an outcome; none when they were given up (or the delivery abandoned) meanwhile."""
        frames = [frame for frame in batch if not self.given_up(frame)]
        items = [pair for frame in frames for pair in await self.dead_letters.frame_items(frame, decode_request)]
        for start in range(0, len(items), self.round_items):
            if any(self.given_up(frame) for frame in frames):
                return []
            try:
                await self._deliver_round(items[start:start + self.round_items])
            except Abandoned:
                return []
        return frames

    async def _deliver_round(self, items: Sequence[tuple[FrameItem, IterableRequest]]) -> None:
        outcomes = await self.sender.deliver([request for _, request in items])
        now = datetime.now(UTC)
        for (item, _), outcome in zip(items, outcomes, strict=True):
            if not outcome.delivered:
                topic, partition, offset = item.source
                # The key is the person key (maybe an email): a forgotten person's letter has none.
                key = None if outcome.reason == Reason.FORGOTTEN.value else item.key
                await self.dead_letters(outcome.to_dead_letter(failed_at=now, source_topic=topic,
                                                               source_partition=partition, source_offset=offset),
                                        key)
