"""The server list through the proxy with real third-party clients against a real Minecraft server.

The backend is PrismarineJS minecraft-protocol 1.54.0 (``mc_server.js``, a 1.20.4 server whose MOTD is
"infrarust e2e", 20 slots); it answers status pings itself, modern and legacy. The clients are mcstatus
(PyPI) and minecraft-protocol's own ``ping()`` (``mc_ping.js``). The proxy runs in-process so each test
can shape its configuration (routes, MOTDs, a stopped backend).

mcstatus writes the address it connects to into the handshake. ``JavaServer("127.0.0.1", port)`` is
routed by a server claiming the domain ``127.0.0.1``; to send a chosen domain while connecting to
127.0.0.1 we drive its ``JavaClient`` over a ``TCPSocketConnection`` ourselves (``mcstatus_status``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import pytest
import trio
from helpers import decode_legacy_kick_text, expect_eof, free_port, proxy_config, server, start_proxy
from mcstatus import JavaServer, LegacyServer
from mcstatus._net.address import Address as McAddress
from mcstatus._protocol.io.connection import TCPSocketConnection
from mcstatus._protocol.java_client import JavaClient
from mcstatus.responses import JavaStatusResponse, LegacyStatusResponse

import infrarust
from infrarust.config._models import Address, Motd, ServerConfig, StatusCache, UnknownDomainBehavior
from infrarust.protocol import LegacyPingKind, LegacyStatus, encode_legacy_ping, parse_legacy_kick

from .harness import E2E_DIR, ClientRun, MinecraftServer

BACKEND_VERSION = "1.20.4"
BACKEND_MOTD = "infrarust e2e"  # set in mc_server.js
BACKEND_MAX = 20  # minecraft-protocol's default
STARTUP_TIMEOUT = 30.0
CLIENT_TIMEOUT = 3.0  # mcstatus' socket timeout per call
UNREACHABLE = Motd(text="§cLobby is down", version_name="Maintenance", max_players=100)
DEFAULT = Motd(text="§eNo server here", max_players=1)

T = TypeVar("T")


async def in_thread(call: Callable[[], T], timeout: float = 20.0) -> T:
    """Run a blocking client call in a thread, bounded (the thread carries its own socket timeout)."""
    with trio.fail_after(timeout):
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)


def mcstatus_status(port: int, host: str, version: int) -> tuple[JavaStatusResponse, float]:
    """mcstatus' status and ping on one connection to 127.0.0.1:``port``, with ``host`` in the handshake."""
    with TCPSocketConnection(("127.0.0.1", port), CLIENT_TIMEOUT) as connection:
        client = JavaClient(connection, address=McAddress(host, port), version=version)
        client.handshake()
        status = client.read_status()
        latency = client.test_ping()
    return status, latency


async def run_mc_ping(node: str, *, port: int, host: str, version: str = BACKEND_VERSION) -> ClientRun:
    """``node mc_ping.js`` to completion (it has its own 10 s limit; we allow a little more)."""
    argv = [node, str(E2E_DIR / "mc_ping.js"), "--port", str(port), "--host", host, "--version", version]
    with trio.fail_after(25):
        done = await trio.run_process(
            argv, cwd=E2E_DIR, capture_stdout=True, capture_stderr=True, check=False
        )
    return ClientRun(argv, done.returncode, done.stdout.decode(), done.stderr.decode())


def ping_status(run: ClientRun) -> dict[str, Any]:
    """The status minecraft-protocol's ping() printed, checking that the ping was echoed too."""
    assert run.returncode == 0, run.describe()
    event = run.event("status")
    assert event["pong"] is True, run.describe()
    status: dict[str, Any] = event["status"]
    return status


async def raw_legacy_ping(port: int, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        return await expect_eof(stream)


def legacy_answer(answer: bytes) -> LegacyStatus:
    decode_legacy_kick_text(answer)
    return parse_legacy_kick(answer)


@pytest.fixture(scope="module")
def minecraft(node: str) -> Iterator[MinecraftServer]:
    """One real 1.20.4 server for the module, stopped by its PID at the end."""
    started = MinecraftServer(node, BACKEND_VERSION)
    try:
        started.wait_listening(STARTUP_TIMEOUT)
        yield started
    finally:
        started.stop()
        started.kill()


@pytest.fixture
def doomed_minecraft(node: str) -> Iterator[MinecraftServer]:
    """A real server of its own, for a test that stops it midway; killed by its PID in any case."""
    started = MinecraftServer(node, BACKEND_VERSION)
    try:
        started.wait_listening(STARTUP_TIMEOUT)
        yield started
    finally:
        started.stop()
        started.kill()


async def start_routes(
    nursery: trio.Nursery, minecraft: MinecraftServer, *extra: ServerConfig, **changes: Any
) -> infrarust.Proxy:
    """A proxy with ``up.e2e.test`` (and ``127.0.0.1``) on the real server, ``down.e2e.test`` on nothing,
    then the ``extra`` servers; the default MOTD is ``DEFAULT`` unless ``changes`` say otherwise.
    """
    up = server("up", ["up.e2e.test", "127.0.0.1"], [Address("127.0.0.1", minecraft.port)])
    down = server(
        "down", ["down.e2e.test"], [Address("127.0.0.1", free_port())], motd={"unreachable": UNREACHABLE}
    )
    changes.setdefault("default_motd", {"online": DEFAULT})
    return await start_proxy(nursery, proxy_config(up, down, *extra, **changes))


# --- mcstatus -------------------------------------------------------------------------------------------


async def test_mcstatus_java_server_status_and_ping(
    nursery: trio.Nursery, minecraft: MinecraftServer
) -> None:
    proxy = await start_routes(nursery, minecraft)
    direct = await in_thread(lambda: JavaServer("127.0.0.1", minecraft.port, CLIENT_TIMEOUT).status(tries=1))
    status = await in_thread(lambda: JavaServer("127.0.0.1", proxy.port, CLIENT_TIMEOUT).status(tries=1))
    assert status.raw == direct.raw  # exactly what the server says
    assert status.motd.to_plain() == BACKEND_MOTD
    assert (status.players.online, status.players.max) == (0, BACKEND_MAX)
    assert (status.version.name, status.version.protocol) == (BACKEND_VERSION, 765)
    # JavaServer.ping() sends a ping with no status request first; the proxy answers it itself.
    latency = await in_thread(lambda: JavaServer("127.0.0.1", proxy.port, CLIENT_TIMEOUT).ping(tries=1))
    assert latency >= 0


@pytest.mark.parametrize("version", [47, 765, 769])
async def test_mcstatus_with_a_routed_domain(
    nursery: trio.Nursery, minecraft: MinecraftServer, version: int
) -> None:
    proxy = await start_routes(nursery, minecraft)
    status, latency = await in_thread(lambda: mcstatus_status(proxy.port, "Up.E2E.test", version))
    assert status.motd.to_plain() == BACKEND_MOTD
    assert (status.players.online, status.players.max) == (0, BACKEND_MAX)
    assert status.version.protocol == 765  # the server's own answer, relayed
    assert latency >= 0


def test_mcstatus_legacy_server_works_against_the_server_directly(minecraft: MinecraftServer) -> None:
    """The control for the test below: the client and the server agree when nothing is in between."""
    status = LegacyServer("127.0.0.1", minecraft.port, CLIENT_TIMEOUT).status(tries=1)
    assert status.motd.to_plain() == BACKEND_MOTD
    assert (status.players.online, status.players.max) == (0, BACKEND_MAX)


async def test_mcstatus_legacy_server_through_the_proxy(
    nursery: trio.Nursery, minecraft: MinecraftServer
) -> None:
    proxy = await start_routes(nursery, minecraft, handshake_timeout=2.0)

    def legacy() -> LegacyStatusResponse:
        return LegacyServer("127.0.0.1", proxy.port, CLIENT_TIMEOUT).status(tries=1)

    status = await in_thread(legacy)
    # No host in this form: the proxy's default MOTD.
    assert status.motd.to_plain() == "No server here"


# --- minecraft-protocol's ping() ------------------------------------------------------------------------


async def test_minecraft_protocol_ping_with_a_routed_domain(
    nursery: trio.Nursery, node: str, minecraft: MinecraftServer
) -> None:
    proxy = await start_routes(nursery, minecraft)
    direct = ping_status(await run_mc_ping(node, port=minecraft.port, host="up.e2e.test"))
    through = ping_status(await run_mc_ping(node, port=proxy.port, host="up.e2e.test"))
    assert through == direct
    assert through["description"] == {"text": BACKEND_MOTD}


async def test_minecraft_protocol_ping_unknown_domain(
    nursery: trio.Nursery, node: str, minecraft: MinecraftServer
) -> None:
    proxy = await start_routes(nursery, minecraft)
    status = ping_status(await run_mc_ping(node, port=proxy.port, host="typo.e2e.test", version="1.21.4"))
    assert status == {
        "version": {"name": "infrarust", "protocol": 769},
        "players": {"max": 1, "online": 0},
        "description": {"text": "§eNo server here"},
    }


async def test_unknown_domain_is_closed_under_drop(
    nursery: trio.Nursery, node: str, minecraft: MinecraftServer
) -> None:
    proxy = await start_routes(nursery, minecraft, unknown_domain_behavior=UnknownDomainBehavior.DROP)
    run = await run_mc_ping(node, port=proxy.port, host="typo.e2e.test")
    assert run.returncode != 0, run.describe()
    assert "closed the connection without answering" in run.event("error")["message"], run.describe()
    with pytest.raises(OSError):
        await in_thread(lambda: mcstatus_status(proxy.port, "typo.e2e.test", 765))
    # The routed domain is still answered.
    assert ping_status(await run_mc_ping(node, port=proxy.port, host="up.e2e.test"))["description"] == {
        "text": BACKEND_MOTD
    }


# --- a backend that stops ------------------------------------------------------------------------------


async def test_stopped_backend_shows_motd_unreachable_with_each_clients_protocol(
    nursery: trio.Nursery, node: str, doomed_minecraft: MinecraftServer
) -> None:
    lobby = server(
        "lobby",
        ["lobby.e2e.test"],
        [Address("127.0.0.1", doomed_minecraft.port)],
        motd={"unreachable": UNREACHABLE},
    )
    proxy = await start_proxy(nursery, proxy_config(lobby, status_cache=StatusCache(ttl=0.0)))
    up = ping_status(await run_mc_ping(node, port=proxy.port, host="lobby.e2e.test"))
    assert up["description"] == {"text": BACKEND_MOTD}

    assert await in_thread(doomed_minecraft.stop) == 0

    for version, protocol in [("1.8.9", 47), ("1.21.4", 769)]:
        status = ping_status(await run_mc_ping(node, port=proxy.port, host="lobby.e2e.test", version=version))
        assert status == {
            "version": {"name": "Maintenance", "protocol": protocol},
            "players": {"max": 100, "online": 0},
            "description": {"text": "§cLobby is down"},
        }
    for protocol in (5, 340):
        answer, _ = await in_thread(partial(mcstatus_status, proxy.port, "lobby.e2e.test", protocol))
        assert answer.motd.to_plain() == "Lobby is down"
        assert (answer.version.name, answer.version.protocol) == ("Maintenance", protocol)
        assert (answer.players.online, answer.players.max) == (0, 100)


# --- every kind of client, in every backend state ------------------------------------------------------

STATES = {"up": "up.e2e.test", "down": "down.e2e.test", "unknown": "typo.e2e.test"}


@pytest.mark.parametrize("state", list(STATES))
async def test_modern_client_in_each_state(
    nursery: trio.Nursery, minecraft: MinecraftServer, state: str
) -> None:
    proxy = await start_routes(nursery, minecraft)
    status, _ = await in_thread(lambda: mcstatus_status(proxy.port, STATES[state], 340))
    shown = (status.motd.to_plain(), status.players.online, status.players.max, status.version.protocol)
    assert (
        shown
        == {
            "up": (BACKEND_MOTD, 0, BACKEND_MAX, 765),
            "down": ("Lobby is down", 0, 100, 340),
            "unknown": ("No server here", 0, 1, 340),
        }[state]
    )


@pytest.mark.parametrize("state", list(STATES))
async def test_1_6_client_in_each_state(
    nursery: trio.Nursery, minecraft: MinecraftServer, state: str
) -> None:
    proxy = await start_routes(nursery, minecraft)
    ping = encode_legacy_ping(LegacyPingKind.V1_6, 78, STATES[state], 25565)
    assert (
        legacy_answer(await raw_legacy_ping(proxy.port, ping))
        == {
            "up": LegacyStatus(BACKEND_MOTD, 0, BACKEND_MAX, 765, BACKEND_VERSION),
            "down": LegacyStatus("§cLobby is down", 0, 100, 78, "Maintenance"),
            "unknown": LegacyStatus("§eNo server here", 0, 1, 78, "infrarust"),
        }[state]
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (LegacyPingKind.V1_4, LegacyStatus("No server here", 0, 1, 61, "infrarust")),
        (LegacyPingKind.BETA, LegacyStatus("No server here", 0, 1, None, None)),
    ],
    ids=["1.4-1.5", "beta"],
)
async def test_hostless_legacy_clients_get_the_default_motd_whatever_the_backends(
    nursery: trio.Nursery, minecraft: MinecraftServer, kind: LegacyPingKind, expected: LegacyStatus
) -> None:
    # These forms carry no host, so nothing can be routed: not even a catch-all route applies.
    catch_all = server("all", ["*"], [Address("127.0.0.1", minecraft.port)])
    plain = Motd(text="No server here", max_players=1)  # colour codes: see test_serverlist's Beta tests
    proxy = await start_routes(nursery, minecraft, catch_all, default_motd={"online": plain})
    assert legacy_answer(await raw_legacy_ping(proxy.port, encode_legacy_ping(kind))) == expected
