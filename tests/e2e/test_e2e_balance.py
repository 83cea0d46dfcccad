"""Health checks against real Minecraft servers (PrismarineJS minecraft-protocol), one of them frozen.

A SIGSTOPped server still has its listening socket, so the kernel completes TCP handshakes for it; only
a real status exchange tells it is gone. The checker must take it out within
``interval * unhealthy_after`` (plus one check's ``timeout``: the check that sees the second failure
has to time out first) and put it back after SIGCONT.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
from collections.abc import Iterator

import pytest
import trio

import infrarust
from infrarust.balance import Balancer, Balancers
from infrarust.config import Address, HealthCheck, LoadBalance, ProxyConfig, RateLimit, ServerConfig
from infrarust.events import SessionStarted
from infrarust.health import run_health_checks
from infrarust.protocol import Handshake, NextState, encode_packet, encode_string

from .harness import MinecraftServer, node_executable

STARTUP_TIMEOUT = 30.0
CHECKS = HealthCheck(interval=0.5, timeout=0.3, unhealthy_after=2, healthy_after=1)
SLACK = 0.4  # scheduling on a shared two-core machine
NO_LIMITS = RateLimit(max_connections=0, status_max=0)


@pytest.fixture(scope="module")
def three_servers() -> Iterator[list[MinecraftServer]]:
    node = node_executable()
    servers: list[MinecraftServer] = []
    try:
        for _ in range(3):
            servers.append(MinecraftServer(node, "1.20.4"))
        for server in servers:
            server.wait_listening(STARTUP_TIMEOUT)
        yield servers
    finally:
        for server in servers:
            if server.proc.poll() is None:
                os.kill(server.proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            server.stop()
            server.kill()


async def test_a_frozen_server_is_taken_out_and_comes_back(
    nursery: trio.Nursery, three_servers: list[MinecraftServer]
) -> None:
    addresses = [Address("127.0.0.1", server.port) for server in three_servers]
    lobby = ServerConfig(
        name="lobby",
        addresses=tuple(addresses),
        domains=("lobby.example.com",),
        load_balance=LoadBalance.ROUND_ROBIN,
        health_check=CHECKS,
    )
    balancers = Balancers([lobby])
    balancer = balancers.for_server(lobby)
    await nursery.start(run_health_checks, balancers)
    # A fresh Node server may miss the first 0.3 s timeout while it warms up; wait for answers.
    with trio.fail_after(10):
        while not all(state.successes >= 1 for state in balancer.snapshot()):
            await trio.sleep(0.02)
    for state in balancer.snapshot():
        assert state.last_status is not None
        assert json.loads(state.last_status)["description"]["text"] == "infrarust e2e"

    frozen = three_servers[1]
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        stopped_at = trio.current_time()
        limit = CHECKS.interval * CHECKS.unhealthy_after + CHECKS.timeout + SLACK
        with trio.fail_after(limit):
            while balancer.is_up(addresses[1]):
                await trio.sleep(0.01)
        taken_out_after = trio.current_time() - stopped_at
        assert [state.last_error for state in balancer.snapshot()][1] == "no status answer within 0.3s"
        # Round robin now alternates over the two that answer.
        picks = [balancer.order()[0] for _ in range(6)]
        assert addresses[1] not in picks
        assert sorted(picks.count(address) for address in (addresses[0], addresses[2])) == [3, 3]
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
    resumed_at = trio.current_time()
    with trio.fail_after(CHECKS.interval * CHECKS.healthy_after + CHECKS.timeout + SLACK):
        while not balancer.is_up(addresses[1]):
            await trio.sleep(0.01)
    back_after = trio.current_time() - resumed_at
    print(f"frozen backend out after {taken_out_after:.2f}s, back {back_after:.2f}s after SIGCONT")
    assert addresses[1] in balancer.order()


# --- the strategies through the real proxy: 60 logins each, to the three real servers -----------------

LOGINS = 60
PROXY_CHECKS = HealthCheck(interval=0.3, timeout=1.0, unhealthy_after=2, healthy_after=1)
# For the distributions: a busy machine must not take a healthy server out and skew the count.
STEADY_CHECKS = HealthCheck(interval=0.5, timeout=5.0, unhealthy_after=3, healthy_after=1)


async def _balanced_proxy(
    nursery: trio.Nursery,
    addresses: list[Address],
    strategy: LoadBalance,
    checks: HealthCheck = STEADY_CHECKS,
) -> tuple[infrarust.Proxy, Balancer]:
    lobby = ServerConfig(
        name="lobby",
        addresses=tuple(addresses),
        domains=("lobby.example.com",),
        load_balance=strategy,
        health_check=checks,
    )
    config = ProxyConfig(bind=Address("127.0.0.1", 0), servers=(lobby,), rate_limit=NO_LIMITS)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
    balancer = proxy.scaling.balancers.for_server(lobby)
    with trio.fail_after(15):  # the Node servers answer their first checks
        while not all(state.successes >= 1 for state in balancer.snapshot()):
            await trio.sleep(0.02)
    return proxy, balancer


async def _login(proxy: infrarust.Proxy, name: str) -> tuple[trio.SocketStream, str]:
    """A 1.20.4 login through the proxy; returns the open connection once the backend's first packet (its
    Set Compression) arrived, and the address the proxy relayed it to."""
    async with proxy.subscribe() as events:
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        handshake = Handshake(765, "lobby.example.com", 25565, NextState.LOGIN).encode()
        await stream.send_all(handshake + encode_packet(0x00, encode_string(name) + bytes(16)))
        with trio.fail_after(10):
            async for event in events:
                if isinstance(event, SessionStarted) and event.player.name == name:
                    address = event.player.backend_address
                    break
            assert await stream.receive_some(65536), "the backend sent nothing"
    assert address is not None
    return stream, address


async def test_round_robin_spreads_60_logins_exactly_evenly(
    nursery: trio.Nursery, three_servers: list[MinecraftServer]
) -> None:
    addresses = [Address("127.0.0.1", server.port) for server in three_servers]
    proxy, _ = await _balanced_proxy(nursery, addresses, LoadBalance.ROUND_ROBIN)
    picks = []
    for number in range(LOGINS):
        stream, address = await _login(proxy, f"rr{number}")
        picks.append(address)
        await stream.aclose()
    assert picks[:3] == [str(address) for address in addresses]
    assert {str(address): picks.count(str(address)) for address in addresses} == dict.fromkeys(
        map(str, addresses), LOGINS // 3
    )


async def test_least_connections_follows_the_held_sessions(
    nursery: trio.Nursery, three_servers: list[MinecraftServer]
) -> None:
    addresses = [Address("127.0.0.1", server.port) for server in three_servers]
    proxy, balancer = await _balanced_proxy(nursery, addresses, LoadBalance.LEAST_CONNECTIONS)
    held: list[tuple[trio.SocketStream, str]] = []
    for number in range(LOGINS // 2):  # 30 held sessions: 10 on each
        held.append(await _login(proxy, f"lc{number}"))
    assert [balancer.sessions(address) for address in addresses] == [10, 10, 10]
    first = str(addresses[0])
    for stream, address in held:  # the first server's players leave
        if address == first:
            await stream.aclose()
    with trio.fail_after(5):
        while balancer.sessions(addresses[0]):
            await trio.sleep(0.01)
    later = []
    for number in range(LOGINS // 2):
        stream, address = await _login(proxy, f"lc-late{number}")
        held.append((stream, address))
        later.append(address)
    assert later[:10] == [first] * 10  # the emptied server fills up first
    # 50 held: the other 20 spread by least load, ties in configuration order
    assert [balancer.sessions(address) for address in addresses] == [17, 17, 16]
    for stream, _ in held:
        with contextlib.suppress(trio.ClosedResourceError):
            await stream.aclose()


async def _delaying_relay(nursery: trio.Nursery, target: Address, delay: float) -> Address:
    """A TCP relay in front of ``target`` that holds every chunk ``delay`` seconds each way."""

    async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await source.receive_some(65536):
                await trio.sleep(delay)
                await sink.send_all(data)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await sink.send_eof()

    async def handle(client: trio.SocketStream) -> None:
        backend = await trio.open_tcp_stream(target.host, target.port)
        async with client, backend, trio.open_nursery() as inner:
            inner.start_soon(pump, client, backend)
            inner.start_soon(pump, backend, client)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return Address("127.0.0.1", listeners[0].socket.getsockname()[1])


async def test_lowest_latency_avoids_the_delayed_backend(
    nursery: trio.Nursery, three_servers: list[MinecraftServer]
) -> None:
    direct = [Address("127.0.0.1", server.port) for server in three_servers]
    slow = await _delaying_relay(nursery, direct[0], 0.15)
    addresses = [slow, direct[1], direct[2]]
    proxy, balancer = await _balanced_proxy(nursery, addresses, LoadBalance.LOWEST_LATENCY)
    latencies = {state.address: state.latency or 0.0 for state in balancer.snapshot()}
    assert all(latencies.values())
    assert latencies[slow] > max(latencies[direct[1]], latencies[direct[2]])
    picks = []
    for number in range(LOGINS):
        stream, address = await _login(proxy, f"ll{number}")
        picks.append(address)
        await stream.aclose()
    assert str(slow) not in picks
    assert len(picks) == LOGINS


async def test_a_frozen_backend_leaves_the_proxys_rotation_and_returns(
    nursery: trio.Nursery, three_servers: list[MinecraftServer]
) -> None:
    addresses = [Address("127.0.0.1", server.port) for server in three_servers]
    proxy, balancer = await _balanced_proxy(nursery, addresses, LoadBalance.ROUND_ROBIN, PROXY_CHECKS)
    frozen = three_servers[2]
    os.kill(frozen.proc.pid, signal.SIGSTOP)
    try:
        with trio.fail_after(PROXY_CHECKS.interval * PROXY_CHECKS.unhealthy_after + PROXY_CHECKS.timeout + 1):
            while balancer.is_up(addresses[2]):
                await trio.sleep(0.01)
        picks = []
        for number in range(6):
            stream, address = await _login(proxy, f"fz{number}")
            picks.append(address)
            await stream.aclose()
        assert sorted(picks) == sorted([str(addresses[0]), str(addresses[1])] * 3)
        metrics = proxy.metrics.render()
        assert f'infrarust_backend_up{{address="{addresses[2]}",server="lobby"}} 0.0' in metrics
    finally:
        os.kill(frozen.proc.pid, signal.SIGCONT)
    with trio.fail_after(PROXY_CHECKS.interval * PROXY_CHECKS.healthy_after + PROXY_CHECKS.timeout + 1):
        while not balancer.is_up(addresses[2]):
            await trio.sleep(0.01)
    picks = []
    for number in range(3):
        stream, address = await _login(proxy, f"back{number}")
        picks.append(address)
        await stream.aclose()
    assert str(addresses[2]) in picks
