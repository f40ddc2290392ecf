from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.errors import ConfigError
from streams.model import EventType
from streams.transforms import Transformations, load_transformations, parse_transformations
from tests.unit.builders import event


def apply(rules: list[dict[str, Any]], **fields: Any) -> Any:
    return parse_transformations(rules).apply(event(**fields))


class TestTransformationsApply:
    def test_empty_changes_nothing(self) -> None:
        ev = event()
        assert Transformations().apply(ev) is ev

    def test_drop_restricted_by_event_name(self) -> None:
        rules = [{"action": "drop", "event": ["Debug"]}]
        assert apply(rules, event_name="Debug") is None
        assert apply(rules, event_name="Other") is not None

    def test_restrict_by_type(self) -> None:
        rules = [{"action": "drop", "type": "page"}]
        assert parse_transformations(rules).apply(event(EventType.PAGE)) is None
        assert apply(rules) is not None

    def test_rename_event_then_later_rules_see_new_name(self) -> None:
        rules = [{"action": "rename_event", "event": "A", "to": "B"}, {"action": "drop", "event": "B"}]
        assert apply(rules, event_name="A") is None

    def test_property_actions(self) -> None:
        rules = [
            {"action": "rename_property", "property": "plan_name", "to": "plan"},
            {"action": "drop_property", "property": "secret"},
            {"action": "set_property", "property": "source", "value": "web"},
            {"action": "map_values", "property": "plan", "values": {"p": "pro"}},
        ]
        out = apply(rules, properties={"plan_name": "p", "secret": 1, "keep": True})
        assert dict(out.properties) == {"keep": True, "plan": "pro", "source": "web"}

    def test_identify_rules_act_on_traits(self) -> None:
        out = parse_transformations([{"action": "drop_property", "property": "ssn"}]).apply(
            event(EventType.IDENTIFY, traits={"ssn": "x", "a": 1})
        )
        assert dict(out.traits) == {"a": 1}

    def test_map_values_keeps_unmapped_and_absent(self) -> None:
        rules = [{"action": "map_values", "property": "plan", "values": {"p": "pro"}}]
        assert dict(apply(rules, properties={"plan": "x"}).properties) == {"plan": "x"}
        assert dict(apply(rules, properties={}).properties) == {}

    def test_input_event_is_not_mutated(self) -> None:
        ev = event(properties={"a": 1})
        parse_transformations([{"action": "drop_property", "property": "a"}]).apply(ev)
        assert dict(ev.properties) == {"a": 1}


class TestRuleValidation:
    @pytest.mark.parametrize(
        ("rules", "position", "reason"),
        [
            ([{"action": "explode"}], 1, "unknown or missing action"),
            ([{}], 1, "unknown or missing action"),
            ([{"action": "drop"}, {"action": "rename_event"}], 2, "needs to"),
            ([{"action": "drop", "colour": "red"}], 1, "unknown key(s) colour"),
            ([{"action": "drop", "type": "click"}], 1, "unknown event type(s) click"),
            ([{"action": "drop", "event": []}], 1, "'event' must be"),
            ([{"action": "rename_property", "property": "", "to": "x"}], 1, "'property' must be"),
            ([{"action": "map_values", "property": "p", "values": {}}], 1, "'values' must be"),
            (["drop"], 1, "must be a table"),
        ],
    )
    def test_errors_name_position_and_reason(self, rules: list[Any], position: int, reason: str) -> None:
        with pytest.raises(ConfigError) as info:
            parse_transformations(rules)
        assert f"rule #{position}" in str(info.value) and reason in str(info.value)

    def test_not_a_list(self) -> None:
        with pytest.raises(ConfigError):
            parse_transformations({"action": "drop"})


class TestLoadTransformations:
    def test_reads_toml(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.toml"
        path.write_text('[[transformations]]\naction = "drop"\nevent = "X"\n')
        assert len(load_transformations(path).rules) == 1

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot read"):
            load_transformations(tmp_path / "nope.toml")

    def test_bad_toml(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.toml"
        path.write_text("[[transformations]\n")
        with pytest.raises(ConfigError, match="not valid TOML"):
            load_transformations(path)

    def test_invalid_rule_in_file(self, tmp_path: Path) -> None:
        path = tmp_path / "rules.toml"
        path.write_text('[[transformations]]\naction = "drop"\n[[transformations]]\naction = "nope"\n')
        with pytest.raises(ConfigError, match="rule #2"):
            load_transformations(path)
