"""Frames: many records in one Kafka message of an internal topic.

Faust's and aiokafka's cost per consumed and produced message dwarfs the work each event needs, so
the internal topics (by-device, by-person, requests) carry frames: one message holds the records of
one taken batch bound for one partition, each with its key, its value and the coordinates of the
source record it came from (for dead letters). The processor is the only writer and reader of these
topics, so the format is ours: a version tag, then length-prefixed fields (``struct``, little-endian).
Changing it needs the internal topics drained first; a message without the tag is rejected with a
``DecodeError`` naming what was found.

    frame  := b"FPF1" count:u32 item*
    item   := key_len:i32 key  topic_len:i32 topic  partition:i32  offset:i64  value_len:u32 value
              (a length of -1 is a missing key or source topic)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from streams.errors import DecodeError

__all__ = ["FRAME_TAG", "FrameItem", "Source", "decode_frame", "encode_frame", "frame_chunks", "item_size"]

FRAME_TAG = b"FPF1"

_COUNT = struct.Struct("<I")
_LENGTH = struct.Struct("<i")
_POSITION = struct.Struct("<iqI")
_HEADER_BYTES = len(FRAME_TAG) + _COUNT.size
_ITEM_OVERHEAD = _LENGTH.size * 2 + _POSITION.size

Source = tuple[str | None, int | None, int | None]
"""``(topic, partition, offset)`` of the source record; any part may be unknown."""


@dataclass(frozen=True, slots=True)
class FrameItem:
    """One record of a frame."""

    key: bytes | None
    value: bytes
    source: Source = (None, None, None)


def item_size(item: FrameItem) -> int:
    """Bytes ``item`` takes in a frame."""
    topic = item.source[0]
    return (_ITEM_OVERHEAD + len(item.value) + (len(item.key) if item.key is not None else 0)
            + (len(topic.encode()) if topic is not None else 0))


def encode_frame(items: Sequence[FrameItem]) -> bytes:
    """One frame holding ``items`` in order."""
    parts: list[bytes] = [FRAME_TAG, _COUNT.pack(len(items))]
    pack_length, pack_position = _LENGTH.pack, _POSITION.pack
    for item in items:
        key = item.key
        topic, partition, offset = item.source
        topic_bytes = topic.encode() if topic is not None else None
        parts.append(pack_length(len(key) if key is not None else -1))
        if key is not None:
            parts.append(key)
        parts.append(pack_length(len(topic_bytes) if topic_bytes is not None else -1))
        if topic_bytes is not None:
            parts.append(topic_bytes)
        parts.append(pack_position(-1 if partition is None else partition, -1 if offset is None else offset,
                                   len(item.value)))
        parts.append(item.value)
    return b"".join(parts)


def decode_frame(raw: bytes | None) -> list[FrameItem]:
    """The items of a frame, in order. Raises ``DecodeError`` for anything that is not a whole frame."""
    if raw is None or raw[:4] != FRAME_TAG:
        found = "nothing" if raw is None else repr(bytes(raw[:4]))
        raise DecodeError(f"not a frame of an internal topic: expected tag {FRAME_TAG!r}, found {found} "
                          "(written by another version or another producer?)")
    items: list[FrameItem] = []
    count, position = 0, _HEADER_BYTES
    unpack_length, unpack_position = _LENGTH.unpack_from, _POSITION.unpack_from
    try:
        (count,) = _COUNT.unpack_from(raw, 4)
        for _ in range(count):
            (key_length,) = unpack_length(raw, position)
            position += 4
            key: bytes | None = None
            if key_length >= 0:
                key = raw[position:position + key_length]
                position += key_length
            (topic_length,) = unpack_length(raw, position)
            position += 4
            topic: str | None = None
            if topic_length >= 0:
                topic = raw[position:position + topic_length].decode()
                position += topic_length
            partition, offset, value_length = unpack_position(raw, position)
            position += _POSITION.size
            value = raw[position:position + value_length]
            position += value_length
            if len(value) != value_length or (key is not None and len(key) != key_length):
                raise DecodeError(f"frame is cut short in item {len(items)} of {count}")
            items.append(FrameItem(key, value, (topic, None if partition < 0 else partition,
                                                None if offset < 0 else offset)))
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"frame is damaged after {len(items)} items: {exc}") from exc
    if position != len(raw):
        raise DecodeError(f"frame has {len(raw) - position} bytes after its {count} items")
    return items


def frame_chunks(items: Iterable[FrameItem], max_bytes: int) -> Iterator[list[FrameItem]]:
    """Split ``items`` (in order) into runs whose frames stay within ``max_bytes``.

    An item larger than ``max_bytes`` on its own still gets a frame of its own: the size limit for
    single records is enforced where records enter the pipeline.
    """
    chunk: list[FrameItem] = []
    size = _HEADER_BYTES
    for item in items:
        needed = item_size(item)
        if chunk and size + needed > max_bytes:
            yield chunk
            chunk, size = [], _HEADER_BYTES
        chunk.append(item)
        size += needed
    if chunk:
        yield chunk
