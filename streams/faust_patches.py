"""Narrow fixes to faust-streaming 0.15.3 internals, installed on each app by ``streams.app``.

Each one patches an attribute of one app's instances (never faust's classes), says what it
works around and how it was seen, and is covered by the integration and reliability tests.
Revisit them when faust-streaming is upgraded (``constraints.txt`` pins it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from time import monotonic
from types import CoroutineType, GeneratorType
from typing import Any

import faust
from faust.streams import _current_event
from faust.utils.tracing import finish_span
from mode.services import ServiceTask, WaitResults

log = logging.getLogger(__name__)


def install(app: faust.App, *, drain_seconds: float, on_give_up: Callable[[], object] | None = None) -> None:
    """Patch ``app``; ``on_give_up`` is called whenever ``bound_wait_for_acks`` gives records up."""
    _keep_buffered_messages_on_redundant_resume(app)
    _rewind_uncommitted_partitions_on_seek(app)
    deliver_inline_while_flowing(app.consumer)
    bound_wait_for_acks(app, app.consumer, drain_seconds, on_give_up)
    flush_the_whole_producer_buffer(app.producer.buffer)
    tables: Any = app.tables  # TableManagerT declares neither recovery nor changelog_queue
    drain_changelogs_in_batches(tables.recovery)
    queue_changelog_records_directly(app, app.consumer)


class UnsentRecords(RuntimeError):
    """Raised by a producer flush that cannot finish: committing now would skip records never produced."""


def flush_the_whole_producer_buffer(buffer: Any) -> None:
    """Make the flush before every offset commit wait for every record handed to the producer.

    Agents hand their output (our frames, and faust's table changelog writes) to faust's
    ``ProducerBuffer``; a background task passes the records one by one to aiokafka. Before it
    commits offsets, faust flushes that buffer and then aiokafka. But the buffer's ``flush`` gives up
    as soon as one record takes more than 0.1 s to pass on (aiokafka's own buffer full, metadata
    for a new partition), and it does not count the record its task is passing on at that moment
    (with records taking 0.15 s each, it returned with none of three produced). The offsets of
    records whose output was still in the buffer could then be committed, and a crash at that point
    would lose the output for good. The workers of the crash test log "producer buffer full" with
    hundreds to thousands of records waiting, so such backlogs do happen.

    Here the flush waits until the buffer is empty and nothing is being passed on. If the buffer
    stops first, it raises instead of returning, so that nothing is committed past the records left.
    """
    send_pending: Callable[[Any], Awaitable[None]] = buffer._send_pending
    passing_on = 0

    async def send_counted(message: Any) -> None:
        nonlocal passing_on
        passing_on += 1
        try:
            await send_pending(message)
        finally:
            passing_on -= 1

    async def flush_all() -> None:
        while buffer.size or passing_on:
            if buffer.should_stop:
                raise UnsentRecords(f"the producer buffer stopped with {buffer.size + passing_on} records "
                                    "not yet produced; no offset is committed past them")
            buffer.message_sent.clear()
            # message_sent is set after each record passed on; the timeout only re-checks should_stop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(buffer.message_sent.wait(), timeout=1.0)

    # _handle_pending looks _send_pending up when the buffer starts, after this runs.
    buffer._send_pending = send_counted
    buffer.flush = flush_all


def bound_wait_for_acks(app: Any, consumer: Any, drain_seconds: float,
                        on_give_up: Callable[[], object] | None = None) -> None:
    """Let a worker stop, or give up its partitions in a rebalance, while Iterable is not answering.

    On stop and when partitions are revoked, faust waits for every record that an agent has started
    on to be acked (``Consumer.wait_empty``), with no time limit. The send agent acks a frame only
    once Iterable has answered for each request in it, and retries for as long as Iterable is down.
    So a SIGTERM during an outage never ended (seen: workers alive 50 minutes later, running
    ``gc.collect()`` every second and growing to 1.8 GB), and a rebalance (say, an autoscaler adding
    workers because the lag grows during the outage) held up the whole group until Iterable was back.

    Here the wait ends ``drain_seconds`` after the stop or the revocation began. The records still
    in flight are then given up: they stay uncommitted, so they are processed again by whoever owns
    their partition next (this worker after a restart, or another one), and Iterable keeps each
    event id once. They are also marked as acked, so that the sender finishing them later cannot
    commit them: by then their partition may be another worker's. And ``on_give_up`` is called,
    for the sender to stop delivering them (``Sender.abandon``): a copy of a person's older identify
    still retrying here once Iterable is back would land after the next owner had delivered that
    and the newer one, and overwrite the profile with the older fields (issue 17).
    """
    wait_empty: Callable[[], Awaitable[None]] = consumer.wait_empty
    stop_deadline: float | None = None

    def give_up(moment: str) -> None:
        unacked = consumer._unacked_messages
        if not unacked:
            return
        log.warning("%s with %d records still in flight after a %g s drain (is Iterable answering?); they are "
                    "not committed, and are processed again by the next owner of their partitions",
                    moment, len(unacked), drain_seconds)
        for message in unacked:
            message.acked = True  # faust's Message.ack() does nothing for a message marked acked
        # faust's wait ends at its next look at this set (within a second). Cancelling the wait would
        # not: it swallows CancelledError while it waits for an ack.
        unacked.clear()
        if on_give_up is not None:
            on_give_up()

    async def wait_empty_within_drain() -> None:
        nonlocal stop_deadline
        loop = asyncio.get_running_loop()
        if app.should_stop:
            # faust waits twice on stop (the app, then the consumer); both share one deadline.
            if stop_deadline is None:
                stop_deadline = loop.time() + drain_seconds
            timer = loop.call_at(stop_deadline, give_up, "stopping")
        else:
            timer = loop.call_later(drain_seconds, give_up, "giving up partitions in a rebalance")
        try:
            await wait_empty()
        finally:
            timer.cancel()

    consumer.wait_empty = wait_empty_within_drain  # patching a faust instance on purpose


def _keep_buffered_messages_on_redundant_resume(app: faust.App) -> None:
    """Work around message loss in table recovery.

    mode's ``FlowControlEvent.resume()`` clears every managed queue, even when flow was never
    suspended. Recovery calls it twice: once to read changelogs, and again after seeking the
    stream partitions to their committed offsets. Messages fetched between that seek and the
    second ``resume()`` are dropped from the stream's queue while the fetch position has moved
    past them, so they are not processed until the next restart (seen on the real broker:
    offsets 14-16 skipped, 17+ processed). Clearing only on a real suspended -> resumed
    transition keeps the intended behaviour (a rebalance suspends, clears, and seeks again).
    """
    flow = app.flow_control
    resume = flow.resume

    def resume_if_suspended() -> None:
        if not flow.is_active():
            resume()

    flow.resume = resume_if_suspended  # type: ignore[method-assign]  # patching a faust instance on purpose


def _rewind_uncommitted_partitions_on_seek(app: faust.App) -> None:
    """Work around records lost at the end of table recovery, without a round trip per partition.

    During recovery aiokafka keeps fetching every assigned partition, the stream partitions
    included, and faust may take those records from aiokafka without handing them to the
    agents. Recovery then seeks the stream partitions "to their committed offsets", which is
    meant to rewind exactly that, but aiokafka's ``seek_to_committed`` does not move a partition
    that has no committed offset (or 0): its position stays past records no agent ever saw,
    and they are skipped for good (seen with 1,000,000 identities: position = highwater,
    nothing read, acked or committed, empty queues, the worker "ready" and idle).

    Here such a stream partition is set to offset 0, locally. If the log no longer starts at 0
    (retention), the broker answers the next fetch with "offset out of range" and aiokafka resets
    the partition to its earliest offset, as ``consumer_auto_offset_reset="earliest"`` means. An
    earlier version awaited ``seek_to_beginning`` per partition: each call waits for a whole fetch
    round (faust's ``fetch_max_wait_ms``, 1.5 s), five never-committed topics (source, replay and
    the internal ones) of 12 partitions passed faust's 90 s request timeout, and the worker never
    became ready. Changelog partitions are left to recovery, which seeks them itself.
    """
    consumer = app.consumer
    thread = consumer._thread  # type: ignore[attr-defined]  # faust's aiokafka consumer thread

    async def seek_committed_or_start(aio: Any) -> Any:
        committed = await aio.seek_to_committed()
        changelogs = app.tables.changelog_topics
        rewound = [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]
        for tp in rewound:
            aio.seek(tp, 0)
        if rewound:
            log.info("Rewound %d stream partitions without a committed offset to their start", len(rewound))
        return committed

    async def seek_to_committed() -> Any:
        return await thread.call_thread(seek_committed_or_start, thread._ensure_consumer())

    consumer.seek_to_committed = seek_to_committed  # type: ignore[attr-defined]  # patching a faust instance


def deliver_inline_while_flowing(consumer: Any) -> None:
    """Hand each fetched record to its streams without four asyncio tasks per record.

    faust's fetcher (``Consumer._drain_messages``) delivers every record with
    ``wait_first(callback(message), suspend_flow.wait())``: the delivery races a rebalance, so
    that a delivery blocked on a full stream queue is abandoned when flow stops. ``wait_first``
    makes that race out of four tasks (delivery, suspend flow, stopped, crashed) and an
    ``asyncio.wait``, per record, although a delivery almost always completes at once. In a
    profile of a faust app that only consumes and acks, this was about a third of its CPU.

    Here the delivery first runs inline, up to its first real wait. If it completes there,
    which is the common case, nothing else is needed; if it must wait (the queue is full), the
    rest of it continues as a task raced against ``suspend_flow`` exactly as faust does. While
    flow is suspended or the consumer is stopping, faust's own path runs unchanged.
    """
    # ``consumer`` is an ``app.consumer``; ConsumerT declares neither the Service methods nor suspend_flow.
    race: Callable[..., Awaitable[WaitResults]] = consumer.wait_first
    suspend_flow: asyncio.Event = consumer.suspend_flow

    async def deliver(*waitables: Any, timeout: float | None = None) -> WaitResults:
        delivery = waitables[0]
        if (len(waitables) != 2 or not asyncio.iscoroutine(delivery) or suspend_flow.is_set()
                or consumer.should_stop):
            return await race(*waitables, timeout=timeout)
        try:
            waiting_on = delivery.send(None)
        except BaseException as ended:  # completed or failed inline: the race will never run
            _discard(waitables[1])
            if isinstance(ended, StopIteration):
                return WaitResults([delivery], [ended.value], False)
            raise
        rest = asyncio.ensure_future(_continue(delivery, waiting_on))
        return await race(rest, waitables[1], timeout=timeout)

    consumer.wait_first = deliver  # patching a faust instance on purpose


async def _continue(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Run a coroutine that was stepped by hand to its end, the way an asyncio task would.

    ``waiting_on`` is what it yielded: a future it waits for, or ``None`` for a bare yield
    (``asyncio.sleep(0)``). Exceptions, cancellation included, are thrown into it at the wait.
    """
    while True:
        try:
            if waiting_on is None:
                await asyncio.sleep(0)
            else:
                # A task clears the flag the future's await set when it takes the future over.
                waiting_on._asyncio_future_blocking = False
                await waiting_on
        except BaseException as error:  # handed to the coroutine, as a task would
            try:
                waiting_on = coroutine.throw(error)
            except StopIteration as completed:
                return completed.value
        else:
            try:
                waiting_on = coroutine.send(None)
            except StopIteration as completed:
                return completed.value


def _discard(waitable: Any) -> None:
    """Close a coroutine that will never run (so it is not reported as never awaited)."""
    if isinstance(waitable, CoroutineType | GeneratorType):  # concrete types: no ABC check per record
        waitable.close()


def make_current(event: Any) -> None:
    """Make ``event`` faust's current event while a batch is handled one record at a time.

    Table writes find their changelog partition (and their RocksDB shard) through faust's current
    event; inside a batch that would be the last record taken, so the stages set it for each record
    (``streams.stages.EnterRecord``). ``_current_event`` is faust's own context variable.
    """
    _current_event.set(weakref.ref(event))


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset faust last committed for ``tp`` (``None``: never); faust has no public accessor."""
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


def processed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset after the last record of ``tp`` the agents acknowledged, committed or not yet (``None``:
    none since this worker got ``tp``). Our agents acknowledge in order, so the last acknowledgement is the
    highest; faust keeps them in a private list until its next commit."""
    acked: list[int] | None = consumer._acked.get(tp)
    committed = committed_offset(consumer, tp)
    if acked:
        return max(max(acked) + 1, committed or 0)
    return committed


def bound_stream_buffer(topic: Any, maxsize: int) -> None:
    """Bound the queue of every stream of ``topic`` to ``maxsize`` messages.

    Set on the topic, which every stream of it copies: ``app.topic()`` accepts ``maxsize`` but drops it.
    """
    topic.maxsize = maxsize


def was_given_up(record: Any) -> bool:
    """Whether ``bound_wait_for_acks`` gave ``record`` up (it marks given-up records acked); the agents
    ack a record only once handled, so an acked record not yet handled was given up."""
    given_up: bool = record.message.acked
    return given_up


def queue_changelog_records_directly(app: Any, consumer: Any) -> None:
    """Hand each fetched record of a table's changelog straight to faust's changelog queue.

    faust's fetcher passes every record to the conductor's ``on_message``, which takes a lock to find
    the record's handler, waits for flow control and for the producer buffer to ebb, decodes key and
    value through the channel's schema and codec registry, and puts the event into the channel's
    queue. For our tables (bytes keys and values, the raw codec: decoding returns the bytes as they
    are) that came to about a third of a worker's CPU while it recovered 1,000,000 identities.

    Here a record of a changelog topic that faust delivers to the changelog queue alone, through a
    raw bytes channel, becomes its event directly (``conf.Event`` with the record's key, value and
    headers, what faust's decode creates) and goes into the queue, as long as flow is active and the
    queue is below faust's "high pressure" mark. Any other record, and any record while flow is
    suspended or the queue is filling up, takes faust's own path, in the order fetched (the fetcher
    waits for each delivery).
    """
    on_message: Callable[[Any], Awaitable[None]] = consumer.callback
    tables, flow, conductor, event_type = app.tables, app.flow_control, app.topics, app.conf.Event
    plain: dict[str, bool] = {}

    def is_plain_changelog(topic: str) -> bool:
        channels = conductor._topic_name_index.get(topic, ())
        if topic not in tables._changelogs or len(channels) != 1:
            return False
        [channel] = channels
        schema = channel.schema  # what faust's decode reads
        return bool(channel.queue is tables.changelog_queue and schema.key_type is bytes
                    and schema.value_type is bytes and schema.key_serializer == "raw"
                    and schema.value_serializer == "raw")

    async def deliver(message: Any) -> None:
        topic = message.topic
        direct = plain.get(topic)
        if direct is None:
            direct = plain[topic] = is_plain_changelog(topic)
        if direct and flow.is_active():
            queue = tables.changelog_queue
            if queue.qsize() < queue.pressure_high_size:
                queue.put_nowait(event_type(app, message.key, message.value, message.headers, message))
                return
        await on_message(message)

    consumer.callback = deliver  # read by faust's fetcher when it starts; patching a faust instance


RECOVERY_TAKE = 10_000
"""Changelog records the batched recovery loop takes from faust's changelog queue per wake-up, at most."""


def drain_changelogs_in_batches(recovery: Any) -> None:
    """Replay changelog records in batches: recovery took 160 s for 1,000,000 identities.

    faust's recovery loop (``Recovery._slurp_changelogs``) takes the changelog records one at a
    time from the queue faust's fetcher fills: ``asyncio.wait_for(queue.get(), 5.0)`` (a task, a
    future and a timer per record), two debug log lines whose f-strings are built for every record,
    and after each record ``need_recovery()``, which builds a Counter over every partition. The
    queue holds ``stream_buffer_maxsize`` records, so once it is full the fetcher and the loop take
    turns one record at a time, and the fetcher pays faust's four-task ``wait_first`` race on each.

    Here the loop waits for the first record as faust does, then takes every record already
    queued (up to ``RECOVERY_TAKE``) and handles each exactly as faust's loop does (the offset
    check, the table's buffer and ``apply_changelog_batch`` every ``recovery_buffer_size``
    records, ``on_changelog_event``); the end-of-recovery and standby checks run once per take.
    One difference: faust applies a record of a partition that is neither active nor standby
    (revoked while its records were queued) to the table of the record before it; here it is
    dropped.
    """
    # The instance attribute shadows the class's ServiceTask: mode looks tasks up with getattr(self, name).
    recovery._slurp_changelogs = ServiceTask(_slurp_changelogs_in_batches)


async def _slurp_changelogs_in_batches(recovery: Any) -> None:  # faust's loop, batched
    queue = recovery.tables.changelog_queue
    timeout_count = 0
    while not recovery.should_stop:
        try:
            recovery.signal_recovery_end.clear()
            try:
                first = await asyncio.wait_for(queue.get(), timeout=5.0)
            except TimeoutError:
                timeout_count += 1
                if recovery.should_stop:
                    return
                await _maybe_signal_recovery_end(recovery, timeout_count)
                continue
            timeout_count = 0
            events = [first]
            with contextlib.suppress(asyncio.QueueEmpty):
                while len(events) < RECOVERY_TAKE:
                    events.append(queue.get_nowait())
            now = monotonic()
            actives = 0
            for event in events:
                try:  # as faust's loop: an error costs the record, not the rest of the take
                    actives += await _buffer_changelog_event(recovery, event, now)
                except Exception as exc:
                    log.warning("Error in recovery %s", exc)
            if actives:
                _note_processing_time(recovery, actives)
            await _maybe_signal_recovery_end(recovery)
            standby_ready = recovery._standbys_span is None and recovery.tables.standbys_ready
            if not standby_ready and not recovery.standby_remaining_total():
                if recovery._standbys_span:
                    finish_span(recovery._standbys_span)
                    recovery._standbys_span = None
                recovery.tables.on_standbys_ready()
        except Exception as exc:
            log.warning("Error in recovery %s", exc)  # faust's loop logs and goes on the same way


async def _maybe_signal_recovery_end(recovery: Any, timeout_count: int = 0) -> None:
    if timeout_count > 1 and recovery.app.in_transaction:
        await _detect_aborted_transactions(recovery)
    if recovery.in_recovery and not recovery.need_recovery():
        recovery.flush_buffers()  # apply anything still in the buffers
        recovery._set_recovery_ended()
        if recovery._actives_span is not None:
            recovery._actives_span.set_tag("Actives-Ready", True)
        recovery.signal_recovery_end.set()


async def _buffer_changelog_event(recovery: Any, event: Any, now: float) -> int:
    """Buffer one changelog record as faust's loop does, applying the table's buffer when it is full.

    Returns 1 for a record of an active partition, else 0 (faust's estimate of the time left counts those)."""
    message = event.message
    tp, offset = message.tp, message.offset
    buffer_sizes = recovery.buffer_sizes
    bufsize = buffer_sizes.get(tp)
    active = 0
    if tp in recovery.active_tps:
        table = recovery.tp_to_table[tp]
        offsets = recovery.active_offsets
        if bufsize is None:
            bufsize = buffer_sizes[tp] = table.recovery_buffer_size
        recovery._active_events_received_at[tp] = now
        active = 1
    elif tp in recovery.standby_tps:
        table = recovery.tp_to_table[tp]
        offsets = recovery.standby_offsets
        if bufsize is None:
            bufsize = buffer_sizes[tp] = table.standby_buffer_size
            recovery._standby_events_received_at[tp] = now
    else:
        log.warning("Recovery dropped a changelog record of %s (offset %s): the partition is no "
                    "longer assigned", tp, offset)
        return 0
    seen_offset = offsets.get(tp)
    if seen_offset is None or offset > seen_offset:
        offsets[tp] = offset
        buffer = recovery.buffers[table]
        buffer.append(event)
        if table._on_changelog_event:  # what faust's on_changelog_event checks, without a coroutine
            await table.on_changelog_event(event)
        if len(buffer) >= bufsize:
            table.apply_changelog_batch(buffer)
            buffer.clear()
            recovery._last_flush_at = now
    return active


def _note_processing_time(recovery: Any, actives: int) -> None:
    """faust keeps the time between two active records for its estimate of the time remaining."""
    processing_times = recovery._processing_times
    finished, last = monotonic(), getattr(recovery, "_last_active_event_processed_at", None)
    if last is not None:
        samples = recovery.num_samples_required_for_estimate
        processing_times.extend([(finished - last) / actives] * min(actives, samples))
        while len(processing_times) > samples:
            processing_times.popleft()
    recovery._last_active_event_processed_at = finished


async def _detect_aborted_transactions(recovery: Any) -> None:
    """faust's ``detect_aborted_tx``: a partition whose position passed its highwater is recovered."""
    offsets = recovery.active_offsets
    for tp, highwater in recovery.active_highwaters.items():
        if highwater is not None and offsets[tp] is not None and offsets[tp] < highwater:
            position = await recovery.app.consumer.position(tp)
            if position is not None and position >= highwater:
                log.info("Aborted tx until highwater for %s", tp)
                offsets[tp] = highwater
