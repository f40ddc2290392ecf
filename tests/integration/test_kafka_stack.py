"""The stack works on the real broker: aiokafka in, the Faust worker as a separate process, aiokafka out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.codecs import decode_dead_letter, decode_event_internal, decode_frame, encode_event
from streams.errors import ConfigError
from streams.model import Event, EventType
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.support import WorkerProcess, settings_of, unique, worker_env

pytestmark = pytest.mark.integration


async def test_worker_routes_a_decoded_event_and_dead_letters_poison(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, "http://127.0.0.1:9", tmp_path / "data")
    # The worker's topics exist before anything subscribes (a subscription would auto-create them
    # with the broker's default of one partition, which the worker refuses).
    await ensure_topics(settings_of(env))
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    identify = Event(type=EventType.IDENTIFY, message_id="m-1", timestamp=datetime(2024, 3, 5, tzinfo=UTC),
                     anonymous_id="dev-1", user_id="u-1", traits={"plan": "pro"})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    by_person = AIOKafkaConsumer(env["FPI_BY_PERSON_TOPIC"], bootstrap_servers=kafka_bootstrap,
                                 auto_offset_reset="earliest")
    dead = AIOKafkaConsumer(env["FPI_DEAD_LETTER_TOPIC"], bootstrap_servers=kafka_bootstrap,
                            auto_offset_reset="earliest")
    await producer.start()
    await by_person.start()
    await dead.start()
    try:
        await producer.send_and_wait(env["FPI_SOURCE_TOPIC"], key=b"whatever", value=b"not avro at all")
        await producer.send_and_wait(env["FPI_SOURCE_TOPIC"], key=b"whatever", value=encode_event(identify))
        routed = await asyncio.wait_for(by_person.getone(), timeout=90)
        letter = await asyncio.wait_for(dead.getone(), timeout=30)
    except TimeoutError:
        pytest.fail(f"nothing came out; worker log:\n{worker.log_text()[-4000:]}")
    finally:
        await dead.stop()
        await by_person.stop()
        await producer.stop()
        worker.stop()
    [item] = decode_frame(routed.value)  # internal topics carry frames
    assert item.key == b"u-1"
    assert decode_event_internal(item.value) == identify
    decoded_letter = decode_dead_letter(letter.value)
    # both records share a key, so a partition: the identify follows the poison record
    assert item.source == (env["FPI_SOURCE_TOPIC"], decoded_letter.source_partition, 1)
    assert decoded_letter.reason == "unknown_magic_byte"
    assert decoded_letter.original_bytes == b"not avro at all"
    assert (decoded_letter.source_topic, decoded_letter.source_offset) == (env["FPI_SOURCE_TOPIC"], 0)


async def test_worker_refuses_internal_topics_with_another_partition_count(kafka_bootstrap: str) -> None:
    run = unique("parts")
    settings = Settings(kafka_bootstrap=kafka_bootstrap, app_id=run, source_topic=f"{run}.events",
                        replay_topic=f"{run}.replay", by_person_topic=f"{run}.by-person",
                        requests_topic=f"{run}.requests", dead_letter_topic=f"{run}.dead-letter", topic_partitions=4)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # what a consumer subscribing early would leave behind: the broker's default of 1 partition
        await admin.create_topics([NewTopic(f"{run}.by-person", 1, 1), NewTopic(f"{run}.events", 2, 1)])
    finally:
        await admin.close()
    with pytest.raises(ConfigError, match=rf"{run}\.by-person has 1") as raised:
        await ensure_topics(settings)
    # the source topic may have any count unless it is keyed by device
    assert f"{run}.events" not in str(raised.value)
    with pytest.raises(ConfigError, match=rf"{run}\.events has 2"):
        await ensure_topics(settings.model_copy(update={"source_keyed_by_device": True}))
