"""Protocol strings: a VarInt byte length, then UTF-8."""

from __future__ import annotations

from ._errors import ProtocolError
from ._varint import Buffer, decode_varint, encode_varint

MAX_STRING_CHARS = 32767
"""The protocol's largest declared string length, in UTF-16 code units."""


def encode_string(text: str) -> bytes:
    """Encode ``text`` as a VarInt byte length followed by its UTF-8 bytes."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
        raise ProtocolError(f"string is not encodable as UTF-8: {exc.reason}") from None
    return encode_varint(len(raw)) + raw


def utf16_units(text: str) -> int:
    """Length of ``text`` as Java counts it (UTF-16 code units), which is what the limits are in."""
    if text.isascii():  # host names and player names: one unit per character
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def read_string(data: Buffer, offset: int, max_chars: int = MAX_STRING_CHARS) -> tuple[str, int]:
    """Read the string at ``offset`` of a complete packet body: ``(text, offset after it)``.

    ``max_chars`` counts UTF-16 code units, like the Java limits it mirrors. Raises ProtocolError when the
    bytes end early, the string is longer than allowed, or the bytes are not valid UTF-8.
    """
    decoded = decode_varint(data, offset)
    if decoded is None:
        raise ProtocolError("string length truncated")
    length, start = decoded
    if length < 0:
        raise ProtocolError(f"negative string length {length}")
    # A UTF-16 unit takes at most 3 UTF-8 bytes: refuse before decoding anything larger.
    if length > max_chars * 3:
        raise ProtocolError(f"string of {length} bytes exceeds {max_chars} characters")
    end = start + length
    if end > len(data):
        raise ProtocolError(f"string truncated: {length} bytes declared, {len(data) - start} present")
    try:
        text = bytes(data[start:end]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("string is not valid UTF-8") from None
    if utf16_units(text) > max_chars:
        raise ProtocolError(f"string longer than {max_chars} characters")
    return text, end
