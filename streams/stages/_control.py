"""Control records: instructions for the "apply" stage that travel in its own input, the by-person frames.

``freshpaint-iterable forget`` / ``unforget`` write one frame to the by-person topic, on the partition the
worker's partitioner gives the person key, holding one item: key = the person key, value = ``CONTROL_TAG``
then the operation. The apply agent owns the ``identities`` table of that partition and is the only writer
of its changelog, so the worker changes its own table, in order with the person's events. The tag cannot
start an internal event (those start with their format version byte, ``\\x01``).
"""

from __future__ import annotations

from enum import StrEnum

from streams.errors import DecodeError

__all__ = ["CONTROL_TAG", "Control", "control_from_bytes", "control_to_bytes", "is_control"]

CONTROL_TAG = b"FPC1"


class Control(StrEnum):
    """What a control record asks of the apply stage for its key's person."""

    FORGET = "forget"
    """Delete the person's identity (a tombstone) and drop their events from now on (``forgotten``)."""
    UNFORGET = "unforget"
    """Stop dropping the person's events (the forgotten-marker gets a tombstone)."""


def control_to_bytes(control: Control) -> bytes:
    return CONTROL_TAG + control.value.encode()


def is_control(value: bytes) -> bool:
    return value[:4] == CONTROL_TAG


def control_from_bytes(value: bytes) -> Control:
    """Raises ``DecodeError`` for an operation this version does not know."""
    try:
        return Control(bytes(value[4:]).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"unknown control record {bytes(value[:24])!r}") from exc
