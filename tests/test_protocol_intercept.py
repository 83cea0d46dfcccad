"""The play-session verdicts: chat observed and forwarded, backend commands forwarded, proxy commands
answered with an acknowledgement in their place, and the command tree extended (packets made by
minecraft-protocol's own codec)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from _node_codec import NodeCodec, start_node_codec

from infrarust.intercept import ClientVerdict, PlayInterceptor
from infrarust.protocol import (
    Direction,
    InboundPacket,
    MinecraftConnection,
    PacketEncoder,
    Role,
    State,
    encode_varint,
    packet_ids,
)


@pytest.fixture(scope="module")
def node() -> Iterator[NodeCodec]:
    yield from start_node_codec()


def _params(text: str) -> dict[str, Any]:
    return {
        "message": text,
        "command": text,
        "timestamp": {"bigint": "1"},
        "salt": {"bigint": "2"},
        "signature": {"hex": "00" * 256},
        "signedPreview": False,
        "argumentSignatures": [],
        "previousMessages": [],
        "offset": 0,
        "messageCount": 2,
        "acknowledged": {"hex": "030000"},
        "checksum": 0,
    }


def _inbound(protocol: int, role: Role, packet: bytes) -> InboundPacket:
    connection = MinecraftConnection(role, protocol, State.PLAY)
    packet_id = packet[0]  # the ids used here are below 0x80
    connection.receive_data(PacketEncoder().encode(packet_id, packet[1:]))
    inbound = connection.next_packet()
    assert inbound is not None
    return inbound


@pytest.mark.parametrize(("version", "protocol"), [("1.12.2", 340), ("1.19.4", 762), ("26.1", 775)])
def test_client_verdicts(node: NodeCodec, version: str, protocol: int) -> None:
    interceptor = PlayInterceptor(protocol)

    def verdict(name: str, text: str) -> ClientVerdict:
        data = node.encode(version, "play", "toServer", name, _params(text))
        return interceptor.client_packet(_inbound(protocol, Role.SERVER, data))

    old = protocol < 759
    chat = verdict("chat" if old else "chat_message", "hello")
    assert chat == ClientVerdict(forward=True, chat="hello")
    backend_command = verdict("chat" if old else "chat_command", "/spawn" if old else "spawn")
    assert backend_command.forward and backend_command.command == "spawn"
    proxy = verdict("chat" if old else "chat_command", "/ir find Bob" if old else "ir find Bob")
    assert not proxy.forward and proxy.proxy_command is not None
    assert (proxy.proxy_command.subcommand, proxy.proxy_command.argument) == ("find", "Bob")
    if 761 <= protocol < 766:
        assert proxy.acknowledgement == ("message_acknowledgement", encode_varint(2))
    else:
        assert proxy.acknowledgement is None
    if protocol >= 766:
        signed = verdict("chat_command_signed", "infrarust kick Bob")
        assert not signed.forward and signed.acknowledgement == ("message_acknowledgement", encode_varint(2))
    off = PlayInterceptor(protocol, handle_commands=False)
    data = node.encode(
        version, "play", "toServer", "chat" if old else "chat_command", _params("/ir" if old else "ir")
    )
    assert off.client_packet(_inbound(protocol, Role.SERVER, data)).forward


def test_other_packets_and_states_are_forwarded_unread() -> None:
    interceptor = PlayInterceptor(765)
    connection = MinecraftConnection(Role.SERVER, 765, State.PLAY)
    connection.receive_data(PacketEncoder().encode(0x7F, b"\xff\xff"))  # no name: never parsed
    unknown = connection.next_packet()
    assert unknown is not None and interceptor.client_packet(unknown) == ClientVerdict(forward=True)
    ids = packet_ids(765)
    assert ids is not None
    broken = MinecraftConnection(Role.SERVER, 765, State.PLAY)
    chat_id = ids.require(State.PLAY, Direction.SERVERBOUND, "chat_message")
    broken.receive_data(PacketEncoder().encode(chat_id, b"\x7f"))  # a string that runs past the end
    packet = broken.next_packet()
    assert packet is not None and interceptor.client_packet(packet).forward


def test_command_tree_replacement(node: NodeCodec) -> None:
    flags = {"unused": 0, "has_custom_suggestions": 0, "has_redirect_node": 0, "has_command": 0}
    tree = {"nodes": [{"flags": {**flags, "command_node_type": 0}, "children": []}], "rootIndex": 0}
    data = node.encode("1.20.4", "play", "toClient", "declare_commands", tree)
    packet = _inbound(765, Role.CLIENT, data)
    body = PlayInterceptor(765).backend_packet(packet)
    assert body is not None and body != packet.body
    decoded = node.decode("1.20.4", "play", "toClient", data[:1] + body)
    assert [n.get("extraNodeData", {}).get("name") for n in decoded["params"]["nodes"]] == [
        None,
        "infrarust",
        "args",
        "ir",
        "args",
    ]
    assert PlayInterceptor(765, handle_commands=False).backend_packet(packet) is None
