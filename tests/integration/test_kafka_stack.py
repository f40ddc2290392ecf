"""The stack works on the real broker: aiokafka in, a Faust agent in a worker process, aiokafka out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.support import WorkerProcess, free_port, unique

pytestmark = pytest.mark.integration


async def test_worker_forwards_a_message_between_real_topics(kafka_bootstrap: str, tmp_path: Path) -> None:
    source, by_person = unique("src"), unique("by-person")
    worker = WorkerProcess(
        {
            "FPI_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "FPI_APP_ID": unique("stack-test"),
            "FPI_SOURCE_TOPIC": source,
            "FPI_BY_PERSON_TOPIC": by_person,
            "FPI_WEB_PORT": str(free_port()),
            "FPI_DATA_DIR": str(tmp_path / "data"),
        },
        tmp_path / "worker.log",
    ).start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    consumer = AIOKafkaConsumer(by_person, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        await producer.send_and_wait(source, key=b"device-1", value=b"hello from aiokafka")
        message = await asyncio.wait_for(consumer.getone(), timeout=90)
        assert (message.key, message.value) == (b"device-1", b"hello from aiokafka")
    except TimeoutError:
        pytest.fail(f"no message forwarded; worker log:\n{worker.log_text()[-4000:]}")
    finally:
        await consumer.stop()
        await producer.stop()
        worker.stop()
