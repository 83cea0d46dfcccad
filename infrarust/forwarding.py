"""Telling a backend who the player really is: Velocity modern forwarding and BungeeCord's legacy
handshake forwarding (with BungeeGuard's token).

- ``velocity``: the backend sends a Login Plugin Request on :data:`VELOCITY_CHANNEL`, whose data is
  empty or one byte (the highest forwarding version it reads). The answer is an HMAC-SHA256 (keyed
  with the shared secret) over a payload of: VarInt version, client address, UUID, name, properties.
  Versions 2 and 3 add the 1.19 chat key, which infrarust never forwards; 4 ("lazy session", 1.19.3+)
  has the same layout as 1.
- ``bungeecord``: the handshake's host becomes ``host\\0client address\\0uuid-without-hyphens\\0
  properties-as-JSON``; ``bungeeguard`` adds a ``bungeeguard-token`` property the backend checks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence

from infrarust.protocol import Cursor, ProfileProperty, ProtocolError, encode_string, encode_varint

VELOCITY_CHANNEL = "velocity:player_info"
"""The login plugin channel of Velocity's modern forwarding."""

MODERN_DEFAULT = 1
MODERN_LAZY_SESSION = 4
_SIGNATURE_SIZE = 32
_V1_19_3 = 761

BUNGEEGUARD_PROPERTY = "bungeeguard-token"


def velocity_version(request_data: bytes, protocol_version: int) -> int:
    """The forwarding version to answer with: 4 when the backend reads it and the player is 1.19.3+,
    else 1 (infrarust has no chat key to send, so never 2 or 3)."""
    requested = request_data[0] if request_data else MODERN_DEFAULT
    if requested >= MODERN_LAZY_SESSION and protocol_version >= _V1_19_3:
        return MODERN_LAZY_SESSION
    return MODERN_DEFAULT


def _properties(properties: Sequence[ProfileProperty]) -> bytes:
    out = encode_varint(len(properties))
    for prop in properties:
        out += encode_string(prop.name) + encode_string(prop.value)
        out += b"\x00" if prop.signature is None else b"\x01" + encode_string(prop.signature)
    return out


def velocity_forwarding_data(
    secret: bytes,
    version: int,
    client_address: str,
    player_uuid: uuid.UUID,
    name: str,
    properties: Sequence[ProfileProperty] = (),
) -> bytes:
    """The data of the Login Plugin Response that answers ``velocity:player_info``: the signature,
    then the signed payload."""
    payload = (
        encode_varint(version)
        + encode_string(client_address)
        + player_uuid.bytes
        + encode_string(name)
        + _properties(properties)
    )
    return hmac.new(secret, payload, hashlib.sha256).digest() + payload


def parse_velocity_forwarding_data(
    secret: bytes, data: bytes
) -> tuple[int, str, uuid.UUID, str, tuple[ProfileProperty, ...]]:
    """Check and decode forwarding data as a backend does: ``(version, address, uuid, name,
    properties)``; ProtocolError when the signature is wrong or the payload malformed."""
    signature, payload = data[:_SIGNATURE_SIZE], data[_SIGNATURE_SIZE:]
    if not hmac.compare_digest(signature, hmac.new(secret, payload, hashlib.sha256).digest()):
        raise ProtocolError("velocity forwarding signature does not match the secret")
    cursor = Cursor(payload)
    version = cursor.varint("forwarding version")
    address = cursor.string()
    player_uuid = cursor.uuid()
    name = cursor.string(16)
    properties = []
    for _ in range(cursor.varint("property count")):
        prop_name, value = cursor.string(), cursor.string()
        properties.append(ProfileProperty(prop_name, value, cursor.string() if cursor.boolean() else None))
    cursor.expect_end("the forwarding data")
    return version, address, player_uuid, name, tuple(properties)


def bungeecord_host(
    host: str,
    client_address: str,
    player_uuid: uuid.UUID,
    properties: Sequence[ProfileProperty] = (),
    bungeeguard_token: str | None = None,
) -> str:
    """The handshake host field for BungeeCord (and, with a token, BungeeGuard) forwarding."""
    entries = [
        {"name": prop.name, "value": prop.value}
        | ({"signature": prop.signature} if prop.signature is not None else {})
        for prop in properties
    ]
    if bungeeguard_token is not None:
        entries.append({"name": BUNGEEGUARD_PROPERTY, "value": bungeeguard_token})
    text = json.dumps(entries, separators=(",", ":"))
    return f"{host}\0{client_address}\0{player_uuid.hex}\0{text}"


def parse_bungeecord_host(host: str) -> tuple[str, str, uuid.UUID, tuple[ProfileProperty, ...]]:
    """Decode a forwarded host as a BungeeCord backend does: ``(host, address, uuid, properties)``."""
    parts = host.split("\0")
    if len(parts) not in (3, 4):
        raise ProtocolError(f"a forwarded host has 3 or 4 NUL-separated parts, not {len(parts)}")
    try:
        player_uuid = uuid.UUID(hex=parts[2])
        entries = json.loads(parts[3]) if len(parts) == 4 else []
        properties = tuple(ProfileProperty(e["name"], e["value"], e.get("signature")) for e in entries)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProtocolError("a forwarded host's UUID or properties are malformed") from None
    return parts[0], parts[1], player_uuid, properties
