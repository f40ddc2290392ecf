"""The apply stage with a routing file (issue 20 part 3): each event is mapped with its project's type and rules,
its requests carry the project, and an event no project claims is dead-lettered ``no_project``."""

from __future__ import annotations

from streams.codecs import FrameItem, decode_request, encode_event_internal, encode_frame
from streams.mapping import MappingConfig
from streams.model import ProjectType
from streams.projects import parse_routing
from tests.unit.stages.test_stages import At, Pipeline, Record, _event

ROUTING = parse_routing({
    "projects": {
        "shop": {"values": "env-shop", "api_key_env": "K1", "project_type": "email"},
        "app": {"values": "env-app", "api_key_env": "K2", "project_type": "userId",
                "transformations": [{"action": "rename_event", "event": "Opened", "to": "App Opened"}]},
    }
}, MappingConfig())


async def test_each_event_is_mapped_by_its_project_and_the_unclaimed_is_dead_lettered() -> None:
    events = [
        _event('{"type":"identify","userId":"u-1","messageId":"s-1","properties":{"token":"env-shop"},'
               '"traits":{"email":"jane@example.com"}}'),
        _event('{"type":"identify","userId":"u-2","messageId":"a-1","context":{"token":"env-app"}}'),
        _event('{"type":"track","event":"Opened","userId":"u-2","messageId":"a-2","context":{"token":"env-app"}}'),
        _event('{"type":"track","event":"Opened","userId":"u-3","messageId":"n-1","context":{"token":"env-x"}}'),
    ]
    pipeline = Pipeline()
    pipeline.apply.routing = ROUTING
    frame = encode_frame([FrameItem(event.user_id.encode(), encode_event_internal(event), ("src", 0, n))
                          for n, event in enumerate(events) if event.user_id is not None])
    await pipeline.apply.handle([Record(frame, message=At("by-person", 0, 0))])

    requests = [decode_request(item.value) for item in pipeline.requests.items()]
    by_event = {request.source_event_id: request for request in requests}
    assert {event_id: request.project for event_id, request in by_event.items()} == {
        "s-1": "shop", "a-1": "app", "a-2": "app"}
    assert by_event["s-1"].body["email"] == "jane@example.com"  # the email project keys by email
    assert by_event["a-1"].body["userId"] == "u-2" and "email" not in by_event["a-1"].body
    assert by_event["a-2"].body["eventName"] == "App Opened"  # the app project's own rule
    [letter] = pipeline.dead.letters()
    assert letter.reason == "no_project" and letter.event is not None and letter.event.message_id == "n-1"
    assert "token='env-x'" in letter.detail


async def test_without_a_routing_file_requests_carry_no_project() -> None:
    pipeline = Pipeline(config=MappingConfig(project_type=ProjectType.USER_ID))
    event = _event('{"type":"identify","userId":"u-1","messageId":"i-1","context":{"token":"env-x"}}')
    frame = encode_frame([FrameItem(b"u-1", encode_event_internal(event), ("src", 0, 0))])
    await pipeline.apply.handle([Record(frame, message=At("by-person", 0, 0))])
    [request] = [decode_request(item.value) for item in pipeline.requests.items()]
    assert request.project == "" and not pipeline.dead.letters()
