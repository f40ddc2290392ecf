from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.codecs import FRAME_TAG, FrameItem, decode_frame, encode_frame, frame_chunks
from streams.codecs._frames import item_size
from streams.errors import DecodeError

ITEMS = [
    FrameItem(b"person-1", b"\x00value", ("freshpaint.events", 3, 1_234_567_890_123)),
    FrameItem(None, b"", (None, None, None)),
    FrameItem(b"", b"v" * 10_000, ("t\u00e9st", 0, 0)),
]

items = st.builds(
    FrameItem,
    st.none() | st.binary(max_size=40),
    st.binary(max_size=200),
    st.tuples(st.none() | st.text(max_size=20), st.none() | st.integers(0, 2**31 - 1),
              st.none() | st.integers(0, 2**63 - 1)),
)


class TestFrames:
    def test_round_trip_keeps_order_keys_values_and_sources(self) -> None:
        assert decode_frame(encode_frame(ITEMS)) == ITEMS

    @given(st.lists(items, max_size=20))
    def test_any_items_round_trip(self, batch: list[FrameItem]) -> None:
        raw = encode_frame(batch)
        assert decode_frame(raw) == batch
        assert len(raw) == len(FRAME_TAG) + 4 + sum(item_size(i) for i in batch)

    def test_empty_frame(self) -> None:
        assert decode_frame(encode_frame([])) == []

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (None, "found nothing"),
            (b'{"json": 1}', "expected tag"),
            (encode_frame(ITEMS)[:-3], "cut short"),
            (encode_frame(ITEMS)[:20], "damaged"),
            (encode_frame(ITEMS) + b"xx", "2 bytes after its 3 items"),
        ],
    )
    def test_anything_else_is_a_clear_decode_error(self, raw: bytes | None, message: str) -> None:
        with pytest.raises(DecodeError, match=message):
            decode_frame(raw)


class TestFrameChunks:
    def test_chunks_stay_within_the_byte_limit_and_keep_order(self) -> None:
        batch = [FrameItem(b"k", bytes([i]) * 100, ("t", 0, i)) for i in range(50)]
        chunks = list(frame_chunks(batch, 1_000))
        assert [item for chunk in chunks for item in chunk] == batch
        assert len(chunks) > 1
        assert all(len(encode_frame(chunk)) <= 1_000 for chunk in chunks)

    def test_an_item_over_the_limit_gets_a_frame_of_its_own(self) -> None:
        big = FrameItem(b"k", b"x" * 5_000)
        small = FrameItem(b"k", b"y")
        assert list(frame_chunks([small, big, small], 1_000)) == [[small], [big], [small]]
