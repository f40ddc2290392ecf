"""The stack works on the real broker: aiokafka in, the Faust worker as a separate process, aiokafka out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.codecs import decode_dead_letter, decode_event_internal, encode_event
from streams.model import Event, EventType
from tests.support import WorkerProcess, worker_env

pytestmark = pytest.mark.integration


async def test_worker_routes_a_decoded_event_and_dead_letters_poison(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = worker_env(kafka_bootstrap, "http://127.0.0.1:9", tmp_path / "data")
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
    assert routed.key == b"u-1"
    assert decode_event_internal(routed.value) == identify
    decoded_letter = decode_dead_letter(letter.value)
    assert decoded_letter.reason == "unknown_magic_byte"
    assert decoded_letter.original_bytes == b"not avro at all"
    assert (decoded_letter.source_topic, decoded_letter.source_offset) == (env["FPI_SOURCE_TOPIC"], 0)
