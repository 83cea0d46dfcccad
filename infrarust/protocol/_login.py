"""The login-state packets the proxy reads or writes: Login Start (best effort) and Login Disconnect."""

from __future__ import annotations

import json
import uuid

from attrs import frozen

from ._cursor import Cursor
from ._errors import ProtocolError
from ._framing import Packet, encode_packet
from ._string import encode_string

LOGIN_START_ID = 0x00
LOGIN_DISCONNECT_ID = 0x00

MAX_USERNAME_CHARS = 16
# Protocol numbers where the Login Start layout changed.
_V1_19 = 759  # adds optional signature data (timestamp, public key, signature)
_V1_19_1 = 760  # adds an optional UUID after the signature data
_V1_19_3 = 761  # drops the signature data
_V1_20_2 = 764  # the UUID becomes required


@frozen
class LoginStart:
    """The player's name and, from 1.19.1 where the client sends it, their UUID."""

    name: str
    uuid: uuid.UUID | None


def parse_login_start(packet: Packet, protocol_version: int) -> LoginStart | None:
    """Decode a Login Start for the given protocol version; None (never an error) when it cannot.

    The proxy only wants the name for logs, bans and rate limits and forwards the packet unchanged anyway,
    so a layout it does not know (a snapshot, a modded client) must not end the connection.
    """
    if packet.packet_id != LOGIN_START_ID:
        return None
    try:
        return _parse(Cursor(packet.body), protocol_version)
    except ProtocolError:
        return None


def _parse(cursor: Cursor, protocol_version: int) -> LoginStart:
    name = cursor.string(MAX_USERNAME_CHARS)
    player_uuid: uuid.UUID | None = None
    if _V1_19 <= protocol_version < _V1_19_3 and cursor.boolean("has signature data"):
        cursor.unpack(">q", "key expiry timestamp")
        cursor.raw(cursor.varint("public key length"), "public key")
        cursor.raw(cursor.varint("signature length"), "signature")
    # 1.20.2 made the UUID required; from 1.19.1 it was preceded by a presence flag.
    required = protocol_version >= _V1_20_2
    if required or (protocol_version >= _V1_19_1 and cursor.boolean("has UUID")):
        player_uuid = cursor.uuid()
    cursor.expect_end("the login start")
    return LoginStart(name, player_uuid)


def encode_login_disconnect(message: str) -> bytes:
    """A framed Login Disconnect whose reason is the JSON text component ``{"text": message}``."""
    return encode_packet(LOGIN_DISCONNECT_ID, encode_string(json.dumps({"text": message})))
