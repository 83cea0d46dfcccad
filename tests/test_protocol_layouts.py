"""Every packet layout infrarust writes or reads, checked against minecraft-protocol's own codec
(PrismarineJS, driven by minecraft-data) for every supported protocol version that has data."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _node_codec import NodeCodec, start_node_codec

from infrarust.protocol import (
    ClientChat,
    ClientCommand,
    Direction,
    EncryptionRequest,
    LoginPluginRequest,
    LoginPluginResponse,
    LoginSuccess,
    ProfileProperty,
    State,
    action_bar,
    add_commands_to_tree,
    disconnect_packet,
    encode_encryption_request,
    encode_encryption_response,
    encode_keep_alive,
    encode_login_plugin_request,
    encode_login_plugin_response,
    encode_login_start,
    encode_login_success,
    encode_set_compression,
    encode_varint,
    packet_ids,
    parse_client_chat,
    parse_encryption_response,
    parse_login_start,
    parse_login_success,
    system_message,
    title_packets,
)
from infrarust.protocol import Packet as FramedPacket
from infrarust.protocol._version_table import VERSIONS

# minecraft-data's directory names double as version names minecraft-protocol accepts.
DATA_VERSIONS = {number: entry[3] for number, entry in VERSIONS.items() if "inferred" not in entry[3]}
PROTOCOLS = sorted(DATA_VERSIONS)
PLAYER = uuid.UUID("069a79f4-44e9-4726-a5be-fca90e38aaf5")
SKIN = ProfileProperty("textures", "dGV4dHVyZXM=", "c2lnbmF0dXJl")
COMPONENT = {"text": "Hello §aworld", "bold": True, "extra": ["!", {"text": "?", "color": "red"}]}


@pytest.fixture(scope="module")
def node() -> Iterator[NodeCodec]:
    yield from start_node_codec()


def _with_id(protocol: int, state: State, direction: Direction, name: str, body: bytes) -> bytes:
    ids = packet_ids(protocol)
    assert ids is not None
    return encode_varint(ids.require(state, direction, name)) + body


def _nbt_to_json(tag: dict[str, Any]) -> Any:
    """prismarine-nbt's typed tree back to plain JSON data."""
    kind, value = tag["type"], tag["value"]
    if kind == "compound":
        return {key: _nbt_to_json(item) for key, item in value.items()}
    if kind == "list":
        return [_nbt_to_json({"type": value["type"], "value": item}) for item in value["value"]]
    if kind == "byte" and isinstance(value, int) and value in (0, 1):
        return bool(value)
    return value


def _component(protocol: int, decoded: Any) -> Any:
    """A decoded text field as JSON data, whichever way the version carries it."""
    if isinstance(decoded, str):
        return json.loads(decoded)
    assert protocol >= 765, "only 1.20.3+ carries NBT components"
    return _nbt_to_json(decoded)


def _expected_component(protocol: int) -> Any:
    if protocol < 765:
        return COMPONENT
    # In NBT a mixed list is a list of compounds: plain strings become {"text": ...}.
    return {**COMPONENT, "extra": [{"text": "!"}, {"text": "?", "color": "red"}]}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_login_packets_read_by_minecraft_protocol(node: NodeCodec, protocol: int) -> None:
    version = DATA_VERSIONS[protocol]
    cb, sb = Direction.CLIENTBOUND, Direction.SERVERBOUND

    def decode(direction: Direction, name: str, body: bytes) -> dict[str, Any]:
        side = "toClient" if direction is cb else "toServer"
        return node.decode(version, "login", side, _with_id(protocol, State.LOGIN, direction, name, body))

    name, body = disconnect_packet(protocol, State.LOGIN, COMPONENT)
    answer = decode(cb, name, body)
    assert answer["name"] == "disconnect"
    assert json.loads(answer["params"]["reason"]) == COMPONENT

    request = EncryptionRequest("", b"\x30\x81\x9f" + bytes(159), b"\x01\x02\x03\x04", True)
    answer = decode(cb, "encryption_request", encode_encryption_request(protocol, request))
    assert answer["name"] == "encryption_begin"
    assert answer["params"]["publicKey"]["hex"] == request.public_key.hex()
    assert answer["params"]["verifyToken"]["hex"] == "01020304"

    success = LoginSuccess(PLAYER, "Notch", (SKIN,))
    body = encode_login_success(protocol, success)
    answer = decode(cb, "login_success", body)
    assert answer["name"] == "success"
    assert uuid.UUID(answer["params"]["uuid"]) == PLAYER
    assert answer["params"]["username"] == "Notch"
    expected_properties = (SKIN,) if protocol >= 759 else ()
    if protocol >= 759:
        assert answer["params"]["properties"] == [
            {"name": SKIN.name, "value": SKIN.value, "signature": SKIN.signature}
        ]
    assert parse_login_success(protocol, body) == LoginSuccess(PLAYER, "Notch", expected_properties)

    answer = decode(cb, "set_compression", encode_set_compression(256))
    assert answer == {"name": "compress", "params": {"threshold": 256}}

    body = encode_login_start(protocol, "Notch", PLAYER)
    answer = decode(sb, "login_start", body)
    assert answer["params"]["username"] == "Notch"
    if protocol >= 760:
        assert uuid.UUID(answer["params"]["playerUUID"]) == PLAYER
    parsed = parse_login_start(FramedPacket(0, body), protocol)
    assert parsed is not None and parsed.name == "Notch"

    body = encode_encryption_response(protocol, b"s" * 128, b"t" * 128)
    answer = decode(sb, "encryption_response", body)
    assert answer["params"]["sharedSecret"]["hex"] == (b"s" * 128).hex()
    response = parse_encryption_response(protocol, body)
    assert (response.shared_secret, response.verify_token) == (b"s" * 128, b"t" * 128)

    if protocol >= 393:
        plugin = LoginPluginRequest(7, "velocity:player_info", b"\x04")
        answer = decode(cb, "login_plugin_request", encode_login_plugin_request(plugin))
        assert answer["params"] == {"messageId": 7, "channel": "velocity:player_info", "data": {"hex": "04"}}
        for data in (b"payload", None):
            body = encode_login_plugin_response(LoginPluginResponse(7, data))
            answer = decode(sb, "login_plugin_response", body)
            assert answer["params"]["messageId"] == 7
            assert answer["params"].get("data") == (None if data is None else {"hex": data.hex()})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_messages_to_the_player_read_by_minecraft_protocol(node: NodeCodec, protocol: int) -> None:
    version = DATA_VERSIONS[protocol]

    def decode(state: State, name: str, body: bytes) -> dict[str, Any]:
        packet = _with_id(protocol, state, Direction.CLIENTBOUND, name, body)
        return node.decode(version, state.value, "toClient", packet)

    expected = _expected_component(protocol)
    answer = decode(State.PLAY, *disconnect_packet(protocol, State.PLAY, COMPONENT))
    assert answer["name"] == "kick_disconnect"
    assert _component(protocol, answer["params"]["reason"]) == expected
    if protocol >= 764:
        answer = decode(State.CONFIGURATION, *disconnect_packet(protocol, State.CONFIGURATION, COMPONENT))
        assert _component(protocol, answer["params"]["reason"]) == expected

    answer = decode(State.PLAY, *system_message(protocol, COMPONENT))
    if protocol < 759:
        assert answer["name"] == "chat"
        assert answer["params"]["position"] == 1
        assert _component(protocol, answer["params"]["message"]) == expected
    else:
        assert answer["name"] == "system_chat"
        assert _component(protocol, answer["params"]["content"]) == expected
        assert answer["params"].get("isActionBar", False) is False
        assert answer["params"].get("type", 1) == 1

    answer = decode(State.PLAY, *action_bar(protocol, COMPONENT))
    if protocol < 755:
        assert (answer["name"], answer["params"]["position"]) == ("chat", 2)
        assert _component(protocol, answer["params"]["message"]) == expected
    else:
        assert answer["name"] == "action_bar"
        assert _component(protocol, answer["params"]["text"]) == expected

    decoded = [
        decode(State.PLAY, name, body)
        for name, body in title_packets(protocol, COMPONENT, {"text": "sub"}, 10, 70, 20)
    ]
    if protocol < 755:
        times_action = 3 if protocol >= 315 else 2
        assert [d["params"]["action"] for d in decoded] == [times_action, 1, 0]
        assert decoded[0]["params"]["fadeIn"] == 10 and decoded[0]["params"]["stay"] == 70
        assert json.loads(decoded[1]["params"]["text"]) == {"text": "sub"}
        assert json.loads(decoded[2]["params"]["text"]) == COMPONENT
    else:
        assert [d["name"] for d in decoded] == ["set_title_time", "set_title_subtitle", "set_title_text"]
        assert decoded[0]["params"] == {"fadeIn": 10, "stay": 70, "fadeOut": 20}
        assert _component(protocol, decoded[1]["params"]["text"]) == {"text": "sub"}
        assert _component(protocol, decoded[2]["params"]["text"]) == expected

    answer = decode(State.PLAY, "keep_alive", encode_keep_alive(protocol, 123456))
    # protodef reads an i64 as [high, low] 32-bit halves.
    assert answer["params"]["keepAliveId"] == ([0, 123456] if protocol >= 340 else 123456)


def _chat_params(message: str) -> dict[str, Any]:
    """A superset of every version's chat/command fields; minecraft-protocol takes what its layout has."""
    return {
        "message": message,
        "command": message,
        "timestamp": {"bigint": "1700000000000"},
        "salt": {"bigint": "42"},
        "signature": {"hex": "ab" * 256},
        "signedPreview": False,
        "argumentSignatures": [{"argumentName": "args", "signature": {"hex": "cd" * 256}}],
        "previousMessages": [],
        "offset": 3,
        "messageCount": 3,
        "acknowledged": {"hex": "070000"},
        "checksum": 0,
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_what_the_player_types_parsed_from_minecraft_protocol(node: NodeCodec, protocol: int) -> None:
    version = DATA_VERSIONS[protocol]
    ids = packet_ids(protocol)
    assert ids is not None

    def parse(name: str, params: dict[str, Any]) -> ClientChat | ClientCommand | None:
        data = node.encode(version, "play", "toServer", name, params)
        packet_id, body_start = data[0], 1  # every chat packet id is below 0x80
        ours = ids.name_of(State.PLAY, Direction.SERVERBOUND, packet_id)
        assert ours is not None
        return parse_client_chat(protocol, ours, data[body_start:])

    chat_name = "chat" if protocol < 759 else "chat_message"
    assert parse(chat_name, _chat_params("hello there")) == ClientChat("hello there")
    if protocol < 759:
        assert parse(chat_name, _chat_params("/ir list")) == ClientCommand("ir list")
        return
    command = parse("chat_command", _chat_params("infrarust find Notch"))
    assert isinstance(command, ClientCommand) and command.command == "infrarust find Notch"
    if 761 <= protocol < 766:
        assert command.acknowledgement == encode_varint(3)
    if protocol >= 766:
        assert command.acknowledgement is None
        signed = parse("chat_command_signed", _chat_params("ir kick Notch bye"))
        assert signed == ClientCommand("ir kick Notch bye", encode_varint(3))


@pytest.mark.parametrize("protocol", [p for p in PROTOCOLS if p >= 393])
def test_command_tree_gains_infrarust_and_ir(node: NodeCodec, protocol: int) -> None:
    version = DATA_VERSIONS[protocol]
    flags = {"unused": 0, "has_custom_suggestions": 0, "has_redirect_node": 0, "has_command": 0}
    if protocol >= 774:
        flags["allows_restricted"] = 0
    nodes = [
        {"flags": {**flags, "command_node_type": 0}, "children": [1]},
        {
            "flags": {**flags, "command_node_type": 1, "has_command": 1},
            "children": [],
            "extraNodeData": {"name": "say"},
        },
    ]
    data = node.encode(version, "play", "toClient", "declare_commands", {"nodes": nodes, "rootIndex": 0})
    ids = packet_ids(protocol)
    assert ids is not None
    id_length = len(encode_varint(ids.require(State.PLAY, Direction.CLIENTBOUND, "declare_commands")))
    body = add_commands_to_tree(protocol, data[id_length:], ("infrarust", "ir"), "args")
    assert body is not None
    answer = node.decode(version, "play", "toClient", data[:id_length] + body)
    tree = answer["params"]["nodes"]
    assert answer["params"]["rootIndex"] == 0
    assert tree[0]["children"] == [1, 2, 4]
    assert tree[1]["extraNodeData"] == {"name": "say"}
    for literal, name in ((2, "infrarust"), (4, "ir")):
        assert tree[literal]["extraNodeData"] == {"name": name}
        assert tree[literal]["flags"]["command_node_type"] == 1 and tree[literal]["flags"]["has_command"] == 1
        assert tree[literal]["children"] == [literal + 1]
        argument = tree[literal + 1]["extraNodeData"]
        assert argument["name"] == "args"
        assert argument["parser"] == "brigadier:string"
        assert argument["properties"] == "GREEDY_PHRASE"
