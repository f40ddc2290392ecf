"""The Kafka Connect peer's configuration (``bench/connect/``) is complete and says what the benchmark claims."""

from __future__ import annotations

import re
from pathlib import Path

from bench import bench_connect
from tests.support import REPO


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_configs_fill_every_placeholder(tmp_path: Path) -> None:
    worker, sink = bench_connect.write_configs(tmp_path, "127.0.0.1:1", tmp_path / "plugins", "t.events",
                                               "http://127.0.0.1:2", 3)
    for path in (worker, sink):
        assert "${" not in path.read_text(), path.name
    w, s = _properties(worker), _properties(sink)
    assert w["bootstrap.servers"] == "127.0.0.1:1"
    assert w["plugin.path"] == str(tmp_path / "plugins")
    assert w["value.converter"] == "org.apache.kafka.connect.converters.ByteArrayConverter"
    assert s["topics"] == "t.events" and s["tasks.max"] == "3"
    assert s["camel.sink.url"].startswith("http://127.0.0.1:2" + bench_connect.TRACK + "?")
    headers = {s[f"transforms.{name}.header"]: s[f"transforms.{name}.value.literal"]
               for name in s["transforms"].split(",")}
    assert headers["CamelHeader.Api-Key"] == bench_connect.h.EMULATOR_KEY


def test_connect_runs_the_brokers_kafka_version() -> None:
    broker = re.search(r"<id>kafka4</id>.*?<kafka.version>([^<]+)<", (REPO / "dev/kafka/pom.xml").read_text(), re.S)
    connect = re.search(r"<kafka.version>([^<]+)<", (REPO / "bench/connect/pom.xml").read_text())
    assert broker and connect
    assert connect.group(1) == broker.group(1) == bench_connect.KAFKA_VERSION


def test_shaped_sink_renames_into_a_track_body(tmp_path: Path) -> None:
    _, sink = bench_connect.write_configs(tmp_path, "127.0.0.1:1", tmp_path, "t.json", "http://127.0.0.1:2", 1,
                                          "http-sink-json.properties")
    s = _properties(sink)
    assert s["transforms.shape.type"] == "org.apache.kafka.connect.transforms.ReplaceField$Value"
    renames = dict(pair.split(":") for pair in s["transforms.shape.renames"].split(","))
    assert renames == {"event": "eventName", "messageId": "id", "properties": "dataFields"}
    assert s["camel.sink.marshal"] == "json-jackson"
    assert s["value.converter"] == "org.apache.kafka.connect.json.JsonConverter"
