"""What an intercepted play session does with each packet, decided without I/O.

The relay hands every packet it reads (on either leg) to :class:`PlayInterceptor` and does what the
verdict says: relay it unchanged, relay a replacement body, or answer a proxy command and send the
backend an acknowledgement instead. Everything else (the packets infrarust has no name for) is relayed
without being looked at.
"""

from __future__ import annotations

from attrs import frozen

from infrarust.commands import COMMAND_NAMES, ProxyCommand, parse_proxy_command
from infrarust.protocol import (
    ClientChat,
    InboundPacket,
    Outgoing,
    ProtocolError,
    State,
    add_commands_to_tree,
    parse_client_chat,
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
