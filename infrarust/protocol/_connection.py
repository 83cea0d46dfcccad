"""One leg of an intercepted session: a codec for each direction plus the protocol state, h11-style.

The proxy is the server on the client leg and the client on the backend leg. Feed received bytes with
:meth:`MinecraftConnection.receive_data`, take packets with :meth:`~MinecraftConnection.next_packet`;
turn packets into bytes to send with :meth:`~MinecraftConnection.send` (a packet by name) or
:meth:`~MinecraftConnection.relay` (a received packet, re-framed only when the compression differs).
State changes follow the packets that cause them, in both directions; compression follows Set
Compression. Encryption is switched on by the caller, which alone knows the shared secret.
"""

from __future__ import annotations

import enum

from attrs import frozen

from ._codec import MAX_FRAME_SIZE, MAX_UNCOMPRESSED_SIZE, PacketDecoder, PacketEncoder, WirePacket
from ._cursor import Cursor
from ._errors import ProtocolError
from ._handshake import NextState
from ._versions import Direction, PacketIds, State, packet_ids

# 1.20.2 added the configuration state between login and play.
CONFIGURATION_PROTOCOL = 764


class Role(enum.Enum):
    """Which end of the leg the proxy plays."""

    SERVER = "server"  # the client leg: the proxy receives serverbound packets
    CLIENT = "client"  # the backend leg: the proxy receives clientbound packets


@frozen
class InboundPacket:
    """A received packet with what the connection knows about it.

    ``name`` is infrarust's name for it in ``state`` (see :class:`PacketIds`), None for a packet the
    proxy does not read; ``packet`` is what :meth:`MinecraftConnection.relay` takes to pass it on.
    """

    state: State
    name: str | None
    packet: WirePacket

    @property
    def packet_id(self) -> int:
        """The packet's id."""
        return self.packet.packet_id

    @property
    def body(self) -> bytes:
        """The bytes after the id (inflated on first access; may raise ProtocolError)."""
        return self.packet.body


class MinecraftConnection:
    """Codec and state of one TCP connection that the proxy terminates.

    ``state`` is where both directions start: LOGIN on a client leg whose handshake the proxy already
    read, HANDSHAKE on a backend leg before the proxy sends its handshake. Raises ProtocolError when
    ``protocol_version`` is not a supported release.
    """

    def __init__(
        self,
        role: Role,
        protocol_version: int,
        state: State = State.LOGIN,
        *,
        max_frame_size: int = MAX_FRAME_SIZE,
        max_uncompressed_size: int = MAX_UNCOMPRESSED_SIZE,
        compression_level: int = -1,
    ) -> None:
        ids = packet_ids(protocol_version)
        if ids is None:
            raise ProtocolError(f"protocol version {protocol_version} is not supported")
        self.role = role
        self.ids: PacketIds = ids
        self.protocol_version = protocol_version
        self._states = {Direction.CLIENTBOUND: state, Direction.SERVERBOUND: state}
        self._inbound = Direction.CLIENTBOUND if role is Role.CLIENT else Direction.SERVERBOUND
        self._outbound = Direction.SERVERBOUND if role is Role.CLIENT else Direction.CLIENTBOUND
        self.decoder = PacketDecoder(
            max_frame_size=max_frame_size, max_uncompressed_size=max_uncompressed_size
        )
        self.encoder = PacketEncoder(compression_level=compression_level, max_frame_size=max_frame_size)

    @property
    def inbound_state(self) -> State:
        """The state the next received packet is read in."""
        return self._states[self._inbound]

    @property
    def outbound_state(self) -> State:
        """The state the next sent packet is written in."""
        return self._states[self._outbound]

    @property
    def compression_threshold(self) -> int:
        """The compression threshold of this leg (-1: off); Set Compression sets both directions."""
        return self.encoder.threshold

    def receive_data(self, data: bytes) -> None:
        """Add bytes received from the peer."""
        self.decoder.feed(data)

    def next_packet(self) -> InboundPacket | None:
        """The next received packet, or None when more bytes are needed; ProtocolError on bad bytes.

        A packet that changes the state or the compression takes effect before the next one is read.
        """
        packet = self.decoder.next_packet()
        if packet is None:
            return None
        state = self.inbound_state
        name = self.ids.name_of(state, self._inbound, packet.packet_id)
        if name is not None:
            self._follow(self._inbound, state, name, packet)
        return InboundPacket(state, name, packet)

    def send(self, name: str, body: bytes) -> bytes:
        """The bytes of packet ``name`` in the current outbound state; KeyError if the version has none."""
        state = self.outbound_state
        packet_id = self.ids.require(state, self._outbound, name)
        data = self.encoder.encode(packet_id, body)
        self._follow(self._outbound, state, name, None, body)
        return data

    def send_id(self, packet_id: int, body: bytes) -> bytes:
        """The bytes of a packet given by id (for a packet the proxy built but does not name)."""
        state = self.outbound_state
        name = self.ids.name_of(state, self._outbound, packet_id)
        data = self.encoder.encode(packet_id, body)
        if name is not None:
            self._follow(self._outbound, state, name, None, body)
        return data

    def relay(self, packet: InboundPacket) -> bytes:
        """The bytes that pass a packet received on the other leg on to this leg's peer.

        The frame is reused as it arrived when both legs compress alike; otherwise it is re-framed. The
        id is kept: both legs speak the same protocol version.
        """
        data = self.encoder.encode_packet(packet.packet)
        state = self.outbound_state
        name = self.ids.name_of(state, self._outbound, packet.packet_id)
        if name is not None:
            self._follow(self._outbound, state, name, packet.packet)
        return data

    def enable_encryption(self, shared_secret: bytes) -> None:
        """Encrypt both directions from now on (received bytes not yet read as packets included)."""
        self.decoder.enable_encryption(shared_secret)
        self.encoder.enable_encryption(shared_secret)

    def set_compression(self, threshold: int) -> None:
        """Set both directions' compression without a Set Compression packet (it follows one sent by
        :meth:`send` automatically)."""
        self.decoder.set_compression(threshold)
        self.encoder.set_compression(threshold)

    def _follow(
        self, direction: Direction, state: State, name: str, packet: WirePacket | None, body: bytes = b""
    ) -> None:
        """Apply what a packet that just went by in ``direction`` does to the state or the framing."""
        if packet is not None and name in _BODY_NEEDED:
            body = packet.body
        states = self._states
        clientbound = direction is Direction.CLIENTBOUND
        if state is State.HANDSHAKE and not clientbound and name == "handshake":
            cursor = Cursor(body)
            cursor.varint("protocol version")
            cursor.string()
            cursor.unpack(">H", "port")
            intent = cursor.varint("next state")
            after = State.STATUS if intent == NextState.STATUS else State.LOGIN
            states[Direction.CLIENTBOUND] = states[Direction.SERVERBOUND] = after
        elif state is State.LOGIN and clientbound and name == "set_compression":
            self.set_compression(Cursor(body).varint("compression threshold"))
        elif state is State.LOGIN and clientbound and name == "login_success":
            if self.protocol_version >= CONFIGURATION_PROTOCOL:
                states[Direction.CLIENTBOUND] = State.CONFIGURATION
            else:
                states[Direction.CLIENTBOUND] = states[Direction.SERVERBOUND] = State.PLAY
        elif state is State.LOGIN and not clientbound and name == "login_acknowledged":
            states[Direction.SERVERBOUND] = State.CONFIGURATION
        elif state is State.CONFIGURATION and name == "finish_configuration":
            states[direction] = State.PLAY
        elif state is State.PLAY and clientbound and name == "start_configuration":
            states[Direction.CLIENTBOUND] = State.CONFIGURATION
        elif state is State.PLAY and not clientbound and name == "configuration_acknowledged":
            states[Direction.SERVERBOUND] = State.CONFIGURATION


_BODY_NEEDED = frozenset({"handshake", "set_compression"})
