"""Two fleet instances on a real redis-server: shared bans, budgets and player counts; a killed instance
leaving the counts within the TTL; and Redis faults (stopped, frozen, restarted empty)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
from _redis_helpers import RedisServer

from infrarust.balance import Balancers
from infrarust.bans import BanEntry
from infrarust.cluster import Fleet, FleetAdmin, RedisClient, ban_key
from infrarust.config import Address, Cluster, RateLimit, ServerConfig

TIMEOUT = 0.25
HEARTBEAT = 0.3
LIMITS = RateLimit(max_connections=3, window=10.0, status_max=5, status_window=10.0)
BACKEND = Address("127.0.0.1", 25566)


def settings(redis_server: RedisServer, instance_id: str) -> Cluster:
    return Cluster(redis_server.url(), instance_id=instance_id, timeout=TIMEOUT, heartbeat=HEARTBEAT)


async def start_fleet(
    nursery: trio.Nursery, redis_server: RedisServer, instance_id: str, bans: tuple[BanEntry, ...] = ()
) -> Fleet:
    fleet = Fleet(settings(redis_server, instance_id), LIMITS, bans=bans)
    await nursery.start(fleet.run)
    return fleet


@pytest.fixture
async def pair(nursery: trio.Nursery, redis_server: RedisServer) -> AsyncIterator[tuple[Fleet, Fleet]]:
    a = await start_fleet(nursery, redis_server, "a")
    b = await start_fleet(nursery, redis_server, "b")
    assert not a.degraded and not b.degraded
    yield a, b


async def wait_for(predicate: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``predicate`` held; fails after ``timeout``."""
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)
    return trio.current_time() - start


def ip_ban(ip: str, reason: str = "spam") -> BanEntry:
    return BanEntry(ip=ip, reason=reason, created_at=float(int(time.time())), source="test")


async def test_a_ban_on_one_instance_holds_on_the_other_within_a_second(pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    assert b.is_banned("203.0.113.9") is None
    await a.ban(ip_ban("203.0.113.0/24"))
    assert a.is_banned("203.0.113.9") is not None  # at once where it was made
    took = await wait_for(lambda: b.is_banned("203.0.113.9") is not None, timeout=1.0)
    entry = b.is_banned("203.0.113.9")
    assert entry is not None and entry.reason == "spam" and entry.ip == "203.0.113.0/24"
    player = BanEntry(name="Griefer", reason="griefing", created_at=1.0, expires_at=4e9, source="test")
    await b.ban(player)
    await wait_for(lambda: a.is_banned("198.51.100.1", "griefer") is not None, timeout=1.0)
    await b.unban(ip_ban("203.0.113.0/24"))
    await wait_for(lambda: a.is_banned("203.0.113.9") is None, timeout=1.0)
    assert [entry.name for entry in a.export_bans()] == ["Griefer"]
    print(f"ban seen on the other instance after {took * 1000:.1f} ms")


async def test_the_login_budget_is_shared(pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    answers = [
        await a.allow_login("192.0.2.7"),
        await b.allow_login("192.0.2.7"),
        await a.allow_login("192.0.2.7"),
    ]
    assert answers == [True, True, True]
    assert not await b.allow_login("192.0.2.7")  # the 4th, whichever instance gets it
    assert not await a.allow_login("192.0.2.7")
    assert await b.allow_login("192.0.2.8")  # another address has its own budget
    statuses = [await (a if n % 2 else b).allow_status("192.0.2.7") for n in range(6)]
    assert statuses == [True] * 5 + [False]


async def test_the_login_budget_window_expires(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    fleet = Fleet(settings(redis_server, "a"), RateLimit(max_connections=1, window=0.3))
    await nursery.start(fleet.run)
    assert await fleet.allow_login("192.0.2.1")
    assert not await fleet.allow_login("192.0.2.1")
    await trio.sleep(0.35)
    assert await fleet.allow_login("192.0.2.1")


async def test_max_players_holds_across_instances(pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    assert await a.reserve("lobby", 2)
    a.session_started("lobby", BACKEND)
    assert await b.reserve("lobby", 2)
    assert not await a.reserve("lobby", 2)
    assert not await b.reserve("lobby", 2)
    assert await b.reserve("survival", 2)  # another server has its own count
    a.session_ended("lobby", BACKEND)
    # The freed place reaches Redis in the background (coalesced for 50 ms), then B may fill it.
    start = trio.current_time()
    with trio.fail_after(1.0):
        while not await b.reserve("lobby", 2):
            await trio.sleep(0.01)
    assert trio.current_time() - start < 0.5
    assert not await a.reserve("lobby", 2)
    await a.flush()
    await b.flush()
    assert a.player_count("lobby") == 2 and b.player_count("lobby") == 2  # the fleet's total, both sides


async def test_status_counts_include_the_other_instances_players(pair: tuple[Fleet, Fleet]) -> None:
    a, b = pair
    for _ in range(3):
        assert await a.reserve("lobby", 0)
        a.session_started("lobby", BACKEND)
    assert await b.reserve("lobby", 0)
    took = await wait_for(lambda: b.player_count("lobby") == 4 and a.player_count("lobby") == 4, timeout=1.0)
    assert took <= HEARTBEAT + 0.2
    assert b.remote_sessions("lobby", BACKEND) == 3
    assert a.remote_sessions("lobby", BACKEND) == 0


async def test_a_killed_instance_leaves_the_count_within_the_ttl(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    script = Path(__file__).with_name("_fleet_instance.py")
    argv = [sys.executable, str(script), str(redis_server.port), "crashing", str(HEARTBEAT), "5"]
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        output = b""
        with trio.fail_after(10):
            while b"ready\n" not in output:
                data = await proc.stdout.receive_some(1024)
                assert data, f"the instance exited: {output!r}"
                output += data
        b = await start_fleet(nursery, redis_server, "b")
        await wait_for(lambda: b.player_count("lobby") == 5, timeout=2.0)
        proc.kill()  # SIGKILL, by its PID: no clean leave, the entry has to expire
        killed_at = trio.current_time()
        await wait_for(lambda: b.player_count("lobby") == 0, timeout=3 * HEARTBEAT + HEARTBEAT + 0.5)
        gone_after = trio.current_time() - killed_at
        # Within the TTL (three heartbeats) plus the heartbeat at which B reads the counts.
        assert gone_after <= 3 * HEARTBEAT + HEARTBEAT + 0.3, gone_after
        print(f"killed instance's players gone after {gone_after:.2f}s (ttl {3 * HEARTBEAT:g}s)")
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.fail_after(10):
            await proc.wait()


async def test_a_clean_stop_leaves_the_count_at_once(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    b = await start_fleet(nursery, redis_server, "b")
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            a = await start_fleet(inner, redis_server, "a")
            assert await a.reserve("lobby", 0)
            await a.flush()
            await b.flush()
            assert b.player_count("lobby") == 1
            scope.cancel()
    await b.flush()
    assert b.player_count("lobby") == 0


async def test_redis_stopped_mid_test_then_restarted_empty(
    nursery: trio.Nursery, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust.cluster")
    a = await start_fleet(nursery, redis_server, "a")
    await a.ban(ip_ban("203.0.113.5"))
    assert await a.reserve("lobby", 2)

    redis_server.stop()
    # Logins keep working on local state: bans (last known), budgets, counts.
    start = trio.current_time()
    assert await a.allow_login("192.0.2.1")
    assert a.degraded
    for _ in range(2):
        assert await a.allow_login("192.0.2.1")
    assert not await a.allow_login("192.0.2.1")  # the local budget of 3 holds
    assert a.is_banned("203.0.113.5") is not None
    assert await a.reserve("lobby", 2)
    assert not await a.reserve("lobby", 2)  # the local count of 2 holds
    await a.ban(ip_ban("198.51.100.0/24", "made while Redis was away"))
    assert a.is_banned("198.51.100.20") is not None
    assert trio.current_time() - start < TIMEOUT  # refused connections fail fast; nothing waited
    await trio.sleep(1.0)  # the background probes fail quietly meanwhile
    degraded_lines = [r for r in caplog.records if r.getMessage().startswith("cluster degraded")]
    assert len(degraded_lines) == 1 and a.degraded_count == 1

    redis_server.start()  # empty: no persistence
    # Degraded mode ends before the heartbeat that precedes the "recovered" line: wait for both.
    await wait_for(
        lambda: (
            not a.degraded and any(r.getMessage().startswith("cluster recovered") for r in caplog.records)
        ),
        timeout=2.0,
    )
    client = RedisClient(redis_server.url(), 1.0)
    stored = await client.execute("HGETALL", "infrarust:bans")
    assert sorted(stored[0::2]) == [b"ip:198.51.100.0/24", b"ip:203.0.113.5"]
    # Its sessions are back in Redis for the others to count.
    b = await start_fleet(nursery, redis_server, "b")
    assert b.player_count("lobby") == 2
    assert b.is_banned("198.51.100.20") is not None


async def test_a_frozen_redis_never_holds_a_login_past_the_deadline(
    nursery: trio.Nursery, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust.cluster")
    a = await start_fleet(nursery, redis_server, "a")
    await a.ban(ip_ban("203.0.113.5"))
    redis_server.freeze()
    try:
        took = []
        for number in range(20):
            start = trio.current_time()
            allowed = await a.allow_login(f"192.0.2.{number}")
            banned = a.is_banned("203.0.113.5")
            reserved = await a.reserve("lobby", 100)
            took.append(trio.current_time() - start)
            assert allowed and banned is not None and reserved
        # The first call waits out its deadline and degrades; the rest answer locally at once.
        assert TIMEOUT <= took[0] < TIMEOUT + 0.1, took
        assert max(took[1:]) < 0.05, took
        await trio.sleep(1.0)
        assert len([r for r in caplog.records if r.getMessage().startswith("cluster degraded")]) == 1
    finally:
        redis_server.thaw()
    await wait_for(lambda: not a.degraded, timeout=2.0)
    await a.flush()
    assert a.player_count("lobby") == 20


async def test_bans_from_the_file_fill_an_empty_redis_and_redis_wins_after(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    a = await start_fleet(nursery, redis_server, "a", bans=(ip_ban("203.0.113.1"),))
    # A second instance whose own file disagrees takes the fleet's bans, not its file's.
    b = await start_fleet(nursery, redis_server, "b", bans=(ip_ban("203.0.113.2"),))
    assert [e.ip for e in b.export_bans()] == ["203.0.113.1"]
    assert b.is_banned("203.0.113.2") is None
    imported = [ip_ban(f"192.0.2.{n}", "imported") for n in range(5)]
    await b.import_bans(imported)
    await wait_for(lambda: len(a.export_bans()) == 6, timeout=1.0)
    assert {ban_key(e) for e in a.export_bans()} == {ban_key(e) for e in b.export_bans()}


async def test_commands_ban_export_import_and_list_instances(
    pair: tuple[Fleet, Fleet], redis_server: RedisServer
) -> None:
    a, b = pair
    admin = FleetAdmin(settings(redis_server, "unused"), timeout=1.0)
    await admin.ban(ip_ban("203.0.113.77", "from the command line"))
    await wait_for(lambda: a.is_banned("203.0.113.77") is not None, timeout=1.0)
    await wait_for(lambda: b.is_banned("203.0.113.77") is not None, timeout=1.0)
    assert await admin.import_bans([ip_ban(f"192.0.2.{n}") for n in range(3)]) == 3
    exported = await admin.bans()
    assert sorted(entry.ip or "" for entry in exported) == [
        "192.0.2.0",
        "192.0.2.1",
        "192.0.2.2",
        "203.0.113.77",
    ]
    await wait_for(lambda: len(b.export_bans()) == 4, timeout=1.0)
    await admin.unban(ip_ban("203.0.113.77"))
    await wait_for(lambda: a.is_banned("203.0.113.77") is None, timeout=1.0)

    assert await a.reserve("lobby", 0)
    a.session_started("lobby", BACKEND)
    lobby = ServerConfig(name="lobby", addresses=(BACKEND, Address("127.0.0.1", 25567)))
    balancers = Balancers([lobby])
    balancers.for_server(lobby).mark_down(Address("127.0.0.1", 25567), "refused")
    a.health_report = balancers.health_report
    await a.flush()
    views = await admin.instances()
    assert [view.instance_id for view in views] == ["a", "b"]
    assert views[0].sessions == {"lobby": 1} and views[0].address_sessions == {f"lobby|{BACKEND}": 1}
    assert views[1].sessions == {} and views[1].health == {}
    assert views[0].health == {
        "lobby": [
            {"address": str(BACKEND), "up": True, "sessions": 0, "latency_ms": None, "error": None},
            {
                "address": "127.0.0.1:25567",
                "up": False,
                "sessions": 0,
                "latency_ms": None,
                "error": "refused",
            },
        ]
    }
    assert views[0].pid == os.getpid() and 0 < views[0].expires_in <= 3 * HEARTBEAT + 0.001
    admin.close()


async def test_expired_bans_are_dropped_from_redis(nursery: trio.Nursery, redis_server: RedisServer) -> None:
    a = await start_fleet(nursery, redis_server, "a")
    now = float(int(time.time()))
    await a.ban(BanEntry(ip="192.0.2.50", reason="short", created_at=now - 10, expires_at=now - 1))
    await a.ban(ip_ban("192.0.2.51"))
    assert a.is_banned("192.0.2.50") is None  # expired: matches nobody even before the purge
    b = await start_fleet(nursery, redis_server, "b")  # its first sync drops the expired entry
    assert [entry.ip for entry in b.export_bans()] == ["192.0.2.51"]
    client = RedisClient(redis_server.url(), 1.0)
    assert (await client.execute("HGETALL", "infrarust:bans"))[0::2] == [b"ip:192.0.2.51"]
