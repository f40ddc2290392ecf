"""``MappingConfig``: the settings the mapping core reads, and loading them from a TOML file.

Field names match ``streams.settings.Settings`` (the shell maps one onto the other). The TOML form
used by ``explain --config`` is::

    [mapping]
    project_type = "hybrid"                  # email | userId | hybrid
    default_identify_transformations = true
    require_identify_first = true
    merge_nested_objects = false
    page_event_name = "Page Viewed"
    screen_event_name = "Screen Viewed"
    date_fields = ["trial_ends", "birthday"]
    transformations_file = "rules.toml"      # optional; relative to this file
    carts = true                             # keep carts, send commerce/updateCart (streams.mapping.cart)
    cart_event = "Cart Updated"              # optional: an event carrying the whole cart
    cart_max_items = 50
    push_app_name = "com.example.app"        # optional: register push device tokens (streams.mapping.push)
    push_ios_platform = "APNS"               # or APNS_SANDBOX
    unsubscribed_channels_trait = "unsubscribed_channel_ids"   # optional: subscription traits
    email_lists_trait = "email_list_ids"                       # (streams.mapping.subscriptions)
    unsubscribed_message_types_trait = ""
    opt_out_traits = { email_opt_out = 12 }  # boolean trait -> channel id

    [[transformations]]                      # optional; appended after the file's rules
    action = "drop"
    event = "Debug Ping"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from streams.errors import ConfigError
from streams.model import ProjectType
from streams.transforms import Transformations, load_transformations, parse_transformations, read_toml

__all__ = ["MappingConfig", "load_mapping_config", "mapping_values"]


@dataclass(frozen=True, slots=True)
class MappingConfig:
    """Everything the mapping core needs to know about the Iterable project and the user's rules.

    Each option but ``transformations`` is declared here once and is also the setting ``FPI_<NAME>``
    (``streams.settings`` derives it: the type, the default, and the bounds in ``metadata``); the rules come
    from ``FPI_TRANSFORMATIONS_FILE``.
    """

    project_type: ProjectType = ProjectType.EMAIL
    """Which identifier the project requires, email, userId or hybrid; must match the Iterable project (seed
    "Iterable Project Types"; iterable-api.md §5.1)."""
    default_identify_transformations: bool = False
    """first_name -> firstName and four more on identify (seed "Configuration Options")."""
    require_identify_first: bool = True
    """Events count as identified only after an identify for the person (seed "Events")."""
    merge_nested_objects: bool = False
    """``mergeNestedObjects`` on users/update (iterable-api.md §2.1)."""
    page_event_name: str = "Page Viewed"
    """Iterable event name of page views."""
    screen_event_name: str = "Screen Viewed"
    """Iterable event name of screen views."""
    date_fields: frozenset[str] = frozenset()
    """Field names whose epoch-number values are dates (iterable-api.md §6.2); as a setting, a JSON list."""
    transformations: Transformations = field(default_factory=Transformations)
    """The user's event transformation rules."""
    carts: bool = False
    """Keep each person's cart (table ``carts``) and send it whole to ``commerce/updateCart`` on Product Added,
    Product Removed, Cart Viewed and ``cart_event``; Order Completed empties it (``streams.mapping.cart``)."""
    cart_event: str = ""
    """The name of a track event whose ``products`` (or ``items``) are the whole cart, besides ``Cart Viewed``
    (empty: none)."""
    cart_max_items: int = field(default=50, metadata={"ge": 1, "le": 1000})
    """Most distinct items in one cart; a change beyond it is dropped ``cart_full``."""
    push_app_name: str = ""
    """The Iterable mobile app (push integration) that push device tokens found in events are registered to with
    users/registerDeviceToken, once per person and token (table ``devices``); empty: none registered."""
    push_ios_platform: Literal["APNS", "APNS_SANDBOX"] = "APNS"
    """``APNS`` or ``APNS_SANDBOX``: the platform iOS tokens are registered with (Android: ``GCM``)."""
    unsubscribed_channels_trait: str = ""
    """The identify trait listing the channel ids a person is unsubscribed from; it becomes Iterable subscription
    calls (table ``subscriptions``, ``streams.mapping.subscriptions``), never a profile field. Empty: none."""
    unsubscribed_message_types_trait: str = ""
    """The trait listing the message type ids a person is unsubscribed from."""
    email_lists_trait: str = ""
    """The trait listing the email list ids a person is on."""
    opt_out_traits: Mapping[str, int] = field(default_factory=dict)
    """Boolean trait -> the channel id it opts the person out of (``true``) or into (``false``); as a setting, a
    JSON object such as ``{"email_opt_out": 12}``."""


_SIMPLE = {f.name for f in fields(MappingConfig)} - {"transformations", "date_fields", "project_type",
                                                     "cart_max_items", "opt_out_traits"}

_CART_MAX_ITEMS = next(f for f in fields(MappingConfig) if f.name == "cart_max_items")


def load_mapping_config(path: str | Path, **overrides: Any) -> MappingConfig:
    """Read ``[mapping]`` and ``[[transformations]]`` from a TOML file; ``overrides`` win.

    Raises ``ConfigError`` for unreadable files, unknown keys and invalid values or rules.
    """
    path = Path(path)
    document = read_toml(path, "config file")
    section = document.get("mapping", {})
    if not isinstance(section, dict):
        raise ConfigError("[mapping] must be a table")
    values = mapping_values(section, "[mapping]", extra=frozenset({"transformations_file"}))
    rules: list[Any] = []
    if "transformations_file" in section:
        rules_path = path.parent / str(section["transformations_file"])
        rules.extend(load_transformations(rules_path).rules)
    rules.extend(parse_transformations(document.get("transformations", [])).rules)
    values["transformations"] = Transformations(tuple(rules))
    values.update(overrides)
    return MappingConfig(**values)


def mapping_values(section: Mapping[str, Any], where: str, extra: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The ``MappingConfig`` values a ``[mapping]``-style table sets (not its rules), checked; ``extra``: other keys
    the caller reads. Raises ``ConfigError`` naming ``where`` and the key for an unknown key or a wrong value."""
    known = _SIMPLE | {"project_type", "date_fields", "cart_max_items", "opt_out_traits"} | extra
    unknown = set(section) - known
    if unknown:
        raise ConfigError(f"unknown {where} key(s): {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in _SIMPLE:
        if name in section:
            expected = bool if isinstance(getattr(MappingConfig(), name), bool) else str
            if not isinstance(section[name], expected):
                raise ConfigError(f"{where} {name} must be a {expected.__name__}")
            values[name] = section[name]
    if "project_type" in section:
        try:
            values["project_type"] = ProjectType(section["project_type"])
        except ValueError:
            raise ConfigError(
                f"{where} project_type must be one of {', '.join(p.value for p in ProjectType)}"
            ) from None
    if "cart_max_items" in section:
        bound = section["cart_max_items"]
        low, high = (_CART_MAX_ITEMS.metadata[k] for k in ("ge", "le"))
        if isinstance(bound, bool) or not isinstance(bound, int) or not low <= bound <= high:
            raise ConfigError(f"{where} cart_max_items must be an integer from {low} to {high}")
        values["cart_max_items"] = bound
    if "opt_out_traits" in section:
        values["opt_out_traits"] = _opt_outs(section["opt_out_traits"], where)
    if "date_fields" in section:
        dates = section["date_fields"]
        if not isinstance(dates, list) or not all(isinstance(d, str) for d in dates):
            raise ConfigError(f"{where} date_fields must be a list of strings")
        values["date_fields"] = frozenset(dates)
    return values


def _opt_outs(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value.values()):
        raise ConfigError(f"{where} opt_out_traits must be a table of trait name = positive channel id")
    return dict(value)
