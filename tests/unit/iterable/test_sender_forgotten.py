"""The sender against the emulator for a GDPR-forgotten user: a final ``forgotten`` dead letter, not a retry."""

from __future__ import annotations

from datetime import UTC, datetime

from streams.errors import Reason
from streams.iterable import IterableClient
from streams.model import Endpoint, IterableRequest
from tests.unit.iterable.builders import identify, track
from tests.unit.iterable.conftest import KEY, Rig


def purchase(person: str, order: str) -> IterableRequest:
    body = {"id": order, "user": {"email": f"{person}@example.com"}, "total": 3.5,
            "items": [{"id": "sku", "name": "Mug", "price": 3.5, "quantity": 1}]}
    return IterableRequest(Endpoint.COMMERCE_TRACK_PURCHASE, body, person, f"src-{order}")


class TestForgottenAnswers:
    async def test_bulk_and_single_answers_become_forgotten_dead_letters_without_retry(self, rig: Rig) -> None:
        sender = rig.sender()
        assert all(o.delivered for o in await sender.deliver([identify("a"), identify("b")]))
        await IterableClient(rig.http, rig.server.url, KEY).forget(email="a@example.com")

        outcomes = await sender.deliver([identify("a"), track("a", "e1"), track("b", "e2"), purchase("a", "o1")])
        assert [o.delivered for o in outcomes] == [False, False, True, False]
        for outcome in (outcomes[0], outcomes[1], outcomes[3]):
            assert outcome.reason == Reason.FORGOTTEN
            assert outcome.attempts == 1, "a forgotten answer is final"
            letter = outcome.to_dead_letter(failed_at=datetime.now(UTC))
            assert letter.request is None and letter.iterable_response is None
            assert "a@example.com" not in letter.detail
        assert outcomes[3].status == 409 and outcomes[3].code == "ForgottenUserError"
        assert sender.stats.retries == 0

    async def test_unforget_accepts_the_user_again(self, rig: Rig) -> None:
        client = IterableClient(rig.http, rig.server.url, KEY)
        await client.forget(email="a@example.com")
        assert (await client.request("GET", "/api/users/forgotten"))["forgottenEmails"] == ["a@example.com"]
        await client.unforget(email="a@example.com")
        assert all(o.delivered for o in await rig.sender().deliver([identify("a"), track("a", "e1")]))
