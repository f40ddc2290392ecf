"""Deletion requests (FPI_DELETION_TOPIC): the request format, and what the handler does with each outcome of the
forget steps (done, retried, refused, malformed). The steps themselves run on the real broker in
tests/e2e/test_deletion_topic.py."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from streams.deletions import (
    INVALID_DELETION_REQUEST,
    DeletionHandler,
    DeletionRequest,
    InvalidDeletionRequest,
    parse_deletion_request,
)
from streams.errors import DeliveryError, Rejected, RetriableDelivery
from streams.forgetting import ForgetReport
from streams.iterable.retry import RetryPolicy
from streams.settings import Settings
from streams.stages import Control, DeadLetterSink
from tests.unit.stages.test_stages import At, DeadLetterTopic, Record

EMAIL = "jane@example.com"


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"email": "jane@example.com"}', DeletionRequest(Control.FORGET, email=EMAIL)),
    (b'{"email": "  jane@example.com "}', DeletionRequest(Control.FORGET, email=EMAIL)),
    (b'{"userId": "u-1", "action": "unforget"}', DeletionRequest(Control.UNFORGET, user_id="u-1")),
    (b'{"userId": "u-1", "action": "forget", "requestId": 7}', DeletionRequest(Control.FORGET, user_id="u-1")),
])
def test_parses_a_request(raw: bytes, expected: DeletionRequest) -> None:
    assert parse_deletion_request(raw) == expected


@pytest.mark.parametrize(("raw", "says"), [
    (None, "empty record"),
    (b"", "empty record"),
    (b"email=jane@example.com", "not JSON"),
    (b'["jane@example.com"]', "not a JSON object but a list"),
    (b'{"mail": "jane@example.com"}', 'neither "email" nor "userId"'),
    (b'{"email": "jane@example.com", "userId": "u-1"}', 'both "email" and "userId"'),
    (b'{"email": ""}', '"email" is not a non-empty string'),
    (b'{"userId": 12}', '"userId" is not a non-empty string'),
    (b'{"email": "jane@example.com", "action": "delete"}', "\"action\" is 'delete'; it must be"),
    (b'{"email": "jane@example.com", "action": null}', '"action" is a NoneType'),
])
def test_refuses_a_malformed_request_saying_why(raw: bytes | None, says: str) -> None:
    with pytest.raises(InvalidDeletionRequest) as caught:
        parse_deletion_request(raw)
    assert says in str(caught.value)
    assert EMAIL not in str(caught.value), "the message repeats the email"


class Forget:
    """The forget steps, answering each call with the next outcome (an error to raise, or done)."""

    def __init__(self, *outcomes: DeliveryError | None) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str | None, str | None, Control]] = []

    async def __call__(self, settings: Settings, email: str | None, user_id: str | None,
                       control: Control) -> ForgetReport:
        self.calls.append((email, user_id, control))
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return ForgetReport((("marker", 0),), 4)


def handler(forget: Forget, dead: DeadLetterTopic, slept: list[float], given_up: bool = False) -> DeletionHandler:
    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    return DeletionHandler(Settings(), DeadLetterSink(dead.send), policy=RetryPolicy(jitter=0.0), forget=forget,
                           sleep=sleep, given_up=lambda record: given_up)


def dead_letters(reason: str) -> float:
    return REGISTRY.get_sample_value("fpi_dead_letters_total", {"reason": reason}) or 0.0


async def test_a_request_is_done_once() -> None:
    forget, dead, slept = Forget(None), DeadLetterTopic(), list[float]()
    await handler(forget, dead, slept).handle(Record(b'{"userId": "u-1", "action": "unforget"}'))
    assert forget.calls == [(None, "u-1", Control.UNFORGET)] and dead.sent == [] and slept == []


async def test_an_outage_is_retried_until_done() -> None:
    forget, dead = Forget(RetriableDelivery("users/forget answered 503", status=503), None), DeadLetterTopic()
    slept: list[float] = []
    await handler(forget, dead, slept).handle(Record(b'{"email": "jane@example.com"}'))
    assert len(forget.calls) == 2 and slept == [0.2] and dead.sent == []


async def test_a_refusal_is_dead_lettered_with_its_reason() -> None:
    before = dead_letters("iterable_rejected")
    forget, dead, slept = Forget(Rejected("/api/users/forget answered 400 InvalidEmailAddressError", status=400,
                                          code="InvalidEmailAddressError")), DeadLetterTopic(), list[float]()
    await handler(forget, dead, slept).handle(Record(b'{"email": "jane@example.com"}', message=At("deletions", 1, 7)))
    [letter] = dead.letters()
    assert (letter.reason, letter.iterable_status, letter.iterable_code) == (
        "iterable_rejected", 400, "InvalidEmailAddressError")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("deletions", 1, 7)
    assert "400" in letter.detail and slept == []
    assert dead_letters("iterable_rejected") == before + 1


async def test_a_malformed_request_is_dead_lettered_without_its_bytes_and_counted() -> None:
    before = dead_letters(INVALID_DELETION_REQUEST)
    forget, dead, slept = Forget(), DeadLetterTopic(), list[float]()
    raw = b'{"email": "jane@example.com", "userId": "u-1"}'
    await handler(forget, dead, slept).handle(Record(raw, key=EMAIL.encode(), message=At("deletions", 0, 3)))
    [(key, value)] = dead.sent
    [letter] = dead.letters()
    assert letter.reason == INVALID_DELETION_REQUEST and 'both "email" and "userId"' in letter.detail
    assert key is None and EMAIL.encode() not in value, "the dead letter holds the email"
    assert forget.calls == [] and dead_letters(INVALID_DELETION_REQUEST) == before + 1


async def test_a_request_given_up_in_a_rebalance_is_left_to_the_next_owner() -> None:
    forget, dead, slept = Forget(RetriableDelivery("users/forget timed out")), DeadLetterTopic(), list[float]()
    await handler(forget, dead, slept, given_up=True).handle(Record(b'{"userId": "u-1"}'))
    assert len(forget.calls) == 1 and slept == [] and dead.sent == []


def test_the_deletion_topic_is_one_of_the_workers_topics_only_when_set() -> None:
    from streams.topics import worker_topics

    assert [spec for spec in worker_topics(Settings()) if "deletion" in spec.name] == []
    [spec] = [spec for spec in worker_topics(Settings(deletion_topic="privacy.deletions"))
              if spec.name == "privacy.deletions"]
    assert (spec.exact, spec.cleanup_policy) == (False, "delete")
    assert Settings(deletion_topic="").deletion_topic is None
