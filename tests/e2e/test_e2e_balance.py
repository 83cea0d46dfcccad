"""Health checks against real Minecraft servers (PrismarineJS minecraft-protocol), one of them frozen.

A SIGSTOPped server still has its listening socket, so the kernel completes TCP handshakes for it; only
a real status exchange tells it is gone. The checker must take it out within
``interval * unhealthy_after`` (plus one check's ``timeout``: the check that sees the second failure
has to time out first) and put it back after SIGCONT.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest
import trio

from infrarust.balance import Balancers
from infrarust.config import Address, HealthCheck, LoadBalance, ServerConfig
from infrarust.health import run_health_checks

from .harness import MinecraftServer, node_executable

STARTUP_TIMEOUT = 30.0
CHECKS = HealthCheck(interval=0.5, timeout=0.3, unhealthy_after=2, healthy_after=1)
SLACK = 0.4  # scheduling on a shared two-core machine


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
