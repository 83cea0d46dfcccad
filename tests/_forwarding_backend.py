"""A loopback Minecraft backend that checks player-info forwarding the way Paper does, for the tests.

Built only on infrarust's sans-IO protocol API. Per connection it reads the handshake and Login Start,
then, by ``mode``:

- ``velocity``: sends a Login Plugin Request on ``velocity:player_info`` (asking for version 4) and
  checks the answer's HMAC with ``secret``; no answer: "This server requires you to connect with
  Velocity."; a bad signature: "Unable to verify player details".
- ``bungeecord`` / ``bungeeguard``: reads the forwarding in the handshake host (and checks the
  ``bungeeguard-token`` property against ``token``); none: "If you wish to use IP forwarding, please
  enable it in your BungeeCord config as well!".
- ``none``: takes the player as they come (offline UUID).
- ``online``: sends an Encryption Request (an online-mode server) and waits.

An accepted player gets Login Success with the forwarded identity, the configuration phase when the
version has one, then, in play, a Disconnect whose text is ``forwarded <name> <uuid> <address>``: a
client sees who the backend thinks it is. ``players`` records the same for the test to read.
"""

from __future__ import annotations

import uuid

import trio
from attrs import define, field, frozen
from helpers import read_packet, read_until

from infrarust.auth import offline_uuid
from infrarust.forwarding import (
    BUNGEEGUARD_PROPERTY,
    VELOCITY_CHANNEL,
    parse_bungeecord_host,
    parse_velocity_forwarding_data,
)
from infrarust.protocol import (
    EncryptionRequest,
    Handshake,
    HelloReader,
    LoginPluginRequest,
    LoginSuccess,
    MinecraftConnection,
    Packet,
    ProfileProperty,
    ProtocolError,
    Role,
    State,
    disconnect_packet,
    encode_encryption_request,
    encode_login_plugin_request,
    encode_login_success,
    parse_login_plugin_response,
    parse_login_start,
)

VELOCITY_REQUIRED = "This server requires you to connect with Velocity."
VELOCITY_BAD_SIGNATURE = "Unable to verify player details"
BUNGEE_REQUIRED = "If you wish to use IP forwarding, please enable it in your BungeeCord config as well!"
BUNGEEGUARD_REFUSED = "Unable to authenticate - no data was forwarded by the proxy."


@frozen
class ForwardedPlayer:
    """Who the backend was told the player is."""

    name: str
    uuid: uuid.UUID
    address: str
    properties: tuple[ProfileProperty, ...]
    velocity_version: int | None = None


@define
class ForwardingBackend:
    """The backend's settings and what it saw; ``serve`` runs it on 127.0.0.1 with a free port."""

    mode: str = "none"
    secret: bytes = b""
    token: str = ""
    players: list[ForwardedPlayer] = field(factory=list)
    refusals: list[str] = field(factory=list)
    port: int = 0

    async def serve(
        self, *, task_status: trio.TaskStatus[ForwardingBackend] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(20):
                await self._login(stream)
        except (ProtocolError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _login(self, stream: trio.SocketStream) -> None:
        hello = HelloReader()
        handshake = None
        while handshake is None:
            data = await stream.receive_some(65536)
            if not data:
                return
            handshake = hello.feed(data)
        if not isinstance(handshake, Handshake):
            return
        protocol = handshake.protocol_version
        connection = MinecraftConnection(Role.SERVER, protocol)
        connection.receive_data(hello.take_leftover())
        start = await read_packet(stream, connection)
        login = parse_login_start(Packet(start.packet_id, start.body), protocol)
        if login is None:
            return

        async def refuse(reason: str) -> None:
            self.refusals.append(reason)
            await stream.send_all(
                connection.send(*disconnect_packet(protocol, State.LOGIN, {"text": reason}))
            )

        player = ForwardedPlayer(login.name, offline_uuid(login.name), "", ())
        if self.mode == "online":
            request_body = encode_encryption_request(protocol, EncryptionRequest("", b"key", b"tokn"))
            await stream.send_all(connection.send("encryption_request", request_body))
            await read_packet(stream, connection)
            return
        if self.mode == "velocity":
            request = LoginPluginRequest(1, VELOCITY_CHANNEL, b"\x04")
            await stream.send_all(
                connection.send("login_plugin_request", encode_login_plugin_request(request))
            )
            answer = await read_packet(stream, connection)
            response = parse_login_plugin_response(answer.body)
            if response.data is None:
                return await refuse(VELOCITY_REQUIRED)
            try:
                version, address, player_uuid, name, properties = parse_velocity_forwarding_data(
                    self.secret, response.data
                )
            except ProtocolError:
                return await refuse(VELOCITY_BAD_SIGNATURE)
            player = ForwardedPlayer(name, player_uuid, address, properties, version)
        elif self.mode in ("bungeecord", "bungeeguard"):
            try:
                _, address, player_uuid, properties = parse_bungeecord_host(handshake.host)
            except ProtocolError:
                return await refuse(BUNGEE_REQUIRED)
            if self.mode == "bungeeguard":
                tokens = [p.value for p in properties if p.name == BUNGEEGUARD_PROPERTY]
                if tokens != [self.token]:
                    return await refuse(BUNGEEGUARD_REFUSED)
                properties = tuple(p for p in properties if p.name != BUNGEEGUARD_PROPERTY)
            player = ForwardedPlayer(login.name, player_uuid, address, properties)
        self.players.append(player)
        success = LoginSuccess(player.uuid, player.name, player.properties)
        await stream.send_all(connection.send("login_success", encode_login_success(protocol, success)))
        if protocol >= 764:
            await read_until(stream, connection, "login_acknowledged")
            await stream.send_all(connection.send("finish_configuration", b""))
            await read_until(stream, connection, "finish_configuration")
        text = f"forwarded {player.name} {player.uuid} {player.address}"
        await stream.send_all(connection.send(*disconnect_packet(protocol, State.PLAY, {"text": text})))
