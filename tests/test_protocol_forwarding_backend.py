"""The forwarding-checking test backend (tests/_forwarding_backend.py) against a client leg written with
the protocol API as a proxy would (velocity, bungeecord, bungeeguard answers), and against a real
minecraft-protocol client that forwards nothing (refused with Paper's messages)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import trio
from _forwarding_backend import (
    BUNGEE_REQUIRED,
    BUNGEEGUARD_REFUSED,
    VELOCITY_BAD_SIGNATURE,
    VELOCITY_REQUIRED,
    ForwardedPlayer,
    ForwardingBackend,
)

from infrarust.forwarding import VELOCITY_CHANNEL, bungeecord_host, velocity_forwarding_data, velocity_version
from infrarust.protocol import (
    Handshake,
    LoginPluginResponse,
    MinecraftConnection,
    NextState,
    ProfileProperty,
    Role,
    State,
    encode_login_plugin_response,
    encode_login_start,
    parse_login_plugin_request,
    read_string,
)

E2E = Path(__file__).resolve().parent / "e2e"
SECRET = b"forwarding secret"
PLAYER = uuid.UUID("069a79f4-44e9-4726-a5be-fca90e38aaf5")
SKIN = ProfileProperty("textures", "dGV4", "c2ln")


async def _proxy_login(
    backend: ForwardingBackend, protocol: int, *, mode: str, secret: bytes = SECRET, token: str | None = None
) -> str:
    """Log in to the backend as an intercepting proxy's backend leg does; the final disconnect text."""
    stream = await trio.open_tcp_stream("127.0.0.1", backend.port)
    host = "play.example.com"
    if mode in ("bungeecord", "bungeeguard"):
        host = bungeecord_host(host, "203.0.113.7", PLAYER, [SKIN], bungeeguard_token=token)
    connection = MinecraftConnection(Role.CLIENT, protocol)
    await stream.send_all(Handshake(protocol, host, 25565, NextState.LOGIN).encode())
    await stream.send_all(connection.send("login_start", encode_login_start(protocol, "Notch", PLAYER)))
    try:
        while True:
            while (packet := connection.next_packet()) is None:
                data = await stream.receive_some(65536)
                if not data:
                    return "closed"
                connection.receive_data(data)
            if packet.name == "login_plugin_request":
                request = parse_login_plugin_request(packet.body)
                data_out = None
                if mode == "velocity" and request.channel == VELOCITY_CHANNEL:
                    version = velocity_version(request.data, protocol)
                    data_out = velocity_forwarding_data(
                        secret, version, "203.0.113.7", PLAYER, "Notch", [SKIN]
                    )
                response = LoginPluginResponse(request.message_id, data_out)
                await stream.send_all(
                    connection.send("login_plugin_response", encode_login_plugin_response(response))
                )
            elif packet.name == "login_success" and protocol >= 764:
                await stream.send_all(connection.send("login_acknowledged", b""))
            elif packet.name == "finish_configuration":
                await stream.send_all(connection.send("finish_configuration", b""))
            elif packet.name == "disconnect":
                if packet.state is State.LOGIN or protocol < 765:
                    text, _ = read_string(packet.body, 0)
                    return str(json.loads(text)["text"])
                # A 1.20.3+ play disconnect is NBT: its string payload is readable as is.
                return packet.body.decode("utf-8", "replace")
    finally:
        await stream.aclose()


@pytest.mark.parametrize("protocol", [393, 760, 764, 765, 775])
async def test_velocity_forwarding_is_checked(protocol: int, nursery: trio.Nursery) -> None:
    backend = await nursery.start(ForwardingBackend(mode="velocity", secret=SECRET).serve)
    text = await _proxy_login(backend, protocol, mode="velocity")
    assert "forwarded Notch 069a79f4-44e9-4726-a5be-fca90e38aaf5 203.0.113.7" in text
    version = 4 if protocol >= 761 else 1
    assert backend.players == [ForwardedPlayer("Notch", PLAYER, "203.0.113.7", (SKIN,), version)]
    assert await _proxy_login(backend, protocol, mode="none") == VELOCITY_REQUIRED
    assert await _proxy_login(backend, protocol, mode="velocity", secret=b"wrong") == VELOCITY_BAD_SIGNATURE


@pytest.mark.parametrize("protocol", [47, 340, 765])
async def test_bungeecord_and_bungeeguard_forwarding_is_checked(protocol: int, nursery: trio.Nursery) -> None:
    bungee = await nursery.start(ForwardingBackend(mode="bungeecord").serve)
    text = await _proxy_login(bungee, protocol, mode="bungeecord")
    assert "forwarded Notch 069a79f4-44e9-4726-a5be-fca90e38aaf5 203.0.113.7" in text
    assert bungee.players == [ForwardedPlayer("Notch", PLAYER, "203.0.113.7", (SKIN,))]
    assert await _proxy_login(bungee, protocol, mode="none") == BUNGEE_REQUIRED
    guard = await nursery.start(ForwardingBackend(mode="bungeeguard", token="t0ken").serve)
    assert "forwarded Notch" in await _proxy_login(guard, protocol, mode="bungeeguard", token="t0ken")
    assert guard.players == [ForwardedPlayer("Notch", PLAYER, "203.0.113.7", (SKIN,))]
    assert await _proxy_login(guard, protocol, mode="bungeeguard", token="stolen") == BUNGEEGUARD_REFUSED
    assert await _proxy_login(guard, protocol, mode="bungeecord") == BUNGEEGUARD_REFUSED


@pytest.mark.parametrize(
    ("version", "mode", "message"),
    [("1.20.4", "velocity", VELOCITY_REQUIRED), ("1.8.9", "bungeecord", BUNGEE_REQUIRED)],
)
async def test_a_real_client_without_forwarding_is_refused(
    version: str, mode: str, message: str, nursery: trio.Nursery
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed: run `make setup`")
    backend = await nursery.start(ForwardingBackend(mode=mode, secret=SECRET).serve)
    command = [node, str(E2E / "mc_session_client.js"), "--version", version, "--port", str(backend.port)]
    command += ["--username", "Alice"]
    with trio.fail_after(30):
        result = await trio.run_process(command, capture_stdout=True, check=False, cwd=E2E)
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    kicks = [e["params"]["reason"] for e in events if e["event"] == "packet" and e["name"] == "disconnect"]
    assert [json.loads(k)["text"] for k in kicks] == [message]
    assert backend.players == [] and backend.refusals == [message]
