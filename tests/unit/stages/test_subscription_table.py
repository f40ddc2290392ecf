"""The apply stage keeps the subscription state it sent (issue 21 part 3): written only once the batch's requests
are in Kafka, a replayed identify costs no call, ``forget`` deletes the entry (broker-free)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.codecs import FrameItem, decode_request, encode_frame
from streams.mapping import MappingConfig
from streams.mapping.subscriptions import Sent
from streams.model import Endpoint
from streams.outbox import Outbox, Partitioner
from streams.stages import (
    ApplyStage,
    Control,
    DeadLetterSink,
    IdentityTable,
    SubscriptionTable,
    control_to_bytes,
    sent_from_bytes,
    sent_to_bytes,
)
from tests.unit.stages.test_carts import EMAIL, _frame, _line
from tests.unit.stages.test_stages import PARTITIONS, At, DeadLetterTopic, Record, Topic

OPT_OUT = _line("i-1", type="identify", traits={"email": EMAIL, "email_opt_out": True})
OPT_OUT_REPLAYED = _line("i-2", type="identify", traits={"email": EMAIL, "email_opt_out": True})


class Stage:
    def __init__(self, on_send: Any = None) -> None:
        self.identities: dict[bytes, bytes] = {}
        self.subscriptions: dict[bytes, bytes] = {}
        self.requests = Topic(on_send=on_send)
        self.stage = ApplyStage(IdentityTable(self.identities), MappingConfig(opt_out_traits={"email_opt_out": 12}),
                                DeadLetterSink(DeadLetterTopic().send),
                                Outbox(self.requests, Partitioner(PARTITIONS), 900_000),
                                subscriptions=SubscriptionTable(self.subscriptions))

    def calls(self) -> list[str]:
        requests = [decode_request(item.value) for item in self.requests.items()]
        return [r.endpoint.value.split()[0] for r in requests
                if r.endpoint in (Endpoint.SUBSCRIPTION_SUBSCRIBE, Endpoint.SUBSCRIPTION_UNSUBSCRIBE)]


def test_round_trip_and_version() -> None:
    sent = Sent({"messageChannel:12": False, "emailList:3": True})
    assert sent_from_bytes(sent_to_bytes(sent)) == sent
    with pytest.raises(ValueError, match="format"):
        sent_from_bytes(b"\x09{}")


async def test_written_after_kafka_and_a_replay_costs_no_call() -> None:
    stage: Stage

    def check_unwritten() -> None:
        assert stage.subscriptions == {}, "the subscription state was stored before its request was sent"

    stage = Stage(on_send=check_unwritten)
    await stage.stage.handle([_frame([OPT_OUT], 0)])
    assert SubscriptionTable(stage.subscriptions).get(EMAIL) == Sent({"messageChannel:12": False})
    stage.requests.on_send = None
    await stage.stage.handle([_frame([OPT_OUT_REPLAYED], 1)])
    assert stage.calls() == ["DELETE"]


async def test_a_crash_before_kafka_sends_the_change_again() -> None:
    stage = Stage()

    def crash() -> None:
        raise RuntimeError("broker gone")

    stage.requests.on_send = crash
    with pytest.raises(RuntimeError):
        await stage.stage.handle([_frame([OPT_OUT], 0)])
    assert stage.subscriptions == {}
    stage.requests.on_send = None
    await stage.stage.handle([_frame([OPT_OUT], 0)])
    assert stage.calls() == ["DELETE"]


async def test_forget_deletes_the_entry() -> None:
    stage = Stage()
    await stage.stage.handle([_frame([OPT_OUT], 0)])
    assert EMAIL.encode() in stage.subscriptions
    forget = FrameItem(EMAIL.encode(), control_to_bytes(Control.FORGET), ("forget", None, None))
    await stage.stage.handle([Record(encode_frame([forget]), message=At("by-person", 0, 1))])
    assert EMAIL.encode() not in stage.subscriptions
