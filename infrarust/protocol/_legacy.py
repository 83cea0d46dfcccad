"""Pre-1.7 (pre-Netty) traffic the proxy still meets: server list pings, login handshakes, kicks.

These use big-endian fixed-size fields and "string16" (a 16-bit count of UTF-16 code units, then
UTF-16BE), not VarInts. Parsers here work on a growing buffer: they return None while the bytes are a
valid but incomplete prefix, so the first-packet reader can call them after every read.
"""

from __future__ import annotations

import enum
import re
import struct

from attrs import frozen

from ._errors import ProtocolError
from ._string import utf16_units
from ._varint import Buffer

_COLOUR_CODE = re.compile("§.", re.DOTALL)
LEGACY_PING_ID = 0xFE
LEGACY_LOGIN_ID = 0x02
LEGACY_KICK_ID = 0xFF
PLUGIN_MESSAGE_ID = 0xFA
PING_HOST_CHANNEL = "MC|PingHost"

# A string16 count is a Java short.
_MAX_STRING16_CHARS = 32767
# No legacy field the proxy reads is legitimately longer; garbage announcing more is refused early.
_MAX_FIELD_CHARS = 1024
# The 1.3 login handshake starts with the protocol byte, and 1.3.1 was protocol 39; the older layout starts
# with a string16 count, whose high byte stays far below 39 for any length we accept.
_FIRST_LOGIN_PROTOCOL = 39


class LegacyPingKind(enum.Enum):
    """Which pre-1.7 server list ping a client sent; it decides the answer's format."""

    BETA = "FE"  # Beta 1.8 to 1.3: the single byte FE
    V1_4 = "FE 01"  # 1.4 and 1.5
    V1_6 = "FE 01 FA"  # 1.6: FE 01 then an MC|PingHost plugin message naming the host


@frozen
class LegacyPing:
    """A pre-1.7 server list ping. Only the 1.6 form carries a protocol, host and port."""

    kind: LegacyPingKind
    protocol_version: int | None
    host: str | None
    port: int | None


@frozen
class LegacyLogin:
    """A pre-1.7 login handshake (packet 0x02).

    1.3 to 1.6 send the protocol, user name, host and port as fields; older clients send one string
    ``"user;host:port"`` (or just the name), so the protocol is None and host and port may be.
    """

    protocol_version: int | None
    username: str
    host: str | None
    port: int | None


class _NeedMore(Exception):
    """Raised inside a parser when the buffer ends before the message does."""


class _Reader:
    """Big-endian fields over a buffer that may still be incomplete."""

    def __init__(self, data: Buffer, offset: int, limit: int) -> None:
        self._data = data
        self.offset = offset
        self._limit = limit

    def raw(self, count: int) -> bytes:
        end = self.offset + count
        if end > self._limit:
            raise ProtocolError(f"legacy message longer than the limit of {self._limit} bytes")
        if end > len(self._data):
            raise _NeedMore
        chunk = bytes(self._data[self.offset : end])
        self.offset = end
        return chunk

    def unpack(self, fmt: str) -> int:
        packed = struct.Struct(fmt)
        value: int = packed.unpack(self.raw(packed.size))[0]
        return value

    def string16(self, max_chars: int = _MAX_FIELD_CHARS) -> str:
        count = self.unpack(">h")
        if count < 0:
            raise ProtocolError(f"negative string16 length {count}")
        if count > max_chars:
            raise ProtocolError(f"string16 of {count} characters exceeds {max_chars}")
        try:
            return self.raw(2 * count).decode("utf-16-be")
        except UnicodeDecodeError:
            raise ProtocolError("string16 is not valid UTF-16") from None


def parse_legacy_ping_v1_6(data: Buffer, limit: int) -> tuple[LegacyPing, int] | None:
    """Decode a 1.6 ping (``FE 01 FA`` + MC|PingHost) at the start of ``data``: (ping, bytes used).

    None while incomplete; ProtocolError when it is not that message or would exceed ``limit`` bytes.
    """
    reader = _Reader(data, 0, limit)
    try:
        if reader.raw(3) != bytes((LEGACY_PING_ID, 0x01, PLUGIN_MESSAGE_ID)):
            raise ProtocolError("not a 1.6 legacy ping")
        channel = reader.string16()
        if channel != PING_HOST_CHANNEL:
            raise ProtocolError(f"unexpected legacy ping channel {channel!r}")
        length = reader.unpack(">h")
        payload_start = reader.offset
        protocol_version = reader.unpack(">B")
        host = reader.string16()
        port = reader.unpack(">i")
    except _NeedMore:
        return None
    # The declared length must cover exactly the fields; anything else means we misread the message.
    if reader.offset - payload_start != length:
        raise ProtocolError(
            f"MC|PingHost declares {length} bytes but carries {reader.offset - payload_start}"
        )
    return LegacyPing(LegacyPingKind.V1_6, protocol_version, host, port), reader.offset


def parse_legacy_login(data: Buffer, limit: int) -> tuple[LegacyLogin, int] | None:
    """Decode a pre-1.7 login handshake (first byte 0x02) at the start of ``data``: (login, bytes used).

    None while incomplete; ProtocolError when malformed or longer than ``limit`` bytes.
    """
    reader = _Reader(data, 0, limit)
    try:
        if reader.raw(1)[0] != LEGACY_LOGIN_ID:
            raise ProtocolError("not a legacy login")
        if reader.raw(1)[0] >= _FIRST_LOGIN_PROTOCOL:
            reader.offset -= 1
            protocol_version = reader.unpack(">B")
            username = reader.string16()
            host = reader.string16()
            port = reader.unpack(">i")
            return LegacyLogin(protocol_version, username, host, port), reader.offset
        reader.offset -= 1
        combined = reader.string16()
    except _NeedMore:
        return None
    return _split_old_login(combined), reader.offset


def _split_old_login(combined: str) -> LegacyLogin:
    username, separator, address = combined.partition(";")
    if not separator:
        return LegacyLogin(None, username, None, None)
    host, colon, port_text = address.rpartition(":")
    if not colon:
        return LegacyLogin(None, username, address, None)
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        raise ProtocolError(f"bad port {port_text!r} in legacy login")
    return LegacyLogin(None, username, host, int(port_text))


def _string16(text: str) -> bytes:
    units = utf16_units(text)
    if units > _MAX_STRING16_CHARS:
        raise ProtocolError(f"legacy string of {units} characters exceeds {_MAX_STRING16_CHARS}")
    try:
        return struct.pack(">H", units) + text.encode("utf-16-be")
    except UnicodeEncodeError:
        raise ProtocolError("legacy string is not encodable as UTF-16") from None


def encode_legacy_kick(
    kind: LegacyPingKind, *, motd: str, online: int, max_players: int, protocol: int, version_name: str
) -> bytes:
    """The 0xFF kick that answers a legacy ping of ``kind``.

    Beta clients read ``motd§online§max``; 1.4+ clients read ``§1``, then protocol, version, MOTD, online
    and max separated by NUL characters.
    """
    if kind is LegacyPingKind.BETA:
        # § separates the fields, so a colour code (§ and its letter) in the MOTD would shift them.
        text = f"{_COLOUR_CODE.sub('', motd).replace('§', '')}§{online}§{max_players}"
    else:
        fields = (str(protocol), version_name, motd, str(online), str(max_players))
        # NUL separates the fields here.
        text = "\0".join(("§1", *(field.replace("\0", "") for field in fields)))
    return bytes((LEGACY_KICK_ID,)) + _string16(text)


def encode_legacy_disconnect(message: str) -> bytes:
    """A 0xFF kick with a plain-text reason, for a legacy login the proxy cannot route."""
    return bytes((LEGACY_KICK_ID,)) + _string16(message)


@frozen
class LegacyStatus:
    """What a server's 0xFF answer to a legacy ping says. The Beta form has no protocol or version."""

    motd: str
    online: int
    max_players: int
    protocol_version: int | None
    version_name: str | None


def encode_legacy_ping(
    kind: LegacyPingKind,
    protocol_version: int | None = None,
    host: str | None = None,
    port: int | None = None,
) -> bytes:
    """The bytes a pre-1.7 client of ``kind`` sends to list a server (for pinging old servers).

    Only the 1.6 form carries ``protocol_version``, ``host`` and ``port``, and it needs all three.
    """
    if kind is LegacyPingKind.BETA:
        return bytes((LEGACY_PING_ID,))
    if kind is LegacyPingKind.V1_4:
        return bytes((LEGACY_PING_ID, 0x01))
    if protocol_version is None or host is None or port is None:
        raise ProtocolError("a 1.6 legacy ping needs a protocol version, a host and a port")
    try:
        payload = struct.pack(">B", protocol_version) + _string16(host) + struct.pack(">i", port)
    except struct.error:
        raise ProtocolError(f"protocol {protocol_version} or port {port} out of range") from None
    return (
        bytes((LEGACY_PING_ID, 0x01, PLUGIN_MESSAGE_ID))
        + _string16(PING_HOST_CHANNEL)
        + struct.pack(">h", len(payload))
        + payload
    )


def parse_legacy_kick(data: Buffer) -> LegacyStatus:
    """Decode a server's complete 0xFF answer to a legacy ping, in either format.

    Bytes after the kick are ignored: the server closes right after it, so nothing meaningful follows.
    """
    if not data or data[0] != LEGACY_KICK_ID:
        raise ProtocolError("legacy answer does not start with the kick id 0xFF")
    # The whole answer is here, so running short means truncated; the limit is the largest kick there is.
    reader = _Reader(data, 1, 3 + 2 * _MAX_STRING16_CHARS)
    try:
        text = reader.string16(_MAX_STRING16_CHARS)
    except _NeedMore:
        raise ProtocolError("legacy kick truncated") from None
    if text.startswith("§1\0"):
        fields = text.split("\0")
        if len(fields) != 6:
            raise ProtocolError(f"legacy kick has {len(fields)} fields, expected 6")
        _, protocol_text, version_name, motd, online, max_players = fields
        return LegacyStatus(motd, _count(online), _count(max_players), _count(protocol_text), version_name)
    # The Beta form: the MOTD itself cannot hold §, but take the last two fields to be safe.
    parts = text.rsplit("§", 2)
    if len(parts) != 3:
        raise ProtocolError("legacy kick is neither the Beta nor the 1.4+ format")
    motd, online, max_players = parts
    return LegacyStatus(motd, _count(online), _count(max_players), None, None)


def _count(text: str) -> int:
    # Plain decimal only (servers use -1 for "unknown"); int() alone would take spaces, "_" and other scripts.
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 10):
        raise ProtocolError(f"{text!r} is not a number in a legacy kick")
    return int(text)
