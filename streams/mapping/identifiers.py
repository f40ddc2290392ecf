"""Identifier rules: Iterable event/purchase ids, email and userId validity.

* ``iterable_id``: Iterable's ``id`` on events and purchases is its idempotency key and may hold only
  letters, digits and hyphens, at most 512 bytes (iterable-api.md §2.3, §7; peers.md §7 item 2).
  Ids that already obey the rule are kept as they are (readable in Iterable); any other id becomes
  the UUIDv5 of the original in a fixed namespace, so the same message always gets the same id.
* ``valid_email``: checked before any email is sent (issue rule; peers.md §7 item 13): one ``@``, no
  whitespace, a dotted domain, at most 254 characters.
* ``valid_user_id``: non-empty, at most 52 characters (iterable-api.md §5.1).
"""

from __future__ import annotations

import re
import uuid

__all__ = ["ID_NAMESPACE", "iterable_id", "looks_like_email", "valid_email", "valid_user_id"]

ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/freshpaint-iterable/event-id")
"""The UUIDv5 namespace of derived ids. Changing it would break replay idempotency: never change it."""

_SAFE_ID = re.compile(r"[A-Za-z0-9-]{1,512}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def iterable_id(source: str) -> str:
    """Return a valid Iterable event/purchase id for ``source`` (deterministic; see module doc)."""
    if _SAFE_ID.fullmatch(source):
        return source
    return str(uuid.uuid5(ID_NAMESPACE, source))


def looks_like_email(value: str) -> bool:
    """Whether ``value`` is meant as an email (contains ``@``); validity is ``valid_email``'s job."""
    return "@" in value


def valid_email(value: str) -> bool:
    """Whether ``value`` is an email address Iterable can accept."""
    return len(value) <= 254 and _EMAIL.fullmatch(value) is not None


def valid_user_id(value: str) -> bool:
    """Whether ``value`` is a userId Iterable accepts: non-blank, at most 52 characters (§5.1)."""
    return bool(value.strip()) and len(value) <= 52
