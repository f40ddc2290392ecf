"""Several Iterable projects (issue 20 part 3): the routing rules and the routing file's validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.errors import ConfigError
from streams.mapping import MappingConfig
from streams.model import EventType, ProjectType
from streams.normalize import normalize
from streams.projects import Routing, load_routing, parse_routing, project_for, unrouted_detail
from streams.settings import Settings
from streams.transforms import load_transformations, parse_transformations
from streams.wiring import build_project_sender_configs, build_routing, project_keys
from tests.unit.builders import event

BASE = MappingConfig()


def routing(**extra: Any) -> Routing:
    document: dict[str, Any] = {
        "projects": {
            "prod": {"values": ["env-prod"], "api_key_env": "KEY_PROD", "project_type": "email"},
            "staging": {"values": ["env-staging", "env-qa"], "api_key_env": "KEY_STAGING", "region": "eu",
                        "project_type": "userId", "mapping": {"page_event_name": "Page View"}},
            "brand": {"values": "acme", "property": "brand", "api_key_env": "KEY_ACME", "project_type": "hybrid"},
        },
        **extra,
    }
    return parse_routing(document, BASE)


class TestProjectFor:
    def test_the_token_picks_the_project(self) -> None:
        rules = routing()
        assert project_for(event(properties={"token": "env-prod"}), rules) == "prod"
        assert project_for(event(properties={"token": "env-qa"}), rules) == "staging"

    def test_a_raw_events_token_is_kept_by_normalize_and_routes_it(self) -> None:
        raw = {"event": "Clicked", "properties": {"token": "env-staging", "time": 1709647620,
                                                   "distinct_id": "u-1", "$device_id": "d-1"}}
        normalized = normalize(raw)
        assert "token" not in normalized.properties
        assert project_for(normalized, routing()) == "staging"

    def test_another_property_can_route_a_project(self) -> None:
        rules = routing()
        assert project_for(event(properties={"token": "env-other", "brand": "acme"}), rules) == "brand"
        assert project_for(event(EventType.IDENTIFY, traits={"brand": "acme"}), rules) == "brand"

    def test_the_first_project_in_file_order_wins(self) -> None:
        assert project_for(event(properties={"token": "env-prod", "brand": "acme"}), routing()) == "prod"

    def test_no_match_is_none_or_the_default(self) -> None:
        unmatched = event(properties={"token": "env-nobody"})
        assert project_for(unmatched, routing()) is None
        assert project_for(event(), routing()) is None
        assert project_for(event(properties={"token": 5}), routing()) is None  # only a string matches
        assert project_for(unmatched, routing(default="prod")) == "prod"

    def test_the_unrouted_detail_names_what_the_event_had(self) -> None:
        detail = unrouted_detail(event(properties={"token": "env-nobody"}), routing())
        assert "token='env-nobody'" in detail and "no brand" in detail and "FPI_PROJECTS_FILE" in detail

    def test_each_project_has_its_type_region_and_mapping(self) -> None:
        rules = routing()
        staging = rules.get("staging")
        assert staging.mapping.project_type is ProjectType.USER_ID
        assert staging.mapping.page_event_name == "Page View"
        assert staging.region == "eu" and staging.api_key_env == "KEY_STAGING"
        assert rules.get("prod").mapping.page_event_name == BASE.page_event_name
        assert rules.choose(event(properties={"token": "env-qa"})) is staging


class TestTransformations:
    def test_a_project_without_rules_inherits_the_settings_rules(self) -> None:
        base = MappingConfig(transformations=parse_transformations([{"action": "drop", "event": "Ping"}]))
        document = {"projects": {"p": {"values": "t", "api_key_env": "K", "project_type": "email"}}}
        assert parse_routing(document, base).get("p").mapping.transformations == base.transformations

    def test_a_projects_rules_replace_them(self, tmp_path: Path) -> None:
        (tmp_path / "rules.toml").write_text('[[transformations]]\naction = "drop"\nevent = "Debug"\n')
        base = MappingConfig(transformations=parse_transformations([{"action": "drop", "event": "Ping"}]))
        document = {"projects": {"p": {"values": "t", "api_key_env": "K", "project_type": "email",
                                       "transformations_file": "rules.toml",
                                       "transformations": [{"action": "rename_event", "to": "X"}]}}}
        rules = parse_routing(document, base, tmp_path).get("p").mapping.transformations
        expected = load_transformations(tmp_path / "rules.toml").rules + parse_transformations(
            [{"action": "rename_event", "to": "X"}]).rules
        assert rules.rules == expected


def _project(**fields: Any) -> dict[str, Any]:
    return {"projects": {"prod": {"values": ["env-1"], "api_key_env": "KEY_PROD", "project_type": "email",
                                  **fields}}}


@pytest.mark.parametrize(("document", "named"), [
    ({}, "no projects"),
    ({"projects": {}}, "no projects"),
    ({"propery": "token", **_project()}, "unknown top-level key(s) propery"),
    (_project(regoin="eu"), "[projects.prod]: unknown key(s) regoin"),
    (_project(region="ap"), "[projects.prod] region = 'ap'"),
    (_project(project_type="phone"), "[projects.prod] project_type = 'phone'"),
    (_project(values=[]), "[projects.prod] values"),
    (_project(api_key_env="sk_live 123"), "[projects.prod] api_key_env = 'sk_live 123' is not an environment"),
    (_project(base_url="ftp://x"), "[projects.prod] base_url"),
    (_project(mapping={"page_event_nam": "x"}), "unknown [projects.prod.mapping] key(s): page_event_nam"),
    (_project(mapping={"merge_nested_objects": "yes"}), "[projects.prod.mapping] merge_nested_objects must be a bool"),
    (_project(mapping={"carts": True}), "[projects.prod.mapping] carts: deployment-wide"),
    (_project(mapping={"email_lists_trait": "lists"}), "email_lists_trait: deployment-wide (its table is the "
     "worker's); set FPI_EMAIL_LISTS_TRAIT instead"),
    (_project(mapping={"project_type": "email"}), "project_type: it goes in the project table [projects.prod]"),
    (_project(transformations=[{"action": "explode"}]), "[projects.prod]: transformation rule #1"),
    (_project(mapping={"cart_max_items": 0}), "[projects.prod.mapping] cart_max_items must be an integer from 1"),
    ({**_project(), "default": "nope"}, "default = 'nope' names no"),
    ({"projects": {"a": {"values": "t", "api_key_env": "A", "project_type": "email"},
                   "b": {"values": ["t"], "api_key_env": "B", "project_type": "email"}}},
     "[projects.b] values: token 't' is already routed to project 'a'"),
    ({"projects": {"bad name": {"values": "t", "api_key_env": "A", "project_type": "email"}}}, "[projects.bad name]"),
    ({"projects": {"a": {"api_key_env": "A"}}}, "[projects.a]: missing values, project_type"),
])
def test_a_wrong_routing_file_names_the_key(document: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routing(document, BASE)
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def settings_with(path: Path) -> Settings:
    return Settings.load(projects_file=path)


def test_a_bad_file_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "projects.toml"
    path.write_text('[projects.prod]\nvalues = ["env-1"]\napi_key_env = "KEY_PROD"\nproject_type = "email"\n'
                    'regoin = "eu"\n')
    with pytest.raises(ConfigError) as caught:
        build_routing(settings_with(path), BASE, {"KEY_PROD": "k"})
    message = str(caught.value)
    assert message.startswith(f"FPI_PROJECTS_FILE={path}: [projects.prod]: unknown key(s) regoin")
    assert "\n" not in message


@pytest.mark.parametrize("text", ["[projects.prod\n", ""])
def test_not_toml_or_empty_is_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "projects.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^FPI_PROJECTS_FILE=.*(not valid TOML|no projects)") as caught:
        build_routing(settings_with(path), BASE, {})
    assert "\n" not in str(caught.value)


def test_a_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^FPI_PROJECTS_FILE=.*cannot read routing file"):
        build_routing(settings_with(tmp_path / "absent.toml"), BASE, {})


def test_an_unset_key_variable_is_named_and_the_key_is_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "projects.toml"
    path.write_text('[projects.prod]\nvalues = "env-1"\napi_key_env = "KEY_PROD"\nproject_type = "email"\n'
                    '[projects.eu]\nvalues = "env-2"\napi_key_env = "KEY_EU"\nproject_type = "userId"\n'
                    'region = "eu"\n')
    with pytest.raises(ConfigError, match=r"\[projects.eu\] api_key_env = 'KEY_EU', but that variable is unset"):
        build_routing(settings_with(path), BASE, {"KEY_PROD": "secret-prod"})
    environ = {"KEY_PROD": "secret-prod", "KEY_EU": "secret-eu"}
    rules = build_routing(settings_with(path), BASE, environ)
    assert rules is not None and "secret" not in repr(rules)
    configs = build_project_sender_configs(settings_with(path), rules, environ)
    assert configs["prod"].api_key.get_secret_value() == "secret-prod"
    assert configs["eu"].api_key.get_secret_value() == "secret-eu"
    assert configs["eu"].base_url == "https://api.eu.iterable.com"
    assert "secret" not in repr(configs)


def test_without_a_routing_file_there_is_none() -> None:
    assert build_routing(Settings.load(), BASE, {}) is None


def test_load_routing_reads_the_example_of_the_docstring(tmp_path: Path) -> None:
    import streams.projects

    assert streams.projects.__doc__ is not None
    example = streams.projects.__doc__.split("::", 1)[1].split("A property value", 1)[0]
    path = tmp_path / "projects.toml"
    path.write_text("\n".join(line[4:] for line in example.splitlines()))
    rules = load_routing(path, BASE)
    assert rules.default == "production" and rules.get("production").mapping.default_identify_transformations


def test_project_keys_feed_the_log_filter(tmp_path: Path) -> None:
    path = tmp_path / "projects.toml"
    path.write_text('[projects.prod]\nvalues = "env-1"\napi_key_env = "KEY_PROD"\nproject_type = "email"\n')
    rules = build_routing(settings_with(path), BASE, {"KEY_PROD": "secret-prod"})
    assert project_keys(rules, {"KEY_PROD": "secret-prod"}) == ("secret-prod",)
    assert project_keys(None) == ()


def test_the_worker_refuses_a_bad_routing_file_before_it_reaches_kafka(tmp_path: Path) -> None:
    path = tmp_path / "projects.toml"
    path.write_text('[projects.prod]\nvalues = "env-1"\napi_key_env = "KEY_PROD"\nproject_type = "phone"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("FPI_")}
    # A closed port: had the worker reached Kafka first, this would be broker_unavailable (exit 1).
    env |= {"FPI_PROJECTS_FILE": str(path), "KEY_PROD": "k", "FPI_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-m", "streams", "worker"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=90)
    assert (result.returncode, result.stderr) == (2, "")
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["reason"] == "config_invalid"
    assert record["message"] == (f"FPI_PROJECTS_FILE={path}: [projects.prod] project_type = 'phone': use one of "
                                 "email, userId, hybrid; fix the routing file")


class TestExplain:
    LINES = [
        '{"event": "$identify", "properties": {"token": "env-staging", "time": 1709647620, "distinct_id": "u-1", '
        '"$device_id": "d-1", "$insert_id": "s-1", "$user_props": {"plan": "pro"}}}',
        '{"event": "Clicked", "properties": {"token": "env-staging", "time": 1709647630, "distinct_id": "u-1", '
        '"$device_id": "d-1", "$insert_id": "s-2"}}',
        '{"event": "Clicked", "properties": {"token": "env-nobody", "time": 1709647640, "distinct_id": "u-1", '
        '"$device_id": "d-1", "$insert_id": "n-1"}}',
    ]

    def test_each_line_is_mapped_by_its_project_and_says_which(self) -> None:
        from streams.explain import explain_lines

        records = list(explain_lines(self.LINES, BASE, routing=routing()))
        assert [(r["message_id"], r["decision"], r.get("project"), r["reason"]) for r in records] == [
            ("s-1", "send", "staging", None), ("s-2", "send", "staging", None), ("n-1", "drop", None, "no_project")]
        assert "email" not in records[0]["requests"][0]["body"]  # the staging project is userId-based

    def test_the_command_reads_the_routing_file_without_the_keys(self, tmp_path: Path) -> None:
        path = tmp_path / "projects.toml"
        path.write_text('[projects.staging]\nvalues = "env-staging"\napi_key_env = "KEY_UNSET"\n'
                        'project_type = "userId"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("FPI_") and k != "KEY_UNSET"}
        result = subprocess.run([sys.executable, "-m", "streams", "explain"], input="\n".join(self.LINES),
                                env={**env, "FPI_PROJECTS_FILE": str(path)}, cwd=tmp_path, capture_output=True,
                                text=True, timeout=90)
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert [(r["decision"], r.get("project"), r["reason"]) for r in records] == [
            ("send", "staging", None), ("send", "staging", None), ("drop", None, "no_project")]


class TestRedriveToAProject:
    """``dead-letters redrive --project``: a request letter does not record its project, the operator names it."""

    def test_the_redriven_request_carries_the_project(self) -> None:
        from streams.codecs import decode_frame, decode_request
        from streams.commands.dead_letters import redrive_target
        from tests.unit.test_replay_dead_letters import REQUEST, SETTINGS, letter, stored

        for project in ("staging", ""):
            topic, _, value = redrive_target(stored(letter(request=REQUEST)), SETTINGS, project) or ("", None, b"")
            [item] = decode_frame(value)
            assert topic == "r.requests" and decode_request(item.value).project == project

    def test_letters_given_up_for_another_project_are_left_out(self) -> None:
        import dataclasses

        from streams.commands.dead_letters import StoredLetter, names_other_project
        from tests.unit.test_replay_dead_letters import REQUEST, letter, stored

        def given_up(detail: str) -> StoredLetter:
            return stored(dataclasses.replace(letter("bad_api_key", request=REQUEST), detail=detail))

        assert names_other_project(given_up("project 'prod': Iterable rejects its key (401)"), "staging")
        assert not names_other_project(given_up("project 'staging': Iterable rejects its key (401)"), "staging")
        assert not names_other_project(given_up("Iterable said no"), "staging")
        assert not names_other_project(stored(None), "staging")
