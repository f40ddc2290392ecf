"""Delivery to several Iterable projects (a routing file, ``streams.projects``): one ``Sender`` per project.

``ProjectSenders`` has the ``Sender``'s ``deliver(requests) -> list[Outcome]``: it splits a round by each
request's ``project``, hands each part to that project's own ``Sender`` (its own key, rate limiters and
bad-key pause) and delivers the parts concurrently, returning the outcomes in input order.

A round is acked only when all its requests have an outcome, so a project that cannot take its requests
(a rejected key, an outage of its own) would hold the other projects' events back. It may do so for
``stall_seconds``: then, if another project's Iterable accepts its key (a cheap key check), the stalled part
is given up and its requests become dead letters (``bad_api_key`` when the project's sender is paused by a
401, else ``iterable_unavailable``) and the others go on. When no other project answers either (Iterable is
down for all), it keeps waiting: back-pressure, as with one project. While a project given up so stays paused
by its rejected key, its next parts are dead-lettered at once (another project answering), without another
wait. A project never named by the routing file gets ``no_project`` outcomes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from streams.errors import Reason, StreamsError
from streams.iterable.client import IterableClient
from streams.iterable.sender import Abandoned, Outcome, Sender, SenderConfig
from streams.metrics import PROJECT_PAUSED, PROJECT_REQUESTS
from streams.model import DropReason, IterableRequest

__all__ = ["KeyProbe", "ProjectSenders", "key_probe"]

log = logging.getLogger(__name__)

KeyProbe = Callable[[], Awaitable[bool]]
"""Whether a project's Iterable accepts its key now (``IterableClient.check_key`` passing)."""


def key_probe(http: Any, config: SenderConfig) -> KeyProbe:
    """The ``KeyProbe`` of the project ``config`` sends to, over the session ``http``."""
    client = IterableClient(http, config.base_url, config.api_key)

    async def probe() -> bool:
        try:
            await client.check_key()
        except StreamsError:
            return False
        return True

    return probe


class ProjectSenders:
    """One ``Sender`` per project name, behind the ``Sender``'s ``deliver`` / ``abandon`` / ``aclose``."""

    def __init__(self, senders: Mapping[str, Sender], probes: Mapping[str, KeyProbe], *,
                 stall_seconds: float = 60.0, probe_timeout: float = 10.0) -> None:
        self.senders = dict(senders)
        self.probes = dict(probes)
        self.stall_seconds = stall_seconds
        self.probe_timeout = probe_timeout
        self._abandoning = False
        self._given_up: set[str] = set()
        """Projects whose last part was given up: while such a project's sender stays paused by its rejected key,
        its next parts are dead-lettered at once (once another project answers), not after another stall."""
        for name, sender in self.senders.items():
            PROJECT_PAUSED.labels(name).set_function(_paused_of(sender))

    @property
    def paused(self) -> bool:
        """True while every project's sender is paused by a rejected key."""
        return all(sender.paused for sender in self.senders.values())

    @property
    def paused_projects(self) -> list[str]:
        return sorted(name for name, sender in self.senders.items() if sender.paused)

    async def deliver(self, requests: Sequence[IterableRequest]) -> list[Outcome]:
        """One ``Outcome`` per request, in order. Raises ``Abandoned`` when ``abandon()`` ended it."""
        self._abandoning = False
        parts: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            parts.setdefault(request.project, []).append(index)
        outcomes: list[Outcome | None] = [None] * len(requests)
        names = [name for name in parts if name in self.senders]
        results = await asyncio.gather(
            *(self._deliver_part(name, [requests[i] for i in parts[name]]) for name in names),
            return_exceptions=True)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            for index, outcome in zip(parts[name], result, strict=True):
                outcomes[index] = outcome
        for name in parts.keys() - self.senders.keys():
            for index in parts[name]:
                outcomes[index] = Outcome(
                    request=requests[index], delivered=False, reason=DropReason.NO_PROJECT.value,
                    detail=f"project {name!r} is not in the routing file (FPI_PROJECTS_FILE)")
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(requests), "every request gets an outcome"
        _count(done)
        return done

    async def _deliver_part(self, name: str, part: list[IterableRequest]) -> list[Outcome]:
        sender = self.senders[name]
        if name in self._given_up and sender.paused and await self._another_answers(name):
            return self._dead_letters(name, part, paused=True)
        work = asyncio.get_running_loop().create_task(sender.deliver(part))
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=self.stall_seconds)
                if done:
                    outcomes = work.result()
                    self._given_up.discard(name)
                    return outcomes
                if not self._abandoning and await self._another_answers(name):
                    return await self._give_up(name, sender, work, part)
        except asyncio.CancelledError:
            work.cancel()
            raise

    async def _give_up(self, name: str, sender: Sender, work: asyncio.Task[list[Outcome]],
                       part: list[IterableRequest]) -> list[Outcome]:
        paused = sender.paused
        sender.abandon(f"project {name}'s requests go to the dead-letter topic")
        try:
            return await work  # it may have finished meanwhile
        except Abandoned:
            if self._abandoning:
                raise
        self._given_up.add(name)
        return self._dead_letters(name, part, paused=paused)

    def _dead_letters(self, name: str, part: list[IterableRequest], *, paused: bool) -> list[Outcome]:
        reason = Reason.BAD_API_KEY if paused else Reason.ITERABLE_UNAVAILABLE
        why = "rejects its key (401)" if paused else "did not take them"
        log.error("project %s: Iterable %s while another project's answers: %d requests dead-lettered (%s) "
                  "so the other projects' events go on", name, why, len(part), reason.value)
        detail = (f"project {name!r}: Iterable {why} while another project's answered, so they were held no "
                  f"longer than FPI_PROJECT_STALL_SECONDS ({self.stall_seconds:g} s); once the project works, "
                  f"re-send them: freshpaint-iterable dead-letters redrive --project {name}")
        return [Outcome(request=request, delivered=False, reason=reason.value, detail=detail) for request in part]

    async def _another_answers(self, stalled: str) -> bool:
        for name, probe in self.probes.items():
            if name == stalled or self.senders[name].paused:
                continue
            try:
                if await asyncio.wait_for(probe(), self.probe_timeout):
                    return True
            except TimeoutError:
                continue
        return False

    def abandon(self) -> int:
        """``Sender.abandon`` of every project: each ``deliver`` in progress raises ``Abandoned``."""
        self._abandoning = True
        return sum(sender.abandon() for sender in self.senders.values())

    async def aclose(self) -> None:
        for name, sender in self.senders.items():
            await sender.aclose()
            PROJECT_PAUSED.remove(name)


def _paused_of(sender: Sender) -> Callable[[], float]:
    return lambda: float(sender.paused)


def _count(outcomes: Sequence[Outcome]) -> None:
    counts: Counter[tuple[str, str]] = Counter(
        (outcome.request.project, "delivered" if outcome.delivered else outcome.reason or "dead_letter")
        for outcome in outcomes)
    for (project, outcome), amount in counts.items():
        PROJECT_REQUESTS.labels(project, outcome).inc(amount)
