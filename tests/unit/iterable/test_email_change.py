"""``judge``: what a refused users/updateEmail means, from the two profiles Iterable shows."""

from __future__ import annotations

from typing import Any

import pytest

from streams.iterable.email_change import EmailChange, judge

BY_EMAIL = {"currentEmail": "old@x.io", "newEmail": "new@x.io"}
BY_USER_ID = {"currentUserId": "u-1", "newEmail": "new@x.io"}
OLD = {"email": "old@x.io", "userId": "u-1"}
NEW = {"email": "new@x.io", "userId": "u-1"}
OTHER = {"email": "new@x.io", "userId": "u-2"}


EXISTS, UNKNOWN = "EmailAlreadyExists", "UnknownEmailError"


class TestJudge:
    @pytest.mark.parametrize(
        ("body", "code", "current", "new", "verdict"),
        [
            (BY_EMAIL, EXISTS, None, NEW, EmailChange.APPLIED),  # replayed: the old address is gone
            (BY_EMAIL, UNKNOWN, None, NEW, EmailChange.APPLIED),  # the same, refused the other way
            (BY_EMAIL, EXISTS, OLD, OTHER, EmailChange.CONFLICT),  # both addresses have a profile
            (BY_EMAIL, EXISTS, OLD, None, EmailChange.UNEXPLAINED),
            (BY_EMAIL, UNKNOWN, None, None, EmailChange.NOT_VISIBLE),  # the profile is not there yet
            (BY_EMAIL, UNKNOWN, OLD, None, EmailChange.NOT_VISIBLE),  # reads ahead of the write path
            (BY_EMAIL, UNKNOWN, OLD, OTHER, EmailChange.NOT_VISIBLE),  # a conflict shows on the retry
            (BY_USER_ID, EXISTS, NEW, NEW, EmailChange.APPLIED),
            (BY_USER_ID, EXISTS, OLD, OTHER, EmailChange.CONFLICT),
            (BY_USER_ID, EXISTS, None, OTHER, EmailChange.NOT_VISIBLE),
            (BY_USER_ID, "UnknownUserIdError", None, None, EmailChange.NOT_VISIBLE),
            ({**BY_USER_ID, **BY_EMAIL}, EXISTS, None, NEW, EmailChange.APPLIED),  # currentEmail wins (§2.7)
        ],
    )
    def test_verdicts(
        self,
        body: dict[str, str],
        code: str,
        current: dict[str, Any] | None,
        new: dict[str, Any] | None,
        verdict: EmailChange,
    ) -> None:
        assert judge(body, code, current, new) is verdict
