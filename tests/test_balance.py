"""Load balancing over real loopback backends: the five strategies, connect failures, health checks, and
the aggregated server list.

Every "login" here is a real TCP connection to the address the balancer put first, carrying a login
handshake; the backends (``FakeStatusServer``) record the handshakes they receive, so the distributions
are counted where the connections landed, not inside the balancer.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from functools import partial

import attrs
import pytest
import trio
from helpers import FakeStatusServer, free_port, start_fake_status_server, status_json

from infrarust.backend import open_connection
from infrarust.balance import MAX_SAMPLE, Balancer, Balancers, CheckResult, aggregate_status
from infrarust.config import Address, HealthCheck, LoadBalance, ServerConfig
from infrarust.health import check_address, run_health_checks
from infrarust.protocol import Handshake, NextState, encode_packet, encode_string

LOGINS = 60
FAST_CHECKS = HealthCheck(interval=0.2, timeout=0.5, unhealthy_after=2, healthy_after=1)


def lobby(addresses: list[Address], strategy: LoadBalance, *, status_aggregate: bool = False) -> ServerConfig:
    return ServerConfig(
        name="lobby",
        addresses=tuple(addresses),
        domains=("lobby.example.com",),
        load_balance=strategy,
        health_check=FAST_CHECKS,
        status_aggregate=status_aggregate,
    )


async def login(balancer: Balancer, name: str) -> tuple[trio.SocketStream, Address]:
    """Connect to the first address the balancer gives and send a login handshake and login start."""
    order = balancer.order()
    assert order, "the balancer offered no address"
    address = order[0]
    stream = await open_connection(address)
    hello = Handshake(765, "lobby.example.com", 25565, NextState.LOGIN).encode()
    await stream.send_all(hello + encode_packet(0x00, encode_string(name) + bytes(16)))
    balancer.acquire(address)
    return stream, address


def logins_seen(backends: list[FakeStatusServer]) -> list[int]:
    return [sum(h.next_state == NextState.LOGIN for h in backend.handshakes) for backend in backends]


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@pytest.fixture
async def backends(nursery: trio.Nursery) -> AsyncIterator[list[FakeStatusServer]]:
    yield [await start_fake_status_server(nursery, status_json(f"backend {n}")) for n in range(3)]


async def run_logins(
    balancer: Balancer, backends: list[FakeStatusServer], *, hold: bool
) -> tuple[Counter[Address], list[trio.SocketStream]]:
    picked: Counter[Address] = Counter()
    held: list[trio.SocketStream] = []
    for number in range(LOGINS):
        stream, address = await login(balancer, f"player{number}")
        picked[address] += 1
        if hold:
            held.append(stream)
        else:
            balancer.release(address)
            await stream.aclose()
    await wait_for(lambda: sum(logins_seen(backends)) == LOGINS)
    assert logins_seen(backends) == [picked[backend.address] for backend in backends]
    return picked, held


async def test_failover_sends_every_login_to_the_first_address(backends: list[FakeStatusServer]) -> None:
    balancer = Balancer(lobby([b.address for b in backends], LoadBalance.FAILOVER))
    await run_logins(balancer, backends, hold=False)
    assert logins_seen(backends) == [LOGINS, 0, 0]


async def test_round_robin_is_exactly_even(backends: list[FakeStatusServer]) -> None:
    balancer = Balancer(lobby([b.address for b in backends], LoadBalance.ROUND_ROBIN))
    await run_logins(balancer, backends, hold=False)
    assert logins_seen(backends) == [20, 20, 20]


async def test_random_spreads_over_every_address(backends: list[FakeStatusServer]) -> None:
    balancer = Balancer(lobby([b.address for b in backends], LoadBalance.RANDOM), rng=random.Random(11))
    await run_logins(balancer, backends, hold=False)
    # 60 draws of 1 in 3: each count within 10..30 is a > 99.5% event for a fair draw.
    assert all(10 <= seen <= 30 for seen in logins_seen(backends)), logins_seen(backends)


async def test_least_connections_fills_the_emptiest_address(backends: list[FakeStatusServer]) -> None:
    balancer = Balancer(lobby([b.address for b in backends], LoadBalance.LEAST_CONNECTIONS))
    first = backends[0].address
    for _ in range(10):  # ten sessions already on the first address
        balancer.acquire(first)
    picked: Counter[Address] = Counter()
    held = []
    for number in range(50):
        stream, address = await login(balancer, f"player{number}")
        picked[address] += 1
        held.append(stream)
    await wait_for(lambda: sum(logins_seen(backends)) == 50)
    # The other two catch up with the first, then all three fill evenly: 20 sessions each.
    assert logins_seen(backends) == [10, 20, 20]
    assert [balancer.sessions(b.address) for b in backends] == [20, 20, 20]
    for stream in held:
        await stream.aclose()


async def test_least_connections_counts_the_fleets_sessions(backends: list[FakeStatusServer]) -> None:
    remote = {backends[1].address: 30}
    server = lobby([b.address for b in backends], LoadBalance.LEAST_CONNECTIONS)
    balancer = Balancer(server, remote_sessions=lambda name, address: remote.get(address, 0))
    _, held = await run_logins(balancer, backends, hold=True)
    assert logins_seen(backends) == [30, 0, 30]
    for stream in held:
        await stream.aclose()


async def delaying_relay(nursery: trio.Nursery, target: Address, delay: float) -> Address:
    """A TCP relay to ``target`` that holds every chunk from the backend for ``delay`` seconds."""

    async def pump(source: trio.SocketStream, sink: trio.SocketStream, wait: float) -> None:
        try:
            while data := await source.receive_some(65536):
                await trio.sleep(wait)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def handle(client: trio.SocketStream) -> None:
        try:
            backend = await open_connection(target)
        except OSError:
            await client.aclose()
            return
        async with client, backend, trio.open_nursery() as inner:
            inner.start_soon(pump, client, backend, 0.0)
            inner.start_soon(pump, backend, client, delay)

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return Address("127.0.0.1", listeners[0].socket.getsockname()[1])


async def test_lowest_latency_avoids_the_delayed_backend(
    nursery: trio.Nursery, backends: list[FakeStatusServer]
) -> None:
    slow = await delaying_relay(nursery, backends[0].address, 0.08)
    addresses = [slow, backends[1].address, backends[2].address]
    balancers = Balancers([lobby(addresses, LoadBalance.LOWEST_LATENCY)])
    balancer = balancers.for_server(lobby(addresses, LoadBalance.LOWEST_LATENCY))
    await nursery.start(run_health_checks, balancers)
    await wait_for(lambda: all(state.checks >= 2 for state in balancer.snapshot()))
    latencies = {state.address: state.latency or 0.0 for state in balancer.snapshot()}
    assert latencies[slow] >= 0.08, latencies
    picked, _ = await run_logins(balancer, backends, hold=False)
    assert picked[slow] == 0
    assert logins_seen(backends)[0] == 0
    assert sum(logins_seen(backends)[1:]) == LOGINS


async def test_connect_failure_takes_the_address_out_at_once(backends: list[FakeStatusServer]) -> None:
    dead = Address("127.0.0.1", free_port())
    balancer = Balancer(lobby([dead, backends[0].address], LoadBalance.ROUND_ROBIN))
    balancer.monitored = True
    assert balancer.order()[0] == dead
    with pytest.raises(OSError):
        await open_connection(dead)
    balancer.mark_down(dead, "connection refused")
    assert not balancer.is_up(dead)
    assert [balancer.order() for _ in range(4)] == [[backends[0].address]] * 4
    # Every address down: nothing to try, so the login gets the server's disconnect_message.
    balancer.mark_down(backends[0].address, "refused")
    assert balancer.order() == []


async def test_health_checks_bring_a_marked_address_back(
    nursery: trio.Nursery, backends: list[FakeStatusServer]
) -> None:
    addresses = [b.address for b in backends[:2]]
    balancers = Balancers([lobby(addresses, LoadBalance.ROUND_ROBIN)])
    balancer = balancers.for_server(lobby(addresses, LoadBalance.ROUND_ROBIN))
    await nursery.start(run_health_checks, balancers)
    balancer.mark_down(addresses[0], "refused during a login")
    assert balancer.order() == [addresses[1]]
    # It answers the next check (interval 0.2 s, healthy_after 1), so it is back well within a second.
    await wait_for(lambda: balancer.is_up(addresses[0]), timeout=1.0)


async def test_a_single_address_is_never_left_out() -> None:
    only = Address("127.0.0.1", free_port())
    balancer = Balancer(lobby([only], LoadBalance.ROUND_ROBIN))
    balancer.mark_down(only, "refused")
    assert balancer.order() == [only]  # nothing would ever check it again, so keep trying it
    balancer.acquire(only)
    assert balancer.is_up(only)


async def test_check_counts_a_silent_listener_as_failed(nursery: trio.Nursery) -> None:
    from helpers import start_silent_server

    port = await start_silent_server(nursery)
    server = lobby([Address("127.0.0.1", port)], LoadBalance.FAILOVER)
    start = trio.current_time()
    result = await check_address(server, server.addresses[0])
    assert not result.ok
    assert result.error == "no status answer within 0.5s"
    assert 0.5 <= trio.current_time() - start < 1.0
    refused = await check_address(server, Address("127.0.0.1", free_port()))
    assert not refused.ok and refused.error is not None and "connect failed" in refused.error


async def test_check_sends_the_servers_handshake(backends: list[FakeStatusServer]) -> None:
    server = lobby([backends[0].address], LoadBalance.FAILOVER)
    result = await check_address(server, backends[0].address)
    assert result.ok and result.latency is not None and result.latency > 0
    assert result.status_json is not None and json.loads(result.status_json)["description"] == "backend 0"
    assert backends[0].handshakes[-1].host == "lobby.example.com"
    assert backends[0].handshakes[-1].next_state == NextState.STATUS


async def test_thresholds_decide_health_changes() -> None:
    address = Address("127.0.0.1", 1)
    server = lobby([address, Address("127.0.0.1", 2)], LoadBalance.FAILOVER)
    server = attrs.evolve(server, health_check=HealthCheck(unhealthy_after=3, healthy_after=2))
    balancer = Balancer(server)
    failed = CheckResult(False, error="timeout")
    answered = CheckResult(True, latency=0.01, status_json=status_json())
    for _ in range(2):
        balancer.record_check(address, failed)
    assert balancer.is_up(address)
    balancer.record_check(address, answered)  # a success resets the failure run
    for _ in range(2):
        balancer.record_check(address, failed)
    assert balancer.is_up(address)
    balancer.record_check(address, failed)
    assert not balancer.is_up(address)
    balancer.record_check(address, answered)
    assert not balancer.is_up(address)
    balancer.record_check(address, answered)
    assert balancer.is_up(address)


async def test_reload_keeps_health_and_sessions() -> None:
    a, b, c = (Address("127.0.0.1", port) for port in (1, 2, 3))
    balancers = Balancers([lobby([a, b], LoadBalance.ROUND_ROBIN)])
    balancer = balancers.for_server(lobby([a, b], LoadBalance.ROUND_ROBIN))
    balancer.acquire(a)
    balancer.mark_down(b, "refused")
    balancers.update([lobby([a, b, c], LoadBalance.LEAST_CONNECTIONS)])
    assert balancers.get("lobby") is balancer
    assert balancer.sessions(a) == 1 and not balancer.is_up(b) and balancer.is_up(c)
    assert balancer.strategy is LoadBalance.LEAST_CONNECTIONS
    balancers.update([])
    assert balancers.get("lobby") is None


def test_aggregate_sums_counts_and_caps_the_sample() -> None:
    first = json.loads(status_json("Lobby", online=3, max_players=20))
    first["players"]["sample"] = [{"name": f"a{n}", "id": f"a-{n}"} for n in range(3)]
    second = json.loads(status_json("Other", online=10, max_players=20))
    second["players"]["sample"] = [{"name": f"b{n}", "id": f"b-{n}"} for n in range(10)] + [
        {"name": "a0", "id": "a-0"}
    ]
    merged = json.loads(aggregate_status([json.dumps(first), json.dumps(second), "not json", "[1]"]))
    assert merged["description"] == "Lobby"  # the answering backend's text
    assert merged["players"]["online"] == 13
    assert merged["players"]["max"] == 40
    sample = merged["players"]["sample"]
    assert len(sample) == MAX_SAMPLE
    assert [entry["id"] for entry in sample] == [f"a-{n}" for n in range(3)] + [f"b-{n}" for n in range(9)]
    assert aggregate_status(["garbage", json.dumps(first)]) == "garbage"


async def test_status_aggregate_uses_every_healthy_backends_last_check(nursery: trio.Nursery) -> None:
    counts = [(4, 10), (6, 10), (100, 10)]
    fakes = [await start_fake_status_server(nursery, status_json(online=o, max_players=m)) for o, m in counts]
    addresses = [fake.address for fake in fakes]
    server = lobby(addresses, LoadBalance.ROUND_ROBIN, status_aggregate=True)
    balancers = Balancers([server])
    balancer = balancers.for_server(server)
    await nursery.start(run_health_checks, balancers)
    await wait_for(lambda: all(state.checks >= 1 for state in balancer.snapshot()))
    balancer.mark_down(addresses[2], "refused")  # a down backend's players are not counted
    answer = status_json("from the first", online=5, max_players=10)
    merged = json.loads(balancer.aggregate(answer, addresses[0]))
    assert merged["description"] == "from the first"
    assert merged["players"] == {"max": 20, "online": 11}
    plain = lobby(addresses, LoadBalance.ROUND_ROBIN)
    assert Balancer(plain).aggregate(answer, addresses[0]) == answer


async def test_the_checker_follows_reloads(nursery: trio.Nursery, backends: list[FakeStatusServer]) -> None:
    first = lobby([b.address for b in backends[:2]], LoadBalance.ROUND_ROBIN)
    balancers = Balancers([first])
    await nursery.start(run_health_checks, balancers)
    await wait_for(lambda: all(state.checks >= 1 for state in balancers.for_server(first).snapshot()))
    added = ServerConfig(
        name="survival",
        addresses=(backends[1].address, backends[2].address),
        domains=("survival.example.com",),
        health_check=FAST_CHECKS,
        load_balance=LoadBalance.LEAST_CONNECTIONS,
    )
    balancers.update([first, added])
    survival = balancers.for_server(added)
    # Picked up within the checker's half-second look-around, checked at once.
    await wait_for(lambda: all(state.checks >= 1 for state in survival.snapshot()), timeout=1.5)
    assert survival.monitored
    assert backends[2].handshakes[-1].host == "survival.example.com"
    balancers.update([added])  # "lobby" removed: its checks stop
    await trio.sleep(0.1)  # a check already under way may still land
    before = len(backends[0].handshakes)
    await trio.sleep(FAST_CHECKS.interval * 3)
    assert len(backends[0].handshakes) == before
