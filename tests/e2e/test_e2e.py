"""Real Minecraft software through the proxy: login, join game and an echoed chat message.

PrismarineJS minecraft-protocol 1.54.0 plays both ends: an offline-mode server per version
(``mc_server.js``) and a client (``mc_client.js``) that dials the proxy with the routed domain in its
handshake. The server turns compression on (threshold 256) and the chat message is longer than
that, so compressed packets cross the proxy in both directions. For each mode and version we check
what the client got, what the server saw, and the proxy's ``session ended`` line, whose byte counts
must equal what the server's socket read and what the client's socket read.
"""

from __future__ import annotations

import json
import secrets

import pytest

from .harness import (
    E2E_DIR,
    MINECRAFT_PROTOCOL_VERSION,
    MODES,
    VERSIONS,
    MinecraftServer,
    Proxy,
    domain,
    node_executable,
    run_client,
    server_name,
)


def test_node_and_minecraft_protocol_are_installed() -> None:
    """Fails (never skips) with a clear message when the Node side is missing."""
    node_executable()
    lock = json.loads((E2E_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/minecraft-protocol"]["version"] == MINECRAFT_PROTOCOL_VERSION


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("mode", MODES)
async def test_login_join_and_chat(
    mode: str, version: str, node: str, minecraft_servers: dict[str, MinecraftServer], proxy: Proxy
) -> None:
    server = minecraft_servers[version]
    host = domain(mode, version)
    username = server_name(mode, version).replace("-", "_")  # e.g. pt_1_20_4: a valid, unique name
    # Longer than the compression threshold (256) and not too compressible.
    message = f"e2e {mode} {version} " + secrets.token_hex(160)

    client = await run_client(
        node, version=version, port=proxy.port, host=host, username=username, message=message
    )
    context = f"{client.describe()}\n{server.describe()}\n{proxy.describe()}"
    assert client.returncode == 0, f"the client failed\n{context}"

    # The client logged in, joined, and got its message back; compression was on both ways.
    assert client.event("login")["username"] == username
    client.event("joined")
    done = client.event("done")
    assert message in done["echo"] and username in done["echo"]
    assert done["compressedIn"] >= 1, f"no compressed packet reached the client\n{context}"
    assert done["compressedOut"] >= 1, f"the client sent no compressed packet\n{context}"

    # The server saw the routed domain and the proxy's port in the handshake, untouched.
    login = await server.wait_event("login", username)
    assert login["host"] == host
    assert login["port"] == proxy.port
    assert login["protocol"] == VERSIONS[version]
    chat = await server.wait_event("chat", username)
    assert chat["message"] == message
    assert chat["compressedIn"] >= 1, f"no compressed packet reached the server\n{context}"
    server_socket = await server.wait_event("closed", username)

    # The proxy's account of the session: the right route and mode, exact byte counts, the client
    # hung up first.
    ended = await proxy.wait_session_end(username)
    assert ended["server"] == server_name(mode, version), ended
    assert ended["mode"] == mode, ended
    assert ended["reason"] == "ClientClosed", ended
    c2b, b2c = int(ended["c2b"]), int(ended["b2c"])
    assert c2b > 0 and b2c > 0, ended
    client_socket = client.event("closed")
    assert c2b == server_socket["bytesRead"] == client_socket["bytesWritten"], (
        ended,
        server_socket,
        client_socket,
    )
    assert b2c == server_socket["bytesWritten"] == client_socket["bytesRead"], (
        ended,
        server_socket,
        client_socket,
    )
