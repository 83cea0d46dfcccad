"""The packet codec of one direction of a connection: framing, zlib compression and AES-CFB8 encryption.

Bytes in, packets out (:class:`PacketDecoder`); packets in, bytes out (:class:`PacketEncoder`). The
wire format, once each layer is on:

- encryption (after the login's Encryption Response): every byte of the stream goes through
  AES-128-CFB8 keyed by the 16-byte shared secret, which is also the IV, one cipher per direction;
- framing: VarInt frame length, then the frame;
- compression (after Set Compression with a threshold >= 0): the frame is a VarInt "data length"
  then the packet; 0 means the packet follows uncompressed, anything else is the packet's size before
  zlib and the rest is its zlib stream. Vanilla compresses a packet when (id + body) is at least the
  threshold and refuses a compressed packet that claims to be smaller than the threshold;
- the packet: VarInt id, body.

The decoder reads a compressed packet's id by inflating only its first bytes, so a packet that is only
relayed (same threshold on both legs) is never inflated whole: :class:`WirePacket` keeps the frame as it
arrived and inflates the body on first access.
"""

from __future__ import annotations

import zlib

from cryptography.hazmat.decrepit.ciphers.modes import CFB8
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms

from ._errors import ProtocolError
from ._framing import DEFAULT_MAX_PACKET_SIZE
from ._varint import MAX_VARINT_BYTES, decode_varint, encode_varint

MAX_FRAME_SIZE = DEFAULT_MAX_PACKET_SIZE
"""The largest frame (after compression) vanilla accepts: a 3-byte VarInt length, 2097151 bytes."""

MAX_UNCOMPRESSED_SIZE = 8 * 1024 * 1024
"""Vanilla's cap on the declared size of a compressed packet (8 MiB). A larger claim is refused before
anything is inflated, and inflation never produces more than the claim: a zip bomb is an error."""

NO_COMPRESSION = -1
"""The threshold value meaning "compression is off" (as in Set Compression)."""

SHARED_SECRET_SIZE = 16


def _cipher(secret: bytes) -> Cipher[CFB8]:
    if len(secret) != SHARED_SECRET_SIZE:
        raise ProtocolError(f"shared secret is {len(secret)} bytes, not {SHARED_SECRET_SIZE}")
    # CFB8 lives in cryptography's "decrepit" package: a legacy mode, but the one the protocol uses.
    return Cipher(algorithms.AES(secret), CFB8(secret))


class WirePacket:
    """One received packet: its id, and its body inflated on first access.

    ``payload`` is the frame exactly as it arrived (after decryption); ``threshold`` the compression
    threshold it was framed with. An encoder with the same threshold re-sends the payload unchanged.
    """

    __slots__ = ("_body", "_offset", "packet_id", "payload", "threshold")

    def __init__(self, packet_id: int, payload: bytes, threshold: int, offset: int) -> None:
        self.packet_id = packet_id
        self.payload = payload
        self.threshold = threshold
        # Where the body starts in payload (uncompressed), or where the zlib stream starts (compressed).
        self._offset = offset
        self._body: bytes | None = None

    @property
    def compressed(self) -> bool:
        """Whether the payload carries a zlib stream (rather than the packet in clear)."""
        return self.threshold >= 0 and self.payload[0] != 0

    @property
    def body(self) -> bytes:
        """The bytes after the packet id. Inflating a compressed packet here may raise ProtocolError:
        the stream is corrupt, or it does not inflate to exactly the size it declared."""
        if self._body is None:
            if self.compressed:
                self._body = _inflate_body(self.payload, self._offset)
            else:
                self._body = self.payload[self._offset :]
        return self._body

    def __repr__(self) -> str:
        return f"WirePacket(0x{self.packet_id:02x}, {len(self.payload)} bytes on the wire)"


def _inflate_body(payload: bytes, zlib_start: int) -> bytes:
    declared = decode_varint(payload)
    assert declared is not None  # checked by the decoder when it made the packet
    size = declared[0]
    inflater = zlib.decompressobj()
    try:
        # One byte more than declared, so a longer stream is noticed without inflating it all.
        data = inflater.decompress(memoryview(payload)[zlib_start:], size + 1)
    except zlib.error as exc:
        raise ProtocolError(f"corrupt compressed packet: {exc}") from None
    if len(data) != size or not inflater.eof:
        raise ProtocolError(f"compressed packet declares {size} bytes but does not inflate to exactly that")
    if inflater.unused_data:
        raise ProtocolError("bytes after the end of a compressed packet's zlib stream")
    decoded = decode_varint(data)
    if decoded is None:
        raise ProtocolError("compressed packet too short for its id")
    return data[decoded[1] :]


def _peek_id(payload: bytes, zlib_start: int) -> int:
    try:
        head = zlib.decompressobj().decompress(memoryview(payload)[zlib_start:], MAX_VARINT_BYTES)
    except zlib.error as exc:
        raise ProtocolError(f"corrupt compressed packet: {exc}") from None
    decoded = decode_varint(head)
    if decoded is None:
        raise ProtocolError("compressed packet too short for its id")
    return decoded[0]


class PacketDecoder:
    """Turns the bytes one peer sends into packets, in any chunking.

    :meth:`feed` received bytes, then call :meth:`next_packet` until it returns None. Every problem
    with the bytes (bad VarInt, frame above ``max_frame_size``, bad compression header, corrupt zlib,
    a declared size above ``max_uncompressed_size``) raises :class:`ProtocolError`, and the decoder
    is then unusable: the connection is to be closed.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = MAX_FRAME_SIZE,
        max_uncompressed_size: int = MAX_UNCOMPRESSED_SIZE,
    ) -> None:
        self._buffer = bytearray()
        # Packets are read from _start on; the consumed prefix is dropped in one move per feed rather
        # than once per packet, which would copy the rest of a large read for every small packet.
        self._start = 0
        self._max_frame_size = max_frame_size
        self._max_uncompressed_size = max_uncompressed_size
        self._threshold = NO_COMPRESSION
        self._decryptor: CipherContext | None = None

    @property
    def threshold(self) -> int:
        """The compression threshold in force (-1: off)."""
        return self._threshold

    @property
    def encrypted(self) -> bool:
        """Whether received bytes are being decrypted."""
        return self._decryptor is not None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as packets."""
        return len(self._buffer) - self._start

    def set_compression(self, threshold: int) -> None:
        """Apply a Set Compression threshold to every frame not yet returned (negative turns it off)."""
        self._threshold = max(threshold, NO_COMPRESSION)

    def enable_encryption(self, shared_secret: bytes) -> None:
        """Decrypt from now on, including bytes already buffered but not yet returned as packets.

        Call it right after taking the packet after which the peer encrypts (the Encryption Response
        on a server, the Encryption Request's answer having been sent on a client): whatever the same
        read brought along is already ciphertext.
        """
        if self._decryptor is not None:
            raise ProtocolError("encryption is already on")
        self._decryptor = _cipher(shared_secret).decryptor()
        self._compact()
        if self._buffer:
            self._buffer[:] = self._decryptor.update(bytes(self._buffer))

    def feed(self, data: bytes) -> None:
        """Append received bytes (decrypting them when encryption is on)."""
        if self._decryptor is not None:
            data = self._decryptor.update(data)
        self._compact()
        self._buffer += data

    def next_packet(self) -> WirePacket | None:
        """The next complete packet, or None when more bytes are needed."""
        buffer = self._buffer
        header = decode_varint(buffer, self._start)
        if header is None:
            return None
        length, start = header
        if length <= 0:
            raise ProtocolError(f"bad packet length {length}: every packet carries at least its id")
        if length > self._max_frame_size:
            raise ProtocolError(f"packet length {length} exceeds the limit of {self._max_frame_size}")
        end = start + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[start:end])
        self._start = end
        return self._packet(payload)

    def take_leftover(self) -> bytes:
        """Every buffered (decrypted) byte not returned as a packet; the buffer is empty afterwards."""
        leftover = bytes(self._buffer[self._start :])
        self._buffer.clear()
        self._start = 0
        return leftover

    def _compact(self) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0

    def _packet(self, payload: bytes) -> WirePacket:
        threshold = self._threshold
        if threshold < 0:
            return _plain(payload, payload, 0, threshold)
        declared = decode_varint(payload)
        if declared is None:
            raise ProtocolError("compressed frame too short for its data length")
        size, offset = declared
        if size == 0:
            return _plain(payload, payload, offset, threshold)
        if size < 0:
            raise ProtocolError(f"negative data length {size}")
        if size < threshold:
            raise ProtocolError(f"badly compressed packet: size {size} is below the threshold {threshold}")
        if size > self._max_uncompressed_size:
            raise ProtocolError(
                f"compressed packet declares {size} bytes, above the limit of {self._max_uncompressed_size}"
            )
        return WirePacket(_peek_id(payload, offset), payload, threshold, offset)


def _plain(payload: bytes, data: bytes, offset: int, threshold: int) -> WirePacket:
    decoded = decode_varint(data, offset)
    if decoded is None:
        raise ProtocolError("packet id runs past the end of its packet")
    packet_id, body_start = decoded
    return WirePacket(packet_id, payload, threshold, body_start)


class PacketEncoder:
    """Turns packets into the bytes one peer expects: framed, compressed and encrypted as set.

    ``compression_level`` is zlib's (0-9, -1 its default); vanilla uses zlib's default.
    """

    def __init__(self, *, compression_level: int = -1, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._threshold = NO_COMPRESSION
        self._level = compression_level
        self._max_frame_size = max_frame_size
        self._encryptor: CipherContext | None = None

    @property
    def threshold(self) -> int:
        """The compression threshold in force (-1: off)."""
        return self._threshold

    @property
    def encrypted(self) -> bool:
        """Whether sent bytes are being encrypted."""
        return self._encryptor is not None

    def set_compression(self, threshold: int) -> None:
        """Compress every packet encoded from now on as Set Compression ``threshold`` says."""
        self._threshold = max(threshold, NO_COMPRESSION)

    def enable_encryption(self, shared_secret: bytes) -> None:
        """Encrypt every byte encoded from now on."""
        if self._encryptor is not None:
            raise ProtocolError("encryption is already on")
        self._encryptor = _cipher(shared_secret).encryptor()

    def encode(self, packet_id: int, body: bytes) -> bytes:
        """The bytes that carry one packet."""
        packet = encode_varint(packet_id) + body
        threshold = self._threshold
        if threshold < 0:
            payload = packet
        elif len(packet) >= threshold:
            if len(packet) > MAX_UNCOMPRESSED_SIZE:
                raise ProtocolError(f"packet of {len(packet)} bytes is above {MAX_UNCOMPRESSED_SIZE}")
            payload = encode_varint(len(packet)) + zlib.compress(packet, self._level)
        else:
            payload = b"\x00" + packet
        return self._frame(payload)

    def encode_packet(self, packet: WirePacket) -> bytes:
        """The bytes that relay a received packet: its frame unchanged when it was framed with this
        encoder's threshold, otherwise re-framed (inflating or deflating as needed)."""
        if packet.threshold == self._threshold:
            return self._frame(packet.payload)
        return self.encode(packet.packet_id, packet.body)

    def _frame(self, payload: bytes) -> bytes:
        if len(payload) > self._max_frame_size:
            raise ProtocolError(f"frame of {len(payload)} bytes is above the limit of {self._max_frame_size}")
        data = encode_varint(len(payload)) + payload
        if self._encryptor is not None:
            data = self._encryptor.update(data)
        return data
