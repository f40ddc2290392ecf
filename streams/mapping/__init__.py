"""The pure mapping core: normalized events + identity state + settings -> Iterable requests.

Imports only the standard library, ``streams.model``, ``streams.errors`` and the other core modules
(``normalize``, ``identity``, ``transforms``); a unit test enforces it.
"""

from __future__ import annotations

from streams.mapping.cart import CART_EVENTS, Cart
from streams.mapping.config import MappingConfig, load_mapping_config
from streams.mapping.iterable import DEFAULT_IDENTIFY_RENAMES, PURCHASE_EVENT, Applied, apply_event
from streams.mapping.push import Registered

__all__ = [
    "CART_EVENTS",
    "DEFAULT_IDENTIFY_RENAMES",
    "PURCHASE_EVENT",
    "Applied",
    "Cart",
    "MappingConfig",
    "Registered",
    "apply_event",
    "load_mapping_config",
]
