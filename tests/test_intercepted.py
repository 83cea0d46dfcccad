"""Intercepted sessions through the real proxy, driven byte by byte by a client built on the sans-IO API:
the cases a well-behaved client library cannot produce (a wrong verify token, garbage mid-session, an
unsupported version, the transfer intent), and the session accounting around them."""

from __future__ import annotations

import json
import os

import pytest
import trio
import trio.lowlevel
from _forwarding_backend import ForwardingBackend
from _session_server import SessionServer as FakeSessionServer
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from helpers import accept_login, proxy_config, read_packet

import infrarust
from infrarust.auth import offline_uuid
from infrarust.config import Address, Auth, ProxyMode, ServerConfig
from infrarust.intercepted import ActivePlayer
from infrarust.player import PlayerNotActiveError
from infrarust.protocol import (
    Direction,
    Handshake,
    InboundPacket,
    MinecraftConnection,
    NextState,
    Role,
    State,
    decode_varint,
    encode_encryption_response,
    encode_login_start,
    encode_login_success,
    parse_encryption_request,
    read_string,
)
from infrarust.transport import ForwardEndReason

WAIT = 10.0


async def _read(stream: trio.SocketStream, connection: MinecraftConnection) -> InboundPacket:
    with trio.fail_after(WAIT):
        return await read_packet(stream, connection)


class StayingBackend:
    """An offline 1.12.2 backend that logs players in and then keeps every packet they send."""

    def __init__(self) -> None:
        self.port = 0
        self.received: dict[str, list[int]] = {}
        self.bodies: dict[str, list[bytes]] = {}  # the same packets' bodies

    async def serve(self, *, task_status: trio.TaskStatus[StayingBackend] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.fail_after(WAIT):
                connection, login = await accept_login(stream)
            protocol = connection.protocol_version
            success = infrarust.auth.GameProfile(offline_uuid(login.name), login.name).login_success()
            await stream.send_all(connection.send("login_success", encode_login_success(protocol, success)))
            packets = self.received.setdefault(login.name, [])
            bodies = self.bodies.setdefault(login.name, [])
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                connection.receive_data(data)
                while (packet := connection.next_packet()) is not None:
                    bodies.append(packet.body)
                    packets.append(packet.packet_id)
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


def server(name: str, port: int, mode: ProxyMode = ProxyMode.OFFLINE) -> ServerConfig:
    return ServerConfig(
        name=name, addresses=(Address("127.0.0.1", port),), domains=(f"{name}.test",), proxy_mode=mode
    )


async def raw_login(
    port: int, host: str, protocol: int, name: str, next_state: NextState = NextState.LOGIN
) -> tuple[trio.SocketStream, MinecraftConnection]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    connection = MinecraftConnection(Role.CLIENT, protocol)
    start = connection.send("login_start", encode_login_start(protocol, name, offline_uuid(name)))
    await stream.send_all(Handshake(protocol, host, 25565, next_state).encode() + start)
    return stream, connection


async def find_player(proxy: infrarust.Proxy, name: str) -> ActivePlayer:
    with trio.fail_after(WAIT):
        while True:
            for player in proxy.sessions:
                if player.name == name and isinstance(player, ActivePlayer):
                    return player
            await trio.sleep(0.01)


async def test_garbage_mid_session_ends_only_that_session(nursery: trio.Nursery) -> None:
    backend = await nursery.start(StayingBackend().serve)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, proxy_config(server("stay", backend.port)))
    good, good_connection = await raw_login(proxy.port, "stay.test", 340, "Good")
    bad, bad_connection = await raw_login(proxy.port, "stay.test", 340, "Bad")
    for stream, connection in ((good, good_connection), (bad, bad_connection)):
        assert (await _read(stream, connection)).name == "login_success"
    bad_player = await find_player(proxy, "Bad")
    good_player = await find_player(proxy, "Good")
    await bad.send_all(b"\xff\xff\xff\xff\xff\xff")  # a frame length that is no VarInt
    with trio.fail_after(WAIT):
        result = await bad_player.wait_ended()
    assert result.reason is ForwardEndReason.ERROR
    assert result.error is not None and result.error.startswith("bad packet from the client")
    # The other session still relays.
    await good.send_all(good_connection.send_id(0x0B, (12345).to_bytes(8, "big")))  # keep alive, 1.12.2
    with trio.fail_after(WAIT):
        while 0x0B not in backend.received.get("Good", []):
            await trio.sleep(0.01)
    assert good_player.result is None and good_player in proxy.sessions
    await good.aclose()
    with trio.fail_after(WAIT):
        ended = await good_player.wait_ended()
    assert ended.reason is ForwardEndReason.CLIENT_CLOSED
    assert ended.client_to_backend > 0 and ended.backend_to_client > 0
    await bad.aclose()


async def test_unsupported_version_is_told_the_supported_ones(nursery: trio.Nursery) -> None:
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, proxy_config(server("old", 1)))
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    # 1.7.10 (protocol 5): a modern handshake, but not a version the intercepted modes speak.
    from infrarust.protocol import encode_packet, encode_string

    await stream.send_all(
        Handshake(5, "old.test", 25565, NextState.LOGIN).encode() + encode_packet(0, encode_string("Oldie"))
    )
    data = b""
    with trio.fail_after(WAIT):
        while chunk := await stream.receive_some(65536):
            data += chunk
    decoded = decode_varint(data, 0)
    assert decoded is not None
    length, offset = decoded
    assert len(data) == offset + length and data[offset] == 0x00  # one Login Disconnect
    text = json.loads(read_string(data, offset + 1)[0])["text"]
    assert "1.8" in text and "1.21.4" in text and "26.1" in text
    assert proxy.sessions == ()


async def test_wrong_verify_token_is_refused_before_encryption(nursery: trio.Nursery) -> None:
    fake = await nursery.start(FakeSessionServer().serve)
    config = proxy_config(server("online", 1, ProxyMode.CLIENT_ONLY), auth=Auth(session_server=fake.url))
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
    refused: list[infrarust.ConnectionRefused] = []

    async def watch() -> None:
        async with proxy.subscribe() as events:
            async for event in events:
                if isinstance(event, infrarust.ConnectionRefused):
                    refused.append(event)

    nursery.start_soon(watch)
    await trio.lowlevel.checkpoint()
    stream, connection = await raw_login(proxy.port, "online.test", 765, "Tokenless")
    request_packet = await _read(stream, connection)
    assert request_packet.name == "encryption_request"
    request = parse_encryption_request(765, request_packet.body)
    key = load_der_public_key(request.public_key)
    assert isinstance(key, rsa.RSAPublicKey)
    secret = os.urandom(16)
    wrong = bytes(b ^ 0xFF for b in request.verify_token)
    body = encode_encryption_response(
        765, key.encrypt(secret, padding.PKCS1v15()), key.encrypt(wrong, padding.PKCS1v15())
    )
    await stream.send_all(connection.send("encryption_response", body))
    answer = await _read(stream, connection)  # still plain: the proxy refused before encrypting
    assert answer.state is State.LOGIN and answer.name == "disconnect"
    assert json.loads(read_string(answer.body, 0)[0]) == {"text": "Failed to verify username!"}
    with trio.fail_after(WAIT):
        while not refused:
            await trio.sleep(0.01)
    assert [(e.reason, e.name, e.message) for e in refused] == [
        ("denied", "Tokenless", "Failed to verify username!")
    ]
    assert fake.requests == []  # never asked the session server
    await stream.aclose()


@pytest.mark.parametrize("protocol", [766, 775])
async def test_transfer_intent_logs_in(protocol: int, nursery: trio.Nursery) -> None:
    backend = await nursery.start(ForwardingBackend(mode="none").serve)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, proxy_config(server("moved", backend.port)))
    stream, connection = await raw_login(proxy.port, "moved.test", protocol, "Moved", NextState.TRANSFER)
    while (packet := await _read(stream, connection)).name != "login_success":
        pass
    await stream.send_all(connection.send("login_acknowledged", b""))
    while (packet := await _read(stream, connection)).name != "finish_configuration":
        pass
    await stream.send_all(connection.send("finish_configuration", b""))
    packet = await _read(stream, connection)
    assert packet.state is State.PLAY and packet.name == "disconnect"
    assert b"forwarded Moved" in packet.body
    assert [p.name for p in backend.players] == ["Moved"]
    await stream.aclose()


async def test_passive_players_still_refuse_active_calls() -> None:
    from infrarust.config import ProxyMode as Mode
    from infrarust.player import Player

    player = Player(
        server("p", 1, Mode.PASSTHROUGH), "-", Handshake(765, "p.test", 1, NextState.LOGIN), None, 0.0
    )
    assert not player.active
    with pytest.raises(PlayerNotActiveError):
        await player.send_message("hi")


@pytest.mark.parametrize("player_commands", [True, False])
async def test_player_commands_switch(player_commands: bool, nursery: trio.Nursery) -> None:
    """``/ir`` is the proxy's unless ``[permissions] player_commands`` is off (then the backend's)."""
    from infrarust.config import Permissions
    from infrarust.protocol import encode_string

    backend = await nursery.start(StayingBackend().serve)
    config = proxy_config(
        server("cmd", backend.port), permissions=Permissions(player_commands=player_commands)
    )
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
    stream, connection = await raw_login(proxy.port, "cmd.test", 340, "Typer")
    assert (await _read(stream, connection)).name == "login_success"
    await find_player(proxy, "Typer")
    chat = connection.send("chat_message", encode_string("/ir server"))
    marker = connection.send_id(0x0B, (7).to_bytes(8, "big"))  # a keep alive after it, as a fence
    await stream.send_all(chat + marker)
    with trio.fail_after(WAIT):
        while 0x0B not in backend.received.get("Typer", []):
            await trio.sleep(0.01)
    chat_id = connection.ids.require(State.PLAY, Direction.SERVERBOUND, "chat_message")
    assert (chat_id in backend.received["Typer"]) is not player_commands
    if player_commands:
        answer = await _read(stream, connection)
        assert answer.name == "chat" and b"You are on" in answer.body
    await stream.aclose()


async def test_drain_tells_intercepted_players_and_ends_with_shutdown(nursery: trio.Nursery) -> None:
    backend = await nursery.start(StayingBackend().serve)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, proxy_config(server("drain", backend.port)))
    stream, connection = await raw_login(proxy.port, "drain.test", 340, "Drained")
    assert (await _read(stream, connection)).name == "login_success"
    player = await find_player(proxy, "Drained")
    nursery.start_soon(proxy.drain, 0.0)
    goodbye = await _read(stream, connection)
    assert goodbye.state is State.PLAY and goodbye.name == "disconnect"
    assert b"disconnected by the proxy" in goodbye.body
    with trio.fail_after(WAIT):
        result = await player.wait_ended()
    assert result.reason is ForwardEndReason.SHUTDOWN
    await stream.aclose()


async def test_command_hook_sees_earlier_packets_delivered_and_later_ones_held(nursery: trio.Nursery) -> None:
    """Chat, a command, chat in one segment: the chat before is at the backend when the hook runs, the
    chat after waits for the decision, and the cancelled command never arrives."""
    from infrarust.protocol import encode_string

    backend = await nursery.start(StayingBackend().serve)
    config = proxy_config(server("hooked", backend.port), hook_timeout=WAIT)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
    calls: list[tuple[str, list[str]]] = []

    def chats() -> list[str]:
        chat_id = connection.ids.require(State.PLAY, Direction.SERVERBOUND, "chat_message")
        received = zip(backend.received.get("Typer", []), backend.bodies.get("Typer", []), strict=True)
        return [read_string(body, 0)[0] for packet_id, body in received if packet_id == chat_id]

    async def hook(player: infrarust.Player, command: str) -> infrarust.CancelCommand:
        with trio.move_on_after(WAIT / 2):
            while "before" not in chats():
                await trio.sleep(0.01)
        calls.append((command, chats()))
        return infrarust.CancelCommand()

    proxy.on_command(hook)
    stream, connection = await raw_login(proxy.port, "hooked.test", 340, "Typer")
    assert (await _read(stream, connection)).name == "login_success"
    await find_player(proxy, "Typer")
    said = b"".join(
        connection.send("chat_message", encode_string(text)) for text in ("before", "/secret x", "after")
    )
    marker = connection.send_id(0x0B, (7).to_bytes(8, "big"))  # a keep alive after them, as a fence
    await stream.send_all(said + marker)
    with trio.fail_after(WAIT):
        while 0x0B not in backend.received.get("Typer", []):
            await trio.sleep(0.01)
    assert calls == [("secret x", ["before"])]
    assert chats() == ["before", "after"]
    await stream.aclose()
