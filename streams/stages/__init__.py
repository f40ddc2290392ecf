"""The worker's stages, each a unit with one ``handle(batch)`` that a faust agent calls:

``RouteStage`` (decode, re-key by device) -> ``ResolveStage`` (tables ``aliases``, ``held``) -> ``ApplyStage``
(tables ``identities``, ``carts``, ``devices``, ``subscriptions``, the mapping core) -> ``SendStage``
(Iterable), with one ``DeadLetterSink`` for what will not be sent. A stage knows nothing of faust: it reads
records through small protocols, writes its tables through typed wrappers (``AliasTable``, ``HeldTable``,
``IdentityTable``, ``CartTable``, ``DeviceTable``, ``SubscriptionTable``, the byte formats inside) and its output
through outboxes, so it runs in a test with dicts and in-memory sinks, no broker.
"""

from ._apply import ApplyStage
from ._control import CONTROL_TAG, Control, control_from_bytes, control_to_bytes, is_control
from ._dead_letters import DeadLetterSink, SendRecord
from ._frame_sizes import FrameSizes
from ._records import Coordinates, EnterRecord, InputRecord, nothing_to_enter
from ._resolve import ResolveStage
from ._route import Decoded, RouteStage, SourceDecoder, source_of
from ._send import Deliverer, SendStage
from ._tables import (
    AliasTable,
    CartTable,
    DeviceTable,
    HeldEntry,
    HeldRecord,
    HeldTable,
    IdentityTable,
    SubscriptionTable,
    cart_from_bytes,
    cart_to_bytes,
    held_from_bytes,
    held_to_bytes,
    identity_from_bytes,
    identity_to_bytes,
    link_from_bytes,
    link_to_bytes,
    registered_from_bytes,
    registered_to_bytes,
    sent_from_bytes,
    sent_to_bytes,
)

__all__ = [
    "CONTROL_TAG",
    "AliasTable",
    "ApplyStage",
    "CartTable",
    "Control",
    "Coordinates",
    "DeadLetterSink",
    "Decoded",
    "Deliverer",
    "DeviceTable",
    "EnterRecord",
    "FrameSizes",
    "HeldEntry",
    "HeldRecord",
    "HeldTable",
    "IdentityTable",
    "InputRecord",
    "ResolveStage",
    "RouteStage",
    "SendRecord",
    "SendStage",
    "SourceDecoder",
    "SubscriptionTable",
    "cart_from_bytes",
    "cart_to_bytes",
    "control_from_bytes",
    "control_to_bytes",
    "held_from_bytes",
    "held_to_bytes",
    "identity_from_bytes",
    "identity_to_bytes",
    "is_control",
    "link_from_bytes",
    "link_to_bytes",
    "nothing_to_enter",
    "registered_from_bytes",
    "registered_to_bytes",
    "sent_from_bytes",
    "sent_to_bytes",
    "source_of",
]
