"""The codec's single error type."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that break the Minecraft, legacy or PROXY wire format, or a value that cannot be encoded.

    The message says what is wrong. A proxy answers it by closing the connection: nothing it could send
    back would be understood by a peer that speaks garbage.
    """
