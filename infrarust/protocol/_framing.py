"""Uncompressed packet framing: VarInt length, VarInt packet id, body."""

from __future__ import annotations

from attrs import frozen

from ._errors import ProtocolError
from ._varint import decode_varint, encode_varint

DEFAULT_MAX_PACKET_SIZE = 2097151
"""The largest length a 3-byte VarInt holds, which is the vanilla frame limit."""


@frozen
class Packet:
    """One framed packet: its id and the bytes after the id."""

    packet_id: int
    body: bytes


def encode_packet(packet_id: int, body: bytes) -> bytes:
    """Frame ``body`` under ``packet_id``: VarInt length of (id + body), VarInt id, body."""
    payload = encode_varint(packet_id) + body
    return encode_varint(len(payload)) + payload


class PacketReader:
    """Splits a byte stream into packets, whatever the chunking it arrives in.

    Feed bytes with :meth:`feed`, take packets with :meth:`next_packet` until it returns None. A length
    above ``max_packet_size`` is refused as soon as the length itself is readable, so a peer cannot make
    the buffer grow by announcing a huge packet.
    """

    def __init__(self, max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> None:
        self._max_packet_size = max_packet_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._buffer += data

    def next_packet(self) -> Packet | None:
        """The next complete packet, or None when more bytes are needed.

        Raises ProtocolError for a bad length VarInt, a length that is zero, negative or above the cap,
        or a packet id that does not fit inside its packet.
        """
        header = frame_header(self._buffer, self._max_packet_size)
        if header is None:
            return None
        length, start = header
        end = start + length
        if len(self._buffer) < end:
            return None
        decoded = decode_varint(self._buffer, start)
        if decoded is None or decoded[1] > end:
            raise ProtocolError("packet id runs past the end of its packet")
        packet_id, body_start = decoded
        packet = Packet(packet_id, bytes(self._buffer[body_start:end]))
        del self._buffer[:end]
        return packet

    def take_leftover(self) -> bytes:
        """Every buffered byte not returned as a packet, untouched; the buffer is empty afterwards."""
        leftover = bytes(self._buffer)
        self._buffer.clear()
        return leftover


def frame_header(data: bytes | bytearray, max_packet_size: int) -> tuple[int, int] | None:
    """``(packet length, offset of the packet id)`` of the frame at the start of ``data``.

    None when the length VarInt is incomplete; ProtocolError when it is invalid, zero, negative or above
    ``max_packet_size``. Shared by the packet reader and the first-packet reader so both judge alike.
    """
    decoded = decode_varint(data)
    if decoded is None:
        return None
    length, start = decoded
    if length < 0:
        raise ProtocolError(f"negative packet length {length}")
    if length == 0:
        # Every packet carries at least its id.
        raise ProtocolError("empty packet")
    if length > max_packet_size:
        raise ProtocolError(f"packet length {length} exceeds the limit of {max_packet_size}")
    return length, start
