"""One named test per bullet of the seed (seed/freshpaint-iterable-destination.txt)."""

from __future__ import annotations

from streams.mapping import DEFAULT_IDENTIFY_RENAMES
from streams.mapping.fields import normalize_date_string
from streams.model import DropReason, Endpoint, EventType, ProjectType
from streams.normalize import normalize
from tests.unit.builders import body, event, person, run

EMAIL, USER_ID, HYBRID = ProjectType.EMAIL, ProjectType.USER_ID, ProjectType.HYBRID


class TestSeed:
    # "Iterable Project Types": email-based / UserID-based / hybrid
    def test_project_type_email_based_uses_email_as_identifier(self) -> None:
        assert body(run(event(), person(), EMAIL)).get("email") == "jane@example.com"

    def test_project_type_user_id_based_uses_user_id_as_identifier(self) -> None:
        sent = body(run(event(), person(), USER_ID))
        assert sent.get("userId") == "u-1" and "email" not in sent

    def test_project_type_hybrid_uses_email_and_user_id(self) -> None:
        sent = body(run(event(), person(), HYBRID))
        assert (sent["email"], sent["userId"]) == ("jane@example.com", "u-1")

    # "Identify": identify -> /api/users/update, identifier rules per project type
    def test_identify_hits_users_update(self) -> None:
        applied = run(event(EventType.IDENTIFY, user_id="u-1", email="j@x.io"), None, HYBRID)
        assert applied.decision.requests[0].endpoint is Endpoint.USERS_UPDATE

    def test_identify_email_based_must_include_email(self) -> None:
        applied = run(event(EventType.IDENTIFY, user_id="u-1"), None, EMAIL)
        assert applied.decision.drop_reason is DropReason.MISSING_IDENTIFIER

    def test_identify_user_id_based_must_include_user_id(self) -> None:
        applied = run(event(EventType.IDENTIFY, email="j@x.io"), None, USER_ID)
        assert applied.decision.drop_reason is DropReason.MISSING_IDENTIFIER

    def test_identify_hybrid_needs_email_and_or_user_id(self) -> None:
        assert run(event(EventType.IDENTIFY, email="j@x.io"), None, HYBRID).decision.sends
        assert run(event(EventType.IDENTIFY, user_id="u-1"), None, HYBRID).decision.sends
        both = body(run(event(EventType.IDENTIFY, email="j@x.io", user_id="u-1"), None, HYBRID))
        assert (both["email"], both["userId"]) == ("j@x.io", "u-1")  # precedence: module doc of mapping

    def test_identify_new_user_properties_update_the_profile(self) -> None:
        applied = run(event(EventType.IDENTIFY, user_id="u-1", traits={"plan": "team"}), person(), HYBRID)
        assert body(applied)["dataFields"] == {"plan": "team"}

    def test_identify_with_email_first_enables_events_of_email_project(self) -> None:
        identified = run(event(EventType.IDENTIFY, user_id="u-1", email="j@x.io"), None, EMAIL).identity
        assert body(run(event(user_id="u-1"), identified, EMAIL))["email"] == "j@x.io"

    # "Events"
    def test_events_hit_events_track_on_the_matching_profile(self) -> None:
        applied = run(event(anonymous_id="a"), person(), EMAIL)
        assert applied.decision.requests[0].endpoint is Endpoint.EVENTS_TRACK
        assert body(applied)["email"] == "jane@example.com"

    def test_events_of_anonymous_users_are_not_sent(self) -> None:
        assert run(event(anonymous_id="a"), None).decision.drop_reason is DropReason.ANONYMOUS

    # "Track Purchases"
    def test_order_completed_hits_track_purchase(self) -> None:
        props = {
            "campaignId": 1,
            "templateId": 2,
            "total": 3.0,
            "items": [{"id": "i", "name": "n", "price": 3.0, "quantity": 1}],
        }
        applied = run(event(event_name="Order Completed", properties=props), person())
        assert applied.decision.requests[0].endpoint is Endpoint.COMMERCE_TRACK_PURCHASE

    def test_order_completed_without_all_four_fields_is_not_sent(self) -> None:
        applied = run(event(event_name="Order Completed", properties={"total": 3.0}), person())
        assert applied.decision.drop_reason is DropReason.PURCHASE_INCOMPLETE
        for name in ("campaignId", "templateId", "items"):
            assert name in (applied.decision.detail or "")

    # "Page Views"
    def test_page_views_update_the_event_history(self) -> None:
        ev = normalize(
            {
                "event": "$web_event",
                "properties": {"distinct_id": "u-1", "$device_id": "d", "time": 1, "$event_type": "pageview"},
            }
        )
        applied = run(ev, person(), EMAIL)
        assert applied.decision.requests[0].endpoint is Endpoint.EVENTS_TRACK
        assert body(applied)["eventName"] == "Page Viewed"

    def test_legacy_track_pageview_is_a_page_view(self) -> None:
        ev = normalize({"event": "mp_page_view", "properties": {"distinct_id": "u-1", "$device_id": "d",
                                                              "time": 1, "mp_page": "https://x/p"}})
        sent = body(run(ev, person(), EMAIL, page_event_name="Loaded a Page"))
        assert (sent["eventName"], sent["dataFields"]["url"]) == ("Loaded a Page", "https://x/p")

    # "Enable Default Identify Transformations"
    def test_default_identify_transformations_table(self) -> None:
        assert dict(DEFAULT_IDENTIFY_RENAMES) == {
            "first_name": "firstName",
            "last_name": "lastName",
            "phone_number": "phoneNumber",
            "date_of_birth": "dateOfBirth",
            "zip_code": "zipCode",
        }

    # "Event Transformations": see tests/unit/test_transforms.py; one end-to-end check here
    def test_event_transformations_modify_data_before_sending(self) -> None:
        from streams.transforms import parse_transformations

        rules = parse_transformations([{"action": "set_property", "property": "src", "value": "web"}])
        applied = run(event(), person(), transformations=rules)
        assert body(applied)["dataFields"] == {"src": "web"}

    # "Date Fields in Iterable"
    def test_date_fields_use_an_accepted_iterable_format(self) -> None:
        assert normalize_date_string("2000-01-01T00:00:00.000-04:00") == "2000-01-01 04:00:00 +00:00"
        assert normalize_date_string("2000-01-01") == "2000-01-01"
