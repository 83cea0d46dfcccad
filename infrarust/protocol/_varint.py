"""VarInt: the protocol's 7-bits-per-byte little-endian integer, signed 32-bit."""

from __future__ import annotations

from ._errors import ProtocolError

MAX_VARINT_BYTES = 5
"""A VarInt never takes more than 5 bytes (32 bits at 7 bits a byte)."""

Buffer = bytes | bytearray | memoryview

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def encode_varint(value: int) -> bytes:
    """Encode ``value`` (signed 32-bit) as a VarInt; negatives take 5 bytes, as two's complement."""
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ProtocolError(f"VarInt out of signed 32-bit range: {value}")
    value &= 0xFFFFFFFF
    out = bytearray()
    while True:
        if value < 0x80:
            out.append(value)
            return bytes(out)
        out.append((value & 0x7F) | 0x80)
        value >>= 7


def decode_varint(data: Buffer, offset: int = 0) -> tuple[int, int] | None:
    """Decode the VarInt at ``offset``: ``(value, offset after it)``, or None when more bytes are needed.

    Raises ProtocolError when the VarInt runs past 5 bytes. Non-minimal encodings (``80 00`` for 0) are
    accepted, as the vanilla server accepts them; bits past the 32nd are dropped, as Java's int does.
    """
    if offset < 0:
        raise ProtocolError(f"negative offset {offset}")
    if offset < len(data):
        # Most VarInts on the connection path (lengths, ids, versions below 128) are one byte.
        first = data[offset]
        if first < 0x80:
            return first, offset + 1
    result = 0
    for index in range(MAX_VARINT_BYTES):
        position = offset + index
        if position >= len(data):
            return None
        byte = data[position]
        result |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            result &= 0xFFFFFFFF
            if result > _INT32_MAX:
                result -= 2**32
            return result, position + 1
    raise ProtocolError(f"VarInt longer than {MAX_VARINT_BYTES} bytes")
