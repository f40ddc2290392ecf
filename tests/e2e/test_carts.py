"""End to end on the real broker: shopping carts kept as state (issue 21 part 1).

A person identifies, adds a mug, adds two teas, removes the mug and buys: after each step Iterable (the
emulator) holds the whole cart the worker keeps in its ``carts`` table, and after the purchase an empty one.
The worker is killed with SIGKILL after the second step and restarted: the cart it recovers from the
``carts`` changelog is the one the later steps build on (a lost or doubled change would show in the cart).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from streams.commands.produce import produce_lines
from streams.emulator import EmulatorServer
from tests.support import WorkerProcess, running, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EMAIL = "cart.person@example.com"
MUG = {"product_id": "mug", "name": "Mug", "price": 19.0, "sku": "M-1", "category": "Kitchen"}
TEA = {"product_id": "tea", "name": "Tea", "price": 4.5}


def line(message_id: str, minute: int, **fields: Any) -> str:
    return json.dumps({"messageId": message_id, "anonymousId": "dev-cart",
                       "timestamp": f"2024-03-05T14:{minute:02d}:00Z", "context": {"traits": {"email": EMAIL}},
                       **fields})


def track(message_id: str, minute: int, name: str, properties: dict[str, Any]) -> str:
    return line(message_id, minute, type="track", event=name, properties=properties)


STEPS: list[tuple[str, list[tuple[str, int]] | None]] = [
    (track("c-1", 1, "Product Added", MUG), [("mug", 1)]),
    (track("c-2", 2, "Product Added", {**TEA, "quantity": 2}), [("mug", 1), ("tea", 2)]),
    (track("c-3", 3, "Product Removed", {"product_id": "mug"}), [("tea", 2)]),
    (track("c-4", 4, "Product Added", {**TEA, "quantity": 1}), [("tea", 3)]),
    (track("c-5", 5, "Order Completed", {"order_id": "o-1", "total": 13.5, "campaignId": 1, "templateId": 2,
                                         "items": [{**TEA, "quantity": 3}]}), None),
]


def cart_in_iterable(project: Any) -> list[tuple[str, int]] | None:
    """The profile's ``shoppingCartItems`` as (id, quantity), or ``None`` when it has no cart (cleared)."""
    user = project.by_email.get(EMAIL)
    if user is None or "shoppingCartItems" not in user.data_fields:
        return None
    return [(item["id"], item["quantity"]) for item in user.data_fields["shoppingCartItems"]]


async def test_add_add_remove_purchase_keeps_the_whole_cart_through_a_crash(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    project = emulator.state.project
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_CARTS="true",
                     FPI_TABLE_STANDBY_REPLICAS="0", FPI_CONSUMER_INSTANCE_ID="worker-0")
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log).start()
    seen: list[list[tuple[str, int]] | None] = []
    try:
        identify = line("c-0", 0, type="identify", traits={"email": EMAIL})
        await produce_lines([identify], bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: EMAIL in project.by_email, 120, what="the identified user")
        for step, (event, cart) in enumerate(STEPS):
            await produce_lines([event], bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
            message_id = json.loads(event)["messageId"]
            if cart is None:
                await asyncio.to_thread(wait_for, lambda: "o-1" in project.purchases, 120, what="the purchase")
            else:
                await asyncio.to_thread(wait_for, lambda c=cart, m=message_id: cart_in_iterable(project) == c
                                        and m in project.events, 120, what=f"the cart after {message_id}: {cart}")
            seen.append(cart_in_iterable(project))
            if step == 1:
                # Let the cart reach the changelog, then die without a chance to flush more.
                await asyncio.sleep(4)
                worker.kill()
                worker = WorkerProcess(env, log).start()
        await asyncio.sleep(2)  # nothing more may arrive: a replayed change would rewrite the cart
    except BaseException:
        print(worker.log_text()[-6000:])
        raise
    finally:
        worker.stop()
    assert seen == [cart for _, cart in STEPS]
    assert cart_in_iterable(project) is None, "the purchase must leave an empty cart"
    assert len(project.purchases) == 1


BURST = 30


async def test_a_burst_of_one_persons_cart_changes_is_coalesced(
    kafka_bootstrap: str, emulator: EmulatorServer, tmp_path: Path
) -> None:
    """30 Product Added events produced at once: Iterable ends with the whole cart, every event is tracked, and
    fewer than 30 updateCart calls carried it (a burst handled in one apply batch makes one call)."""
    project = emulator.state.project
    env = worker_env(kafka_bootstrap, emulator.url, tmp_path / "data", FPI_CARTS="true")
    path = "/api/commerce/updateCart"
    with running(WorkerProcess(env, tmp_path / "worker.log")):
        identify = line("b-0", 0, type="identify", traits={"email": EMAIL})
        await produce_lines([identify], bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: EMAIL in project.by_email, 120, what="the identified user")
        burst = [track(f"b-{n}", 1, "Product Added", MUG) for n in range(1, BURST + 1)]
        await produce_lines(burst, bootstrap=kafka_bootstrap, topic=env["FPI_SOURCE_TOPIC"])
        await asyncio.to_thread(wait_for, lambda: cart_in_iterable(project) == [("mug", BURST)]
                                and all(f"b-{n}" in project.events for n in range(1, BURST + 1)), 120,
                                what=f"the cart of {BURST} mugs")
        await asyncio.sleep(1)
    calls = project.counters.responses[f"{path} 200"]
    print(f"{BURST} cart changes made {calls} updateCart calls")
    assert 1 <= calls < BURST
    assert cart_in_iterable(project) == [("mug", BURST)]
