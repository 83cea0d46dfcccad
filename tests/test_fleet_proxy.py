"""A fleet of real proxies on a real redis-server, through the whole pipeline: bans, per-IP budgets,
``max_players`` and status counts shared by two instances; a SIGKILLed instance leaving the count within
the TTL; logins through Redis faults (stopped, frozen, restarted empty)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from _redis_helpers import RedisServer
from helpers import (
    FakeStatusServer,
    ask_status,
    handshake,
    login_start,
    proxy_config,
    server,
    start_fake_status_server,
    start_proxy,
    status_json,
)

import infrarust
from infrarust.admission import FULL_MESSAGE
from infrarust.bans import BanEntry
from infrarust.cluster import RedisClient
from infrarust.config import Ban, Cluster, RateLimit
from infrarust.protocol import PacketReader, parse_status_response

TIMEOUT = 0.25
HEARTBEAT = 0.3
REPO = Path(__file__).resolve().parent.parent


def cluster(redis: RedisServer, instance_id: str) -> Cluster:
    return Cluster(redis.url(), instance_id=instance_id, timeout=TIMEOUT, heartbeat=HEARTBEAT)


async def start_instance(
    nursery: trio.Nursery,
    redis: RedisServer,
    instance_id: str,
    backend: FakeStatusServer,
    *,
    max_players: int = 0,
    rate_limit: RateLimit | None = None,
) -> infrarust.Proxy:
    lobby = server("lobby", ["lobby.test"], [backend.address], max_players=max_players)
    config = proxy_config(lobby, cluster=cluster(redis, instance_id))
    if rate_limit is not None:
        config = proxy_config(lobby, cluster=cluster(redis, instance_id), rate_limit=rate_limit)
    return await start_proxy(nursery, config)


class Login:
    """A login through a proxy: admitted (the backend's first packet came back) or refused (the text)."""

    def __init__(self, stream: trio.SocketStream, admitted: bool, text: str | None) -> None:
        self.stream = stream
        self.admitted = admitted
        self.text = text

    async def close(self) -> None:
        await self.stream.aclose()


async def login(port: int, name: str = "Steve") -> Login:
    """Log in and read the first packet: the backend's (a FakeStatusServer answers with its JSON) when
    admitted, the proxy's disconnect when refused (its reason text)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(handshake("lobby.test") + login_start(name))
    reader = PacketReader()
    with trio.fail_after(5):
        while (packet := reader.next_packet()) is None:
            data = await stream.receive_some(65536)
            assert data, "closed before any packet"
            reader.feed(data)
    text = parse_status_response(packet)  # both are one string field: status JSON, or a chat component
    document = json.loads(text)
    if "version" in document:
        return Login(stream, True, None)
    await stream.aclose()
    return Login(stream, False, document.get("text", text))


async def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
    return trio.current_time() - start


def ip_ban(ip: str) -> BanEntry:
    return BanEntry(ip=ip, reason="griefing", created_at=float(int(time.time())), source="test")


async def test_a_ban_on_a_refuses_the_player_on_b_within_a_second(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    backend = await start_fake_status_server(nursery)
    a = await start_instance(nursery, redis_server, "a", backend)
    b = await start_instance(nursery, redis_server, "b", backend)
    before = await login(b.port)
    assert before.admitted
    await before.close()
    assert a.scaling.fleet is not None
    start = trio.current_time()
    await a.scaling.fleet.ban(ip_ban("127.0.0.1"))
    while True:
        attempt = await login(b.port)
        if not attempt.admitted:
            break
        await attempt.close()
        assert trio.current_time() - start < 1.0, "B still admits the player a second after the ban"
        await trio.sleep(0.02)
    assert trio.current_time() - start < 1.0
    assert attempt.text is not None and "griefing" in attempt.text


async def test_an_embedders_ban_and_unban_hold_fleet_wide(
    nursery: trio.Nursery, redis_server: RedisServer, tmp_path: Path
) -> None:
    backend = await start_fake_status_server(nursery)
    lobby = server("lobby", ["lobby.test"], [backend.address])
    a, b = [
        await start_proxy(
            nursery,
            proxy_config(
                lobby, cluster=cluster(redis_server, name), ban=Ban(file=str(tmp_path / f"{name}.json"))
            ),
        )
        for name in ("a", "b")
    ]
    await a.ban_player("Alex", reason="spamming")  # the embedding API, on instance A
    await wait_for(lambda: b.scaling.fleet is not None and bool(b.scaling.fleet.is_banned(None, "alex")), 1.0)
    refused = await login(b.port, "Alex")
    assert not refused.admitted and refused.text is not None and "spamming" in refused.text
    lifted = await b.unban_player("ALEX")  # B never had it in its own file: the fleet's copy is lifted
    assert [entry.name for entry in lifted] == ["Alex"]
    await wait_for(
        lambda: a.scaling.fleet is not None and not a.scaling.fleet.is_banned(None, "alex", None), 1.0
    )
    admitted = await login(a.port, "Alex")
    assert admitted.admitted
    await admitted.close()


async def test_the_per_ip_budget_is_the_fleets(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    backend = await start_fake_status_server(nursery)
    limits = RateLimit(max_connections=3, window=30.0, status_max=0)
    a = await start_instance(nursery, redis_server, "a", backend, rate_limit=limits)
    b = await start_instance(nursery, redis_server, "b", backend, rate_limit=limits)
    outcomes = []
    for port in (a.port, b.port, a.port, b.port, a.port):  # alternating: each sees at most 3 of 5
        attempt = await login(port)
        outcomes.append(attempt.admitted)
        if attempt.admitted:
            await attempt.close()
    assert outcomes == [True, True, True, False, False]


async def test_max_players_and_the_status_count_hold_across_both(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    # B's backend claims 7 players of its own: B's status shows the fleet's count instead.
    backend_a = await start_fake_status_server(nursery, status_json(online=0))
    backend_b = await start_fake_status_server(nursery, status_json(online=7))
    a = await start_instance(nursery, redis_server, "a", backend_a, max_players=2)
    b = await start_instance(nursery, redis_server, "b", backend_b, max_players=2)
    first = await login(a.port, "One")
    second = await login(a.port, "Two")
    assert first.admitted and second.admitted
    refused = await login(b.port, "Three")
    assert not refused.admitted and refused.text == FULL_MESSAGE
    assert not (await login(a.port, "Four")).admitted

    async def online_on_b() -> int:
        answer = await ask_status(b.port, "lobby.test")
        count: int = answer.json["players"]["online"]
        return count

    with trio.fail_after(3):
        while await online_on_b() != 2:
            await trio.sleep(0.05)
    await first.close()
    # The slot freed on A is B's to take once A's count reached Redis (a push within moments).
    with trio.fail_after(3):
        while True:
            attempt = await login(b.port, "Five")
            if attempt.admitted:
                break
            await trio.sleep(0.05)
    assert b.players_on("lobby") == 1 and a.players_on("lobby") == 1
    await attempt.close()
    await second.close()
    with trio.fail_after(3):
        while await online_on_b() != 0:
            await trio.sleep(0.05)


def _instance_config(folder: Path, redis: RedisServer, backend: FakeStatusServer) -> Path:
    (folder / "servers").mkdir()
    (folder / "servers" / "lobby.toml").write_text(
        f'domains = ["lobby.test"]\naddresses = ["127.0.0.1:{backend.port}"]\n'
    )
    config = folder / "infrarust.toml"
    config.write_text(
        'bind = "127.0.0.1:0"\nservers_dir = "servers"\n'
        "[rate_limit]\nmax_connections = 0\nstatus_max = 0\n"
        f'[cluster]\nredis = "redis://127.0.0.1:{redis.port}/0"\ninstance_id = "killed"\n'
        f'timeout = "250ms"\nheartbeat = "{int(HEARTBEAT * 1000)}ms"\n'
    )
    return config


async def test_a_killed_instance_leaves_the_count_within_the_ttl(
    nursery: trio.Nursery, redis_server: RedisServer, tmp_path: Path
) -> None:
    backend = await start_fake_status_server(nursery, status_json(online=0))
    b = await start_instance(nursery, redis_server, "b", backend)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [
        sys.executable,
        "-m",
        "infrarust",
        "run",
        "-c",
        str(_instance_config(tmp_path, redis_server, backend)),
    ]
    proc = subprocess.Popen(  # noqa: ASYNC220 - a plain child, SIGKILLed by PID below
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stderr is not None
        port = 0
        with trio.fail_after(20):
            while not port:
                line = (await trio.to_thread.run_sync(proc.stderr.readline)).decode()
                assert line, "the instance exited before listening"
                found = re.search(r"listening on \S+:(\d+)", line)
                if found:
                    port = int(found[1])
        players = [await login(port, f"P{number}") for number in range(3)]
        assert all(player.admitted for player in players)

        async def online_on_b() -> int:
            count: int = (await ask_status(b.port, "lobby.test")).json["players"]["online"]
            return count

        with trio.fail_after(3):
            while await online_on_b() != 3:
                await trio.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = trio.current_time()
        proc.wait(5)
        with trio.fail_after(HEARTBEAT * 3 + HEARTBEAT + 1.0):  # the TTL, B's next heartbeat, slack
            while await online_on_b() != 0:
                await trio.sleep(0.05)
        assert trio.current_time() - killed_at >= HEARTBEAT  # it did not leave before its TTL ran out
        for player in players:
            await player.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def test_logins_go_on_through_every_redis_fault(
    nursery: trio.Nursery, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust.cluster")
    backend = await start_fake_status_server(nursery)
    # A budget and a player limit: every login asks Redis twice.
    limits = RateLimit(max_connections=100, window=30.0, status_max=0)
    a = await start_instance(nursery, redis_server, "a", backend, max_players=50, rate_limit=limits)
    fleet = a.scaling.fleet
    assert fleet is not None and not fleet.degraded
    await fleet.ban(ip_ban("203.0.113.9"))

    def degraded_lines() -> int:
        return len([r for r in caplog.records if r.getMessage().startswith("cluster degraded")])

    # Frozen: every call waits at most its deadline, the first one degrades, the rest are local at once.
    redis_server.freeze()
    try:
        took = []
        for number in range(5):
            start = trio.current_time()
            attempt = await login(a.port, f"F{number}")
            took.append(trio.current_time() - start)
            assert attempt.admitted
            await attempt.close()
        assert max(took) < TIMEOUT + 0.5, took
        assert degraded_lines() == 1
    finally:
        redis_server.thaw()
    await wait_for(lambda: not fleet.degraded, timeout=3.0)

    # Stopped: logins keep working on local state; one more `cluster degraded` line for the new outage.
    redis_server.stop()
    for number in range(5):
        attempt = await login(a.port, f"S{number}")
        assert attempt.admitted
        await attempt.close()
    await trio.sleep(1.0)  # background probes fail quietly meanwhile
    assert degraded_lines() == 2
    metrics = a.metrics.render()
    assert "infrarust_cluster_degraded 1.0" in metrics
    assert "infrarust_cluster_degraded_events_total 2.0" in metrics

    # Restarted empty: the bans this instance knows go back in.
    redis_server.start()
    await wait_for(lambda: not fleet.degraded, timeout=3.0)
    client = RedisClient(redis_server.url(), 1.0)
    stored = await client.execute("HGETALL", "infrarust:bans")
    assert stored[0::2] == [b"ip:203.0.113.9"]
    assert any(r.getMessage().startswith("cluster refilled") for r in caplog.records)
