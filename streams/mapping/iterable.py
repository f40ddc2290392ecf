"""The seed's rules: one normalized event + the person's identity + settings -> a ``Decision``.

``apply_event`` is the "apply" stage of the worker (keyed by person key; table ``identities``) and
the core of ``explain``. Every request carries the single-item endpoint and the exact single-item
Iterable body; the sender folds them into bulk calls.

Identifiers per project type (seed "Iterable Project Types"; iterable-api.md §5):

* ``email``: the top-level identifier is ``email``; a known userId travels in ``dataFields.userId``
  on identify (§2.1 "Changing identifiers"). No email known -> drop ``missing_identifier``. An
  identify or alias with a new email for a person known under another one moves the profile with
  ``users/updateEmail`` (§2.7), then (identify) updates it under the new address.
* ``userId``: the top-level identifier is ``userId``; the email is a profile field and travels in
  ``dataFields.email`` on identify (§2.1, §5.3). No userId -> drop ``missing_identifier``.
* ``hybrid``: ``email`` and/or ``userId``, both when both are known. Which one Iterable looks up
  first when both are present is **unconfirmed** (§5.3): we send both because they belong to the
  same person in our identity state; when they point at different Iterable profiles Iterable answers
  409 "Email/userId conflict", a non-retryable data error that the sender dead-letters.

Carts (``config.carts``; ``streams.mapping.cart`` has the rules): a cart event is still sent to
``events/track``, then the person's whole changed cart to ``commerce/updateCart`` (§2.6); an
``Order Completed`` sent to ``trackPurchase`` empties the stored cart (Iterable clears it, §2.5).

Subscriptions (the ``*_trait`` settings; ``streams.mapping.subscriptions`` has the rules): an identify's
subscription traits leave its ``dataFields`` and become one subscribe / unsubscribe call per change, after its
``users/update``.

Replay safety: an identify older than the person's ``last_identified_at`` is dropped with
``stale_identify`` (its traits would overwrite newer profile fields; its identifiers are already
known). An identify with the same timestamp is sent again (idempotent).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from streams.mapping.cart import CART_EVENTS, Cart, add_item, remove_item, whole_cart
from streams.mapping.config import MappingConfig
from streams.mapping.fields import clean_data_fields, created_at
from streams.mapping.identifiers import iterable_id, looks_like_email, valid_email, valid_user_id
from streams.mapping.push import Registered, push_token
from streams.mapping.subscriptions import Sent, SubscriptionTraits, changes, trait_names
from streams.model import (
    Decision,
    DropReason,
    Endpoint,
    Event,
    EventType,
    Identity,
    IterableRequest,
    ProjectType,
)

__all__ = ["DEFAULT_IDENTIFY_RENAMES", "PURCHASE_EVENT", "Applied", "apply_event"]

PURCHASE_EVENT = "Order Completed"
"""The track event sent to ``commerce/trackPurchase`` (seed "Track Purchases")."""

DEFAULT_IDENTIFY_RENAMES: Mapping[str, str] = {
    "first_name": "firstName",
    "last_name": "lastName",
    "phone_number": "phoneNumber",
    "date_of_birth": "dateOfBirth",
    "zip_code": "zipCode",
}
"""Exactly the seed's "Enable Default Identify Transformations" table."""

_AUTOTRACK_EVENT = "$web_event"
_IDENTIFIER_FIELDS = ("email", "userId")
_PURCHASE_FIELDS = ("campaignId", "templateId", "items", "total", "order_id")
_ITEM_FIELDS = ("id", "sku", "name", "price", "quantity", "categories", "url", "imageUrl", "description")


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of ``apply_event``."""

    decision: Decision
    identity: Identity | None = None
    """The person's new state to store, or ``None`` when it did not change."""
    cart: Cart | None = None
    """The person's cart to store (``Cart()`` items empty: emptied), or ``None`` when it did not change."""
    devices: Registered | None = None
    """The person's registered push devices to store, or ``None`` when none was registered now."""
    subscriptions: Sent | None = None
    """The person's subscription state as sent, to store, or ``None`` when nothing was sent now."""


class _Drop(Exception):
    """Internal: short-circuits a rule with a drop decision."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(detail)
        self.decision = Decision.drop(reason, detail)


def apply_event(
    event: Event, person_key: str, identity: Identity | None, config: MappingConfig, now: datetime,
    cart: Cart | None = None, devices: Registered | None = None, subscriptions: Sent | None = None,
) -> Applied:
    """Decide which Iterable requests ``event`` becomes for the person ``person_key``.

    ``identity`` is the stored state of the person (``None`` when never identified), ``cart`` their stored
    cart (``None``: none yet; read only with ``config.carts``), ``devices`` the push devices registered for them
    (read only with ``config.push_app_name``), ``subscriptions`` what was sent of their subscription state
    (read when a subscription trait is set). The user's
    transformations run first. Returns the decision and, when it changed, the new identity.
    Expected outcomes (anonymous, missing identifier, incomplete purchase, ...) are drops, never
    exceptions.
    """
    transformed = config.transformations.apply(event)
    if transformed is None:
        return Applied(Decision.drop(DropReason.FILTERED, "dropped by a transformation rule"))
    rule = _Rule(transformed, person_key, identity, config, now, cart, subscriptions or Sent())
    applied = _dispatch(rule)
    return rule.with_push(applied, devices or Registered()) if config.push_app_name else applied


def _dispatch(rule: _Rule) -> Applied:
    transformed, config = rule.event, rule.config
    try:
        if transformed.type is EventType.IDENTIFY:
            return rule.identify()
        if transformed.type is EventType.ALIAS:
            return rule.alias()
        if transformed.type in (EventType.PAGE, EventType.SCREEN):
            return Applied(rule.view())
        if transformed.type is EventType.TRACK:
            if transformed.event_name == PURCHASE_EVENT:
                return rule.purchase_emptying_cart() if config.carts else Applied(rule.purchase())
            if config.carts and (transformed.event_name in CART_EVENTS
                                 or (bool(config.cart_event) and transformed.event_name == config.cart_event)):
                return rule.cart_change()
            return Applied(rule.track())
        raise _Drop(DropReason.UNSUPPORTED_TYPE, f"{transformed.type.value} events are not sent to Iterable")
    except _Drop as drop:
        return Applied(drop.decision)


@dataclass(frozen=True, slots=True)
class _Rule:
    event: Event
    person_key: str
    identity: Identity | None
    config: MappingConfig
    now: datetime
    cart: Cart | None = None
    sent: Sent = dataclasses.field(default_factory=Sent)

    # --- shared pieces ---------------------------------------------------------------------

    def request(self, endpoint: Endpoint, body: dict[str, Any]) -> IterableRequest:
        return IterableRequest(
            endpoint=endpoint,
            body=body,
            person_key=self.person_key,
            source_event_id=self.event.message_id,
            first_seen_at=self.now,
        )

    def data_fields(self, fields: Mapping[str, Any], exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        return clean_data_fields(fields, date_fields=self.config.date_fields, exclude=exclude)

    def known_person(self) -> tuple[str | None, str | None]:
        """(user id, email) of an identified person; drops anonymous events (seed "Events")."""
        if self.identity is None:
            if self.config.require_identify_first:
                raise _Drop(DropReason.ANONYMOUS, "no identify seen for this person yet")
            return self.event.user_id, self.event.email
        return (self.identity.user_id or self.event.user_id, self.identity.email or self.event.email)

    def identifiers(self, user_id: str | None, email: str | None) -> dict[str, str]:
        """Top-level identifiers for the project type (module doc); drops when the required one is missing."""
        project = self.config.project_type
        bad_email = email is not None and not valid_email(email)
        good_email = None if email is None or bad_email else email
        good_user = user_id if user_id is not None and valid_user_id(user_id) else None
        if project is ProjectType.EMAIL:
            if good_email is None:
                self.missing("an email", bad_email)
            return {"email": good_email} if good_email else {}
        if project is ProjectType.USER_ID:
            if good_user is None:
                self.missing("a userId (at most 52 characters)", False)
            return {"userId": good_user} if good_user else {}
        if good_email is None and good_user is None:
            self.missing("an email or a userId", bad_email)
        ids: dict[str, str] = {}
        if good_email:
            ids["email"] = good_email
        if good_user:
            ids["userId"] = good_user
        return ids

    def missing(self, what: str, bad_email: bool) -> NoReturn:
        project = self.config.project_type.value
        if bad_email:
            raise _Drop(DropReason.INVALID_EMAIL, f"{project} project needs {what}; the email is not valid")
        raise _Drop(DropReason.MISSING_IDENTIFIER, f"{project} project needs {what}; none known")

    def event_ids(self) -> dict[str, str]:
        user_id, email = self.known_person()
        return self.identifiers(user_id, email)

    # --- identify -> users/update (seed "Identify"; iterable-api.md §2.1) --------------------

    def identify(self) -> Applied:
        event, identity = self.event, self.identity
        last = identity.last_identified_at if identity else None
        if last is not None and event.timestamp < last:
            raise _Drop(DropReason.STALE_IDENTIFY, "older than the last identify applied for this person")
        user_id = event.user_id or (identity.user_id if identity else None)
        email = event.email or (identity.email if identity else None)
        if email is not None and not valid_email(email) and identity and identity.email:
            email = identity.email  # keep the last good address rather than dropping the person
        stored_email = email if email and valid_email(email) else None
        first = identity.first_identified_at if identity and identity.first_identified_at else event.timestamp
        new = Identity(
            person_key=self.person_key,
            user_id=user_id,
            email=stored_email,
            first_identified_at=first,
            last_identified_at=max(last, event.timestamp) if last else event.timestamp,
        )
        changed = None if new == identity else new
        try:
            ids = self.identifiers(user_id, email)
        except _Drop as drop:
            # The person is identified even if the project cannot address them yet: later events
            # are dropped for the missing identifier, not as anonymous.
            return Applied(drop.decision, identity=changed)
        traits: Mapping[str, Any] = event.traits
        if self.config.default_identify_transformations:
            traits = _default_renames(traits)
        subscription_traits = _subscription_traits(self.config)
        data = self.data_fields(traits, exclude=(*_IDENTIFIER_FIELDS, *trait_names(subscription_traits)))
        project = self.config.project_type
        if project is ProjectType.EMAIL and user_id and valid_user_id(user_id):
            data["userId"] = user_id
        if project is ProjectType.USER_ID and stored_email:
            data["email"] = stored_email
        body: dict[str, Any] = {
            **ids, "dataFields": data, "mergeNestedObjects": self.config.merge_nested_objects
        }
        update = self.request(Endpoint.USERS_UPDATE, body)
        if (project is ProjectType.EMAIL and identity is not None and identity.email
                and stored_email is not None and stored_email != identity.email):
            # The email is the profile's key here: users/update under the new address would create
            # a second, empty profile, so the profile moves first (users/updateEmail migrates its
            # fields and events, §2.7). The sender keeps the pair in order: a person's profile
            # changes never share a wave (streams.iterable.batcher.plan).
            return self.with_subscriptions(Applied(Decision.send(self.update_email(identity, stored_email), update),
                                                   changed), ids, subscription_traits)
        return self.with_subscriptions(Applied(Decision.send(update), identity=changed), ids, subscription_traits)

    # --- subscription traits -> subscribe / unsubscribe calls (issue 21; streams.mapping.subscriptions) ---

    def with_subscriptions(self, applied: Applied, ids: dict[str, str], traits: SubscriptionTraits) -> Applied:
        """``applied`` and a call per subscription change the identify's traits make (none when no trait is
        set or nothing changed); a trait that holds no ids drops the whole identify ``subscription_invalid``,
        keeping its identity change."""
        if not traits.any:
            return applied
        try:
            found = changes(self.event.traits, traits, self.sent)
        except ValueError as exc:
            # Not sent at all (re-drivable); the person is identified all the same.
            return Applied(Decision.drop(DropReason.SUBSCRIPTION_INVALID, f"identify not sent: {exc}"),
                           identity=applied.identity)
        if not found:
            return applied
        # The per-group endpoints take one identifier in the path: the email when the project has it.
        one = {"email": ids["email"]} if "email" in ids else {"userId": ids["userId"]}
        requests = tuple(
            self.request(Endpoint.SUBSCRIPTION_SUBSCRIBE if change.subscribe else Endpoint.SUBSCRIPTION_UNSUBSCRIBE,
                         {"subscriptionGroup": change.group, "subscriptionGroupId": change.group_id, **one})
            for change in found)
        decision = dataclasses.replace(applied.decision, requests=(*applied.decision.requests, *requests))
        return dataclasses.replace(applied, decision=decision, subscriptions=self.sent.after(found))

    # --- track -> events/track (seed "Events"; iterable-api.md §2.3) -------------------------

    def track(self) -> Decision:
        event = self.event
        if event.event_name == _AUTOTRACK_EVENT:
            kind = event.properties.get("$event_type", "autotrack")
            raise _Drop(
                DropReason.UNSUPPORTED_TYPE,
                f"autotrack $web_event ({kind}) is not sent; rename it with a transformation rule to send it",
            )
        ids = self.event_ids()
        attribution = _attribution(event.properties)
        body: dict[str, Any] = {
            **ids,
            "eventName": event.event_name,
            "id": iterable_id(event.message_id),
            "createdAt": created_at(event.timestamp),
            "dataFields": self.data_fields(event.properties, exclude=tuple(attribution)),
            **attribution,
        }
        return Decision.send(self.request(Endpoint.EVENTS_TRACK, body))

    # --- page / screen -> events/track (seed "Page Views") -----------------------------------

    def view(self) -> Decision:
        event = self.event
        ids = self.event_ids()
        is_page = event.type is EventType.PAGE
        name = self.config.page_event_name if is_page else self.config.screen_event_name
        data = self.data_fields(event.properties)
        if event.page is not None:
            for key in ("url", "path", "title", "referrer", "search"):
                value = getattr(event.page, key)
                if value is not None:
                    data[key] = value
        if event.event_name and "name" not in data:
            data["name"] = event.event_name
        body: dict[str, Any] = {
            **ids,
            "eventName": name,
            "id": iterable_id(event.message_id),
            "createdAt": created_at(event.timestamp),
            "dataFields": data,
        }
        return Decision.send(self.request(Endpoint.EVENTS_TRACK, body))

    # --- Order Completed -> commerce/trackPurchase (seed "Track Purchases"; §2.5) ------------

    def purchase(self) -> Decision:
        event = self.event
        ids = self.event_ids()
        props = event.properties
        problems: list[str] = []
        campaign_id = _integer(props, "campaignId", problems)
        template_id = _integer(props, "templateId", problems)
        raw_items = props.get("items")
        if raw_items is None:
            problems.append("items (missing)")
        elif not (isinstance(raw_items, list) and raw_items and _all_objects(raw_items)):
            problems.append("items (not a non-empty array of objects)")
        total = props.get("total")
        if total is None:
            problems.append("total (missing)")
        elif not _is_number(total):
            problems.append("total (not a number)")
        items: list[dict[str, Any]] = []
        if isinstance(raw_items, list) and not problems:
            items = [self.commerce_item(index, item, problems) for index, item in enumerate(raw_items)]
        if problems:
            raise _Drop(
                DropReason.PURCHASE_INCOMPLETE,
                f"{PURCHASE_EVENT} not sent to trackPurchase; missing or invalid: {', '.join(problems)}",
            )
        order_id = props.get("order_id")
        source = str(order_id) if _is_id(order_id) else event.message_id
        body: dict[str, Any] = {
            "id": iterable_id(source),
            "user": ids,
            "items": items,
            "total": total,
            "createdAt": created_at(event.timestamp),
            "campaignId": campaign_id,
            "templateId": template_id,
            "dataFields": self.data_fields(props, exclude=_PURCHASE_FIELDS),
        }
        return Decision.send(self.request(Endpoint.COMMERCE_TRACK_PURCHASE, body))

    # --- push device tokens -> users/registerDeviceToken (issue 21; streams.mapping.push) -------

    def with_push(self, applied: Applied, registered: Registered) -> Applied:
        """``applied`` and, when the event carries a push token the person has not registered yet, a
        ``users/registerDeviceToken`` after its requests. Only for an event that is sent (an identified person)."""
        if not applied.decision.sends:
            return applied
        found = push_token(self.event.context, self.event.properties, self.config.push_ios_platform)
        if found is None:
            return applied
        digest = found.digest(self.config.push_app_name)
        if digest in registered.digests:
            return applied
        identity = applied.identity or self.identity
        try:
            if identity is None:
                ids = self.identifiers(self.event.user_id, self.event.email)
            else:
                ids = self.identifiers(identity.user_id or self.event.user_id, identity.email or self.event.email)
        except _Drop:
            return applied
        # "Provide an email or a userId (but not both)" (OpenAPI RegisterDeviceTokenRequest).
        one = {"email": ids["email"]} if "email" in ids else {"userId": ids["userId"]}
        device = {"token": found.token, "platform": found.platform, "applicationName": self.config.push_app_name}
        request = self.request(Endpoint.USERS_REGISTER_DEVICE_TOKEN, {**one, "device": device})
        decision = dataclasses.replace(applied.decision, requests=(*applied.decision.requests, request))
        return dataclasses.replace(applied, decision=decision, devices=registered.add(digest))

    # --- carts -> commerce/updateCart (issue 21; §2.5, §2.6; rules in streams.mapping.cart) ---

    def purchase_emptying_cart(self) -> Applied:
        """The purchase, and an empty stored cart (trackPurchase clears Iterable's); a redelivered purchase
        (already applied to the cart) leaves the cart as it is: later events may have filled it again."""
        decision = self.purchase()
        cart = self.cart or Cart()
        if cart.seen(self.event.message_id):
            return Applied(decision)
        detail = f"{_cart_assumed(self.cart)}; the purchase empties it"
        return Applied(dataclasses.replace(decision, detail=detail), cart=cart.record(self.event.message_id, ()))

    def cart_change(self) -> Applied:
        """A cart event: ``events/track``, then ``commerce/updateCart`` with the whole cart when it changed
        (or none was stored yet); the stored cart records the event either way."""
        event = self.event
        ids = self.event_ids()
        tracked = self.track()
        cart = self.cart or Cart()
        if cart.seen(event.message_id):
            # Redelivered after its change was stored: Iterable gets the stored cart again, changed nothing.
            detail = f"{_cart_assumed(self.cart)}; this event was applied to it already (a redelivery)"
            return Applied(Decision(requests=(*tracked.requests, self.update_cart(ids, cart.items)), detail=detail))
        try:
            items = self.changed_items(cart.items)
        except _Drop as drop:
            return Applied(drop.decision, cart=cart.record(event.message_id))
        requests = list(tracked.requests)
        if self.cart is None or items != cart.items:
            requests.append(self.update_cart(ids, items))
        return Applied(Decision(requests=tuple(requests), detail=_cart_assumed(self.cart)),
                       cart=cart.record(event.message_id, items))

    def changed_items(self, items: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
        event = self.event
        props = event.properties
        bound = self.config.cart_max_items
        if event.event_name == "Product Removed":
            item_id = props.get("product_id", props.get("id"))
            quantity = props.get("quantity", 1)
            if not _is_id(item_id) or isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise _Drop(DropReason.CART_INCOMPLETE,
                            "Product Removed needs product_id (or id) and a positive integer quantity")
            return remove_item(items, str(item_id), quantity)
        problems: list[str] = []
        if event.event_name == "Product Added":
            new = add_item(items, self.cart_item("product", props, problems), bound)
        else:
            raw = props.get("products", props.get("items"))
            if not (isinstance(raw, list) and _all_objects(raw)):
                raise _Drop(DropReason.CART_INCOMPLETE,
                            f"{event.event_name} needs products (or items): an array of objects, the whole cart")
            new = whole_cart([self.cart_item(f"products[{i}]", item, problems) for i, item in enumerate(raw)],
                             bound)
        if problems:
            raise _Drop(DropReason.CART_INCOMPLETE,
                        f"{event.event_name} leaves the cart as it was; missing or invalid: {', '.join(problems)}")
        if new is None:
            raise _Drop(DropReason.CART_FULL, f"{event.event_name} would leave more than {bound} items in the cart "
                        "(FPI_CART_MAX_ITEMS); the cart stays as it was")
        return new

    def cart_item(self, where: str, raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
        """A cart item mapped as a purchase's (``commerce_item``); quantity defaults to 1 and must be positive."""
        source = {"quantity": 1, **raw}
        found: list[str] = []
        item = self.commerce_item(0, source, found)
        if isinstance(item.get("quantity"), int) and item["quantity"] < 1:
            found.append("items[0].quantity (not positive)")
        problems.extend(f"{where}{problem.removeprefix('items[0]')}" for problem in found)
        return item

    def update_cart(self, ids: dict[str, str], items: tuple[Mapping[str, Any], ...]) -> IterableRequest:
        return self.request(Endpoint.COMMERCE_UPDATE_CART, {"user": dict(ids), "items": [dict(i) for i in items]})

    def commerce_item(self, index: int, raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
        """One ``CommerceItem`` (§2.5): id, name, price and quantity are required by Iterable."""
        source = dict(raw)
        if "id" not in source and "product_id" in source:
            source["id"] = source.pop("product_id")
        if "imageUrl" not in source and "image_url" in source:
            source["imageUrl"] = source.pop("image_url")
        if "categories" not in source and isinstance(source.get("category"), str):
            source["categories"] = [source.pop("category")]
        item: dict[str, Any] = {}
        where = f"items[{index}]"
        if _is_id(source.get("id")):
            item["id"] = str(source["id"])
        else:
            problems.append(f"{where}.id (missing)")
        if isinstance(source.get("sku"), str | int) and not isinstance(source.get("sku"), bool):
            item["sku"] = str(source["sku"])
        if isinstance(source.get("name"), str) and source["name"]:
            item["name"] = source["name"]
        else:
            problems.append(f"{where}.name (missing)")
        if _is_number(source.get("price")):
            item["price"] = source["price"]
        else:
            problems.append(f"{where}.price (missing or not a number)")
        quantity = source.get("quantity")
        if isinstance(quantity, int) and not isinstance(quantity, bool):
            item["quantity"] = quantity
        else:
            problems.append(f"{where}.quantity (missing or not an integer)")
        categories = source.get("categories")
        if isinstance(categories, list) and all(isinstance(c, str) for c in categories):
            item["categories"] = categories
        for key in ("url", "imageUrl", "description"):
            if isinstance(source.get(key), str):
                item[key] = source[key]
        extra = {key: value for key, value in source.items() if key not in _ITEM_FIELDS}
        if extra:
            item["dataFields"] = self.data_fields(extra)
        return item

    # --- alias -> identifier change (iterable-api.md §2.1, §2.7, §5.3) -----------------------

    def alias(self) -> Applied:
        event, identity = self.event, self.identity
        if identity is None:
            raise _Drop(DropReason.ANONYMOUS, "alias for a person never identified")
        named = event.user_id
        new_email = event.email or (named if named and looks_like_email(named) else None)
        if new_email is not None:
            return self.email_change(identity, new_email)
        new_user_id = event.user_id
        if not new_user_id or new_user_id == identity.user_id:
            raise _Drop(DropReason.UNCHANGED, "the alias names the identifier the person already has")
        if not valid_user_id(new_user_id):
            raise _Drop(DropReason.MISSING_IDENTIFIER, "the new userId is longer than 52 characters")
        project = self.config.project_type
        if project is ProjectType.EMAIL or identity.user_id is None:
            current = self.identifiers(None, identity.email) if project is not ProjectType.USER_ID else {}
            if not current:
                self.missing("the current identifier", False)
        else:
            current = {"userId": identity.user_id}
        body = {**current, "dataFields": {"userId": new_user_id}}
        return Applied(
            Decision.send(self.request(Endpoint.USERS_UPDATE, body)),
            identity=dataclasses.replace(identity, user_id=new_user_id),
        )

    def email_change(self, identity: Identity, new_email: str) -> Applied:
        if not valid_email(new_email):
            raise _Drop(DropReason.INVALID_EMAIL, "the new email of the alias is not a valid address")
        if new_email == identity.email:
            raise _Drop(DropReason.UNCHANGED, "the alias names the email the person already has")
        project = self.config.project_type
        if project is ProjectType.EMAIL or (project is ProjectType.HYBRID and identity.user_id is None):
            request = self.update_email(identity, new_email)
        else:
            # userId-based and hybrid: current userId at top level, new email in dataFields (§2.1, D5).
            if identity.user_id is None:
                self.missing("the current userId", False)
            request = self.request(
                Endpoint.USERS_UPDATE, {"userId": identity.user_id, "dataFields": {"email": new_email}}
            )
        # The change counts as the person's latest identification: an identify older than it (a partial
        # replay, a late arrival) is stale and must not move the profile back to the old address.
        last = identity.last_identified_at
        changed_at = max(last, self.event.timestamp) if last else self.event.timestamp
        return Applied(Decision.send(request),
                       identity=dataclasses.replace(identity, email=new_email, last_identified_at=changed_at))

    def update_email(self, identity: Identity, new_email: str) -> IterableRequest:
        """``users/updateEmail`` from the person's current email (else userId) to ``new_email``: it
        migrates the profile's fields and events; meant for email-based projects (§2.7)."""
        if identity.email:
            body: dict[str, Any] = {"currentEmail": identity.email, "newEmail": new_email}
        elif identity.user_id:
            body = {"currentUserId": identity.user_id, "newEmail": new_email}
        else:
            self.missing("the current email or userId", False)
        return self.request(Endpoint.USERS_UPDATE_EMAIL, body)


def _default_renames(traits: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``DEFAULT_IDENTIFY_RENAMES``; a trait already named like the target keeps its value."""
    renamed: dict[str, Any] = {}
    for key, value in traits.items():
        target = DEFAULT_IDENTIFY_RENAMES.get(key)
        if target is None:
            renamed.setdefault(key, value)
        elif target not in traits:
            renamed[target] = value
    return renamed


def _subscription_traits(config: MappingConfig) -> SubscriptionTraits:
    return SubscriptionTraits(config.unsubscribed_channels_trait, config.unsubscribed_message_types_trait,
                              config.email_lists_trait, config.opt_out_traits)


def _cart_assumed(cart: Cart | None) -> str:
    """The cart state a cart decision assumes, for ``explain`` and dead letters (ids and quantities only)."""
    if cart is None:
        return "cart assumed before this event: none stored"
    items = ", ".join(f"{item['id']} x{item['quantity']}" for item in cart.items) or "empty"
    return f"cart assumed before this event: {items}"


def _all_objects(values: list[Any]) -> bool:
    return all(isinstance(value, Mapping) for value in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(props: Mapping[str, Any], key: str, problems: list[str]) -> int | None:
    value = props.get(key)
    if value is None:
        problems.append(f"{key} (missing)")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{key} (not an integer)")
        return None
    return value


def _attribution(props: Mapping[str, Any]) -> dict[str, int]:
    """``campaignId``/``templateId`` properties that are integers become top-level attribution (§2.3)."""
    return {
        key: props[key]
        for key in ("campaignId", "templateId")
        if isinstance(props.get(key), int) and not isinstance(props.get(key), bool)
    }
