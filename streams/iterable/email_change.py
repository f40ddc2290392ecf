"""Replay-safe ``users/updateEmail``: an email change already applied from a real conflict.

Iterable refuses ``users/updateEmail`` when ``newEmail`` already exists (400 ``EmailAlreadyExists``,
iterable-api.md §2.7). A change that was already applied (a request delivered again after a crash,
a replay, a re-driven dead letter) finds its new address taken too, or, depending on which check
Iterable makes first, its current user gone (``UnknownEmailError`` / ``UnknownUserIdError``; not
documented). The answer alone cannot tell these apart, so the sender reads the two profiles
(``users/getByEmail``, ``users/byUserId``, §2.9) and ``judge`` decides. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = ["RECHECKED_CODES", "EmailChange", "judge"]

RECHECKED_CODES = frozenset({"EmailAlreadyExists", "UnknownEmailError", "UnknownUserIdError"})
"""Refusals of users/updateEmail that an already applied change can also get."""


class EmailChange(StrEnum):
    APPLIED = "applied"
    """The new address holds the profile and the current identifier no longer names another one."""
    CONFLICT = "conflict"
    """The new address has a profile of its own and the current profile is still there."""
    NOT_VISIBLE = "not_visible"
    """Iterable does not find the current profile (yet): retry a bounded number of times."""
    UNEXPLAINED = "unexplained"
    """The reads contradict the refusal: keep Iterable's answer."""


def judge(
    body: Mapping[str, Any], code: str | None, current: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> EmailChange:
    """What a ``users/updateEmail`` ``body`` refused with ``code`` means, given the profile its
    current identifier names (``currentEmail``, else ``currentUserId``) and the profile of
    ``newEmail``, as Iterable's reads show them (``None``: no profile)."""
    if current is not None and current.get("email") == body.get("newEmail"):
        return EmailChange.APPLIED  # found by currentUserId, already under the new address
    if current is None and new is not None and "currentEmail" in body:
        return EmailChange.APPLIED
    if code == "EmailAlreadyExists":
        if new is None:
            return EmailChange.UNEXPLAINED
        return EmailChange.CONFLICT if current is not None else EmailChange.NOT_VISIBLE
    # Iterable did not find the current profile; its reads may show it already (they need not
    # agree at once: updates are processed asynchronously, §2.1).
    return EmailChange.NOT_VISIBLE
