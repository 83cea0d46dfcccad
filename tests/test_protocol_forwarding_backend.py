"""infrarust.intercept.BackendLogin (the backend leg's login with velocity, bungeecord or bungeeguard
forwarding) against the forwarding-checking test backend (tests/_forwarding_backend.py), and that
backend against a real minecraft-protocol client that forwards nothing (refused with Paper's
messages)."""

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

from infrarust.auth import GameProfile
from infrarust.intercept import (
    BACKEND_ONLINE_MODE,
    NO_FORWARDING_REQUEST,
    BackendLogin,
    RefuseLogin,
    Reply,
)
from infrarust.protocol import MinecraftConnection, ProfileProperty, Role, State, read_string

E2E = Path(__file__).resolve().parent / "e2e"
SECRET = b"forwarding secret"
PLAYER = uuid.UUID("069a79f4-44e9-4726-a5be-fca90e38aaf5")
SKIN = ProfileProperty("textures", "dGV4", "c2ln")


async def _proxy_login(
    backend: ForwardingBackend, protocol: int, *, mode: str, secret: bytes = SECRET, token: str | None = None
) -> str:
    """Log in to the backend with BackendLogin, as an intercepting proxy's backend leg does; the final
    disconnect text (or the refusal BackendLogin decided on)."""
    profile = GameProfile(PLAYER, "Notch", (SKIN,))
    login = BackendLogin(protocol, profile, "203.0.113.7", mode=mode, secret=secret, bungeeguard_token=token)
    stream = await trio.open_tcp_stream("127.0.0.1", backend.port)
    connection = MinecraftConnection(Role.CLIENT, protocol)
    await stream.send_all(login.handshake("play.example.com", 25565))
    await stream.send_all(connection.send(*login.login_start()))
    try:
        while True:
            while (packet := connection.next_packet()) is None:
                data = await stream.receive_some(65536)
                if not data:
                    return "closed"
                connection.receive_data(data)
            if packet.state is State.LOGIN:
                step = login.backend_packet(packet)
                if isinstance(step, RefuseLogin):
                    return step.reason
                if isinstance(step, Reply):
                    await stream.send_all(connection.send(*step.packet))
                    continue
            # What the client would do with the packets relayed to it.
            if packet.name == "login_success" and protocol >= 764:
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


@pytest.mark.parametrize("protocol", [47, 765])
async def test_backend_login_refusals(protocol: int, nursery: trio.Nursery) -> None:
    plain = await nursery.start(ForwardingBackend(mode="none").serve)
    assert await _proxy_login(plain, protocol, mode="velocity") == NO_FORWARDING_REQUEST
    assert "forwarded Notch" in await _proxy_login(plain, protocol, mode="none")
    online = await nursery.start(ForwardingBackend(mode="online").serve)
    assert await _proxy_login(online, protocol, mode="none") == BACKEND_ONLINE_MODE
    with pytest.raises(ValueError, match="forwarding mode"):
        BackendLogin(protocol, GameProfile(PLAYER, "Notch"), "::1", mode="legacy")


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
