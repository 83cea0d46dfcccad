"""The modern (1.7+) handshake: the first packet of every connection, and the one the proxy routes by."""

from __future__ import annotations

import enum
import struct

import attrs
from attrs import frozen

from ._cursor import Cursor
from ._errors import ProtocolError
from ._framing import Packet, encode_packet
from ._string import MAX_STRING_CHARS, encode_string
from ._varint import encode_varint

HANDSHAKE_ID = 0x00

MAX_HANDSHAKE_SIZE = 4096
"""Cap on the handshake's packet length (id + body).

Vanilla hosts are at most 255 characters, but Forge (``\\0FML2\\0``) and TCPShield (``///ip///ts///sig``)
append to the host; 4096 leaves room for both while keeping a slow or hostile client's buffer small.
"""


class NextState(enum.IntEnum):
    """What the client wants after the handshake."""

    STATUS = 1
    LOGIN = 2
    TRANSFER = 3  # 1.20.5+: a login that arrives through a server's transfer packet


@frozen
class Handshake:
    """A decoded handshake. ``host`` is the raw field, suffixes (Forge, TCPShield) included."""

    protocol_version: int
    host: str
    port: int
    next_state: NextState

    def encode(self) -> bytes:
        """The full framed packet, ready to send to a backend."""
        if not 0 <= self.port <= 0xFFFF:
            raise ProtocolError(f"port {self.port} is not an unsigned 16-bit value")
        body = (
            encode_varint(self.protocol_version)
            + encode_string(self.host)
            + struct.pack(">H", self.port)
            + encode_varint(int(self.next_state))
        )
        return encode_packet(HANDSHAKE_ID, body)

    def with_host(self, host: str) -> Handshake:
        """A copy with the whole host field replaced (a caller keeping a NUL suffix must append it)."""
        return attrs.evolve(self, host=host)


def parse_handshake(packet: Packet) -> Handshake:
    """Decode a handshake packet; ProtocolError if it is anything else or has bytes past its last field.

    The host is limited only by the protocol's string maximum: the size that matters is the packet's,
    which the reader bounds with MAX_HANDSHAKE_SIZE before this runs.
    """
    if packet.packet_id != HANDSHAKE_ID:
        raise ProtocolError(f"expected a handshake (packet 0x00), got packet 0x{packet.packet_id:02x}")
    cursor = Cursor(packet.body)
    protocol_version = cursor.varint("protocol version")
    host = cursor.string(MAX_STRING_CHARS)
    port = cursor.unpack(">H", "port")
    state = cursor.varint("next state")
    cursor.expect_end("the handshake")
    try:
        next_state = NextState(state)
    except ValueError:
        raise ProtocolError(f"unknown next state {state}") from None
    return Handshake(protocol_version, host, port, next_state)
