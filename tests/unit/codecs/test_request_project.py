"""A request's project (issue 20 part 3) travels through the internal request format; records without one
(every record of a single project, and those written before) keep their six fields."""

from __future__ import annotations

import orjson
import pytest

from streams.codecs import decode_request, encode_request
from streams.errors import DecodeError
from streams.model import Endpoint, IterableRequest

REQUEST = IterableRequest(Endpoint.EVENTS_TRACK, {"email": "a@b.co", "eventName": "x"}, "a@b.co", "m-1")


def test_a_project_round_trips() -> None:
    tagged = IterableRequest(REQUEST.endpoint, REQUEST.body, REQUEST.person_key, REQUEST.source_event_id,
                             project="staging")
    assert decode_request(encode_request(tagged)) == tagged


def test_a_single_projects_request_is_the_six_fields_it_always_was() -> None:
    raw = encode_request(REQUEST)
    assert len(orjson.loads(raw[2:])) == 6
    assert decode_request(raw).project == ""


def test_a_project_that_is_not_text_is_refused() -> None:
    fields = orjson.loads(encode_request(REQUEST)[2:])
    with pytest.raises(DecodeError, match="wrong type"):
        decode_request(encode_request(REQUEST)[:2] + orjson.dumps([*fields, 5]))
    with pytest.raises(DecodeError, match="not the array of request fields"):
        decode_request(encode_request(REQUEST)[:2] + orjson.dumps([*fields, "a", "b"]))
