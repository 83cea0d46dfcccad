"""Steering an embedded proxy: pre-connect hooks, events, drain, and listeners the program opened."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import AsyncIterator
from functools import partial
from types import SimpleNamespace
from typing import cast

import attrs
import pytest
import trio
from helpers import (
    Backend,
    handshake,
    login_start,
    proxy_config,
    read_exactly,
    read_until_eof,
    server,
    start_proxy,
    start_recording_backend,
)

import infrarust
from infrarust.config import Address, RateLimit, ServerConfig
from infrarust.hooks import CommandHooks, Hooks, can_wait
from infrarust.protocol import Handshake, NextState, PacketReader, read_string

Events = list[infrarust.Event]


def disconnect_text(reply: bytes) -> str:
    reader = PacketReader()
    reader.feed(reply)
    packet = reader.next_packet()
    assert packet is not None and packet.packet_id == 0x00, reply
    text, _ = read_string(packet.body, 0)
    component = json.loads(text)
    return component["text"] if isinstance(component, dict) else str(component)


async def connect(proxy: infrarust.Proxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", proxy.port)


async def login(proxy: infrarust.Proxy, host: str, name: str = "Steve") -> trio.SocketStream:
    stream = await connect(proxy)
    await stream.send_all(handshake(host) + login_start(name))
    return stream


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


async def collect(proxy: infrarust.Proxy, into: Events, *, buffer: int = 4096) -> None:
    """Subscribe and append every event to ``into`` until cancelled."""
    async with proxy.subscribe(buffer=buffer) as events:
        async for event in events:
            into.append(event)


async def subscribed(nursery: trio.Nursery, proxy: infrarust.Proxy, **kwargs: int) -> Events:
    seen: Events = []
    nursery.start_soon(partial(collect, proxy, seen, **kwargs))
    await trio.sleep(0.01)  # the subscription is in place before the test connects
    return seen


# --- hooks ---------------------------------------------------------------------------------------------


async def test_a_deny_hook_refuses_the_login_with_its_message(
    nursery: trio.Nursery, backend: Backend
) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    seen: list[infrarust.PreConnect] = []

    async def deny(connection: infrarust.PreConnect) -> infrarust.Deny:
        seen.append(connection)
        return infrarust.Deny("Come back tomorrow")

    proxy.on_pre_connect(deny)
    stream = await login(proxy, "s.test", "Alex")
    assert disconnect_text(await read_until_eof(stream)) == "Come back tomorrow"
    assert backend.received == []  # never connected
    (connection,) = seen
    assert connection.name == "Alex" and connection.server is not None and connection.server.name == "s"
    assert connection.host == "s.test" and not connection.is_status and connection.client is not None


async def test_redirect_to_a_configured_server_and_to_one_built_in_code(nursery: trio.Nursery) -> None:
    lobby = await start_recording_backend(nursery)
    games = await start_recording_backend(nursery)
    elsewhere = await start_recording_backend(nursery)
    config = proxy_config(
        server("lobby", ["lobby.test"], [lobby.address]), server("games", ["games.test"], [games.address])
    )
    proxy = await start_proxy(nursery, config)
    built = ServerConfig(
        name="built",
        addresses=(elsewhere.address,),
        domain_rewrite=infrarust.config.DomainRewrite(infrarust.config.RewriteKind.EXPLICIT, "inner.test"),
    )

    async def route(connection: infrarust.PreConnect) -> infrarust.Redirect | None:
        if connection.name == "ToGames":
            return infrarust.Redirect("games")
        if connection.name == "ToCode":
            return infrarust.Redirect(built)
        return None

    proxy.on_pre_connect(route)
    clients = [await login(proxy, "lobby.test", name) for name in ("ToGames", "ToCode", "Stays")]
    await games.wait_for(0, 1)
    await elsewhere.wait_for(0, 1)
    await lobby.wait_for(0, 1)
    assert b"ToGames" in games.received[0] and b"lobby.test" in games.received[0]  # no rewrite asked
    assert b"ToCode" in elsewhere.received[0] and b"inner.test" in elsewhere.received[0]  # rewritten
    assert b"Stays" in lobby.received[0]
    await wait_until(lambda: {p.server.name for p in proxy.sessions} == {"lobby", "games", "built"})
    for stream in clients:
        await stream.aclose()


async def test_a_redirect_may_rescue_an_unknown_domain(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))

    async def fallback(connection: infrarust.PreConnect) -> infrarust.Redirect | None:
        return infrarust.Redirect("s") if connection.server is None else None

    proxy.on_pre_connect(fallback)
    await login(proxy, "typo.test")
    await backend.wait_for(0, 1)


async def test_failing_and_slow_hooks_count_as_none_and_order_holds(
    nursery: trio.Nursery, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    config = proxy_config(server("s", ["s.test"], [backend.address]), hook_timeout=0.2)
    proxy = await start_proxy(nursery, config)
    order: list[str] = []

    async def broken(connection: infrarust.PreConnect) -> None:
        order.append("broken")
        raise RuntimeError("bug in a hook")

    async def slow(connection: infrarust.PreConnect) -> infrarust.Deny:
        order.append("slow")
        await trio.sleep(10)
        return infrarust.Deny("never")

    async def last(connection: infrarust.PreConnect) -> None:
        order.append("last")

    proxy.on_pre_connect(broken)
    proxy.on_pre_connect(slow)
    handle = proxy.on_pre_connect(last)
    await login(proxy, "s.test")
    await backend.wait_for(0, 1)  # the player still gets in
    assert order == ["broken", "slow", "last"]
    assert "pre-connect hook failed" in caplog.text and "bug in a hook" in caplog.text
    assert "pre-connect hook timed out" in caplog.text
    handle.remove()
    handle.remove()  # idempotent
    order.clear()
    await login(proxy, "s.test", "Again")
    await backend.wait_for(1, 1)
    assert order == ["broken", "slow"]


async def test_the_first_deciding_hook_wins(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    ran: list[str] = []

    async def first(connection: infrarust.PreConnect) -> infrarust.Deny:
        ran.append("first")
        return infrarust.Deny("first says no")

    async def second(connection: infrarust.PreConnect) -> infrarust.Deny:  # pragma: no cover - never runs
        ran.append("second")
        return infrarust.Deny("second says no")

    proxy.on_pre_connect(first)
    proxy.on_pre_connect(second)
    assert disconnect_text(await read_until_eof(await login(proxy, "s.test"))) == "first says no"
    assert ran == ["first"]


async def test_status_pings_see_the_hook_and_a_deny_closes_them(
    nursery: trio.Nursery, backend: Backend
) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    seen: list[infrarust.PreConnect] = []

    async def deny_pings(connection: infrarust.PreConnect) -> infrarust.Deny | None:
        seen.append(connection)
        return infrarust.Deny("no") if connection.is_status else None

    proxy.on_pre_connect(deny_pings)
    stream = await connect(proxy)
    await stream.send_all(handshake("s.test", NextState.STATUS) + b"\x01\x00")
    assert await read_until_eof(stream) == b""  # closed without an answer
    assert seen and seen[0].is_status and seen[0].name is None
    assert backend.received == []


async def _returns_at_once(connection: infrarust.PreConnect) -> None:
    return None


async def _awaits(connection: infrarust.PreConnect) -> None:
    await trio.lowlevel.checkpoint()


async def _iterates(connection: infrarust.PreConnect) -> None:
    async for _ in _agen():
        pass


async def _enters(connection: infrarust.PreConnect) -> None:
    async with trio.open_nursery():
        pass


async def _comprehends(connection: infrarust.PreConnect) -> list[int]:
    return [x async for x in _agen()]


async def _agen() -> AsyncIterator[int]:
    yield 1


def _plain(connection: infrarust.PreConnect) -> None:
    return None


class _HookObject:
    async def method(self, connection: infrarust.PreConnect) -> None:
        return None

    async def waiting_method(self, connection: infrarust.PreConnect) -> None:
        await trio.lowlevel.checkpoint()

    async def __call__(self, connection: infrarust.PreConnect) -> None:
        return None


def test_only_an_async_def_with_nothing_to_await_is_known_never_to_wait() -> None:
    assert not can_wait(_returns_at_once)
    assert not can_wait(_HookObject().method)
    for waits in (_awaits, _iterates, _enters, _comprehends, _HookObject().waiting_method):
        assert can_wait(waits), waits
    # Whatever the proxy cannot read the code of gets the deadline: a plain function may return an
    # awaitable, an object's __call__ or a partial hides the function.
    for unknown in (_plain, _HookObject(), partial(_returns_at_once)):
        assert can_wait(unknown), unknown


async def test_a_hook_that_cannot_wait_runs_without_a_deadline_one_that_can_gets_one() -> None:
    deadlines: list[float] = []

    async def quick(connection: infrarust.PreConnect) -> None:
        deadlines.append(trio.current_effective_deadline())

    async def waiting(connection: infrarust.PreConnect) -> infrarust.Deny:
        deadlines.append(trio.current_effective_deadline())
        await trio.sleep(10)
        return infrarust.Deny("never")  # pragma: no cover - cut by the deadline

    hooks = Hooks()
    hooks.add(quick)
    hooks.add(waiting)
    hello = Handshake(767, "s.test", 25565, NextState.LOGIN)
    connection = infrarust.PreConnect(("127.0.0.1", 1), hello, None)
    started = trio.current_time()
    assert await hooks.decide(connection, 0.05) is None  # the waiting hook timed out: counts as None
    assert deadlines[0] == math.inf
    assert deadlines[1] == pytest.approx(started + 0.05, abs=0.01)


async def test_a_command_hook_that_cannot_wait_runs_without_a_deadline() -> None:
    deadlines: list[float] = []

    async def no_op_for_guests(player: infrarust.Player, command: str) -> infrarust.CancelCommand | None:
        deadlines.append(trio.current_effective_deadline())
        return infrarust.CancelCommand("no") if command.startswith("op ") else None

    hooks = CommandHooks()
    hooks.add(no_op_for_guests)
    player = cast(infrarust.Player, SimpleNamespace(name="Steve"))
    assert await hooks.decide(player, "op Steve", 1.0) == infrarust.CancelCommand("no")
    assert await hooks.decide(player, "help", 1.0) is None
    assert deadlines == [math.inf, math.inf]


# --- events --------------------------------------------------------------------------------------------


async def test_every_short_session_yields_one_start_and_one_end(nursery: trio.Nursery) -> None:
    backend = await start_recording_backend(nursery, echo=False)
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    seen = await subscribed(nursery, proxy)
    clients = 200

    async def one(index: int, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            stream = await login(proxy, "s.test", f"p{index}")
            await stream.send_eof()
            await read_until_eof(stream)
            await stream.aclose()

    limiter = trio.CapacityLimiter(50)
    async with trio.open_nursery() as inner:
        for index in range(clients):
            inner.start_soon(one, index, limiter)
    await wait_until(lambda: sum(isinstance(e, infrarust.SessionEnded) for e in seen) == clients, 20)
    started = [e.player for e in seen if isinstance(e, infrarust.SessionStarted)]
    ended = [e for e in seen if isinstance(e, infrarust.SessionEnded)]
    assert len(started) == clients and len({id(p) for p in started}) == clients
    assert {id(e.player) for e in ended} == {id(p) for p in started}
    for event in ended:
        assert event.result == event.player.result and event.player.result is not None
    # Each session's start comes before its end.
    position = {id(e): i for i, e in enumerate(seen)}
    for event in ended:
        start = next(e for e in seen if isinstance(e, infrarust.SessionStarted) and e.player is event.player)
        assert position[id(start)] < position[id(event)]
    assert not any(isinstance(e, infrarust.EventsDropped) for e in seen)


async def test_wait_ended_returns_the_result(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    stream = await login(proxy, "s.test")
    await wait_until(lambda: len(proxy.sessions) == 1)
    (player,) = proxy.sessions
    await stream.send_eof()
    await read_until_eof(stream)
    with trio.fail_after(5):
        result = await player.wait_ended()
    assert result is player.result and result.reason is infrarust.ForwardEndReason.CLIENT_CLOSED


async def test_each_refusal_kind_is_an_event(nursery: trio.Nursery, tmp_path: object) -> None:
    import pathlib

    assert isinstance(tmp_path, pathlib.Path)
    up = await start_recording_backend(nursery)
    down = Address("127.0.0.1", _free_port())
    config = proxy_config(
        server("s", ["s.test"], [up.address]),
        server("full", ["full.test"], [up.address], max_players=1),
        server(
            "walled",
            ["walled.test"],
            [up.address],
            ip_filter=infrarust.config.IpFilter(whitelist=("10.0.0.0/8",)),
        ),
        server("down", ["down.test"], [down]),
        rate_limit=RateLimit(max_connections=0, status_max=0),
        handshake_timeout=0.3,
        ban=infrarust.config.Ban(file=str(tmp_path / "bans.json")),
    )
    proxy = await start_proxy(nursery, config)
    seen = await subscribed(nursery, proxy)
    proxy.bans.ban_player("Banned", reason="testing")

    async def deny(connection: infrarust.PreConnect) -> infrarust.Deny | None:
        return infrarust.Deny("hook says no") if connection.name == "Denied" else None

    proxy.on_pre_connect(deny)
    holder = await login(proxy, "full.test", "Holder")
    await wait_until(lambda: len(proxy.sessions) == 1)
    for host, name in [
        ("s.test", "Banned"),
        ("full.test", "Second"),
        ("unknown.test", "Lost"),
        ("s.test", "Denied"),
        ("down.test", "Early"),
        ("walled.test", "Outsider"),
    ]:
        await read_until_eof(await login(proxy, host, name))
    garbage = await connect(proxy)
    await garbage.send_all(b"\x05\x05garbage")
    await read_until_eof(garbage)
    silent = await connect(proxy)
    await read_until_eof(silent)  # cut at handshake_timeout
    await wait_until(
        lambda: any(
            isinstance(e, infrarust.ConnectionRefused) and e.reason == "handshake_timeout" for e in seen
        )
    )
    reasons = {(e.reason, e.name) for e in seen if isinstance(e, infrarust.ConnectionRefused)}
    assert reasons >= {
        ("banned", "Banned"),
        ("full", "Second"),
        ("unknown_domain", "Lost"),
        ("denied", "Denied"),
        ("backend_unreachable", "Early"),
        ("ip_filtered", "Outsider"),
        ("bad_handshake", None),
        ("handshake_timeout", None),
    }
    denied = next(e for e in seen if isinstance(e, infrarust.ConnectionRefused) and e.reason == "denied")
    assert denied.message == "hook says no" and denied.server is not None and denied.server.name == "s"
    await holder.aclose()

    limited = await start_proxy(
        nursery, attrs.evolve(config, rate_limit=RateLimit(max_connections=1, status_max=0))
    )
    more = await subscribed(nursery, limited)
    await read_until_eof(await login(limited, "down.test", "One"))
    await read_until_eof(await login(limited, "down.test", "Two"))
    # The collector runs in its own task: it may see the event a moment after the client sees the close.
    await wait_until(
        lambda: (
            ("rate_limited", "Two")
            in {(e.reason, e.name) for e in more if isinstance(e, infrarust.ConnectionRefused)}
        )
    )


async def test_a_subscriber_that_never_reads_gets_events_dropped_and_slows_nothing(
    nursery: trio.Nursery,
) -> None:
    backend = await start_recording_backend(nursery, echo=False)
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    stalled = trio.Event()
    got: Events = []

    async def never_reads() -> None:
        async with proxy.subscribe(buffer=5) as events:
            await stalled.wait()  # does not read until the load is over
            async for event in events:
                got.append(event)

    nursery.start_soon(never_reads)
    await trio.sleep(0.01)
    clients = 100
    for index in range(clients):
        stream = await login(proxy, "s.test", f"p{index}")
        await stream.send_eof()
        await read_until_eof(stream)
        await stream.aclose()
    await wait_until(lambda: len(backend.received) == clients)  # every connection completed
    await wait_until(lambda: not proxy.sessions)
    stalled.set()
    await wait_until(lambda: any(isinstance(e, infrarust.EventsDropped) for e in got))
    assert len(got) == 6 and isinstance(got[5], infrarust.EventsDropped)
    assert got[5].count == 2 * clients - 5  # every start and end beyond the first five
    # After the drop notice, events flow again.
    await read_until_eof(await login(proxy, "unknown.test"))
    await wait_until(lambda: isinstance(got[-1], infrarust.ConnectionRefused))


async def test_reload_publishes_config_reloaded(nursery: trio.Nursery, backend: Backend) -> None:
    config = proxy_config(server("s", ["s.test"], [backend.address]))
    proxy = await start_proxy(nursery, config)
    seen = await subscribed(nursery, proxy)
    await proxy.reload(config)
    with pytest.raises(infrarust.ConfigError):
        await proxy.reload()  # built in code: nothing to read
    await wait_until(lambda: len(seen) == 2)
    assert seen[0] == infrarust.ConfigReloaded(True)
    assert isinstance(seen[1], infrarust.ConfigReloaded) and not seen[1].ok and seen[1].problems


# --- drain ---------------------------------------------------------------------------------------------


async def test_drain_closes_the_listener_lets_sessions_end_then_cuts_the_rest(nursery: trio.Nursery) -> None:
    backend = await start_recording_backend(nursery)
    config = proxy_config(server("s", ["s.test"], [backend.address]))
    done = trio.Event()
    proxy: infrarust.Proxy | None = None

    async def run_proxy(task_status: trio.TaskStatus[infrarust.Proxy]) -> None:
        await infrarust.serve(config, task_status=task_status)
        done.set()

    proxy = await nursery.start(run_proxy)
    polite = await login(proxy, "s.test", "Polite")
    stays = await login(proxy, "s.test", "Stays")
    await wait_until(lambda: len(proxy.sessions) == 2)
    players = {p.name: p for p in proxy.sessions}
    drained = trio.Event()

    async def drain() -> None:
        assert proxy is not None
        await proxy.drain(grace=2)
        drained.set()

    nursery.start_soon(drain)
    await wait_until(lambda: proxy.draining and not proxy.accepting)
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", proxy.port)  # refused at once
    await stays.send_all(b"still relaying")  # sessions keep moving data during the grace
    await polite.send_eof()  # ends by itself within the grace
    await read_until_eof(polite)
    await wait_until(lambda: players["Polite"].result is not None)
    assert players["Polite"].result is not None
    assert players["Polite"].result.reason is infrarust.ForwardEndReason.CLIENT_CLOSED
    assert not drained.is_set()
    with trio.fail_after(5):
        await drained.wait()
    result = players["Stays"].result
    assert result is not None and result.reason is infrarust.ForwardEndReason.SHUTDOWN
    echoed = await read_until_eof(stays)
    assert result.backend_to_client == len(echoed)  # what the client really received
    with trio.fail_after(2):
        await done.wait()  # serve() returns once drained


async def test_drain_counts_what_a_client_that_stopped_reading_received(nursery: trio.Nursery) -> None:
    flood = 64 * 1024 * 1024

    async def flooding_backend(stream: trio.SocketStream) -> None:
        chunk = b"x" * 65536
        with trio.move_on_after(20):
            try:
                await stream.receive_some(4096)
                for _ in range(flood // len(chunk)):
                    await stream.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    listeners = await nursery.start(partial(trio.serve_tcp, flooding_backend, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    config = proxy_config(server("s", ["s.test"], [Address("127.0.0.1", port)]))
    proxy = await start_proxy(nursery, config)
    raw = trio.socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    await raw.connect(("127.0.0.1", proxy.port))
    await raw.send(handshake("s.test") + login_start("Sleepy"))
    received = len(await raw.recv(10000))  # reads a little, then stops reading
    await wait_until(lambda: len(proxy.sessions) == 1)
    (player,) = proxy.sessions
    await wait_until(lambda: player.traffic.backend_to_client > 256 * 1024)  # the send queue is full
    await proxy.drain(grace=0.2)
    result = player.result
    assert result is not None and result.reason is infrarust.ForwardEndReason.SHUTDOWN
    assert result.backend_to_client < player.traffic.backend_to_client  # queued bytes not counted
    with trio.fail_after(10):
        while True:
            try:
                data = await raw.recv(1 << 20)
            except ConnectionResetError:
                break
            if not data:
                break
            received += len(data)
    raw.close()
    assert result.backend_to_client == received


async def test_a_login_arriving_during_a_drain_is_told_the_proxy_restarts(
    nursery: trio.Nursery, backend: Backend
) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    holder = await login(proxy, "s.test", "Holder")
    await wait_until(lambda: len(proxy.sessions) == 1)
    # Accepted before the drain (the listener hands a connection over once it has spoken: TCP_DEFER_ACCEPT),
    # its login start comes after the drain began.
    late = await connect(proxy)
    await late.send_all(handshake("s.test"))
    await wait_until(lambda: proxy.connections == 2)
    nursery.start_soon(proxy.drain, 3)
    await wait_until(lambda: proxy.draining)
    await late.send_all(login_start("Late"))
    assert "restarting" in disconnect_text(await read_until_eof(late))
    await holder.aclose()


# --- listeners -----------------------------------------------------------------------------------------


async def test_serve_on_listeners_the_program_opened(nursery: trio.Nursery, backend: Backend) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    config = proxy_config(server("s", ["s.test"], [backend.address]), bind=Address("127.0.0.1", 1))
    proxy = await nursery.start(partial(infrarust.serve, config, listeners=listeners))
    assert proxy.port == port
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(handshake("s.test") + login_start("Own"))
    await backend.wait_for(0, 1)


async def test_two_proxies_and_an_echo_server_share_one_nursery() -> None:
    async def echo(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        backend = await start_recording_backend(nursery)
        echo_listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        one = await start_proxy(nursery, proxy_config(server("a", ["a.test"], [backend.address])))
        two = await start_proxy(nursery, proxy_config(server("b", ["b.test"], [backend.address])))
        a = await login(one, "a.test", "One")
        b = await login(two, "b.test", "Two")
        await a.send_all(b"ping-a")
        await b.send_all(b"ping-b")
        sent_a = handshake("a.test") + login_start("One") + b"ping-a"
        assert await read_exactly(a, len(sent_a)) == sent_a  # the backend echoes all it got
        echo_stream = await trio.open_tcp_stream("127.0.0.1", echo_listeners[0].socket.getsockname()[1])
        await echo_stream.send_all(b"hello")
        assert await read_exactly(echo_stream, 5) == b"hello"
        await wait_until(lambda: len(backend.received) == 2)
        await one.drain(0)  # one stops; the other and the echo server keep serving
        c = await login(two, "b.test", "Three")
        await wait_until(lambda: len(backend.received) == 3)
        for stream in (a, b, c, echo_stream):
            await stream.aclose()
        nursery.cancel_scope.cancel()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_embedded_proxy_closes_its_pipe_pool_when_serve_ends(tmp_path: object) -> None:
    import os

    def open_pipes() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
            except OSError:
                continue
        return count

    before = open_pipes()
    async with trio.open_nursery() as nursery:
        backend = await start_recording_backend(nursery)
        config = proxy_config(server("s", ["s.test"], [backend.address], mode=infrarust.ProxyMode.ZERO_COPY))
        proxy = await start_proxy(nursery, config)
        stream = await login(proxy, "s.test")
        await wait_until(lambda: len(proxy.sessions) == 1)
        await stream.send_eof()
        await read_until_eof(stream)
        await wait_until(lambda: not proxy.sessions)
        assert open_pipes() > before  # the session's pipes went back to the proxy's pool, still open
        await proxy.drain(0)
        await trio.sleep(0.05)  # serve() returns after the drain and closes what it owns
        nursery.cancel_scope.cancel()  # the test's backend
    assert open_pipes() == before  # the pool went with the proxy: nothing process-wide outlives it
