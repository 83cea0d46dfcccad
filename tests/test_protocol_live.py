"""The protocol package against a real client: a small login server built only on infrarust's sans-IO
API (the sequence an intercepted relay follows) serves PrismarineJS minecraft-protocol clients of many
versions, offline and online (through a loopback session server), with and without compression. The
client's own decoding of what it received is the assertion: encryption, compression, framing, state
changes, the server-id hash and every message layout are checked by real third-party software."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio
from _session_server import SessionServer as FakeSessionServer
from helpers import accept_login, read_packet, read_until

from infrarust.auth import (
    AuthenticationError,
    GameProfile,
    ServerKey,
    SessionServer,
    new_verify_token,
    offline_uuid,
    server_id_hash,
    tokens_match,
)
from infrarust.protocol import (
    ClientChat,
    ClientCommand,
    EncryptionRequest,
    State,
    action_bar,
    disconnect_packet,
    encode_encryption_request,
    encode_login_success,
    encode_set_compression,
    parse_client_chat,
    parse_encryption_response,
    system_message,
    title_packets,
)

E2E = Path(__file__).resolve().parent / "e2e"
VERSIONS = ["1.8.9", "1.12.2", "1.16.5", "1.19.2", "1.19.4", "1.20.1", "1.20.2", "1.20.4", "1.21.1", "1.21.4"]
VERSIONS += ["1.21.8", "26.1"]
BIG_TEXT = "x" * 5000  # well above any threshold: a compressed packet on the wire


async def login_server(
    stream: trio.SocketStream,
    *,
    key: ServerKey,
    session: SessionServer | None,
    threshold: int,
    seen: list[Any],
) -> None:
    """What an intercepted relay does on the client leg, minus the backend."""
    connection, login = await accept_login(stream)
    protocol = connection.protocol_version
    if session is not None:
        token = new_verify_token()
        request = EncryptionRequest("", key.public_der, token)
        await stream.send_all(
            connection.send("encryption_request", encode_encryption_request(protocol, request))
        )
        answer = await read_packet(stream, connection)
        response = parse_encryption_response(protocol, answer.body)
        secret = key.decrypt(response.shared_secret)
        assert response.verify_token is not None and tokens_match(token, key.decrypt(response.verify_token))
        connection.enable_encryption(secret)
        try:
            profile = await session.has_joined(login.name, server_id_hash("", secret, key.public_der))
        except AuthenticationError:
            reason = disconnect_packet(protocol, State.LOGIN, {"text": "Failed to verify username!"})
            await stream.send_all(connection.send(*reason))
            return
    else:
        profile = GameProfile(offline_uuid(login.name), login.name)
    if threshold >= 0:
        await stream.send_all(connection.send("set_compression", encode_set_compression(threshold)))
    await stream.send_all(
        connection.send("login_success", encode_login_success(protocol, profile.login_success()))
    )
    if protocol >= 764:
        await read_until(stream, connection, "login_acknowledged")
        assert connection.inbound_state is State.CONFIGURATION
        await stream.send_all(connection.send("finish_configuration", b""))
        await read_until(stream, connection, "finish_configuration")
    assert connection.inbound_state is State.PLAY and connection.outbound_state is State.PLAY
    out = [system_message(protocol, {"text": "welcome"}), action_bar(protocol, {"text": "bar"})]
    out += title_packets(protocol, {"text": "Title"}, {"text": "Sub"}, 5, 40, 5)
    await stream.send_all(b"".join(connection.send(*packet) for packet in out))
    while len(seen) < 2:
        packet = await read_packet(stream, connection)
        if packet.name is not None:
            said = parse_client_chat(protocol, packet.name, packet.body)
            if said is not None:
                seen.append(said)
    await stream.send_all(connection.send(*system_message(protocol, {"text": BIG_TEXT})))
    await stream.send_all(connection.send(*disconnect_packet(protocol, State.PLAY, {"text": "bye"})))


def _text(protocol_text: Any) -> str:
    """minecraft-protocol hands JSON components over as strings, NBT ones as typed trees."""
    if isinstance(protocol_text, str):
        value = json.loads(protocol_text)
        return value if isinstance(value, str) else str(value.get("text", ""))
    return str(protocol_text["value"]["text"]["value"])


async def _run(
    version: str, *, online: bool, threshold: int, nursery: trio.Nursery, joins: bool = True
) -> tuple[list[Any], list[Any]]:
    """Serve one client of ``version``; ``joins`` False: an online login whose client never calls join."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed: run `make setup`")
    key = ServerKey()
    seen: list[Any] = []
    fake = await nursery.start(FakeSessionServer().serve)
    session = SessionServer(fake.url, timeout=5.0) if online else None
    player = fake.add_account("token-1", "Alice")
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    errors: list[BaseException] = []

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await login_server(stream, key=key, session=session, threshold=threshold, seen=seen)
        except Exception as exc:  # reported by the test, not lost in the nursery
            errors.append(exc)
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as inner:
        await inner.start(trio.serve_listeners, handle, listeners)
        command = [node, str(E2E / "mc_session_client.js"), "--version", version, "--port", str(port)]
        command += ["--username", "Alice", "--chat", "hello there", "--command", "ir find Bob"]
        if online and joins:
            command += ["--token", "token-1", "--uuid", player.hex, "--session-server", fake.url]
        with trio.fail_after(40):
            result = await trio.run_process(command, capture_stdout=True, check=False, cwd=E2E)
        inner.cancel_scope.cancel()
    if session is not None:
        await session.aclose()
    assert not errors, errors
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    return events, seen


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("online", "threshold"), [(False, -1), (True, 64)])
async def test_real_client_through_the_api(
    version: str, online: bool, threshold: int, nursery: trio.Nursery
) -> None:
    events, seen = await _run(version, online=online, threshold=threshold, nursery=nursery)
    assert [e for e in events if e["event"] == "error"] == []
    success = next(e for e in events if e["event"] == "success")
    assert success["username"] == "Alice"
    assert {"event": "play"} in events
    assert seen == [ClientChat("hello there"), ClientCommand("ir find Bob")] or (
        seen[0] == ClientChat("hello there")
        and isinstance(seen[1], ClientCommand)
        and seen[1].command == "ir find Bob"
    )
    packets = [e for e in events if e["event"] == "packet"]
    names = [p["name"] for p in packets]
    texts = []
    for packet in packets:
        params = packet["params"]
        for field in ("message", "content", "text", "reason"):
            if field in params and params[field] is not None:
                texts.append(_text(params[field]))
    assert texts[:1] == ["welcome"] and "bar" in texts and "Title" in texts and "Sub" in texts
    assert BIG_TEXT in texts and texts[-1] == "bye"
    assert names[-1] == "kick_disconnect"


@pytest.mark.parametrize("version", ["1.8.9", "1.20.4", "26.1"])
async def test_client_that_never_joined_is_refused(version: str, nursery: trio.Nursery) -> None:
    events, seen = await _run(version, online=True, threshold=-1, nursery=nursery, joins=False)
    assert seen == []
    assert not any(e["event"] == "success" for e in events)
    kicks = [e for e in events if e["event"] == "packet" and e["name"] == "disconnect"]
    assert [_text(k["params"]["reason"]) for k in kicks] == ["Failed to verify username!"]
