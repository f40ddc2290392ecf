"""Carts as state (issue 21 part 1): ``streams.mapping.cart`` and the cart rule of ``apply_event``."""

from __future__ import annotations

from typing import Any

import pytest

from streams.mapping import Applied, Cart, MappingConfig, apply_event
from streams.mapping.cart import APPLIED_KEPT, add_item, coalesce, remove_item, whole_cart
from streams.model import DropReason, Endpoint, IterableRequest
from tests.unit.builders import NOW, event, person

MUG = {"product_id": "sku-1", "sku": "45790-32", "name": "Mug", "price": 19.0, "category": "Kitchen",
       "url": "https://shop/mug", "image_url": "https://shop/mug.jpg"}
TEA = {"product_id": "sku-2", "name": "Tea", "price": 4.5}
MUG_ITEM = {"id": "sku-1", "sku": "45790-32", "name": "Mug", "price": 19.0, "categories": ["Kitchen"],
            "url": "https://shop/mug", "imageUrl": "https://shop/mug.jpg"}


def cart_run(name: str, props: dict[str, Any], cart: Cart | None, message_id: str = "m-1",
             **config: Any) -> Applied:
    config.setdefault("carts", True)
    ev = event(event_name=name, properties=props, message_id=message_id)
    who = person()
    return apply_event(ev, who.person_key, who, MappingConfig(**config), NOW, cart)


def cart_of(applied: Applied) -> list[dict[str, Any]]:
    """The items of the updateCart request ``applied`` sends (the last request)."""
    request = applied.decision.requests[-1]
    assert request.endpoint is Endpoint.COMMERCE_UPDATE_CART
    assert request.body["user"] == {"email": "jane@example.com"}
    return list(request.body["items"])  # type: ignore[arg-type]


class TestItemRules:
    def test_quantities_add_up_and_fields_take_the_newest(self) -> None:
        once = add_item((), {"id": "a", "name": "A", "price": 1, "quantity": 2}, 5)
        assert once is not None
        twice = add_item(once, {"id": "a", "name": "A2", "price": 2, "quantity": 3}, 5)
        assert twice == ({"id": "a", "name": "A2", "price": 2, "quantity": 5},)

    def test_removing_the_last_unit_removes_the_item(self) -> None:
        items = ({"id": "a", "quantity": 2}, {"id": "b", "quantity": 1})
        assert remove_item(items, "a", 1) == ({"id": "a", "quantity": 1}, {"id": "b", "quantity": 1})
        assert remove_item(items, "a", 2) == ({"id": "b", "quantity": 1},)
        assert remove_item(items, "a", 9) == ({"id": "b", "quantity": 1},)
        assert remove_item(items, "zz", 1) == items

    def test_bound_on_distinct_items(self) -> None:
        full = ({"id": "a", "quantity": 1}, {"id": "b", "quantity": 1})
        assert add_item(full, {"id": "c", "quantity": 1}, 2) is None
        assert add_item(full, {"id": "a", "quantity": 1}, 2) == ({"id": "a", "quantity": 2}, full[1])
        assert whole_cart([*full, {"id": "c", "quantity": 1}], 2) is None

    def test_the_cart_remembers_a_bounded_number_of_events(self) -> None:
        cart = Cart()
        for n in range(APPLIED_KEPT + 5):
            cart = cart.record(f"m{n}")
        assert len(cart.applied) == APPLIED_KEPT
        assert cart.seen(f"m{APPLIED_KEPT + 4}") and not cart.seen("m0")


class TestCartEvents:
    def test_add_add_remove_purchase(self) -> None:
        added = cart_run("Product Added", MUG, None, "e1")
        assert [r.endpoint for r in added.decision.requests] == [Endpoint.EVENTS_TRACK, Endpoint.COMMERCE_UPDATE_CART]
        assert cart_of(added) == [{**MUG_ITEM, "quantity": 1}]
        assert added.cart is not None
        second = cart_run("Product Added", {**TEA, "quantity": 2}, added.cart, "e2")
        assert cart_of(second) == [{**MUG_ITEM, "quantity": 1}, {"id": "sku-2", "name": "Tea", "price": 4.5,
                                                                  "quantity": 2}]
        assert second.cart is not None
        removed = cart_run("Product Removed", {"product_id": "sku-1"}, second.cart, "e3")
        assert cart_of(removed) == [{"id": "sku-2", "name": "Tea", "price": 4.5, "quantity": 2}]
        assert removed.cart is not None
        bought = cart_run("Order Completed", {"items": [{"id": "sku-2", "name": "Tea", "price": 4.5, "quantity": 2}],
                                              "total": 9.0, "campaignId": 1, "templateId": 2}, removed.cart, "e4")
        assert [r.endpoint for r in bought.decision.requests] == [Endpoint.COMMERCE_TRACK_PURCHASE]
        assert bought.cart is not None and bought.cart.items == () and bought.cart.seen("e4")

    @pytest.mark.parametrize("name", ["Cart Viewed", "Cart Updated"])
    def test_whole_cart_events_replace_the_cart(self, name: str) -> None:
        before = Cart(({"id": "old", "name": "Old", "price": 1, "quantity": 1},))
        applied = cart_run(name, {"products": [MUG, TEA, {**TEA, "quantity": 3}]}, before, cart_event="Cart Updated")
        assert [item["id"] for item in cart_of(applied)] == ["sku-1", "sku-2"]
        assert cart_of(applied)[1]["quantity"] == 4

    def test_unconfigured_whole_cart_event_is_an_ordinary_event(self) -> None:
        applied = cart_run("Cart Updated", {"products": [MUG]}, None)
        assert [r.endpoint for r in applied.decision.requests] == [Endpoint.EVENTS_TRACK]
        assert applied.cart is None

    def test_carts_off_changes_nothing(self) -> None:
        applied = cart_run("Product Added", MUG, None, carts=False)
        assert [r.endpoint for r in applied.decision.requests] == [Endpoint.EVENTS_TRACK]
        bought = cart_run("Order Completed", {"items": [{**MUG_ITEM, "quantity": 1}], "total": 1, "campaignId": 1,
                                              "templateId": 2}, Cart(), carts=False)
        assert bought.decision.sends and bought.cart is None

    def test_an_unchanged_cart_makes_no_update_call(self) -> None:
        stored = Cart(({"id": "a", "name": "A", "price": 1, "quantity": 1},))
        applied = cart_run("Product Removed", {"product_id": "not-there"}, stored)
        assert [r.endpoint for r in applied.decision.requests] == [Endpoint.EVENTS_TRACK]
        assert applied.cart is not None and applied.cart.items == stored.items and applied.cart.seen("m-1")

    def test_a_redelivered_event_changes_nothing_twice(self) -> None:
        first = cart_run("Product Added", MUG, None, "e1")
        assert first.cart is not None
        again = cart_run("Product Added", MUG, first.cart, "e1")
        assert cart_of(again) == [{**MUG_ITEM, "quantity": 1}]
        assert again.cart is None

    def test_a_full_cart_drops_the_change_with_a_reason(self) -> None:
        stored = Cart(({"id": "a", "name": "A", "price": 1, "quantity": 1},))
        applied = cart_run("Product Added", MUG, stored, cart_max_items=1)
        assert applied.decision.drop_reason is DropReason.CART_FULL
        assert "FPI_CART_MAX_ITEMS" in (applied.decision.detail or "")
        assert applied.cart is not None and applied.cart.items == stored.items and applied.cart.seen("m-1")

    @pytest.mark.parametrize(("name", "props", "named"), [
        ("Product Added", {"product_id": "a", "price": 1}, "name"),
        ("Product Added", {"product_id": "a", "name": "A"}, "price"),
        ("Product Added", {"product_id": "a", "name": "A", "price": 1, "quantity": 0}, "quantity"),
        ("Product Removed", {"quantity": 1}, "product_id"),
        ("Cart Viewed", {"products": "nope"}, "products"),
        ("Cart Viewed", {"products": [{"product_id": "a"}]}, "products[0].name"),
    ])
    def test_incomplete_items_leave_the_cart(self, name: str, props: dict[str, Any], named: str) -> None:
        applied = cart_run(name, props, None)
        assert applied.decision.drop_reason is DropReason.CART_INCOMPLETE
        assert named in (applied.decision.detail or "")

    def test_anonymous_cart_events_touch_no_cart(self) -> None:
        ev = event(event_name="Product Added", properties=MUG)
        applied = apply_event(ev, "k", None, MappingConfig(carts=True), NOW, None)
        assert applied.decision.drop_reason is DropReason.ANONYMOUS and applied.cart is None


class TestCoalesce:
    """A burst of one person's cart changes makes one updateCart, the last; other calls and the order stay."""

    @staticmethod
    def request(endpoint: Endpoint, person: str, tag: str, project: str = "") -> IterableRequest:
        return IterableRequest(endpoint, {"tag": tag}, person, tag, project=project)

    def test_the_last_update_of_each_person_is_kept_in_its_place(self) -> None:
        cart, track, purchase = Endpoint.COMMERCE_UPDATE_CART, Endpoint.EVENTS_TRACK, Endpoint.COMMERCE_TRACK_PURCHASE
        burst = [self.request(track, "a", "t1"), self.request(cart, "a", "c1"), self.request(cart, "b", "b1"),
                 self.request(track, "a", "t2"), self.request(cart, "a", "c2"), self.request(purchase, "a", "p"),
                 self.request(cart, "a", "c3"), self.request(track, "b", "t3")]
        kept = [burst[i].source_event_id for i in coalesce(burst)]
        assert kept == ["t1", "b1", "t2", "p", "c3", "t3"]

    def test_people_and_projects_are_apart(self) -> None:
        cart = Endpoint.COMMERCE_UPDATE_CART
        burst = [self.request(cart, "a", "x", "prod"), self.request(cart, "a", "y", "staging"),
                 self.request(cart, "b", "z", "prod")]
        assert coalesce(burst) == [0, 1, 2]
        assert coalesce([]) == []
