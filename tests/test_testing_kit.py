"""infrarust.testing: its fixtures, fake backend and client helpers, against the real proxy and real
Minecraft software (PrismarineJS minecraft-protocol from tests/e2e), and the README's example run in a fresh
virtual environment where infrarust comes from its wheel.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
import trio
from e2e.harness import E2E_DIR, REPO_ROOT, MinecraftServer, node_executable

import infrarust
import infrarust.testing as kit
from infrarust.config import Ban, Metrics, ProxyMode
from infrarust.protocol import (
    Handshake,
    NextState,
    Packet,
    PacketReader,
    ProtocolError,
    encode_packet,
    encode_string,
    encode_varint,
)
from infrarust.status import BUILTIN_UNREACHABLE_TEXT
from infrarust.testing import BackendFactory, ProxyFactory
from infrarust.testing._wire import LoginReader, compress_frame

pytest_plugins = ["pytester"]

STATUS = {
    "version": {"name": "Paper 1.21.4", "protocol": 769},
    "players": {"max": 100, "online": 42},
    "description": {"text": "Lobby", "extra": [{"text": " of the kit", "color": "gold"}]},
}
DOMAIN = "lobby.example.com"
# One release per Login Start / Login Success layout the kit speaks (see infrarust/testing/_wire.py).
LAYOUT_RELEASES = {
    "1.8.9": 47,
    "1.16.5": 754,
    "1.19": 759,
    "1.19.2": 760,
    "1.20.1": 763,
    "1.20.4": 765,
    "1.20.6": 766,
    "1.21.4": 769,
}


def login_acknowledged() -> bytes:
    return encode_packet(0x03, b"")


async def test_status_through_the_proxy(infrarust_proxy: ProxyFactory, fake_backend: BackendFactory) -> None:
    lobby = await fake_backend(status=STATUS)
    proxy = await infrarust_proxy(servers=[kit.server(lobby, DOMAIN)])

    answer = await kit.status("127.0.0.1", proxy.port, domain=DOMAIN, protocol=767)

    assert answer.json == STATUS
    assert answer.description == "Lobby of the kit"
    assert answer.latency is not None and 0 <= answer.latency < 5
    [handshake] = lobby.handshakes
    assert (handshake.host, handshake.protocol_version, handshake.next_state) == (
        DOMAIN,
        767,
        NextState.STATUS,
    )
    assert lobby.connections[0].answers == ["status"]  # the proxy answers the ping itself


async def test_default_status_echoes_the_client_protocol(fake_backend: BackendFactory) -> None:
    backend = await fake_backend()
    answer = await kit.status("127.0.0.1", backend.port, protocol=47)
    assert answer.json["version"]["protocol"] == 47
    assert answer.description == "infrarust fake backend"
    assert backend.connections[0].answers == ["status", "pong"]


async def test_status_text_is_sent_as_given(fake_backend: BackendFactory) -> None:
    text = '{"description":"plain","players":{"max":1,"online":0},"version":{"name":"x","protocol":5}}'
    backend = await fake_backend(status=text)
    answer = await kit.status("127.0.0.1", backend.port, ping=False)
    assert (answer.text, answer.description, answer.latency) == (text, "plain", None)


@pytest.mark.parametrize("protocol", [47, 340, 735, 759, 760, 761, 764, 766, 768, 769, 775])
async def test_login_through_the_proxy(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory, protocol: int
) -> None:
    lobby = await fake_backend()
    proxy = await infrarust_proxy(servers=[kit.server(lobby, DOMAIN)])
    sent_uuid = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")

    answer = await kit.login(
        "127.0.0.1", proxy.port, domain=DOMAIN, name="Steve", protocol=protocol, player_uuid=sent_uuid
    )

    # Offline mode: the name's own UUID, whatever the client sent (the well-known one for Steve).
    assert answer.accepted, answer
    assert (answer.name, answer.uuid) == ("Steve", uuid.UUID("5627dd98-e6be-3c21-b8a8-e92344183641"))
    assert answer.uuid == kit.offline_uuid("Steve")
    [conn] = await lobby.wait_connections(1)
    assert conn.handshake is not None and conn.handshake.next_state == NextState.LOGIN
    assert conn.handshake.protocol_version == protocol
    assert conn.login is not None and conn.login.name == "Steve"
    assert conn.login.uuid == (sent_uuid if protocol >= 760 else None)
    assert conn.answers == ["login_success"]
    if protocol >= 764:  # the client acknowledges; the backend records every byte it received
        received = await conn.wait_received(len(conn.handshake.encode()) + 1, timeout=5)
        await conn.wait_ended()
        assert bytes(conn.received).endswith(login_acknowledged()), received


@pytest.mark.parametrize("version", list(LAYOUT_RELEASES))
async def test_minecraft_protocol_client_reads_the_fake_login_success(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory, version: str
) -> None:
    """A real client (minecraft-protocol) logs in to the fake backend through the proxy."""
    node = node_executable()
    lobby = await fake_backend()
    proxy = await infrarust_proxy(servers=[kit.server(lobby, DOMAIN)])
    argv = [node, str(E2E_DIR / "kit_login.js"), "--version", version, "--port", str(proxy.port)]
    argv += ["--host", DOMAIN, "--username", "kit_player", "--timeout", "10"]
    with trio.fail_after(25):
        done = await trio.run_process(
            argv, cwd=E2E_DIR, capture_stdout=True, capture_stderr=True, check=False
        )
    out = done.stdout.decode()
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert done.returncode == 0, f"{out}\n{done.stderr.decode()[-2000:]}"
    assert events[0] == {
        "event": "success",
        "username": "kit_player",
        "uuid": str(kit.offline_uuid("kit_player")),
    }
    [handshake] = lobby.handshakes
    assert handshake.protocol_version == LAYOUT_RELEASES[version]
    assert lobby.connections[0].login is not None and lobby.connections[0].login.name == "kit_player"


@pytest.mark.parametrize("version", ["1.8.9", "1.19", "1.19.2", "1.20.1", "1.21.4"])
async def test_helpers_against_a_minecraft_protocol_server(
    infrarust_proxy: ProxyFactory, version: str
) -> None:
    """status() and login() through the proxy to a real server, which turns compression on at login.

    One release per Login Start layout the kit sends: a wrong one is refused or misread by the server.
    """
    server = MinecraftServer(node_executable(), version)
    try:
        await trio.to_thread.run_sync(server.wait_listening, 30.0)
        proxy = await infrarust_proxy(servers=[kit.server(server.port, "real.example.com")])
        protocol = LAYOUT_RELEASES[version]

        answer = await kit.status("127.0.0.1", proxy.port, domain="real.example.com", protocol=protocol)
        assert answer.description == "infrarust e2e"
        assert answer.json["version"]["protocol"] == protocol

        player = await kit.login(
            "127.0.0.1", proxy.port, domain="real.example.com", name="Alex", protocol=protocol, timeout=10
        )
        assert (player.name, player.uuid, player.compression) == ("Alex", kit.offline_uuid("Alex"), 256)
        login = await server.wait_event("login", "Alex")
        assert login["host"] == "real.example.com"
    finally:
        server.stop()
        server.kill()


async def test_refusing_backend_gets_the_proxy_disconnect_message(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory
) -> None:
    down = await fake_backend(behavior="refuse")
    server = kit.server(down, DOMAIN, disconnect_message="Back in a minute")
    proxy = await infrarust_proxy(servers=[server])

    answer = await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Steve")
    assert not answer.accepted
    assert answer.reason == "Back in a minute"
    assert answer.reason_json == {"text": "Back in a minute"}
    status = await kit.status("127.0.0.1", proxy.port, domain=DOMAIN)
    assert status.description == BUILTIN_UNREACHABLE_TEXT
    assert down.connections == []
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", down.port)

    # Changed back, the same port answers again.
    down.behavior = "answer"
    answer = await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Steve")
    assert answer.name == "Steve"
    down.behavior = "refuse"
    answer = await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Alex")
    assert answer.reason == "Back in a minute"
    assert [conn.login.name for conn in down.connections if conn.login] == ["Steve"]


async def test_closing_backend(infrarust_proxy: ProxyFactory, fake_backend: BackendFactory) -> None:
    """Accepted and closed at once: the proxy connected, so the player sees the close, not a message."""
    backend = await fake_backend(behavior="close")
    proxy = await infrarust_proxy(servers=[kit.server(backend, DOMAIN)])
    with pytest.raises(kit.NoAnswerError, match="closed the connection before a login answer"):
        await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Steve")
    [conn] = await backend.wait_connections(1)
    await conn.wait_ended()
    assert conn.handshake is None and conn.answers == []


async def test_backend_closing_after_the_handshake(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory
) -> None:
    backend = await fake_backend(behavior="close_after_handshake")
    proxy = await infrarust_proxy(servers=[kit.server(backend, DOMAIN)])

    with pytest.raises(kit.NoAnswerError) as caught:
        await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Steve")
    assert caught.value.received == b""
    status = await kit.status("127.0.0.1", proxy.port, domain=DOMAIN)
    assert status.description == BUILTIN_UNREACHABLE_TEXT  # the proxy's own answer for a failed fetch

    conns = await backend.wait_connections(2)
    assert [conn.handshake.next_state for conn in conns if conn.handshake] == [
        NextState.LOGIN,
        NextState.STATUS,
    ]
    assert all(conn.answers == [] for conn in conns)


async def test_hanging_backend(infrarust_proxy: ProxyFactory, fake_backend: BackendFactory) -> None:
    backend = await fake_backend(behavior="hang")
    proxy = await infrarust_proxy(servers=[kit.server(backend, DOMAIN)], handshake_timeout=0.5)

    # The status fetch gives up after handshake_timeout and the proxy answers for the server.
    status = await kit.status("127.0.0.1", proxy.port, domain=DOMAIN)
    assert status.description == BUILTIN_UNREACHABLE_TEXT
    # A login is relayed as is: the player waits as long as the backend does.
    with pytest.raises(trio.TooSlowError, match="no login answer"):
        await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Steve", timeout=0.5)

    conns = await backend.wait_connections(2)
    assert [conn.handshake.next_state for conn in conns if conn.handshake] == [
        NextState.STATUS,
        NextState.LOGIN,
    ]
    login = conns[1]
    await login.wait_ended()  # the client gave up and the proxy closed the relay
    assert login.handshake is not None
    assert bytes(login.received).startswith(login.handshake.encode())
    assert len(login.received) > len(login.handshake.encode())  # the Login Start came too
    assert all(conn.answers == [] for conn in conns)


async def test_echoing_backend_relays_every_byte_back(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory
) -> None:
    backend = await fake_backend(behavior="echo")
    proxy = await infrarust_proxy(servers=[kit.server(backend, DOMAIN, proxy_mode=ProxyMode.ZERO_COPY)])
    sent = Handshake(769, DOMAIN, proxy.port, NextState.LOGIN).encode() + random.Random(7).randbytes(300_000)

    client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with client, trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, sent)
        echoed = bytearray()
        with trio.fail_after(10):
            while len(echoed) < len(sent):
                echoed += await client.receive_some(65536)
    assert echoed == sent
    [conn] = backend.connections
    assert conn.received == sent
    assert conn.handshake is not None and conn.handshake.host == DOMAIN
    assert (conn.login, conn.answers, conn.error) == (None, [], None)  # after the handshake: bytes only
    await conn.wait_ended()  # the client left, so the proxy closed the backend side too


async def test_garbage_is_recorded_and_a_hanging_backend_keeps_hanging(fake_backend: BackendFactory) -> None:
    answering = await fake_backend()
    hanging = await fake_backend(behavior="hang")
    garbage = b"\xff" * 6 + b"more"
    for backend in (answering, hanging):
        client = await trio.open_tcp_stream("127.0.0.1", backend.port)
        async with client:
            await client.send_all(garbage)
            [conn] = await backend.wait_connections(1)
            await conn.wait_received(len(garbage))
            if backend is answering:  # a server closes on bytes it cannot decode
                await conn.wait_ended()
                with trio.fail_after(5):
                    assert await client.receive_some() == b""
            else:
                await client.send_all(b"!")
                assert await conn.wait_received(len(garbage) + 1) == garbage + b"!"
                assert not conn.ended
        assert conn.error is not None and "VarInt" in conn.error
        assert conn.handshake is None and conn.answers == []


async def test_backend_login_disconnect_reaches_the_player(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory
) -> None:
    backend = await fake_backend(login_disconnect="You are not white-listed on this server!")
    proxy = await infrarust_proxy(servers=[kit.server(backend, DOMAIN)])
    answer = await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Steve")
    assert answer.reason == "You are not white-listed on this server!"
    assert backend.connections[0].answers == ["login_disconnect"]


async def test_fake_backend_records_the_proxy_header(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory
) -> None:
    backend = await fake_backend()
    proxy = await infrarust_proxy(servers=[kit.server(backend, DOMAIN, send_proxy_protocol=True)])

    client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with client:
        client_port = client.socket.getsockname()[1]
        hello = Handshake(769, DOMAIN, proxy.port, NextState.LOGIN).encode()
        login_start = encode_packet(0x00, b"\x05Steve" + kit.offline_uuid("Steve").bytes)
        await client.send_all(hello + login_start)
        reader = PacketReader()
        with trio.fail_after(5):
            while (packet := reader.next_packet()) is None:
                reader.feed(await client.receive_some())
        assert packet.packet_id == 0x02  # Login Success, relayed
    [conn] = backend.connections
    assert conn.proxy_header is not None
    assert conn.proxy_header.source == ("127.0.0.1", client_port)
    assert conn.proxy_header.destination == ("127.0.0.1", proxy.port)
    assert conn.handshake is not None and conn.handshake.host == DOMAIN
    assert conn.login is not None and conn.login.name == "Steve"
    assert bytes(conn.received).endswith(hello + login_start)
    assert conn.answers == ["login_success"]


async def test_fake_backend_and_helpers_on_ipv6_loopback(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory
) -> None:
    backend = await fake_backend(host="::1")
    assert backend.address == infrarust.Address("::1", backend.port)
    proxy = await infrarust_proxy(servers=[kit.server(backend, DOMAIN)], bind=infrarust.Address("::1", 0))
    answer = await kit.login("::1", proxy.port, domain=DOMAIN, name="Steve")
    assert answer.name == "Steve"
    assert backend.connections[0].peer[0] == "::1"


async def test_fake_backend_refuses_protocols_outside_its_range(fake_backend: BackendFactory) -> None:
    backend = await fake_backend()
    stream = await trio.open_tcp_stream("127.0.0.1", backend.port)
    async with stream:
        hello = Handshake(5, "old.example.com", 25565, NextState.LOGIN).encode()
        await stream.send_all(hello + encode_packet(0x00, b"\x05Notch"))
        conn = (await backend.wait_connections(1))[0]
        await conn.wait_ended()
    assert conn.answers == ["login_disconnect"]
    with pytest.raises(ValueError, match="outside the login layouts"):
        await kit.login("127.0.0.1", backend.port, protocol=5)


async def test_helpers_are_bounded_by_their_timeout(fake_backend: BackendFactory) -> None:
    backend = await fake_backend(behavior="hang")
    with trio.fail_after(3):
        with pytest.raises(trio.TooSlowError, match="no status answer"):
            await kit.status("127.0.0.1", backend.port, timeout=0.2)
        with pytest.raises(trio.TooSlowError, match="no login answer"):
            await kit.login("127.0.0.1", backend.port, timeout=0.2)


async def test_proxy_from_a_configuration_file(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory, tmp_path: Path
) -> None:
    backend = await fake_backend(status=STATUS)
    conf = tmp_path / "conf"
    (conf / "servers").mkdir(parents=True)
    (conf / "infrarust.toml").write_text('bind = "0.0.0.0:25565"\n[ban]\nfile = "bans.json"\n[metrics]\n')
    (conf / "servers" / "lobby.toml").write_text(
        f'domains = ["{DOMAIN}"]\naddresses = ["127.0.0.1:{backend.port}"]\n'
    )

    proxy = await infrarust_proxy(conf / "infrarust.toml")

    assert proxy.address[0] == "127.0.0.1" and proxy.port != 25565
    assert proxy.metrics_address is not None and proxy.metrics_address[0] == "127.0.0.1"
    assert (await kit.status("127.0.0.1", proxy.port, domain=DOMAIN)).json == STATUS
    # The ban file lives in the test's tmp_path, not beside the configuration.
    assert proxy.bans.path is not None
    assert proxy.bans.path.is_relative_to(tmp_path / "infrarust")
    proxy.bans.ban_player(name="Griefer", reason="griefing")
    assert proxy.bans.path.is_file() and not (conf / "bans.json").exists()
    answer = await kit.login("127.0.0.1", proxy.port, domain=DOMAIN, name="Griefer")
    assert answer.reason is not None and "griefing" in answer.reason


async def test_settings_replace_proxy_config_fields(
    infrarust_proxy: ProxyFactory, fake_backend: BackendFactory, tmp_path: Path
) -> None:
    backend = await fake_backend()
    full = kit.server(backend, "full.example.com", max_players=1, proxy_mode=ProxyMode.ZERO_COPY)
    first = await infrarust_proxy(servers=[full], metrics=Metrics(infrarust.Address("127.0.0.1", 0)))
    assert first.config.servers[0].name == "full-example-com"
    assert first.config.metrics is not None
    # No per-IP rate limit unless asked: more logins than the default budget of 3 all get in.
    for number in range(5):
        answer = await kit.login("127.0.0.1", first.port, domain="full.example.com", name=f"p{number}")
        assert answer.accepted, answer

    # Each proxy has its own state folder; a relative ban file is taken from there.
    second = await infrarust_proxy(servers=[full], ban=Ban(file="custom.json"))
    assert second.bans.path == tmp_path / "infrarust" / "proxy-2" / "custom.json"
    assert first.bans.path == tmp_path / "infrarust" / "proxy-1" / "bans.json"

    with pytest.raises(TypeError, match="not ProxyConfig fields: colour"):
        await infrarust_proxy(servers=[full], colour="blue")
    with pytest.raises(ValueError, match="at least one domain"):
        kit.server(backend)


def test_login_reader_follows_compression() -> None:
    """Before Set Compression plain frames; after it, frames sent as is (size 0) or zlib-compressed."""
    reader = LoginReader()
    disconnect = encode_packet(0x00, encode_string(json.dumps({"text": "x" * 600})))
    inner = encode_varint(0x00) + encode_string(json.dumps({"text": "x" * 600}))
    compressed = encode_packet(len(inner), zlib.compress(inner))  # the "id" slot holds the data length
    stream = encode_packet(0x03, encode_varint(256)) + compress_frame(encode_packet(0x02, b"ok")) + compressed
    packets = []
    for byte in stream:  # any chunking gives the same packets
        reader.feed(bytes([byte]))
        while (packet := reader.next_packet()) is not None:
            packets.append(packet)
            if packet.packet_id == 0x03:
                reader.set_compression(256)
    assert [p.packet_id for p in packets] == [0x03, 0x02, 0x00]
    assert packets[1].body == b"ok"
    assert packets[2] == Packet(0x00, decode_packet_body(disconnect))

    lying = encode_packet(len(inner) + 1, zlib.compress(inner))
    for bad in (lying, encode_packet(10, b"not zlib")):
        reader = LoginReader()
        reader.set_compression(0)
        reader.feed(bad)
        with pytest.raises(ProtocolError):
            reader.next_packet()


def decode_packet_body(frame: bytes) -> bytes:
    reader = PacketReader()
    reader.feed(frame)
    packet = reader.next_packet()
    assert packet is not None
    return packet.body


def test_server_targets() -> None:
    address = infrarust.Address("10.0.0.2", 25566)
    assert kit.server(address, "a.example.com").addresses == (address,)
    assert kit.server(("::1", 25567), "B.Example.com").addresses == (infrarust.Address("::1", 25567),)
    assert kit.server(25568, "c.example.com", name="c").addresses == (infrarust.Address("127.0.0.1", 25568),)
    assert kit.server(25568, "B.Example.com").name == "b-example-com"
    with pytest.raises(ValueError, match="not running yet"):
        kit.server(kit.FakeBackend(), "d.example.com")
    with pytest.raises(ValueError, match="unknown behavior 'sleep'"):
        kit.FakeBackend(behavior="sleep")  # type: ignore[arg-type]


# --- the plugin as pytest loads it --------------------------------------------------------------------

PLUGIN_LIFECYCLE_TEST = """
import json, pathlib
import infrarust.testing as kit

async def test_uses_both(infrarust_proxy, fake_backend, tmp_path):
    backend = await fake_backend()
    proxy = await infrarust_proxy(servers=[kit.server(backend, "x.example.com")])
    assert (await kit.login("127.0.0.1", proxy.port, domain="x.example.com", name="Steve")).accepted
    pathlib.Path({ports!r}).write_text(json.dumps([proxy.port, backend.port]))

def test_without_the_fixtures(request):
    # The plugin adds nothing to a test that does not ask for it (no autouse fixture, no nursery).
    assert not set(request.fixturenames) & set(["nursery", "infrarust_proxy", "fake_backend"])
"""


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_plugin_fixtures_stop_everything_when_the_test_ends(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Sync on purpose: the inner session runs its own trio loop in this process."""
    ports_file = tmp_path / "ports.json"
    pytester.makepyfile(PLUGIN_LIFECYCLE_TEST.format(ports=str(ports_file)))
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, warnings=0)
    ports = json.loads(ports_file.read_text())
    assert [_port_open(port) for port in ports] == [False, False]


def test_plugin_leaves_runs_without_pytest_trio_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLUGIN_LIFECYCLE_TEST.format(ports="unused"))
    result = pytester.runpytest("-p", "no:trio", "-p", "no:cacheprovider")
    # The plain test passes; only the one asking for the fixtures fails, and says what is missing.
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'nursery' not found*"])

    # The plugin's name is "infrarust", for -p no:infrarust.
    result = pytester.runpytest("-p", "no:infrarust", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'infrarust_proxy' not found*"])


# --- the README's example, in a fresh virtual environment ------------------------------------------------

README_BLOCK = re.compile(
    r"<!-- testing-kit-example: (?P<name>[\w.]+) -->\s*```\w*\n(?P<code>.*?)```", re.DOTALL
)
INSTALL_TIMEOUT = 240.0  # per pip step; with a warm pip cache the whole test takes about 10 s


def readme_example() -> dict[str, str]:
    """The README's testing-kit example files: ``{file name: content}``."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return {match["name"]: match["code"] for match in README_BLOCK.finditer(text)}


def run(argv: list[str], cwd: Path, timeout: float = INSTALL_TIMEOUT) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.mark.slow
def test_readme_example_passes_in_a_fresh_venv_from_the_wheel(tmp_path: Path) -> None:
    """Build the wheel, install it with pytest and pytest-trio into a new venv, run the README's test."""
    example = readme_example()
    assert set(example) == {"pyproject.toml", "test_network.py"}, example.keys()
    assert "infrarust.testing" in example["test_network.py"]

    source = tmp_path / "source"  # a copy, so the build leaves nothing behind in the repository
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(
        REPO_ROOT / "infrarust", source / "infrarust", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(source)], tmp_path)
    [wheel] = wheels.glob("infrarust-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    requirements = REPO_ROOT / "requirements-dev.txt"  # the same pinned trio, pytest and pytest-trio
    run(
        [
            *pip,
            "--python",
            str(python),
            "install",
            "-c",
            str(requirements),
            str(wheel),
            "pytest",
            "pytest-trio",
        ],
        tmp_path,
    )
    installed = run([str(python), "-c", "import infrarust; print(infrarust.__file__)"], tmp_path)
    assert Path(installed.strip()).is_relative_to(venv), installed

    project = tmp_path / "project"
    project.mkdir()
    for name, code in example.items():
        (project / name).write_text(code, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PYTEST"))}
    done = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    tests = example["test_network.py"].count("async def test_")
    assert tests >= 2 and re.search(rf"\b{tests} passed\b", done.stdout), done.stdout
