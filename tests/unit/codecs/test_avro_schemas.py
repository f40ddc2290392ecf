"""The bundled .avsc files: valid, documented, Avro-legal names, v2 = v1 + one optional field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from streams.codecs import DEAD_LETTER, REQUEST, SOURCE_V1, SOURCE_V2, avro_dir, parsed_schema, schema_text
from streams.errors import ConfigError

ALL = (SOURCE_V1, SOURCE_V2, REQUEST, DEAD_LETTER)
AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _records(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(schema, list):
        for branch in schema:
            found += _records(branch)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            found.append(schema)
            for field in schema["fields"]:
                found += _records(field["type"])
        else:
            found += _records(schema.get("items")) + _records(schema.get("values"))
    return found


class TestSchemaFiles:
    @pytest.mark.parametrize("name", ALL)
    def test_every_record_and_field_is_documented_with_legal_names(self, name: str) -> None:
        raw = json.loads(schema_text(name))
        assert raw["namespace"]
        records = _records(raw)
        assert records
        for record in records:
            assert record.get("doc"), record["name"]
            for field in record["fields"]:
                assert AVRO_NAME.fullmatch(field["name"]), field["name"]
                assert field.get("doc"), f"{record['name']}.{field['name']}"

    @pytest.mark.parametrize("name", ALL)
    def test_parses(self, name: str) -> None:
        assert parsed_schema(name)["type"] == "record"

    def test_source_doc_says_how_dollar_keys_travel(self) -> None:
        doc = json.loads(schema_text(SOURCE_V1))["doc"]
        assert "$" in doc and "verbatim" in doc and "JSON" in doc

    def test_v2_adds_exactly_one_optional_field_with_default(self) -> None:
        v1 = json.loads(schema_text(SOURCE_V1))
        v2 = json.loads(schema_text(SOURCE_V2))
        assert (v1["namespace"], v1["name"]) == (v2["namespace"], v2["name"])
        assert v2["fields"][: len(v1["fields"])] == v1["fields"]
        (added,) = v2["fields"][len(v1["fields"]) :]
        assert added["default"] is None and added["type"][0] == "null"

    def test_timestamp_is_timestamp_millis(self) -> None:
        fields = {f["name"]: f for f in json.loads(schema_text(SOURCE_V1))["fields"]}
        assert fields["timestamp"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}


class TestAvroDir:
    def test_default_is_the_repository_folder(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("FPI_AVRO_DIR", raising=False)
        assert avro_dir() == Path(__file__).resolve().parents[3] / "avro"

    def test_env_override(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("FPI_AVRO_DIR", str(tmp_path))
        assert avro_dir() == tmp_path

    def test_missing_file_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("FPI_AVRO_DIR", str(tmp_path))
        with pytest.raises(ConfigError, match="not found"):
            schema_text.__wrapped__("freshpaint_event")
