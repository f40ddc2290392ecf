"""The emulated Iterable project: users, events, purchases, field types and counters.

No HTTP here: each public method takes a parsed JSON body and returns ``(status, body)`` the way
Iterable answers (iterable-api.md §2-§7). ``streams.emulator.app`` adds auth, faults and limits.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.model import ProjectType

__all__ = ["Counters", "Project", "value_type"]

Answer = tuple[int, dict[str, Any]]

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_EVENT_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,512}$")
# The five string forms known to become `date` fields (iterable-api.md §6.2).
_DATE_RES = tuple(
    re.compile(p)
    for p in (
        r"^\d{4}-\d{2}-\d{2}$",
        r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$",
        r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{2}:\d{2}$",
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$",
        r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
    )
)
_USER_FAILURE_KEYS = (
    "invalidEmails",
    "invalidUserIds",
    "notFoundEmails",
    "notFoundUserIds",
    "invalidDataEmails",
    "invalidDataUserIds",
    "conflictEmails",
    "conflictUserIds",
    "forgottenEmails",
    "forgottenUserIds",
)
_EVENT_FAILURE_KEYS = (
    "invalidEmails",
    "invalidUserIds",
    "notFoundEmails",
    "notFoundUserIds",
    "forgottenEmails",
    "forgottenUserIds",
)


def value_type(name: str, value: Any) -> str | None:
    """The Iterable field type a first value would lock (§6.2); None for null or empty arrays."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "date" if any(r.match(value) for r in _DATE_RES) else "string"
    if isinstance(value, dict):
        return "geo_location" if name.endswith("_geo_location") else "object"
    if isinstance(value, list):
        for item in value:
            kind = value_type(name, item)
            if kind is not None:
                return kind
        return None
    return "string"


def _compatible(expected: str, incoming: str) -> bool:
    # A whole number fits a double field, and a date-shaped string is still a string.
    return expected == incoming or (expected, incoming) in {("double", "long"), ("string", "date")}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.append((path, value))
        if isinstance(value, dict) and not key.endswith("_geo_location"):
            out.extend(_flatten(value, path + "."))
    return out


class _Fail(Exception):
    """An item Iterable refuses; ``kind`` is its failedUpdates list, ``value`` the identifier listed."""

    def __init__(self, status: int, code: str, msg: str, kind: str, value: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.kind, self.value = status, code, msg, kind, value


class _BadRequest(Exception):
    def __init__(self, code: str, msg: str, params: dict[str, Any] | None = None, status: int = 400) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.params = status, code, msg, params


def envelope(msg: str, code: str, params: Any = None) -> dict[str, Any]:
    return {"msg": msg, "code": code, "params": params}


@dataclass(slots=True)
class _User:
    email: str | None
    user_id: str | None
    visible_at: float
    data_fields: dict[str, Any] = field(default_factory=dict)
    updated_at: str = ""
    event_ids: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"dataFields": dict(self.data_fields), "profileUpdatedAt": self.updated_at}
        if self.email is not None:
            body["email"] = self.email
        if self.user_id is not None:
            body["userId"] = self.user_id
        return body


@dataclass(slots=True)
class Counters:
    """Everything received, for assertions and benchmarks (``GET /_emulator/counters``)."""

    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    """Keyed ``"<path> <status>"``."""
    items: Counter[str] = field(default_factory=Counter)
    """Records received per endpoint (a bulk call counts its users/events)."""
    rate_limited: Counter[str] = field(default_factory=Counter)
    events_received: int = 0
    unique_event_ids: int = 0
    duplicate_event_ids: int = 0
    events_rejected: int = 0
    users_created: int = 0
    user_updates: int = 0
    purchases_received: int = 0
    unique_purchase_ids: int = 0
    duplicate_purchase_ids: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "responses": dict(self.responses),
            "items": dict(self.items),
            "rate_limited": dict(self.rate_limited),
            "rate_limited_total": sum(self.rate_limited.values()),
            "events_received": self.events_received,
            "unique_event_ids": self.unique_event_ids,
            "duplicate_event_ids": self.duplicate_event_ids,
            "events_rejected": self.events_rejected,
            "users_created": self.users_created,
            "user_updates": self.user_updates,
            "purchases_received": self.purchases_received,
            "unique_purchase_ids": self.unique_purchase_ids,
            "duplicate_purchase_ids": self.duplicate_purchase_ids,
        }


class Project:
    """One Iterable project of the given type, with Iterable's identity and field-type rules."""

    def __init__(
        self,
        project_type: ProjectType,
        *,
        clock: Callable[[], float],
        user_visible_after: Callable[[], float] = lambda: 0.0,
        blocked_event_names: Callable[[], frozenset[str]] = frozenset,
        name: str = "emulated",
    ) -> None:
        self.project_type = project_type
        self.clock = clock
        self.user_visible_after = user_visible_after
        self.blocked_event_names = blocked_event_names
        self.name = name
        self.counters = Counters()
        self.users: list[_User] = []
        self.by_email: dict[str, _User] = {}
        self.by_user_id: dict[str, _User] = {}
        self.user_field_types: dict[str, str] = {}
        self.event_field_types: dict[str, dict[str, str]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.purchases: dict[str, dict[str, Any]] = {}
        self.forgotten_emails: set[str] = set()
        self.forgotten_user_ids: set[str] = set()
        """GDPR-forgotten identifiers (users/forget): Iterable refuses their data until users/unforget."""
        self.arrivals: dict[str, float] = {}
        """Event / purchase id -> wall-clock time (``time.time()``) it first arrived (latency benchmarks)."""
        self._placeholders = 0

    # --- field types (§6) -------------------------------------------------------------------
    def _check_types(
        self, known: dict[str, str], pending: dict[str, str], data: Any, category: str, where: str
    ) -> None:
        """Record new types in ``pending``; raise ``_BadRequest`` on the first mismatch."""
        if data is None:
            return
        if not isinstance(data, dict):
            raise _BadRequest(
                "BadJsonBody", "Invalid JSON body", {f"obj{where}.dataFields": "Object expected"}
            )
        errors: dict[str, Any] = {}
        for path, value in _flatten(data):
            incoming = value_type(path.rsplit(".", 1)[-1], value)
            if incoming is None:
                continue
            expected = pending.get(path) or known.get(path)
            if expected is None:
                pending[path] = incoming
            elif not _compatible(expected, incoming):
                errors[f"{self.name}:::{path}"] = {
                    "incomingTypes": [incoming, "keyword"] if incoming == "string" else [incoming],
                    "expectedType": expected,
                    "category": category,
                    "offendingValue": str(value)[:200],
                    "_type": "UnexpectedType",
                }
        if errors:
            raise _BadRequest(
                "RequestFieldsTypesMismatched",
                "Request fields types mismatched",
                {"validationErrors": errors},
            )

    # --- identity (§5) ----------------------------------------------------------------------
    def _valid_email(self, email: Any, kind: str = "invalidEmails") -> str:
        if not isinstance(email, str) or not _EMAIL_RE.match(email):
            raise _Fail(400, "InvalidEmailAddressError", f"Invalid email: {email}", kind, str(email))
        return email

    def _valid_user_id(self, user_id: Any, kind: str = "invalidUserIds") -> str:
        ok = (
            isinstance(user_id, str)
            and 0 < len(user_id) <= 52
            and user_id.isprintable()
            and user_id.isascii()
            and user_id == user_id.rstrip()
        )
        if not ok:
            raise _Fail(400, "InvalidUserIdError", f"Invalid userId: {user_id}", kind, str(user_id))
        assert isinstance(user_id, str)
        return user_id

    def _create(self, email: str | None, user_id: str | None) -> _User:
        user = _User(email=email, user_id=user_id, visible_at=self.clock() + self.user_visible_after())
        self.users.append(user)
        if email is not None:
            self.by_email.setdefault(email, user)
        if user_id is not None:
            self.by_user_id.setdefault(user_id, user)
        self.counters.users_created += 1
        return user

    def _set_email(self, user: _User, email: str) -> None:
        self._set_identifier(user, "email", email, self.by_email, ProjectType.USER_ID, "conflictEmails")

    def _set_user_id(self, user: _User, user_id: str) -> None:
        self._set_identifier(user, "user_id", user_id, self.by_user_id, ProjectType.EMAIL, "conflictUserIds")

    def _set_identifier(self, user: _User, attribute: str, value: str, index: dict[str, _User],
                        lenient: ProjectType, conflict_kind: str) -> None:
        """Give ``user`` the identifier ``value`` (its ``email`` or ``user_id``, indexed in ``index``); 409 when
        another user has it, unless the project is keyed by the other identifier (``lenient``)."""
        current = getattr(user, attribute)
        if current == value:
            return
        other = index.get(value)
        if other is not None and other is not user and self.project_type is not lenient:
            raise _Fail(409, "Conflict", "Email/userId conflict", conflict_kind, value)
        if current is not None and index.get(current) is user:
            del index[current]
        setattr(user, attribute, value)
        index.setdefault(value, user)

    def _valid_identifiers(self, body: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """The body's ``email`` and ``userId``, each checked when present; ``_Fail`` (400) for a malformed one."""
        email, user_id = body.get("email"), body.get("userId")
        return (None if email is None else self._valid_email(email),
                None if user_id is None else self._valid_user_id(user_id))

    def _refuse_forgotten(self, email: Any, user_id: Any) -> None:
        """409 ``ForgottenUserError`` for a GDPR-forgotten identifier (iterable-api.md §2.1 "Contact is
        GDPR forgotten"; in a bulk answer, its ``forgotten*`` list, §3.3)."""
        if email is not None and email in self.forgotten_emails:
            raise _Fail(409, "ForgottenUserError", "Contact is GDPR forgotten", "forgottenEmails", str(email))
        if user_id is not None and user_id in self.forgotten_user_ids:
            raise _Fail(409, "ForgottenUserError", "Contact is GDPR forgotten", "forgottenUserIds", str(user_id))

    def _upsert_user(self, body: Mapping[str, Any]) -> _User:
        """Find or create the user of a users/update-shaped body (§5.2, §5.3); raises ``_Fail``."""
        email, user_id = self._valid_identifiers(body)
        self._refuse_forgotten(email, user_id)
        pt = self.project_type
        user: _User | None
        if pt is ProjectType.EMAIL:
            if email is not None:
                user = self.by_email.get(email) or self._create(email, None)
                if user_id is not None:
                    self._set_user_id(user, user_id)
            elif user_id is not None:
                user = self.by_user_id.get(user_id)
                if user is None:
                    if not body.get("preferUserId"):
                        raise _Fail(
                            400,
                            "UnknownUserIdError",
                            f"No user exists with userId {user_id}",
                            "notFoundUserIds",
                            user_id,
                        )
                    self._placeholders += 1
                    user = self._create(f"{user_id}+{self._placeholders}@placeholder.email", user_id)
            else:
                raise _Fail(400, "BadParams", "email or userId is required", "invalidEmails", "")
        elif pt is ProjectType.USER_ID:
            if user_id is None:
                raise _Fail(400, "InvalidUserIdError", "userId is required", "invalidUserIds", "")
            user = self.by_user_id.get(user_id) or self._create(None, user_id)
            if email is not None:
                self._set_email(user, email)
        else:
            if email is None and user_id is None:
                raise _Fail(400, "BadParams", "email or userId is required", "invalidEmails", "")
            by_id = self.by_user_id.get(user_id) if user_id is not None else None
            by_mail = self.by_email.get(email) if email is not None else None
            if by_id is not None and by_mail is not None and by_id is not by_mail:
                raise _Fail(409, "Conflict", "Email/userId conflict", "conflictEmails", str(email))
            user = by_id or by_mail
            if user is None:
                user = self._create(email, user_id)
            else:
                if email is not None:
                    self._set_email(user, email)
                if user_id is not None:
                    self._set_user_id(user, user_id)
        return user

    def _update_user(self, body: Mapping[str, Any], where: str) -> _User:
        """Check the types of a users/update-shaped body's dataFields (``where``: its path in the request, named
        in the 400), then find or create its user and apply them; raises ``_BadRequest`` or ``_Fail``."""
        pending: dict[str, str] = {}
        self._check_types(self.user_field_types, pending, body.get("dataFields"), "user", where)
        user = self._upsert_user(body)
        self._apply_user_fields(user, body, pending)
        return user

    def _apply_user_fields(self, user: _User, body: Mapping[str, Any], pending: dict[str, str]) -> None:
        data = dict(body.get("dataFields") or {})
        kind_mail = "invalidDataEmails" if user.email is not None else "invalidDataUserIds"
        label = user.email if user.email is not None else str(user.user_id)
        # Identifier changes through dataFields (§2.1 "Changing identifiers").
        if "email" in data and data["email"] is not None:
            try:
                new_email = self._valid_email(data["email"])
            except _Fail as exc:
                raise _Fail(400, exc.code, exc.msg, kind_mail, label) from None
            if self.project_type is not ProjectType.EMAIL:
                self._set_email(user, new_email)
            data.pop("email")
        if "userId" in data and data["userId"] is not None:
            try:
                new_id = self._valid_user_id(data["userId"])
            except _Fail as exc:
                raise _Fail(400, exc.code, exc.msg, kind_mail, label) from None
            self._set_user_id(user, new_id)
            data.pop("userId")
        merge = bool(body.get("mergeNestedObjects"))
        for key, value in data.items():
            old = user.data_fields.get(key)
            if merge and isinstance(old, dict) and isinstance(value, dict):
                user.data_fields[key] = {**old, **value}
            else:
                user.data_fields[key] = value
        self.user_field_types.update({k: v for k, v in pending.items() if k not in self.user_field_types})
        user.updated_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S +00:00")
        self.counters.user_updates += 1

    def _find_for_event(self, body: Mapping[str, Any]) -> _User:
        """The user an event belongs to; raises ``_Fail`` (notFound*) when Iterable would not know it."""
        email, user_id = self._valid_identifiers(body)
        self._refuse_forgotten(email, user_id)
        now = self.clock()
        pt = self.project_type
        user: _User | None = None
        if pt is ProjectType.EMAIL or (pt is ProjectType.HYBRID and user_id is None):
            if email is not None:
                user = self.by_email.get(email)
                kind, value, code = "notFoundEmails", email, "UnknownEmailError"
            elif user_id is not None:
                user = self.by_user_id.get(user_id)
                kind, value, code = "notFoundUserIds", user_id, "UnknownUserIdError"
            else:
                raise _Fail(400, "BadParams", "email or userId is required", "invalidEmails", "")
            if user is None or user.visible_at > now:
                raise _Fail(400, code, f"No user exists with {value}", kind, value)
            return user
        if user_id is None:
            raise _Fail(400, "InvalidUserIdError", "userId is required", "invalidUserIds", "")
        user = self.by_user_id.get(user_id)
        if user is None:
            # UserID and hybrid projects create unknown userIds on track (§5.3).
            user = self._create(email, user_id)
            user.visible_at = now
        elif user.visible_at > now:
            raise _Fail(
                400, "UnknownUserIdError", f"No user exists with {user_id}", "notFoundUserIds", user_id
            )
        return user

    # --- request validation -------------------------------------------------------------------
    @staticmethod
    def _check_event_shape(event: Any, where: str) -> None:
        if not isinstance(event, dict):
            raise _BadRequest("BadJsonBody", "Invalid JSON body", {f"obj{where}": "Object expected"})
        name = event.get("eventName")
        if not isinstance(name, str) or not name:
            raise _BadRequest(
                "BadJsonBody", "Invalid JSON body", {f"obj{where}.eventName": "String expected"}
            )
        created = event.get("createdAt")
        if created is not None and (isinstance(created, bool) or not isinstance(created, int)):
            raise _BadRequest(
                "BadJsonBody", "Invalid JSON body", {f"obj{where}.createdAt": "Number value expected"}
            )
        event_id = event.get("id")
        if event_id is not None and (not isinstance(event_id, str) or not _EVENT_ID_RE.match(event_id)):
            raise _BadRequest(
                "BadParams",
                f"Invalid event id {event_id!r}: alphanumerics and hyphens only",
                {f"obj{where}.id": "Invalid id"},
            )
        data = event.get("dataFields")
        if data is not None and not isinstance(data, dict):
            raise _BadRequest(
                "BadJsonBody", "Invalid JSON body", {f"obj{where}.dataFields": "Object expected"}
            )

    def _store_event(self, user: _User, event: Mapping[str, Any], pending: dict[str, str]) -> str:
        event_id = event.get("id") or uuid.uuid4().hex
        name = event["eventName"]
        types = self.event_field_types.setdefault(name, {})
        types.update({k: v for k, v in pending.items() if k not in types})
        self.counters.events_received += 1
        self.arrivals.setdefault(str(event_id), time.time())
        if event_id in self.events:
            self.counters.duplicate_event_ids += 1
        else:
            self.counters.unique_event_ids += 1
            user.event_ids.append(event_id)
        self.events[event_id] = {
            "id": event_id,
            "eventName": name,
            "createdAt": event.get("createdAt") or int(datetime.now(UTC).timestamp()),
            "dataFields": dict(event.get("dataFields") or {}),
            "email": user.email,
            "userId": user.user_id,
        }
        return str(event_id)

    # --- endpoints ----------------------------------------------------------------------------
    def users_update(self, body: Mapping[str, Any]) -> Answer:
        try:
            self._update_user(body, "")
        except _BadRequest as exc:
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        except _Fail as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        return 200, envelope("User successfully created/updated.", "Success")

    def users_bulk_update(self, body: Mapping[str, Any]) -> Answer:
        users = body.get("users")
        if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
            return 400, envelope(
                "Invalid JSON body", "BadJsonBody", {"obj.users": "Array of objects expected"}
            )
        pending: dict[str, str] = {}
        try:
            # One mismatching record fails the whole request (§6.3): check all before applying any.
            for i, item in enumerate(users):
                self._check_types(
                    self.user_field_types, pending, item.get("dataFields"), "user", f".users[{i}]"
                )
        except _BadRequest as exc:
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        before = set(self.user_field_types)
        failed: dict[str, list[str]] = {k: [] for k in _USER_FAILURE_KEYS}
        ok = 0
        for item in users:
            try:
                user = self._upsert_user(item)
                self._apply_user_fields(user, item, pending)
                ok += 1
            except _Fail as exc:
                failed[exc.kind].append(exc.value)
        return 200, {
            "successCount": ok,
            "failCount": len(users) - ok,
            "createdFields": sorted(set(self.user_field_types) - before),
            "filteredOutFields": [],
            "invalidEmails": list(failed["invalidEmails"]),
            "invalidUserIds": list(failed["invalidUserIds"]),
            "failedUpdates": failed,
        }

    def events_track(self, body: Mapping[str, Any]) -> Answer:
        try:
            self._check_event_shape(body, "")
            name = body["eventName"]
            if name in self.blocked_event_names():
                self.counters.events_rejected += 1
                return 200, envelope(f"Event name {name} is disallowed from tracking", "Success")
            pending: dict[str, str] = {}
            self._check_types(
                self.event_field_types.get(name, {}), pending, body.get("dataFields"), "event", ""
            )
            user = self._find_for_event(body)
        except _BadRequest as exc:
            self.counters.events_rejected += 1
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        except _Fail as exc:
            self.counters.events_rejected += 1
            return exc.status, envelope(exc.msg, exc.code, None)
        event_id = self._store_event(user, body, pending)
        return 200, envelope(f"Event with id: {event_id} tracked.", "Success", {"id": event_id})

    def events_track_bulk(self, body: Mapping[str, Any]) -> Answer:
        events = body.get("events")
        if not isinstance(events, list):
            return 400, envelope("Invalid JSON body", "BadJsonBody", {"obj.events": "Array expected"})
        blocked = self.blocked_event_names()
        pendings: dict[str, dict[str, str]] = {}
        try:
            for i, event in enumerate(events):
                self._check_event_shape(event, f".events[{i}]")
                name = event["eventName"]
                if name in blocked:
                    continue
                pending = pendings.setdefault(name, {})
                self._check_types(
                    self.event_field_types.get(name, {}),
                    pending,
                    event.get("dataFields"),
                    "event",
                    f".events[{i}]",
                )
        except _BadRequest as exc:
            self.counters.events_rejected += len(events)
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        before = {(n, f) for n, t in self.event_field_types.items() for f in t}
        failed: dict[str, list[str]] = {k: [] for k in _EVENT_FAILURE_KEYS}
        disallowed: list[str] = []
        ok = 0
        for event in events:
            name = event["eventName"]
            if name in blocked:
                if name not in disallowed:
                    disallowed.append(name)
                self.counters.events_rejected += 1
                continue
            try:
                user = self._find_for_event(event)
            except _Fail as exc:
                if exc.value not in failed[exc.kind]:
                    failed[exc.kind].append(exc.value)
                self.counters.events_rejected += 1
                continue
            self._store_event(user, event, pendings.get(name, {}))
            ok += 1
        after = {(n, f) for n, t in self.event_field_types.items() for f in t}
        return 200, {
            "successCount": ok,
            "failCount": len(events) - ok,
            "createdFields": sorted({f for _, f in after - before}),
            "filteredOutFields": [],
            "disallowedEventNames": disallowed,
            "invalidEmails": list(failed["invalidEmails"]),
            "invalidUserIds": list(failed["invalidUserIds"]),
            "failedUpdates": failed,
        }

    @staticmethod
    def _check_items(items: Any) -> None:
        if not isinstance(items, list):
            raise _BadRequest("BadJsonBody", "Invalid JSON body", {"obj.items": "Array expected"})
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise _BadRequest("BadJsonBody", "Invalid JSON body", {f"obj.items[{i}]": "Object expected"})
            for name, kinds in (
                ("id", (str,)),
                ("name", (str,)),
                ("price", (int, float)),
                ("quantity", (int,)),
            ):
                if not isinstance(item.get(name), kinds) or isinstance(item.get(name), bool):
                    raise _BadRequest(
                        "BadJsonBody",
                        "Invalid JSON body",
                        {f"obj.items[{i}].{name}": "Missing or wrong type"},
                    )

    def track_purchase(self, body: Mapping[str, Any]) -> Answer:
        try:
            user_body = body.get("user")
            if not isinstance(user_body, dict):
                raise _BadRequest("BadJsonBody", "Invalid JSON body", {"obj.user": "Object expected"})
            self._check_items(body.get("items"))
            total = body.get("total")
            if isinstance(total, bool) or not isinstance(total, int | float):
                raise _BadRequest("BadJsonBody", "Invalid JSON body", {"obj.total": "Number value expected"})
            purchase_id = body.get("id")
            if purchase_id is not None and (not isinstance(purchase_id, str) or len(purchase_id) > 512):
                raise _BadRequest("BadParams", "Invalid purchase id", {"obj.id": "Invalid id"})
            user = self._update_user(user_body, ".user")
        except _BadRequest as exc:
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        except _Fail as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        user.data_fields.pop("shoppingCartItems", None)
        pid = purchase_id or uuid.uuid4().hex
        self.counters.purchases_received += 1
        self.arrivals.setdefault(str(pid), time.time())
        if pid in self.purchases:
            self.counters.duplicate_purchase_ids += 1
        else:
            self.counters.unique_purchase_ids += 1
        self.purchases[pid] = {
            "id": pid,
            "email": user.email,
            "userId": user.user_id,
            "total": total,
            "items": body["items"],
            "dataFields": dict(body.get("dataFields") or {}),
        }
        return 200, envelope(f"Purchase with id: {pid} tracked.", "Success", {"id": pid})

    def update_cart(self, body: Mapping[str, Any]) -> Answer:
        try:
            user_body = body.get("user")
            if not isinstance(user_body, dict):
                raise _BadRequest("BadJsonBody", "Invalid JSON body", {"obj.user": "Object expected"})
            self._check_items(body.get("items"))
            user = self._update_user(user_body, ".user")
        except _BadRequest as exc:
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        except _Fail as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        user.data_fields["shoppingCartItems"] = list(body["items"])  # replaces the cart (§2.6)
        return 200, envelope("Cart updated.", "Success")

    _PLATFORMS = ("APNS", "APNS_SANDBOX", "GCM")

    def register_device_token(self, body: Mapping[str, Any]) -> Answer:
        """``users/registerDeviceToken`` (OpenAPI ``RegisterDeviceTokenRequest``): the device joins the profile's
        ``devices`` (a token registered again replaces its entry); the user must exist."""
        try:
            device = body.get("device")
            if not isinstance(device, dict):
                raise _BadRequest("BadJsonBody", "Invalid JSON body", {"obj.device": "Object expected"})
            for name in ("token", "applicationName"):
                if not isinstance(device.get(name), str) or not device[name]:
                    raise _BadRequest("BadJsonBody", "Invalid JSON body", {f"obj.device.{name}": "String expected"})
            if device.get("platform") not in self._PLATFORMS:
                raise _BadRequest("BadJsonBody", "Invalid JSON body",
                                  {"obj.device.platform": f"One of {', '.join(self._PLATFORMS)} expected"})
            if ("email" in body) == ("userId" in body):
                raise _BadRequest("BadParams", "Provide an email or a userId (but not both)", None)
            user = self._find_for_event(body)
        except _BadRequest as exc:
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        except _Fail as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        entry = {"token": device["token"], "platform": device["platform"],
                 "applicationName": device["applicationName"], "endpointEnabled": True}
        devices = [d for d in user.data_fields.get("devices", []) if d.get("token") != device["token"]]
        user.data_fields["devices"] = [*devices, entry]
        return 200, envelope("Device registered.", "Success")

    _SUBSCRIPTION_FIELDS = {"emaillist": "emailListIds", "messagechannel": "unsubscribedChannelIds",
                            "messagetype": "unsubscribedMessageTypeIds"}

    def subscription(self, group: str, group_id: str, *, subscribe: bool, email: str | None = None,
                     user_id: str | None = None) -> Answer:
        """``PATCH`` (``subscribe``) or ``DELETE`` ``/api/subscriptions/{group}/{id}/user/{email}`` (or
        ``.../byUserId/{userId}``; OpenAPI ``subscribeSingleUser``, ``unsubscribeSingleUser``): one group of one
        profile changes. Subscribing adds an email list to ``emailListIds`` and takes a channel or message type
        off ``unsubscribedChannelIds`` / ``unsubscribedMessageTypeIds``; unsubscribing does the opposite. The
        group is case-insensitive; an unknown group, a non-numeric id or a bad identifier is a 400. By email the
        user is created if missing (iterable-api.md §5.2); by userId as on ``events/track``."""
        try:
            name = self._SUBSCRIPTION_FIELDS.get(group.lower())
            if name is None:
                raise _BadRequest("BadParams", f"Invalid subscription group: {group}",
                                  {"subscriptionGroup": "One of emailList, messageChannel, messageType expected"})
            if not (group_id.isascii() and group_id.isdigit() and 0 < int(group_id) < 2**63):
                raise _BadRequest("BadParams", f"Invalid subscription group id: {group_id}",
                                  {"subscriptionGroupId": "Numeric value expected"})
            user = self._upsert_user({"email": email}) if email is not None else self._find_for_event(
                {"userId": user_id})
        except _BadRequest as exc:
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        except _Fail as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        ids = set(user.data_fields.get(name, []))
        listed = subscribe if name == "emailListIds" else not subscribe
        if listed:
            ids.add(int(group_id))
        else:
            ids.discard(int(group_id))
        user.data_fields[name] = sorted(ids)
        action = "Subscribed" if subscribe else "Unsubscribed"
        return 200, envelope(f"{action} to {group} {group_id}.", "Success")

    def update_email(self, body: Mapping[str, Any]) -> Answer:
        """users/updateEmail (§2.7): the profile, its events and purchases move to ``newEmail``.

        Iterable documents one refusal of a well-formed change: ``newEmail`` already exists
        (400 ``EmailAlreadyExists``), whatever the current identifier names, so a change that was
        already applied is refused that way too. A current user Iterable does not know (or does not
        see yet) is 400 ``UnknownEmailError`` / ``UnknownUserIdError``.
        """
        try:
            new_email = self._valid_email(body.get("newEmail"))
            current_email = body.get("currentEmail")
            current_user_id = body.get("currentUserId")
            if current_email is not None:
                user = self.by_email.get(self._valid_email(current_email))
                missing = ("UnknownEmailError", f"No user exists with email {current_email}")
            elif current_user_id is not None:
                user = self.by_user_id.get(self._valid_user_id(current_user_id))
                missing = ("UnknownUserIdError", f"No user exists with userId {current_user_id}")
            else:
                raise _BadRequest("BadParams", "currentEmail or currentUserId is required")
            self._refuse_forgotten(new_email, None)
            self._refuse_forgotten(current_email, current_user_id)
            if new_email in self.by_email and self.by_email[new_email] is not user:
                raise _BadRequest("EmailAlreadyExists", f"User with email {new_email} already exists")
            if user is None or user.visible_at > self.clock():
                raise _BadRequest(*missing)
            old_email = user.email
            self._set_email(user, new_email)
        except _BadRequest as exc:
            return exc.status, envelope(exc.msg, exc.code, exc.params)
        except _Fail as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        for event_id in user.event_ids:
            self.events[event_id]["email"] = new_email
        if old_email is not None:
            for purchase in self.purchases.values():
                if (purchase["email"], purchase["userId"]) == (old_email, user.user_id):
                    purchase["email"] = new_email
        return 200, envelope("Email updated.", "Success")

    # --- GDPR -----------------------------------------------------------------------------------
    def _gdpr_identifier(self, body: Mapping[str, Any]) -> tuple[str | None, str | None]:
        if body.get("email") is None and body.get("userId") is None:
            raise _BadRequest("BadParams", "email or userId is required")
        return self._valid_identifiers(body)

    def forget(self, body: Mapping[str, Any]) -> Answer:
        """users/forget: the user and their events are deleted, and each of their identifiers is refused
        from now on (409 ``ForgottenUserError``) until users/unforget."""
        try:
            email, user_id = self._gdpr_identifier(body)
        except (_BadRequest, _Fail) as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        found: list[_User] = []
        for user in (self.by_email.get(email or ""), self.by_user_id.get(user_id or "")):
            if user is not None and all(user is not other for other in found):
                found.append(user)
        for user in found:
            self.users.remove(user)
            for event_id in user.event_ids:
                self.events.pop(event_id, None)
            if user.email is not None:
                self.by_email.pop(user.email, None)
                self.forgotten_emails.add(user.email)
            if user.user_id is not None:
                self.by_user_id.pop(user.user_id, None)
                self.forgotten_user_ids.add(user.user_id)
        if email is not None:
            self.forgotten_emails.add(email)
        if user_id is not None:
            self.forgotten_user_ids.add(user_id)
        return 200, envelope("User forgotten.", "Success")

    def unforget(self, body: Mapping[str, Any]) -> Answer:
        """users/unforget: the identifiers are accepted again (the deleted data stays deleted)."""
        try:
            email, user_id = self._gdpr_identifier(body)
        except (_BadRequest, _Fail) as exc:
            return exc.status, envelope(exc.msg, exc.code, None)
        self.forgotten_emails.discard(email or "")
        self.forgotten_user_ids.discard(user_id or "")
        return 200, envelope("User unforgotten.", "Success")

    def forgotten(self) -> Answer:
        """users/forgotten: the forgotten identifiers (the emulator's shape; iterable-api.md does not give
        the endpoint's answer)."""
        return 200, {"forgottenEmails": sorted(self.forgotten_emails),
                     "forgottenUserIds": sorted(self.forgotten_user_ids)}

    # --- reads --------------------------------------------------------------------------------
    def get_user(self, *, email: str | None = None, user_id: str | None = None) -> Answer:
        user = self.by_email.get(email) if email is not None else self.by_user_id.get(user_id or "")
        return 200, ({"user": user.as_json()} if user is not None else {})

    def user_events(self, *, email: str | None = None, user_id: str | None = None, limit: int = 30) -> Answer:
        user = self.by_email.get(email) if email is not None else self.by_user_id.get(user_id or "")
        if user is None:
            return 200, {"events": []}
        ids = user.event_ids[-limit:] if limit > 0 else []
        return 200, {"events": [self.events[i] for i in reversed(ids)]}

    def get_fields(self) -> Answer:
        return 200, {"fields": dict(self.user_field_types)}
