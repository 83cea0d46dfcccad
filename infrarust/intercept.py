"""What an intercepted session does with each packet, decided without I/O.

- :class:`BackendLogin`: the backend leg's login (offline, with forwarding): what to answer, what to
  relay to the client, when to give up.
- :class:`PlayInterceptor`: in play, the relay hands it every packet it reads (on either leg) and does
  what the verdict says: relay it unchanged, relay a replacement body, or answer a proxy command and
  send the backend an acknowledgement instead. Packets infrarust has no name for are never looked at.
"""

from __future__ import annotations

from attrs import frozen

from infrarust.auth import GameProfile
from infrarust.commands import COMMAND_NAMES, ProxyCommand, parse_proxy_command
from infrarust.forwarding import VELOCITY_CHANNEL, bungeecord_host, velocity_forwarding_data, velocity_version
from infrarust.protocol import (
    ClientChat,
    Handshake,
    InboundPacket,
    LoginPluginResponse,
    NextState,
    Outgoing,
    ProtocolError,
    State,
    add_commands_to_tree,
    encode_login_plugin_response,
    encode_login_start,
    parse_client_chat,
    parse_login_plugin_request,
)

COMMAND_ARGUMENT = "args"
"""The name of the optional greedy argument under ``/infrarust`` in the client's command tree."""


@frozen
class ClientVerdict:
    """What to do with one packet from the client.

    - ``forward``: relay the packet to the backend as received.
    - ``chat``: the player said this (publish ``PlayerChat``); forwarded.
    - ``command``: a backend command (publish ``PlayerCommand``, without its slash); forwarded unless a
      hook cancels it, in which case send ``acknowledgement`` instead.
    - ``proxy_command``: ``/infrarust`` or ``/ir``: answer it; never forwarded. Send
      ``acknowledgement`` to the backend in its place.
    - ``acknowledgement``: a Message Acknowledgement (``backend.send(*acknowledgement)``) that keeps the
      backend's signed-chat bookkeeping right when this packet is not forwarded; None when none is due.
    """

    forward: bool
    chat: str | None = None
    command: str | None = None
    proxy_command: ProxyCommand | None = None
    acknowledgement: Outgoing | None = None


_FORWARD = ClientVerdict(forward=True)


class PlayInterceptor:
    """Per intercepted session: reads client chat and commands, and adds the proxy's command to the
    backend's command tree. ``handle_commands`` False leaves ``/infrarust`` to the backend and out of the
    tree (``[permissions] player_commands = false`` for a player who is not an admin)."""

    def __init__(self, protocol_version: int, *, handle_commands: bool = True) -> None:
        self.protocol_version = protocol_version
        self.handle_commands = handle_commands

    def client_packet(self, packet: InboundPacket) -> ClientVerdict:
        """The verdict on a packet read from the client (play state packets only are looked at)."""
        if packet.state is not State.PLAY or packet.name is None:
            return _FORWARD
        try:
            said = parse_client_chat(self.protocol_version, packet.name, packet.body)
        except ProtocolError:
            # The backend judges chat it cannot parse either; the proxy only looks.
            return _FORWARD
        if said is None:
            return _FORWARD
        if isinstance(said, ClientChat):
            return ClientVerdict(forward=True, chat=said.message)
        ack = ("message_acknowledgement", said.acknowledgement) if said.acknowledgement is not None else None
        proxy_command = parse_proxy_command(said.command) if self.handle_commands else None
        if proxy_command is not None:
            return ClientVerdict(forward=False, proxy_command=proxy_command, acknowledgement=ack)
        return ClientVerdict(forward=True, command=said.command, acknowledgement=ack)

    def backend_packet(self, packet: InboundPacket) -> bytes | None:
        """A replacement body for a packet read from the backend, or None to relay it unchanged.

        Declare Commands gains ``/infrarust`` and ``/ir`` (tab completion, 1.13+).
        """
        if not self.handle_commands or packet.state is not State.PLAY or packet.name != "declare_commands":
            return None
        try:
            return add_commands_to_tree(self.protocol_version, packet.body, COMMAND_NAMES, COMMAND_ARGUMENT)
        except ProtocolError:
            return None


FORWARDING_MODES = ("none", "velocity", "bungeecord", "bungeeguard")
"""The ``forwarding_mode`` values (Infrarust v2's names)."""

NO_FORWARDING_REQUEST = "Your server did not send a forwarding request to the proxy. Is it set up correctly?"
"""Why a ``velocity`` backend that logged the player in without asking for forwarding is refused."""

BACKEND_ONLINE_MODE = "The server is in online mode; behind an intercepting proxy it must be offline."


@frozen
class Reply:
    """Send ``packet`` to the backend (``backend.send(*packet)``); relay nothing to the client."""

    packet: Outgoing


@frozen
class RelayToClient:
    """Relay the packet to the client as it came (``client.relay(packet)``)."""


@frozen
class RefuseLogin:
    """End the session: the backend cannot take this player; tell the player ``reason``."""

    reason: str


BackendLoginStep = Reply | RelayToClient | RefuseLogin


class BackendLogin:
    """The proxy logging a player in to a backend, as an offline-mode client with forwarding.

    Send :meth:`handshake` (raw bytes, before any compression) and :meth:`login_start` on a
    ``MinecraftConnection(Role.CLIENT, protocol)``, then give every login-state packet the backend
    sends to :meth:`backend_packet` and do what it says. Login Success, Set Compression, Disconnect and
    anything unknown (cookie requests) are relayed to the client, whose answers are relayed back.
    """

    def __init__(
        self,
        protocol_version: int,
        profile: GameProfile,
        client_address: str,
        *,
        mode: str = "none",
        secret: bytes = b"",
        bungeeguard_token: str | None = None,
    ) -> None:
        if mode not in FORWARDING_MODES:
            raise ValueError(f"unknown forwarding mode {mode!r}")
        self.protocol_version = protocol_version
        self.profile = profile
        self.client_address = client_address
        self.mode = mode
        self._secret = secret
        self._token = bungeeguard_token
        self.forwarded = mode in ("bungeecord", "bungeeguard")

    def handshake(self, host: str, port: int) -> bytes:
        """The framed handshake for the backend; the host carries the forwarding in bungeecord modes."""
        if self.mode in ("bungeecord", "bungeeguard"):
            token = self._token if self.mode == "bungeeguard" else None
            host = bungeecord_host(
                host, self.client_address, self.profile.uuid, self.profile.properties, token
            )
        return Handshake(self.protocol_version, host, port, NextState.LOGIN).encode()

    def login_start(self) -> Outgoing:
        """The Login Start naming the player (``backend.send(*login_start)``)."""
        return "login_start", encode_login_start(self.protocol_version, self.profile.name, self.profile.uuid)

    def backend_packet(self, packet: InboundPacket) -> BackendLoginStep:
        """What to do with a login-state packet from the backend. ProtocolError on a malformed one."""
        if packet.name == "encryption_request":
            return RefuseLogin(BACKEND_ONLINE_MODE)
        if packet.name == "login_plugin_request":
            request = parse_login_plugin_request(packet.body)
            data = None
            if self.mode == "velocity" and request.channel == VELOCITY_CHANNEL:
                version = velocity_version(request.data, self.protocol_version)
                data = velocity_forwarding_data(
                    self._secret,
                    version,
                    self.client_address,
                    self.profile.uuid,
                    self.profile.name,
                    self.profile.properties,
                )
                self.forwarded = True
            response = LoginPluginResponse(request.message_id, data)
            return Reply(("login_plugin_response", encode_login_plugin_response(response)))
        if packet.name == "login_success" and self.mode == "velocity" and not self.forwarded:
            return RefuseLogin(NO_FORWARDING_REQUEST)
        return RelayToClient()
