from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from streams.cli import main
from streams.explain import ExplainState, explain_lines
from streams.identity import HoldRule, Link
from streams.mapping import MappingConfig, load_mapping_config
from streams.model import ProjectType

DATA = Path(__file__).resolve().parent.parent / "data"
SAMPLE = DATA / "sample_events.jsonl"


def expected(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


class TestExplainLines:
    def test_sample_reproduces_expected_output_email_project(self) -> None:
        assert list(explain_lines(SAMPLE.read_text().splitlines(), MappingConfig())) == expected(
            "sample_events.expected.jsonl"
        )

    def test_sample_reproduces_expected_output_hybrid_config(self) -> None:
        config = load_mapping_config(DATA / "sample_config.toml")
        assert list(explain_lines(SAMPLE.read_text().splitlines(), config)) == expected(
            "sample_events.hybrid.expected.jsonl"
        )

    def test_sample_covers_every_outcome(self) -> None:
        records = expected("sample_events.expected.jsonl")
        assert len(records) == len(SAMPLE.read_text().splitlines())
        reasons = {record["reason"] for record in records}
        assert {
            "anonymous",
            "purchase_incomplete",
            "stale_identify",
            "missing_identifier",
            "invalid_email",
            "unsupported_type",
            "invalid_event",
            None,
        } <= reasons
        paths = {request["path"] for record in records for request in record["requests"]}  # type: ignore[attr-defined]
        assert paths == {
            "/api/users/update",
            "/api/events/track",
            "/api/commerce/trackPurchase",
            "/api/users/updateEmail",
        }

    def test_identity_carries_from_line_to_line(self) -> None:
        lines = [
            '{"type":"track","messageId":"1","timestamp":"2024-01-01T00:00:00Z","anonymousId":"a","event":"E"}',
            '{"type":"identify","messageId":"2","timestamp":"2024-01-01T00:00:01Z","anonymousId":"a",'
            '"userId":"u","traits":{"email":"j@x.io"}}',
            '{"type":"track","messageId":"3","timestamp":"2024-01-01T00:00:02Z","anonymousId":"a","event":"E"}',
        ]
        state = ExplainState()
        out = list(explain_lines(lines, MappingConfig(project_type=ProjectType.HYBRID), state=state))
        assert [record["decision"] for record in out] == ["drop", "send", "send"]
        assert state.aliases == {"a": Link("u", datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC))}
        assert state.identities["u"].email == "j@x.io"

    def test_an_event_replayed_after_its_device_was_linked_is_still_anonymous(self) -> None:
        early = '{"type":"track","messageId":"1","timestamp":"2024-01-01T00:00:00Z","anonymousId":"a","event":"E"}'
        identify = ('{"type":"identify","messageId":"2","timestamp":"2024-01-01T00:00:01Z","anonymousId":"a",'
                    '"userId":"u","traits":{"email":"j@x.io"}}')
        out = list(explain_lines([identify, early], MappingConfig(project_type=ProjectType.HYBRID)))
        assert [(record["decision"], record["reason"]) for record in out] == [("send", None), ("drop", "anonymous")]
        assert "before device 'a' was linked" in out[1]["detail"]

    def test_blank_lines_are_skipped(self) -> None:
        assert list(explain_lines(["", "  \n"], MappingConfig())) == []


class TestExplainCommand:
    def test_file_argument_and_exit_status(self) -> None:
        result = CliRunner().invoke(main, ["explain", str(SAMPLE)])
        assert result.exit_code == 1  # the sample has error lines
        assert [json.loads(line) for line in result.output.splitlines()] == expected(
            "sample_events.expected.jsonl"
        )

    def test_stdin_options_and_success(self) -> None:
        line = (
            '{"type":"identify","messageId":"m1","timestamp":"2024-03-05T14:07:00Z","userId":"u1",'
            '"traits":{"first_name":"J"}}\n'
        )
        result = CliRunner().invoke(
            main,
            ["explain", "--project-type", "userId", "--default-identify-transformations", "-"],
            input=line,
        )
        assert result.exit_code == 0, result.output
        record = json.loads(result.output)
        assert record["requests"][0]["body"] == {
            "userId": "u1",
            "dataFields": {"firstName": "J"},
            "mergeNestedObjects": False,
        }

    def test_config_option(self) -> None:
        result = CliRunner().invoke(
            main, ["explain", "--config", str(DATA / "sample_config.toml"), str(SAMPLE)]
        )
        assert [json.loads(line) for line in result.output.splitlines()] == expected(
            "sample_events.hybrid.expected.jsonl"
        )

    def test_separate_transformations_file(self, tmp_path: Path) -> None:
        rules = tmp_path / "rules.toml"
        rules.write_text('[[transformations]]\naction = "drop"\n')
        line = (
            '{"type":"track","messageId":"1","timestamp":"2024-01-01T00:00:00Z","userId":"u","event":"E"}\n'
        )
        result = CliRunner().invoke(main, ["explain", "--transformations", str(rules), "-"], input=line)
        assert json.loads(result.output)["reason"] == "filtered_by_transformation"

    def test_invalid_config_is_a_usage_error(self, tmp_path: Path) -> None:
        bad = tmp_path / "c.toml"
        bad.write_text('[[transformations]]\naction = "nope"\n')
        result = CliRunner().invoke(main, ["explain", "--config", str(bad), "-"], input="")
        assert result.exit_code == 2 and "rule #1" in result.output

    def test_help_documents_example_and_config(self) -> None:
        result = CliRunner().invoke(main, ["explain", "--help"])
        assert result.exit_code == 0
        for text in ("Example:", "[mapping]", "[[transformations]]", "--project-type", "Exit status 1"):
            assert text in result.output


class TestHolding:
    LINES = [
        '{"type":"page","messageId":"p-1","timestamp":"2024-01-01T00:00:00Z","anonymousId":"a","name":"Home"}',
        '{"type":"page","messageId":"p-2","timestamp":"2024-01-01T00:09:00Z","anonymousId":"a","name":"Pricing"}',
        '{"type":"identify","messageId":"i-1","timestamp":"2024-01-01T00:10:00Z","anonymousId":"a",'
        '"userId":"u","traits":{"email":"j@x.io"}}',
    ]

    def test_held_page_views_follow_the_identify_within_the_window(self) -> None:
        rule = HoldRule(timedelta(minutes=10), per_device=10, total=100)
        out = list(explain_lines(self.LINES, MappingConfig(project_type=ProjectType.HYBRID), hold=rule))
        assert [(r["message_id"], r["decision"]) for r in out] == [
            ("p-1", "hold"), ("p-2", "hold"), ("i-1", "send"), ("p-1", "send"), ("p-2", "send")]
        assert out[3]["requests"][0]["body"]["userId"] == "u"

    def test_outside_the_window_they_are_anonymous(self) -> None:
        rule = HoldRule(timedelta(minutes=5), per_device=10, total=100)
        out = list(explain_lines(self.LINES, MappingConfig(project_type=ProjectType.HYBRID), hold=rule))
        assert [(r["message_id"], r["decision"], r["reason"]) for r in out] == [
            ("p-1", "hold", None), ("p-2", "hold", None), ("p-1", "drop", "anonymous"), ("i-1", "send", None),
            ("p-2", "send", None)]

    def test_without_holding_nothing_changes(self) -> None:
        out = list(explain_lines(self.LINES, MappingConfig(project_type=ProjectType.HYBRID)))
        assert [r["decision"] for r in out] == ["drop", "drop", "send"]


class TestExplainCarts:
    LINES = [json.dumps(line) for line in [
        {"type": "identify", "messageId": "i", "anonymousId": "d", "traits": {"email": "c@x.io"},
         "timestamp": "2024-03-05T14:00:00Z"},
        {"type": "track", "event": "Product Added", "messageId": "a1", "anonymousId": "d",
         "properties": {"product_id": "mug", "name": "Mug", "price": 19.0}, "timestamp": "2024-03-05T14:01:00Z"},
        {"type": "track", "event": "Product Added", "messageId": "a2", "anonymousId": "d",
         "properties": {"product_id": "mug", "name": "Mug", "price": 19.0}, "timestamp": "2024-03-05T14:02:00Z"},
    ]]

    def test_cart_requests_state_the_cart_they_assume(self) -> None:
        records = list(explain_lines(self.LINES, MappingConfig(carts=True)))
        carts = [r["requests"][-1]["body"]["items"] for r in records[1:]]
        assert [[i["quantity"] for i in items] for items in carts] == [[1], [2]]
        assert [r["requests"][-1]["path"] for r in records[1:]] == ["/api/commerce/updateCart"] * 2
        assert records[1]["detail"] == "cart assumed before this event: none stored"
        assert records[2]["detail"] == "cart assumed before this event: mug x1"

    def test_without_carts_only_the_event_is_tracked(self) -> None:
        records = list(explain_lines(self.LINES, MappingConfig()))
        assert [[r["path"] for r in record["requests"]] for record in records[1:]] == [["/api/events/track"]] * 2


class TestPartialReplay:
    def test_an_identify_replayed_after_a_later_email_change_does_not_move_the_profile_back(self) -> None:
        lines = [
            json.dumps({"type": "identify", "userId": "u-1", "messageId": "i-1", "timestamp": "2026-05-01T10:00:00Z",
                        "traits": {"email": "old@example.com", "plan": "free"}}),
            json.dumps({"type": "alias", "userId": "new@example.com", "previousId": "u-1", "messageId": "a-1",
                        "timestamp": "2026-05-01T11:00:00Z"}),
        ]
        state = ExplainState()
        decided = list(explain_lines(lines, MappingConfig(), state=state))
        assert [record["decision"] for record in decided] == ["send", "send"]
        # `replay --type identify` over the same range: only the older identify comes again
        [again] = explain_lines(lines[:1], MappingConfig(), state=state)
        assert (again["decision"], again["reason"]) == ("drop", "stale_identify")
        assert state.identities["u-1"].email == "new@example.com"
