"""A read position over a complete packet body, so field parsers stay short and always bounds-checked."""

from __future__ import annotations

import struct
import uuid

from ._errors import ProtocolError
from ._string import MAX_STRING_CHARS, read_string
from ._varint import Buffer, decode_varint


class Cursor:
    """Reads fields front to back; any read past the end raises ProtocolError, never IndexError."""

    def __init__(self, data: Buffer, offset: int = 0) -> None:
        self._data = data
        self.offset = offset

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self._data) - self.offset

    def raw(self, count: int, what: str = "field") -> bytes:
        """The next ``count`` bytes."""
        start = self.offset
        end = start + count
        if count < 0 or end > len(self._data):
            raise ProtocolError(f"{what} truncated: needs {count} bytes, {self.remaining} left")
        self.offset = end
        return bytes(self._data[start:end])

    def varint(self, what: str = "VarInt") -> int:
        """The next VarInt."""
        decoded = decode_varint(self._data, self.offset)
        if decoded is None:
            raise ProtocolError(f"{what} truncated")
        value, self.offset = decoded
        return value

    def string(self, max_chars: int = MAX_STRING_CHARS) -> str:
        """The next protocol string."""
        text, self.offset = read_string(self._data, self.offset, max_chars)
        return text

    def boolean(self, what: str = "boolean") -> bool:
        """The next boolean byte; only 0 and 1 are booleans."""
        value = self.raw(1, what)[0]
        if value > 1:
            raise ProtocolError(f"{what} is {value}, not 0 or 1")
        return value == 1

    def unpack(self, fmt: str, what: str = "field") -> int:
        """The next big-endian fixed-size integer described by a one-field struct format."""
        packed = struct.Struct(fmt)
        value: int = packed.unpack(self.raw(packed.size, what))[0]
        return value

    def uuid(self) -> uuid.UUID:
        """The next UUID: 16 bytes, most significant first."""
        return uuid.UUID(bytes=self.raw(16, "UUID"))

    def expect_end(self, what: str) -> None:
        """Refuse bytes left over after the last field of ``what``."""
        if self.offset != len(self._data):
            raise ProtocolError(f"{self.remaining} unexpected bytes after {what}")
