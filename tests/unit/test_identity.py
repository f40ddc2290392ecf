from __future__ import annotations

import pytest

from streams.identity import Resolution, person_key_of, resolve, routing_key
from streams.model import DropReason, EventType
from tests.unit.builders import event


class TestResolve:
    @pytest.mark.parametrize(
        ("fields", "alias", "expected"),
        [
            # anonymous, never linked -> dropped (seed: Iterable has no anonymous users)
            ({"anonymous_id": "a"}, None, Resolution(None, drop=DropReason.ANONYMOUS)),
            # anonymous, linked earlier -> the linked person
            ({"anonymous_id": "a"}, "u-1", Resolution("u-1")),
            # user id wins over email as person key
            (
                {"anonymous_id": "a", "user_id": "u-1", "email": "j@x.io"},
                None,
                Resolution("u-1", new_alias="u-1"),
            ),
            ({"anonymous_id": "a", "email": "j@x.io"}, None, Resolution("j@x.io", new_alias="j@x.io")),
            # link unchanged -> nothing to store
            ({"anonymous_id": "a", "user_id": "u-1"}, "u-1", Resolution("u-1")),
            # relink to the newer person
            ({"anonymous_id": "a", "user_id": "u-2"}, "u-1", Resolution("u-2", new_alias="u-2")),
            # no device id: nothing to link
            ({"user_id": "u-1"}, None, Resolution("u-1")),
        ],
    )
    def test_table(self, fields: dict[str, str], alias: str | None, expected: Resolution) -> None:
        assert resolve(event(**fields), alias) == expected

    def test_identify_links_device(self) -> None:
        ev = event(EventType.IDENTIFY, anonymous_id="dev", user_id="u-1")
        assert resolve(ev, None).new_alias == "u-1"

    def test_alias_resolves_to_linked_person_and_never_relinks(self) -> None:
        ev = event(EventType.ALIAS, anonymous_id="dev", user_id="new@x.io", previous_id="u-1")
        assert resolve(ev, "u-1") == Resolution("u-1")
        assert resolve(ev, None) == Resolution("u-1")

    def test_alias_of_anonymous_previous_id_is_dropped(self) -> None:
        ev = event(EventType.ALIAS, anonymous_id="dev", user_id="u-9", previous_id="dev")
        assert resolve(ev, None).drop is DropReason.ANONYMOUS


class TestRoutingKey:
    def test_device_first(self) -> None:
        assert routing_key(event(anonymous_id="dev", user_id="u")) == "dev"

    def test_person_key_without_device(self) -> None:
        assert routing_key(event(user_id="u", email="j@x.io")) == "u"
        assert routing_key(event(email="j@x.io")) == "j@x.io"

    def test_nothing(self) -> None:
        assert routing_key(event()) is None
        assert person_key_of(event()) is None
