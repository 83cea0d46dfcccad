"""Server list ping, 1.7+: status request / response and ping / pong, plus the response's JSON."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Sequence
from typing import Any

from ._cursor import Cursor
from ._errors import ProtocolError
from ._framing import DEFAULT_MAX_PACKET_SIZE, Packet, encode_packet
from ._string import encode_string

STATUS_REQUEST_ID = 0x00
STATUS_RESPONSE_ID = 0x00
PING_ID = 0x01
PONG_ID = 0x01

_FAVICON_PREFIX = "data:image/png;base64,"


def encode_status_request() -> bytes:
    """A framed Status Request (no fields)."""
    return encode_packet(STATUS_REQUEST_ID, b"")


def encode_status_response(json_text: str) -> bytes:
    """A framed Status Response carrying ``json_text``."""
    return encode_packet(STATUS_RESPONSE_ID, encode_string(json_text))


def parse_status_response(packet: Packet) -> str:
    """The JSON string of a Status Response.

    Bytes after the string are ignored because some servers send them and clients do not mind. The length
    is not held to the protocol's 32767 characters: modded servers with large favicons or mod lists exceed
    it, and the packet size already bounds it.
    """
    if packet.packet_id != STATUS_RESPONSE_ID:
        raise ProtocolError(f"expected a status response (packet 0x00), got 0x{packet.packet_id:02x}")
    return Cursor(packet.body).string(DEFAULT_MAX_PACKET_SIZE)


def encode_ping(payload: int) -> bytes:
    """A framed Ping Request carrying the signed 64-bit ``payload``."""
    return encode_packet(PING_ID, _pack_long(payload))


def encode_pong(payload: int) -> bytes:
    """A framed Pong Response echoing the signed 64-bit ``payload``."""
    return encode_packet(PONG_ID, _pack_long(payload))


def parse_ping(packet: Packet) -> int:
    """The payload of a Ping Request or Pong Response (same layout both ways)."""
    if packet.packet_id != PING_ID:
        raise ProtocolError(f"expected a ping (packet 0x01), got 0x{packet.packet_id:02x}")
    cursor = Cursor(packet.body)
    payload = cursor.unpack(">q", "ping payload")
    cursor.expect_end("the ping")
    return payload


def _pack_long(value: int) -> bytes:
    try:
        return struct.pack(">q", value)
    except struct.error:
        raise ProtocolError(f"ping payload {value} is not a signed 64-bit value") from None


def build_status_json(
    *,
    version_name: str,
    protocol: int,
    max_players: int,
    online: int,
    description: str,
    favicon: str | None,
    sample: Sequence[tuple[str, uuid.UUID | str]] | None = None,
) -> str:
    """The JSON text of a Status Response.

    ``favicon`` is base64 PNG data, with or without its ``data:image/png;base64,`` prefix (added when
    missing, since clients ignore a favicon without it). ``sample`` is ``(name, uuid)`` pairs shown when
    hovering the player count.
    """
    players: dict[str, Any] = {"max": max_players, "online": online}
    if sample is not None:
        players["sample"] = [{"name": name, "id": str(player_id)} for name, player_id in sample]
    status: dict[str, Any] = {
        "version": {"name": version_name, "protocol": protocol},
        "players": players,
        "description": {"text": description},
    }
    if favicon is not None:
        status["favicon"] = favicon if favicon.startswith("data:") else _FAVICON_PREFIX + favicon
    return json.dumps(status)


def status_object(status_json: str) -> dict[str, Any] | None:
    """A status response's JSON object, or None when the text is not one (callers then pass it on as it
    came: a backend's odd answer is never rewritten into something else)."""
    try:
        status = json.loads(status_json)
    except ValueError:
        return None
    return status if isinstance(status, dict) else None
