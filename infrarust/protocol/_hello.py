"""The first thing a client sends, decoded incrementally: a modern handshake or a legacy ping or login.

One reader per connection. The first byte decides the family:

- ``0x02``: a pre-1.7 login. As a modern length it would announce a 2-byte packet, and the smallest
  handshake is 6 bytes (id, protocol, empty host, port, next state), so no modern client starts so.
- ``0xFE``: a legacy ping, unless it is the first byte of a modern length: a 254-byte handshake starts
  ``FE 01 00``. ``FE 01 FA`` is the 1.6 ping; ``FE 01`` or ``FE`` followed by nothing are the 1.4 and
  Beta pings, and "nothing" is something only the caller can observe (see :meth:`HelloReader.feed_eof`).
- anything else: a modern length, then packet id 0x00.
"""

from __future__ import annotations

from ._errors import ProtocolError
from ._framing import Packet, frame_header
from ._handshake import HANDSHAKE_ID, MAX_HANDSHAKE_SIZE, Handshake, parse_handshake
from ._legacy import (
    LEGACY_LOGIN_ID,
    LEGACY_PING_ID,
    PLUGIN_MESSAGE_ID,
    LegacyLogin,
    LegacyPing,
    LegacyPingKind,
    parse_legacy_login,
    parse_legacy_ping_v1_6,
)
from ._varint import MAX_VARINT_BYTES, decode_varint

Hello = Handshake | LegacyPing | LegacyLogin

_BETA_PING = bytes((LEGACY_PING_ID,))
_V1_4_PING = bytes((LEGACY_PING_ID, 0x01))
_V1_6_PING = bytes((LEGACY_PING_ID, 0x01, PLUGIN_MESSAGE_ID))


class HelloReader:
    """Feeds on a connection's first bytes until they make one event; keeps whatever follows untouched.

    :meth:`feed` returns the event once complete, None while more bytes are needed, and raises
    ProtocolError as soon as the bytes cannot be a valid start (wrong packet id, a length above
    ``max_handshake_size``), without waiting for the rest. Feeding in any chunking gives the same event
    and leftover. After the event, :meth:`take_leftover` returns the bytes that came after it.
    """

    def __init__(self, max_handshake_size: int = MAX_HANDSHAKE_SIZE) -> None:
        self._max_size = max_handshake_size
        self._buffer = bytearray()
        self._event: Hello | None = None

    @property
    def legacy_ping_pending(self) -> bool:
        """True while the bytes are exactly ``FE`` or ``FE 01``, or an unfinished ``FE 01 FA`` ping: a whole
        legacy ping if nothing else arrives. The caller should wait briefly for more, then call
        :meth:`feed_eof`.
        """
        buffer = self._buffer
        return self._event is None and (buffer in (_BETA_PING, _V1_4_PING) or buffer.startswith(_V1_6_PING))

    def feed(self, data: bytes) -> Hello | None:
        """Add received bytes; the event once complete, else None. An empty ``data`` is not EOF.

        Raises RuntimeError if called after the event was returned: the bytes that follow it belong to
        the next protocol stage, not to this reader.
        """
        if self._event is not None:
            raise RuntimeError("HelloReader already produced its event")
        self._buffer += data
        result = self._decode()
        if result is None:
            return None
        self._event, consumed = result
        del self._buffer[:consumed]
        return self._event

    def feed_eof(self) -> Hello | None:
        """The client sent nothing more (closed, half-closed, or stayed silent for a short wait).

        Resolves the Beta (``FE``) and 1.4 (``FE 01``) pings, and a 1.6 ping cut short after ``FE 01 FA``
        (what several ping tools send) as a 1.6 ping without a host. Returns None when nothing at all was
        received, and raises ProtocolError when the bytes are an incomplete message of any other kind.
        """
        if self._event is not None:
            return None
        if not self._buffer:
            return None
        if self._buffer == _BETA_PING:
            self._event = LegacyPing(LegacyPingKind.BETA, None, None, None)
        elif self._buffer == _V1_4_PING:
            self._event = LegacyPing(LegacyPingKind.V1_4, None, None, None)
        elif self._buffer.startswith(_V1_6_PING):
            self._event = LegacyPing(LegacyPingKind.V1_6, None, None, None)
        else:
            # feed() would already have returned the event if the buffer held a complete one.
            raise ProtocolError(
                f"client stopped after {len(self._buffer)} bytes of an incomplete first packet"
            )
        self._buffer.clear()
        return self._event

    def take_leftover(self) -> bytes:
        """The buffered bytes not part of the event, untouched (login start, status request...); clears
        the buffer. Before the event, that is everything fed so far.
        """
        leftover = bytes(self._buffer)
        self._buffer.clear()
        return leftover

    def _decode(self) -> tuple[Hello, int] | None:
        buffer = self._buffer
        if not buffer:
            return None
        if buffer[0] == LEGACY_LOGIN_ID:
            return parse_legacy_login(buffer, self._max_size)
        if buffer[0] == LEGACY_PING_ID:
            if len(buffer) < 3:
                if len(buffer) == 2 and buffer[1] != 0x01:
                    return self._decode_modern()
                return None  # FE or FE 01: a whole Beta / 1.4 ping, or the start of something longer
            if buffer[1] == 0x01 and buffer[2] == PLUGIN_MESSAGE_ID:
                return parse_legacy_ping_v1_6(buffer, self._max_size)
        return self._decode_modern()

    def _decode_modern(self) -> tuple[Hello, int] | None:
        buffer = self._buffer
        try:
            header = frame_header(buffer, self._max_size)
        except ProtocolError as exc:
            raise ProtocolError(f"bad handshake frame: {exc}") from None
        if header is None:
            return None
        length, start = header
        # Judge the packet id as soon as it is readable, so a non-handshake is refused before its body.
        decoded = decode_varint(buffer, start)
        if decoded is None:
            if len(buffer) - start >= min(length, MAX_VARINT_BYTES):
                raise ProtocolError("packet id runs past the end of the first packet")
            return None
        packet_id, body_start = decoded
        if body_start > start + length:
            raise ProtocolError("packet id runs past the end of the first packet")
        if packet_id != HANDSHAKE_ID:
            raise ProtocolError(f"first packet is 0x{packet_id:02x}, not a handshake")
        end = start + length
        if len(buffer) < end:
            return None
        return parse_handshake(Packet(packet_id, bytes(buffer[body_start:end]))), end
