"""The apply stage keeps carts (issue 21 part 1): written only once the batch's requests are in Kafka,
a redelivered batch changes no cart twice, ``forget`` deletes the cart; and the ``devices`` table of push
registrations (part 2) the same way (broker-free)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.codecs import FrameItem, decode_request, encode_event_internal, encode_frame
from streams.mapping import Cart, MappingConfig, Registered
from streams.model import Endpoint
from streams.outbox import Outbox, Partitioner
from streams.stages import (
    ApplyStage,
    CartTable,
    Control,
    DeadLetterSink,
    DeviceTable,
    IdentityTable,
    cart_from_bytes,
    cart_to_bytes,
    control_to_bytes,
    registered_from_bytes,
    registered_to_bytes,
)
from tests.unit.stages.test_stages import PARTITIONS, At, DeadLetterTopic, Record, Topic, _event

EMAIL = "jane@example.com"


def _line(message_id: str, **fields: Any) -> str:
    return json.dumps({"anonymousId": "d-1", "messageId": message_id, "context": {"traits": {"email": EMAIL}},
                       **fields})


IDENTIFY = _line("i-1", type="identify", traits={"email": EMAIL})
ADD_MUG = _line("a-1", type="track", event="Product Added",
                properties={"product_id": "mug", "name": "Mug", "price": 19.0})
ADD_MUG_AGAIN = _line("a-2", type="track", event="Product Added",
                      properties={"product_id": "mug", "name": "Mug", "price": 19.0, "quantity": 2})
REMOVE_MUG = _line("r-1", type="track", event="Product Removed", properties={"product_id": "mug"})


def _frame(lines: list[str], offset: int) -> Record:
    items = [FrameItem(EMAIL.encode(), encode_event_internal(_event(text)), ("src", 0, n))
             for n, text in enumerate(lines)]
    return Record(encode_frame(items), message=At("by-person", 0, offset))


class Stage:
    def __init__(self, on_send: Any = None) -> None:
        self.identities: dict[bytes, bytes] = {}
        self.carts: dict[bytes, bytes] = {}
        self.devices: dict[bytes, bytes] = {}
        self.requests = Topic(on_send=on_send)
        self.dead = DeadLetterTopic()
        self.stage = ApplyStage(IdentityTable(self.identities), MappingConfig(carts=True, push_app_name="app"),
                                DeadLetterSink(self.dead.send), Outbox(self.requests, Partitioner(PARTITIONS), 900_000),
                                carts=CartTable(self.carts), devices=DeviceTable(self.devices))

    def cart(self) -> list[tuple[str, int]]:
        stored = CartTable(self.carts).get(EMAIL)
        assert stored is not None
        return [(item["id"], item["quantity"]) for item in stored.items]

    def sent_carts(self) -> list[list[tuple[str, int]]]:
        requests = [decode_request(item.value) for item in self.requests.items()]
        return [[(i["id"], i["quantity"]) for i in r.body["items"]]  # type: ignore[union-attr, index]
                for r in requests if r.endpoint is Endpoint.COMMERCE_UPDATE_CART]


class TestCartTable:
    def test_devices_round_trip_and_version(self) -> None:
        registered = Registered(("0123456789abcdef",))
        assert registered_from_bytes(registered_to_bytes(registered)) == registered
        with pytest.raises(ValueError, match="format"):
            registered_from_bytes(b"\x09[]")

    def test_round_trip_and_version(self) -> None:
        cart = Cart(({"id": "a", "name": "A", "price": 1.5, "quantity": 2},), ("m-1",))
        assert cart_from_bytes(cart_to_bytes(cart)) == cart
        with pytest.raises(ValueError, match="format"):
            cart_from_bytes(b"\x09{}")


class TestApplyKeepsCarts:
    async def test_cart_follows_add_add_remove(self) -> None:
        stage = Stage()
        await stage.stage.handle([_frame([IDENTIFY, ADD_MUG], 0)])
        assert stage.cart() == [("mug", 1)]
        await stage.stage.handle([_frame([ADD_MUG_AGAIN], 1)])
        assert stage.cart() == [("mug", 3)]
        await stage.stage.handle([_frame([REMOVE_MUG], 2)])
        assert stage.cart() == [("mug", 2)]
        assert stage.sent_carts() == [[("mug", 1)], [("mug", 3)], [("mug", 2)]]

    async def test_a_burst_in_one_batch_makes_one_update_the_last(self) -> None:
        stage = Stage()
        await stage.stage.handle([_frame([IDENTIFY, ADD_MUG, ADD_MUG_AGAIN], 0), _frame([REMOVE_MUG], 1)])
        assert stage.cart() == [("mug", 2)]
        assert stage.sent_carts() == [[("mug", 2)]]
        requests = [decode_request(item.value) for item in stage.requests.items()]
        tracked = [r.source_event_id for r in requests if r.endpoint is Endpoint.EVENTS_TRACK]
        assert tracked == ["a-1", "a-2", "r-1"]
        assert requests[-1].endpoint is Endpoint.COMMERCE_UPDATE_CART, "the update moved before the person's events"

    async def test_cart_is_written_only_after_the_requests_are_in_kafka(self) -> None:
        stage: Stage

        def check_unwritten() -> None:
            assert stage.carts == {}, "the cart was written before the batch's requests were sent"

        stage = Stage(on_send=check_unwritten)
        await stage.stage.handle([_frame([IDENTIFY, ADD_MUG], 0)])
        assert stage.cart() == [("mug", 1)]

    async def test_a_crash_before_kafka_leaves_the_cart_and_a_redelivery_rebuilds_it(self) -> None:
        stage = Stage()
        await stage.stage.handle([_frame([IDENTIFY, ADD_MUG], 0)])

        def crash() -> None:
            raise RuntimeError("broker gone")

        stage.requests.on_send = crash
        with pytest.raises(RuntimeError):
            await stage.stage.handle([_frame([ADD_MUG_AGAIN], 1)])
        assert stage.cart() == [("mug", 1)], "a failed batch changed the cart"
        stage.requests.on_send = None
        await stage.stage.handle([_frame([ADD_MUG_AGAIN], 1)])
        assert stage.cart() == [("mug", 3)]

    async def test_a_batch_redelivered_after_its_write_changes_nothing_twice(self) -> None:
        stage = Stage()
        batch = [_frame([IDENTIFY, ADD_MUG, ADD_MUG_AGAIN, REMOVE_MUG], 0)]
        await stage.stage.handle(batch)
        assert stage.cart() == [("mug", 2)]
        await stage.stage.handle(batch)  # the offset commit was lost: the whole batch comes again
        assert stage.cart() == [("mug", 2)]
        assert stage.sent_carts()[-1] == [("mug", 2)]

    async def test_forget_deletes_the_cart(self) -> None:
        stage = Stage()
        await stage.stage.handle([_frame([IDENTIFY, ADD_MUG], 0)])
        forget = FrameItem(EMAIL.encode(), control_to_bytes(Control.FORGET), ("forget", None, None))
        await stage.stage.handle([Record(encode_frame([forget]), message=At("by-person", 0, 1))])
        assert EMAIL.encode() not in stage.carts


PUSH = _line("p-1", type="track", event="Opened App", context={"traits": {"email": EMAIL},
                                                             "device": {"token": "tok", "type": "android"}})


class TestApplyKeepsDevices:
    async def test_registered_once_written_after_kafka_and_forgotten(self) -> None:
        stage: Stage

        def check_unwritten() -> None:
            assert stage.devices == {}, "the registration was stored before its request was sent"

        stage = Stage(on_send=check_unwritten)
        await stage.stage.handle([_frame([IDENTIFY, PUSH], 0)])
        stage.requests.on_send = None
        await stage.stage.handle([_frame([PUSH.replace("p-1", "p-2")], 1)])
        registrations = [r for r in (decode_request(i.value) for i in stage.requests.items())
                         if r.endpoint is Endpoint.USERS_REGISTER_DEVICE_TOKEN]
        assert len(registrations) == 1
        assert EMAIL.encode() in stage.devices
        forget = FrameItem(EMAIL.encode(), control_to_bytes(Control.FORGET), ("forget", None, None))
        await stage.stage.handle([Record(encode_frame([forget]), message=At("by-person", 0, 2))])
        assert EMAIL.encode() not in stage.devices
