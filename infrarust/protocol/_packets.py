"""Layouts of the packets an intercepted session reads or writes, for every supported version.

Encoders return a packet body, or ``(name, body)`` pairs for :meth:`MinecraftConnection.send` where
the packet itself depends on the version. Parsers raise ProtocolError on a malformed body. The protocol
numbers below are where minecraft-data's packet definitions change (the tests check every layout
against minecraft-protocol's own codec for every supported version).
"""

from __future__ import annotations

import struct
import uuid

from attrs import frozen

from ._cursor import Cursor
from ._errors import ProtocolError
from ._string import encode_string
from ._text import NBT_TEXT_PROTOCOL, Component, component_json, component_nbt
from ._varint import encode_varint
from ._versions import State, packet_ids

Outgoing = tuple[str, bytes]
"""A packet to send, by infrarust's name: ``connection.send(*outgoing)``."""

# Where layouts change (release protocol numbers).
V1_11 = 315  # title action 2 becomes "action bar", times and clear move up one
V1_12_2 = 340  # keep-alive ids become longs
V1_13 = 393  # login plugin messages, Declare Commands
V1_16 = 735  # UUIDs in login success become binary; chat gains a sender
V1_17 = 755  # separate title and action bar packets
V1_19 = 759  # system chat, signed chat and commands, parsers by registry id
V1_19_1 = 760
V1_19_3 = 761
V1_20_5 = 766  # should-authenticate flag, strict error handling, unsigned chat command
V1_21_2 = 768  # strict error handling flag removed again
V1_21_5 = 770  # checksum byte after chat acknowledgements

MAX_MESSAGE_CHARS = 256
"""Client chat and command strings (100 before 1.11) are at most this long."""

_CHAT_POSITION_SYSTEM = 1
_CHAT_POSITION_ACTION_BAR = 2
_SYSTEM_CHAT_TYPE_SYSTEM = 1  # 1.19 only: chat type registry ids
_SYSTEM_CHAT_TYPE_GAME_INFO = 2
_NO_SENDER = bytes(16)


def _bytes_field(data: bytes) -> bytes:
    return encode_varint(len(data)) + data


def _component(protocol: int, component: Component) -> bytes:
    if protocol >= NBT_TEXT_PROTOCOL:
        return component_nbt(component)
    return encode_string(component_json(component))


# --- login -----------------------------------------------------------------------------------------


def encode_login_start(protocol: int, name: str, player_uuid: uuid.UUID) -> bytes:
    """Login Start as a client without a chat signing key sends it (the backend leg's first login
    packet). The UUID goes out from 1.19.1, where the layout has it."""
    body = encode_string(name)
    if V1_19 <= protocol < V1_19_3:
        body += b"\x00"  # no signature data
    if protocol >= 764:
        body += player_uuid.bytes
    elif protocol >= V1_19_1:
        body += b"\x01" + player_uuid.bytes
    return body


@frozen
class PlayerKey:
    """The chat-signing key a 1.19-1.19.2 client may put in its Login Start: expiry (ms since the
    epoch), the DER public key, and Mojang's signature over it. Such a client answers the Encryption
    Request with a signature made with this key instead of the encrypted verify token."""

    expires_at: int
    public_key: bytes
    signature: bytes


def parse_login_start_key(protocol: int, body: bytes) -> PlayerKey | None:
    """The player key of a 1.19-1.19.2 Login Start, or None when there is none (or the version has no
    such field)."""
    if not V1_19 <= protocol < V1_19_3:
        return None
    cursor = Cursor(body)
    cursor.string(16)
    if not cursor.boolean("has signature data"):
        return None
    expires_at = cursor.unpack(">q", "key expiry")
    public_key = cursor.raw(cursor.varint("public key length"), "public key")
    signature = cursor.raw(cursor.varint("key signature length"), "key signature")
    return PlayerKey(expires_at, public_key, signature)


@frozen
class EncryptionRequest:
    """The server's Encryption Request: its DER public key and the token the client must return."""

    server_id: str
    public_key: bytes
    verify_token: bytes
    should_authenticate: bool = True


def encode_encryption_request(protocol: int, request: EncryptionRequest) -> bytes:
    """The body of an Encryption Request."""
    body = (
        encode_string(request.server_id)
        + _bytes_field(request.public_key)
        + _bytes_field(request.verify_token)
    )
    if protocol >= V1_20_5:
        body += bytes((int(request.should_authenticate),))
    return body


def parse_encryption_request(protocol: int, body: bytes) -> EncryptionRequest:
    """Decode an Encryption Request."""
    cursor = Cursor(body)
    server_id = cursor.string(20)
    public_key = cursor.raw(cursor.varint("public key length"), "public key")
    token = cursor.raw(cursor.varint("verify token length"), "verify token")
    authenticate = cursor.boolean("should authenticate") if protocol >= V1_20_5 else True
    cursor.expect_end("the encryption request")
    return EncryptionRequest(server_id, public_key, token, authenticate)


@frozen
class EncryptionResponse:
    """The client's Encryption Response: the shared secret and verify token, encrypted with the
    server's public key. In 1.19-1.19.2 a client with a chat key may send a ``salt`` and a signature
    over the token instead of the encrypted token; then ``verify_token`` is None."""

    shared_secret: bytes
    verify_token: bytes | None
    salt: int | None = None
    signature: bytes | None = None


def encode_encryption_response(protocol: int, shared_secret: bytes, verify_token: bytes) -> bytes:
    """The body of an Encryption Response carrying the (already RSA-encrypted) secret and token."""
    body = _bytes_field(shared_secret)
    if V1_19 <= protocol < V1_19_3:
        body += b"\x01"  # the token, not a signature
    return body + _bytes_field(verify_token)


def parse_encryption_response(protocol: int, body: bytes) -> EncryptionResponse:
    """Decode an Encryption Response."""
    cursor = Cursor(body)
    secret = cursor.raw(cursor.varint("shared secret length"), "shared secret")
    if V1_19 <= protocol < V1_19_3 and not cursor.boolean("has verify token"):
        salt = cursor.unpack(">q", "salt")
        signature = cursor.raw(cursor.varint("signature length"), "signature")
        cursor.expect_end("the encryption response")
        return EncryptionResponse(secret, None, salt, signature)
    token = cursor.raw(cursor.varint("verify token length"), "verify token")
    cursor.expect_end("the encryption response")
    return EncryptionResponse(secret, token)


@frozen
class ProfileProperty:
    """One property of a game profile (``textures`` carries the skin), signed by the session server."""

    name: str
    value: str
    signature: str | None = None


@frozen
class LoginSuccess:
    """The identity the server gives the player."""

    uuid: uuid.UUID
    name: str
    properties: tuple[ProfileProperty, ...] = ()


def encode_login_success(protocol: int, success: LoginSuccess) -> bytes:
    """The body of a Login Success; the properties go out from 1.19, where the layout has them."""
    if protocol < V1_16:
        body = encode_string(str(success.uuid)) + encode_string(success.name)
    else:
        body = success.uuid.bytes + encode_string(success.name)
    if protocol >= V1_19:
        body += encode_varint(len(success.properties))
        for prop in success.properties:
            body += encode_string(prop.name) + encode_string(prop.value)
            if prop.signature is None:
                body += b"\x00"
            else:
                body += b"\x01" + encode_string(prop.signature)
    if V1_20_5 <= protocol < V1_21_2:
        body += b"\x01"  # strict error handling, as vanilla servers send it
    return body


def parse_login_success(protocol: int, body: bytes) -> LoginSuccess:
    """Decode a Login Success."""
    cursor = Cursor(body)
    if protocol < V1_16:
        text = cursor.string(36)
        try:
            player_uuid = uuid.UUID(text)
        except ValueError:
            raise ProtocolError(f"login success UUID {text!r} is not a UUID") from None
    else:
        player_uuid = cursor.uuid()
    name = cursor.string(16)
    properties: list[ProfileProperty] = []
    if protocol >= V1_19:
        for _ in range(cursor.varint("property count")):
            prop_name = cursor.string()
            value = cursor.string()
            signature = cursor.string() if cursor.boolean("has signature") else None
            properties.append(ProfileProperty(prop_name, value, signature))
    if V1_20_5 <= protocol < V1_21_2:
        cursor.boolean("strict error handling")
    cursor.expect_end("the login success")
    return LoginSuccess(player_uuid, name, tuple(properties))


def encode_set_compression(threshold: int) -> bytes:
    """The body of a Set Compression."""
    return encode_varint(threshold)


def parse_set_compression(body: bytes) -> int:
    """The threshold of a Set Compression."""
    cursor = Cursor(body)
    threshold = cursor.varint("compression threshold")
    cursor.expect_end("the set compression")
    return threshold


@frozen
class LoginPluginRequest:
    """A server's Login Plugin Request (1.13+): a channel and its data, answered by ``message_id``."""

    message_id: int
    channel: str
    data: bytes


def encode_login_plugin_request(request: LoginPluginRequest) -> bytes:
    """The body of a Login Plugin Request."""
    return encode_varint(request.message_id) + encode_string(request.channel) + request.data


def parse_login_plugin_request(body: bytes) -> LoginPluginRequest:
    """Decode a Login Plugin Request."""
    cursor = Cursor(body)
    message_id = cursor.varint("message id")
    channel = cursor.string()
    return LoginPluginRequest(message_id, channel, cursor.raw(cursor.remaining))


@frozen
class LoginPluginResponse:
    """The answer to a Login Plugin Request; ``data`` None means "not understood"."""

    message_id: int
    data: bytes | None


def encode_login_plugin_response(response: LoginPluginResponse) -> bytes:
    """The body of a Login Plugin Response."""
    if response.data is None:
        return encode_varint(response.message_id) + b"\x00"
    return encode_varint(response.message_id) + b"\x01" + response.data


def parse_login_plugin_response(body: bytes) -> LoginPluginResponse:
    """Decode a Login Plugin Response."""
    cursor = Cursor(body)
    message_id = cursor.varint("message id")
    understood = cursor.boolean("successful")
    data = cursor.raw(cursor.remaining) if understood else None
    if not understood:
        cursor.expect_end("the login plugin response")
    return LoginPluginResponse(message_id, data)


# --- messages to the player ------------------------------------------------------------------------


def disconnect_packet(protocol: int, state: State, component: Component) -> Outgoing:
    """The Disconnect of ``state`` (login, configuration or play) carrying ``component``.

    The login one is JSON in every version; configuration and play carry NBT from 1.20.3.
    """
    if state is State.LOGIN:
        return "disconnect", encode_string(component_json(component))
    if state in (State.CONFIGURATION, State.PLAY):
        return "disconnect", _component(protocol, component)
    raise ProtocolError(f"there is no disconnect packet in the {state.value} state")


def system_message(protocol: int, component: Component) -> Outgoing:
    """A chat-box message from the server (not from a player): Chat Message with the system position
    before 1.19, System Chat from 1.19."""
    if protocol < V1_19:
        body = encode_string(component_json(component)) + bytes((_CHAT_POSITION_SYSTEM,))
        return "chat", body + (_NO_SENDER if protocol >= V1_16 else b"")
    if protocol < V1_19_1:
        return "system_chat", _component(protocol, component) + encode_varint(_SYSTEM_CHAT_TYPE_SYSTEM)
    return "system_chat", _component(protocol, component) + b"\x00"


def action_bar(protocol: int, component: Component) -> Outgoing:
    """Text above the hotbar: a chat message in the game-info position before 1.17, Set Action Bar
    Text from 1.17."""
    if protocol < V1_17:
        body = encode_string(component_json(component)) + bytes((_CHAT_POSITION_ACTION_BAR,))
        return "chat", body + (_NO_SENDER if protocol >= V1_16 else b"")
    return "action_bar", _component(protocol, component)


def title_packets(
    protocol: int,
    title: Component,
    subtitle: Component | None,
    fade_in: int,
    stay: int,
    fade_out: int,
) -> list[Outgoing]:
    """The packets that show a title (times in ticks): times, then subtitle, then the title, which is
    what makes the client show them. One Title packet with an action before 1.17, three packets after."""
    if protocol < V1_17:
        times_action = 3 if protocol >= V1_11 else 2
        packets = [("title", encode_varint(times_action) + struct.pack(">iii", fade_in, stay, fade_out))]
        if subtitle is not None:
            packets.append(("title", encode_varint(1) + encode_string(component_json(subtitle))))
        packets.append(("title", encode_varint(0) + encode_string(component_json(title))))
        return packets
    packets = [("set_title_times", struct.pack(">iii", fade_in, stay, fade_out))]
    if subtitle is not None:
        packets.append(("set_subtitle_text", _component(protocol, subtitle)))
    packets.append(("set_title_text", _component(protocol, title)))
    return packets


def encode_keep_alive(protocol: int, keep_alive_id: int) -> bytes:
    """The body of a Keep Alive (either direction, play or configuration)."""
    if protocol >= V1_12_2:
        return struct.pack(">q", keep_alive_id)
    return encode_varint(keep_alive_id)


# --- what the player types -------------------------------------------------------------------------


@frozen
class ClientChat:
    """A chat line the player sent (not a command)."""

    message: str


@frozen
class ClientCommand:
    """A command the player sent, without its slash.

    ``acknowledgement``: the body of a Message Acknowledgement that tells the backend what this
    packet acknowledged (1.19.1+ signed chat); a proxy that swallows the command sends it instead,
    so the backend's chat validation stays in step. None when there is nothing to acknowledge.
    """

    command: str
    acknowledgement: bytes | None = None


def parse_client_chat(protocol: int, name: str, body: bytes) -> ClientChat | ClientCommand | None:
    """Read a play-state packet the client sent: a chat line, a command, or None for other packets.

    ``name`` is the packet's name from the table (``chat_message``, ``chat_command``,
    ``chat_command_signed``). Only the leading fields are read, except where the acknowledgement is
    needed; the packet is relayed as received when the proxy does not answer it.
    """
    if name not in ("chat_message", "chat_command", "chat_command_signed"):
        return None
    cursor = Cursor(body)
    text = cursor.string(MAX_MESSAGE_CHARS)
    if name == "chat_message":
        if protocol < V1_19 and text.startswith("/"):
            return ClientCommand(text[1:])
        return ClientChat(text)
    if protocol < V1_19_1 or (name == "chat_command" and protocol >= V1_20_5):
        return ClientCommand(text)
    cursor.unpack(">q", "timestamp")
    cursor.unpack(">q", "salt")
    for _ in range(cursor.varint("argument signature count")):
        cursor.string()
        if protocol >= V1_19_3:
            cursor.raw(256, "argument signature")
        else:
            cursor.raw(cursor.varint("argument signature length"), "argument signature")
    if protocol == V1_19_1:
        cursor.boolean("signed preview")
        # The 1.19.1 acknowledgement is the packet's last-seen list and last rejected message verbatim.
        return ClientCommand(text, cursor.raw(cursor.remaining))
    count = cursor.varint("message count")
    return ClientCommand(text, encode_varint(count) if count else None)


# --- the command tree ------------------------------------------------------------------------------

_NODE_ROOT = 0
_NODE_LITERAL = 1
_NODE_ARGUMENT = 2
_NODE_EXECUTABLE = 0x04
_NODE_REDIRECT = 0x08
_GREEDY_PHRASE = 2


def add_commands_to_tree(protocol: int, body: bytes, names: tuple[str, ...], argument: str) -> bytes | None:
    """A Declare Commands body (1.13+) with a literal node per name added under the root, each
    executable and taking an optional greedy string argument named ``argument``.

    Only the root node is decoded, so every parser of every version passes through untouched. That
    needs the root to be node 0 and the packet's root index to be 0, which is how vanilla (and every
    server built on brigadier's tree walk) writes the packet. None when the packet is not so: the
    caller relays it unchanged and the player only misses tab completion.
    """
    ids = packet_ids(protocol)
    if protocol < V1_13 or ids is None or not body or body[-1] != 0:
        return None
    cursor = Cursor(body)
    count = cursor.varint("node count")
    if count < 1:
        return None
    flags = cursor.raw(1, "node flags")[0]
    if flags & 0x03 != _NODE_ROOT or flags & _NODE_REDIRECT:
        return None
    children = [cursor.varint("child index") for _ in range(cursor.varint("child count"))]
    rest = body[cursor.offset : -1]
    parser = (
        encode_varint(ids.brigadier_string_parser)
        if ids.brigadier_string_parser is not None
        else encode_string("brigadier:string")
    )
    added = bytearray()
    new_children: list[int] = []
    for position, name in enumerate(names):
        literal = count + 2 * position
        new_children.append(literal)
        added += bytes((_NODE_LITERAL | _NODE_EXECUTABLE,)) + encode_varint(1) + encode_varint(literal + 1)
        added += encode_string(name)
        added += bytes((_NODE_ARGUMENT | _NODE_EXECUTABLE,)) + encode_varint(0) + encode_string(argument)
        added += parser + encode_varint(_GREEDY_PHRASE)
    root = bytes((flags,)) + encode_varint(len(children) + len(new_children))
    root += b"".join(encode_varint(child) for child in [*children, *new_children])
    return encode_varint(count + 2 * len(names)) + root + rest + bytes(added) + b"\x00"
