"""A person's shopping cart as state: what each cart event does to it (issue 21 part 1).

Iterable's ``commerce/updateCart`` *replaces* the profile's ``shoppingCartItems`` (iterable-api.md §2.6), and
``commerce/trackPurchase`` clears it (§2.5); so the worker keeps each person's whole cart (table ``carts``) and
sends it whole after every change, where a forwarder of the event's one item would empty the rest of the cart.

The rules (pure; ``streams.mapping.iterable`` builds the items and the requests):

* ``Product Added``: the item's quantity (default 1) adds to the item of the same ``id`` already in the cart
  (its other fields take the event's values), or the item is appended.
* ``Product Removed``: the quantity (default 1; more than there is: all of it) comes off the item of that
  ``id``; removing the last unit removes the item. An item not in the cart leaves it unchanged.
* ``Cart Viewed`` and the configured whole-cart event (``FPI_CART_EVENT``): their ``products`` (else
  ``items``) *are* the cart; items of the same ``id`` add up.
* ``Order Completed``, once sent to ``trackPurchase``: the cart is empty.

A cart holds at most ``max_items`` distinct items: a change beyond that leaves the cart as it was
(``add_item`` returns ``None``; the caller drops the event ``cart_full``).

Coalescing (``coalesce``): a burst of cart changes of one person handled in one batch makes one
``updateCart``, the last: each carries the whole cart, so an earlier one followed by a later one of the same
person changes nothing the later one does not overwrite. The later call keeps its place among the person's
calls; every other call stays.

Replay: the cart remembers the message ids of the last ``APPLIED_KEPT`` events that changed it (or could
have), so a batch redelivered after its changes were stored changes nothing twice (``Cart.seen``); quantities
add up, so applying an ``add`` again would be wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streams.model import Endpoint, IterableRequest

__all__ = ["APPLIED_KEPT", "CART_EVENTS", "Cart", "CartItem", "add_item", "coalesce", "remove_item", "whole_cart"]

CART_EVENTS = frozenset({"Product Added", "Product Removed", "Cart Viewed"})
"""The e-commerce events (Segment's e-commerce spec, which Freshpaint's track events follow) that change a cart."""

APPLIED_KEPT = 100
"""How many message ids of applied cart events a cart remembers (module doc, "Replay")."""

CartItem = Mapping[str, Any]
"""One ``CommerceItem`` body (iterable-api.md §2.5): ``id``, ``name``, ``price``, ``quantity`` and optional
``sku``, ``categories``, ``url``, ``imageUrl``, ``description``, ``dataFields``."""


@dataclass(frozen=True, slots=True)
class Cart:
    """One person's cart: its items in the order first added, and the events already applied to it."""

    items: tuple[CartItem, ...] = ()
    applied: tuple[str, ...] = ()
    """Message ids of the latest cart events applied (oldest first), at most ``APPLIED_KEPT``."""

    def seen(self, message_id: str) -> bool:
        """Whether the event ``message_id`` was applied already (a redelivery)."""
        return message_id in self.applied

    def record(self, message_id: str, items: Sequence[CartItem] | None = None) -> Cart:
        """The cart once the event ``message_id`` is applied: with ``items`` (``None``: the same items)."""
        kept = (*self.applied, message_id)[-APPLIED_KEPT:]
        return Cart(self.items if items is None else tuple(items), kept)


def add_item(items: Sequence[CartItem], item: CartItem, max_items: int) -> tuple[CartItem, ...] | None:
    """``items`` with ``item`` added: its quantity adds to the item of the same ``id`` (whose fields become
    ``item``'s), else it is appended. ``None`` when that would make more than ``max_items`` items."""
    out = list(items)
    for index, existing in enumerate(out):
        if existing["id"] == item["id"]:
            out[index] = {**existing, **item, "quantity": int(existing["quantity"]) + int(item["quantity"])}
            return tuple(out)
    if len(out) >= max_items:
        return None
    return (*out, item)


def remove_item(items: Sequence[CartItem], item_id: str, quantity: int) -> tuple[CartItem, ...]:
    """``items`` with ``quantity`` units of the item ``item_id`` taken off; its last unit removes it."""
    out: list[CartItem] = []
    for existing in items:
        if existing["id"] == item_id:
            left = int(existing["quantity"]) - quantity
            if left > 0:
                out.append({**existing, "quantity": left})
            continue
        out.append(existing)
    return tuple(out)


def whole_cart(items: Sequence[CartItem], max_items: int) -> tuple[CartItem, ...] | None:
    """The cart that is exactly ``items`` (items of one ``id`` add up); ``None`` beyond ``max_items`` items."""
    cart: tuple[CartItem, ...] = ()
    for item in items:
        added = add_item(cart, item, max_items)
        if added is None:
            return None
        cart = added
    return cart


def coalesce(requests: Sequence[IterableRequest]) -> list[int]:
    """The positions of ``requests`` to send, in order: every request but a ``commerce/updateCart`` that a later
    ``updateCart`` of the same person (and project) follows (module doc, "Coalescing")."""
    later: set[tuple[str, str]] = set()
    kept: list[int] = []
    for index in range(len(requests) - 1, -1, -1):
        request = requests[index]
        if request.endpoint is Endpoint.COMMERCE_UPDATE_CART:
            who = (request.person_key, request.project)
            if who in later:
                continue
            later.add(who)
        kept.append(index)
    kept.reverse()
    return kept
