"""The login-state packets both ends of the testing kit speak, offline UUIDs and compressed frames.

Sans-IO like :mod:`infrarust.protocol`, whose framing, strings and Login Start decoder this builds on: bytes
in, values out. The layouts follow minecraft-data's ``login`` protocol for each release from 1.8 to 26.1:

- Login Start: the name alone before 1.19 (759); 1.19 adds optional signature data (sent absent here);
  1.19.1 (760) an optional UUID after it; 1.19.3 (761) drops the signature data; 1.20.2 (764) makes the
  UUID required.
- Login Success: the UUID as a hyphenated string, then the name, before 1.16 (735); 16 raw bytes from
  1.16; 1.19 (759) appends a property list; 1.20.5 (766) appends ``strictErrorHandling``, which 1.21.2
  (768) removed again.
- From 1.20.2 the client answers Login Success with Login Acknowledged before the configuration state.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from typing import Any

from infrarust.protocol import (
    Packet,
    PacketReader,
    ProtocolError,
    decode_varint,
    encode_packet,
    encode_string,
    read_string,
)

MIN_PROTOCOL = 47
"""The oldest protocol number the kit's login speaks (1.8)."""
MAX_PROTOCOL = 775
"""The newest protocol number whose login layout the kit knows (26.1)."""
DEFAULT_PROTOCOL = 769
"""The protocol number the client helpers use unless told otherwise (1.21.4)."""

# Login-state packet ids, the same in every supported release.
DISCONNECT_ID = 0x00
ENCRYPTION_REQUEST_ID = 0x01
SUCCESS_ID = 0x02
SET_COMPRESSION_ID = 0x03
PLUGIN_REQUEST_ID = 0x04
COOKIE_REQUEST_ID = 0x05  # 1.20.5+
LOGIN_START_ID = 0x00
PLUGIN_RESPONSE_ID = 0x02
LOGIN_ACKNOWLEDGED_ID = 0x03  # 1.20.2+
COOKIE_RESPONSE_ID = 0x04  # 1.20.5+

_V1_16 = 735
_V1_19 = 759
_V1_19_1 = 760
_V1_19_3 = 761
_V1_20_2 = 764
_V1_20_5 = 766
_V1_21_2 = 768

# The protocol's own cap on an uncompressed packet (2^23 bytes), so a bad frame cannot inflate further.
_MAX_UNCOMPRESSED = 8 * 1024 * 1024
_UUID_STRING_CHARS = 36
_NAME_CHARS = 16


def check_protocol(protocol: int) -> None:
    """Raise ProtocolError unless the kit knows the login layout of ``protocol``."""
    if not MIN_PROTOCOL <= protocol <= MAX_PROTOCOL:
        raise ProtocolError(
            f"protocol {protocol} is outside the login layouts the testing kit knows "
            f"({MIN_PROTOCOL}, 1.8, to {MAX_PROTOCOL}, 26.1)"
        )


def acknowledges_login(protocol: int) -> bool:
    """True when a client of ``protocol`` sends Login Acknowledged after Login Success (1.20.2+)."""
    return protocol >= _V1_20_2


def offline_uuid(name: str) -> uuid.UUID:
    """The UUID an offline-mode server gives ``name``: version 3 (MD5) of ``"OfflinePlayer:" + name``."""
    digest = hashlib.md5(f"OfflinePlayer:{name}".encode(), usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest, version=3)


def encode_login_start(name: str, player_uuid: uuid.UUID, protocol: int) -> bytes:
    """A framed Login Start in the layout of ``protocol`` (the UUID is left out where it has no field)."""
    check_protocol(protocol)
    body = encode_string(name)
    if _V1_19 <= protocol < _V1_19_3:
        body += b"\x00"  # no signature data
    if protocol >= _V1_20_2:
        body += player_uuid.bytes
    elif protocol >= _V1_19_1:
        body += b"\x01" + player_uuid.bytes
    return encode_packet(LOGIN_START_ID, body)


def encode_login_success(name: str, player_uuid: uuid.UUID, protocol: int) -> bytes:
    """A framed Login Success in the layout of ``protocol``, with no properties."""
    check_protocol(protocol)
    if protocol < _V1_16:
        body = encode_string(str(player_uuid)) + encode_string(name)
    else:
        body = player_uuid.bytes + encode_string(name)
    if protocol >= _V1_19:
        body += b"\x00"  # an empty property list
    if _V1_20_5 <= protocol < _V1_21_2:
        body += b"\x00"  # strictErrorHandling: false
    return encode_packet(SUCCESS_ID, body)


def parse_login_success(body: bytes, protocol: int) -> tuple[str, uuid.UUID]:
    """``(name, uuid)`` of a Login Success body in the layout of ``protocol``; the properties are skipped."""
    check_protocol(protocol)
    if protocol < _V1_16:
        text, offset = read_string(body, 0, _UUID_STRING_CHARS)
        try:
            player_uuid = uuid.UUID(text)
        except ValueError:
            raise ProtocolError(f"Login Success carries {text!r}, not a UUID") from None
    else:
        if len(body) < 16:
            raise ProtocolError("Login Success is shorter than its UUID")
        player_uuid, offset = uuid.UUID(bytes=bytes(body[:16])), 16
    name, offset = read_string(body, offset, _NAME_CHARS)
    return name, player_uuid


def parse_disconnect_reason(body: bytes) -> Any:
    """The decoded JSON text component of a Login Disconnect (a plain string when it is not JSON)."""
    text, _ = read_string(body, 0)
    try:
        return json.loads(text)
    except ValueError:
        return text


def plain_text(component: Any) -> str:
    """The visible text of a JSON text component: ``text`` (or ``translate``) and its ``extra``, joined."""
    if isinstance(component, str):
        return component
    if isinstance(component, list):
        return "".join(plain_text(part) for part in component)
    if isinstance(component, dict):
        own = component.get("text", component.get("translate", ""))
        return str(own) + "".join(plain_text(part) for part in component.get("extra", ()))
    return str(component)


def encode_plugin_response_unknown(body: bytes) -> bytes:
    """The framed "not understood" answer to the Login Plugin Request whose body is ``body``."""
    decoded = decode_varint(body)
    if decoded is None:
        raise ProtocolError("Login Plugin Request without a message id")
    _, end = decoded  # the answer repeats the message id, then "not understood"
    return encode_packet(PLUGIN_RESPONSE_ID, body[:end] + b"\x00")


def encode_cookie_response_empty(body: bytes) -> bytes:
    """The framed "no such cookie" answer to the Cookie Request whose body is ``body``."""
    identifier, _ = read_string(body, 0)
    return encode_packet(COOKIE_RESPONSE_ID, encode_string(identifier) + b"\x00")


def encode_login_acknowledged() -> bytes:
    """A framed Login Acknowledged (no fields)."""
    return encode_packet(LOGIN_ACKNOWLEDGED_ID, b"")


def compress_frame(frame: bytes) -> bytes:
    """Re-frame an uncompressed frame for a connection with compression on, leaving it uncompressed.

    Senders may always do that (data length 0) for packets of any size, and the kit's few small packets
    gain nothing from zlib.
    """
    decoded = decode_varint(frame)
    assert decoded is not None
    _, start = decoded
    return encode_packet(0, frame[start:])  # "packet id" 0 is the data length 0 of the compressed format


class LoginReader:
    """Splits a server's login-state bytes into packets, before and after Set Compression.

    :meth:`feed` received bytes, take packets with :meth:`next_packet` until None; call
    :meth:`set_compression` as soon as Set Compression is read, since every later frame carries the
    uncompressed size first (0 for a frame sent uncompressed).
    """

    def __init__(self) -> None:
        self._reader = PacketReader()
        self.compression: int | None = None

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._reader.feed(data)

    def set_compression(self, threshold: int) -> None:
        """Frames after this one are in the compressed format (a negative threshold turns it off)."""
        self.compression = threshold if threshold >= 0 else None

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None when more bytes are needed; ProtocolError on bad bytes."""
        frame = self._reader.next_packet()
        if frame is None or self.compression is None:
            return frame
        # The framing reader read the compressed format's data length where a packet id would be.
        size, payload = frame.packet_id, frame.body
        if size < 0 or size > _MAX_UNCOMPRESSED:
            raise ProtocolError(f"compressed packet claims {size} bytes")
        if size:
            inflater = zlib.decompressobj()
            try:
                payload = inflater.decompress(payload, size)
            except zlib.error as exc:
                raise ProtocolError(f"bad compressed packet: {exc}") from None
            if len(payload) != size or inflater.unconsumed_tail:
                raise ProtocolError(f"compressed packet inflates to other than its declared {size} bytes")
        decoded = decode_varint(payload)
        if decoded is None:
            raise ProtocolError("compressed packet without a packet id")
        packet_id, start = decoded
        return Packet(packet_id, bytes(payload[start:]))


def parse_set_compression(body: bytes) -> int:
    """The threshold of a Set Compression body."""
    decoded = decode_varint(body)
    if decoded is None:
        raise ProtocolError("Set Compression without a threshold")
    return decoded[0]
