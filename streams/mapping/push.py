"""Push device tokens: which token an event carries, and whether the person has it registered (issue 21 part 2).

Where the token is (freshpaint-events.md documents neither dialect's mobile fields; these follow the
Segment-style mobile context that Freshpaint's destination dialect copies, and are **unconfirmed**):

* destination dialect: ``context.device.token``, the platform from ``context.device.type`` or
  ``context.os.name`` (``ios`` / ``android``, any case; ``iPadOS`` counts as iOS);
* raw dialect: ``properties.$device_token`` (else ``properties.device_token``), the platform from
  ``properties.$os``.

Iterable's ``users/registerDeviceToken`` (OpenAPI ``RegisterDeviceTokenRequest``, ``Device``) takes
``applicationName`` (``FPI_PUSH_APP_NAME``), ``platform`` (``APNS`` / ``APNS_SANDBOX`` for iOS by
``FPI_PUSH_IOS_PLATFORM``, ``GCM`` for Android) and ``token``. A token is registered once per person: the
``devices`` table remembers a digest of each registration (``Registered``), so a replay, or a token seen on
every event, costs no call.

Web push is not registered: Iterable's ``users/registerBrowserToken`` takes a Firebase Messaging
``browserToken``, and Freshpaint's event model (freshpaint-events.md: the browser-info properties, the
destination dialect's context) has no field that carries one in either dialect. No name is guessed for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["IOS_PLATFORMS", "KEPT", "PushToken", "Registered", "push_token"]

IOS_PLATFORMS = ("APNS", "APNS_SANDBOX")
"""The values of ``FPI_PUSH_IOS_PLATFORM``; Android tokens are always ``GCM`` (Firebase)."""

KEPT = 20
"""How many registrations a person's entry remembers (newest last); an older one forgotten is registered again
if seen again, which Iterable treats as the same device."""


@dataclass(frozen=True, slots=True)
class PushToken:
    """A device token found in an event, and the Iterable platform it belongs to."""

    token: str
    platform: str

    def digest(self, app_name: str) -> str:
        """What the ``devices`` table keeps of a registration: no token in clear, 16 hex digits."""
        return hashlib.sha256(f"{app_name}\x00{self.platform}\x00{self.token}".encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Registered:
    """One person's registered devices: digests of (app, platform, token), oldest first, at most ``KEPT``."""

    digests: tuple[str, ...] = ()

    def add(self, digest: str) -> Registered:
        return Registered((*self.digests, digest)[-KEPT:])


def _platform(name: Any, ios_platform: str) -> str | None:
    if not isinstance(name, str):
        return None
    lowered = name.lower()
    if lowered in ("ios", "ipados", "iphone os"):
        return ios_platform
    if lowered == "android":
        return "GCM"
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def push_token(context: Mapping[str, Any], properties: Mapping[str, Any], ios_platform: str) -> PushToken | None:
    """The device token and platform of an event (module doc), or ``None`` when it has none or its platform is
    neither iOS nor Android."""
    device = context.get("device")
    if isinstance(device, Mapping) and _text(device.get("token")):
        os_info = context.get("os")
        name = device.get("type") or (os_info.get("name") if isinstance(os_info, Mapping) else None)
        platform = _platform(name, ios_platform)
        return PushToken(device["token"], platform) if platform else None
    token = _text(properties.get("$device_token")) or _text(properties.get("device_token"))
    platform = _platform(properties.get("$os"), ios_platform)
    return PushToken(token, platform) if token and platform else None
