"""The proxy on real loopback sockets: routing, first bytes, unreachable backends, timeouts, embedding."""

from __future__ import annotations

import json
import logging
import socket
from functools import partial

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
from infrarust._listen import open_listener
from infrarust.admission import UNKNOWN_DOMAIN_MESSAGE
from infrarust.backend import connect_backend
from infrarust.config._models import (
    Address,
    DomainRewrite,
    Keepalive,
    ProxyMode,
    RewriteKind,
    Timeouts,
    UnknownDomainBehavior,
)
from infrarust.protocol import PacketReader, encode_packet, read_string
from infrarust.transport import Traffic, select_forwarder

MODES = [ProxyMode.PASSTHROUGH, ProxyMode.ZERO_COPY, ProxyMode.SERVER_ONLY]


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, read, closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def disconnect_text(reply: bytes) -> object:
    """The JSON text component of the Login Disconnect that ``reply`` must consist of."""
    reader = PacketReader()
    reader.feed(reply)
    packet = reader.next_packet()
    assert packet is not None and packet.packet_id == 0x00
    text, end = read_string(packet.body, 0)
    assert end == len(packet.body) and reader.take_leftover() == b""
    return json.loads(text)


async def connect(proxy: infrarust.Proxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", proxy.port)


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


@pytest.mark.parametrize("mode", MODES)
async def test_two_domains_reach_two_backends(nursery: trio.Nursery, mode: ProxyMode) -> None:
    alpha = await start_recording_backend(nursery)
    beta = await start_recording_backend(nursery)
    config = proxy_config(
        server("alpha", ["alpha.test"], [alpha.address], mode),
        server("beta", ["beta.test", "*.beta.test"], [beta.address], mode),
    )
    proxy = await start_proxy(nursery, config)
    for backend, host, name in [(alpha, "alpha.test", "Alice"), (beta, "Play.Beta.Test.", "Bob")]:
        first = handshake(host) + login_start(name)
        client = await connect(proxy)
        await client.send_all(first)
        assert await backend.wait_for(0, len(first)) == first
        assert await read_exactly(client, len(first)) == first  # the backend echoes through the relay
        await client.aclose()
    assert len(alpha.received) == len(beta.received) == 1


async def test_bytes_in_the_same_write_as_the_handshake_arrive_in_order(
    nursery: trio.Nursery, backend: Backend
) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    # Handshake, login start and what would be the first encrypted bytes, in one write.
    payload = handshake("s.test") + login_start("Steve") + bytes(range(256)) * 40
    client = await connect(proxy)
    await client.send_all(payload)
    assert await backend.wait_for(0, len(payload)) == payload
    await client.aclose()


async def test_login_start_sent_later_is_forwarded_and_names_the_player(
    nursery: trio.Nursery, backend: Backend
) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    client = await connect(proxy)
    await client.send_all(handshake("s.test"))
    await trio.sleep(0.05)
    await client.send_all(login_start("Notch")[:5])
    await trio.sleep(0.05)
    await client.send_all(login_start("Notch")[5:])
    expected = handshake("s.test") + login_start("Notch")
    assert await backend.wait_for(0, len(expected)) == expected
    await wait_until(lambda: len(proxy.sessions) == 1)
    assert proxy.sessions[0].name == "Notch"
    await client.aclose()


async def test_unparsable_login_start_is_forwarded_as_is(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    odd = encode_packet(0x00, b"\xff\xff\xff")  # a string length that runs off the end
    payload = handshake("s.test") + odd
    client = await connect(proxy)
    await client.send_all(payload)
    assert await backend.wait_for(0, len(payload)) == payload
    await wait_until(lambda: len(proxy.sessions) == 1)
    assert proxy.sessions[0].name is None
    await client.aclose()


async def test_unreachable_backend_gets_a_login_disconnect(nursery: trio.Nursery) -> None:
    message = "Maintenance: back in 5 minutes"
    config = proxy_config(
        server("s", ["s.test"], [Address("127.0.0.1", free_port())], disconnect_message=message)
    )
    proxy = await start_proxy(nursery, config)
    client = await connect(proxy)
    await client.send_all(handshake("s.test") + login_start("Steve"))
    assert disconnect_text(await read_until_eof(client)) == {"text": message}


async def test_addresses_are_tried_in_order(nursery: trio.Nursery, backend: Backend) -> None:
    dead = Address("127.0.0.1", free_port())
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [dead, backend.address])))
    client = await connect(proxy)
    payload = handshake("s.test") + login_start("Steve")
    await client.send_all(payload)
    assert await backend.wait_for(0, len(payload)) == payload
    await client.aclose()


async def test_unknown_domain_login_is_refused_without_connecting(
    nursery: trio.Nursery, backend: Backend
) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    client = await connect(proxy)
    await client.send_all(handshake("elsewhere.test") + login_start("Steve"))
    assert disconnect_text(await read_until_eof(client)) == {"text": UNKNOWN_DOMAIN_MESSAGE}
    assert backend.received == []


async def test_unknown_domain_is_dropped_under_drop(nursery: trio.Nursery, backend: Backend) -> None:
    config = proxy_config(
        server("s", ["s.test"], [backend.address]), unknown_domain_behavior=UnknownDomainBehavior.DROP
    )
    proxy = await start_proxy(nursery, config)
    client = await connect(proxy)
    await client.send_all(handshake("elsewhere.test") + login_start("Steve"))
    assert await read_until_eof(client) == b""
    assert backend.received == []


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\xff\xff\xff\xff\xff\xff",  # a VarInt longer than five bytes
        encode_packet(0x05, b"hello"),  # a first packet that is not a handshake
        b"\x80\x80\x04",  # a length far beyond the handshake cap
    ],
)
async def test_garbage_is_closed_without_a_reply_and_without_disturbing_a_session(
    nursery: trio.Nursery, backend: Backend, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    player = await connect(proxy)
    await player.send_all(handshake("s.test") + login_start("Steve"))
    await wait_until(lambda: len(proxy.sessions) == 1)
    await read_exactly(player, len(handshake("s.test") + login_start("Steve")))
    bad = await connect(proxy)
    await bad.send_all(garbage)
    assert await read_until_eof(bad) == b""
    assert "bad handshake" in caplog.text  # refused loudly in the log, never silently
    await player.send_all(b"still here")
    assert await read_exactly(player, 10) == b"still here"
    await player.aclose()


async def test_silent_client_is_cut_at_handshake_timeout_while_a_session_relays(
    nursery: trio.Nursery, backend: Backend
) -> None:
    config = proxy_config(server("s", ["s.test"], [backend.address]), handshake_timeout=0.3)
    proxy = await start_proxy(nursery, config)
    player = await connect(proxy)
    first = handshake("s.test") + login_start("Steve")
    await player.send_all(first)
    await read_exactly(player, len(first))
    silent = await connect(proxy)
    slow = await connect(proxy)
    await slow.send_all(handshake("s.test")[:3])  # a partial handshake is no better than none
    start = trio.current_time()
    assert await read_until_eof(silent, timeout=3) == b""
    assert await read_until_eof(slow, timeout=3) == b""
    assert trio.current_time() - start >= 0.25
    # The relayed session kept working across the cut (and beyond the handshake timeout).
    for _ in range(3):
        await player.send_all(b"ping")
        assert await read_exactly(player, 4) == b"ping"
        await trio.sleep(0.1)
    assert backend.received[0] == bytearray(first + b"ping" * 3)
    await player.aclose()


async def test_max_connections_closes_the_excess_at_once(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(
        nursery, proxy_config(server("s", ["s.test"], [backend.address]), max_connections=2)
    )
    kept = [await connect(proxy), await connect(proxy)]
    await wait_until(lambda: proxy.connections == 2)
    extra = await connect(proxy)
    assert await read_until_eof(extra, timeout=2) == b""
    for stream in kept:  # the first two are still served
        await stream.send_all(handshake("s.test") + login_start("Steve"))
    await wait_until(lambda: len(backend.received) == 2)
    for stream in kept:
        await stream.aclose()


@pytest.mark.parametrize(
    ("rewrite", "expected"),
    [
        (DomainRewrite(RewriteKind.EXPLICIT, "backend.internal"), "backend.internal\0FML2\0"),
        (DomainRewrite(RewriteKind.FROM_BACKEND), "127.0.0.1\0FML2\0"),
    ],
)
async def test_domain_rewrite_changes_only_the_host(
    nursery: trio.Nursery, backend: Backend, rewrite: DomainRewrite, expected: str
) -> None:
    proxy = await start_proxy(
        nursery, proxy_config(server("s", ["s.test"], [backend.address], domain_rewrite=rewrite))
    )
    client = await connect(proxy)
    await client.send_all(handshake("s.test\0FML2\0") + login_start("Steve"))
    want = handshake(expected) + login_start("Steve")
    assert await backend.wait_for(0, len(want)) == want
    await client.aclose()


async def test_embedding_shutdown_ends_sessions_with_exact_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    async with trio.open_nursery() as outer:
        backend = await start_recording_backend(outer)
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(
                infrarust.serve, proxy_config(server("s", ["s.test"], [backend.address]))
            )
            assert proxy.port != 0
            client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
            first = handshake("s.test") + login_start("Steve")
            await client.send_all(first + b"x" * 1000)
            assert await read_exactly(client, len(first) + 1000) == first + b"x" * 1000
            await wait_until(lambda: len(proxy.sessions) == 1)
            player = proxy.sessions[0]
            await wait_until(lambda: player.traffic.backend_to_client == len(first) + 1000)
            nursery.cancel_scope.cancel()
        assert player.result == infrarust.ForwardResult(
            len(first) + 1000, len(first) + 1000, infrarust.ForwardEndReason.SHUTDOWN
        )
        assert proxy.sessions == ()
        assert await read_until_eof(client) == b""  # the proxy closed its side
        outer.cancel_scope.cancel()
    assert "reason=Shutdown" in caplog.text and "player=Steve" in caplog.text


async def test_player_is_passive_but_can_be_disconnected(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(nursery, proxy_config(server("s", ["s.test"], [backend.address])))
    client = await connect(proxy)
    await client.send_all(handshake("s.test") + login_start("Alex"))
    await wait_until(lambda: len(proxy.sessions) == 1)
    player = proxy.sessions[0]
    assert (player.name, player.mode, player.server.name) == ("Alex", ProxyMode.PASSTHROUGH, "s")
    with pytest.raises(infrarust.PlayerNotActiveError):
        await player.send_message("hello")
    with pytest.raises(infrarust.PlayerNotActiveError):
        await player.switch_server("other")
    first = handshake("s.test") + login_start("Alex")
    assert await read_exactly(client, len(first)) == first
    player.disconnect()
    assert await read_until_eof(client) == b""
    await wait_until(lambda: player.result is not None)
    assert player.result is not None and player.result.reason is infrarust.ForwardEndReason.SHUTDOWN


async def test_reload_routes_new_connections_and_keeps_sessions(nursery: trio.Nursery) -> None:
    old = await start_recording_backend(nursery)
    new = await start_recording_backend(nursery)
    config = proxy_config(server("s", ["s.test"], [old.address]))
    proxy = await start_proxy(nursery, config)
    first = await connect(proxy)
    await first.send_all(handshake("s.test") + login_start("Old"))
    await wait_until(lambda: len(proxy.sessions) == 1)
    await proxy.reload(attrs.evolve(config, servers=(server("s", ["s.test"], [new.address]),)))
    second = await connect(proxy)
    await second.send_all(handshake("s.test") + login_start("New"))
    await wait_until(lambda: len(new.received) == 1)
    await first.send_all(b"after reload")  # the old session still relays to the old backend
    await old.wait_for(0, len(handshake("s.test") + login_start("Old")) + 12)
    assert len(old.received) == 1


async def test_reload_from_a_broken_file_keeps_the_old_configuration(
    nursery: trio.Nursery, backend: Backend, tmp_path: object
) -> None:
    import pathlib

    assert isinstance(tmp_path, pathlib.Path)
    (tmp_path / "servers").mkdir()
    path = tmp_path / "infrarust.toml"
    path.write_text('bind = "127.0.0.1:0"\n')
    (tmp_path / "servers" / "s.toml").write_text(
        f'domains = ["s.test"]\naddresses = ["127.0.0.1:{backend.port}"]\n'
    )
    proxy = await start_proxy(nursery, infrarust.load_config(path))
    path.write_text('bind = "127.0.0.1:0"\nmax_connectoins = 3\n')  # a typo: rejected whole
    with pytest.raises(infrarust.ConfigError):
        await proxy.reload()
    client = await connect(proxy)
    await client.send_all(handshake("s.test") + login_start("Steve"))
    await backend.wait_for(0, 1)
    await client.aclose()


async def test_read_timeout_ends_an_idle_session(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(
        nursery, proxy_config(server("s", ["s.test"], [backend.address], timeouts=Timeouts(read=0.3)))
    )
    client = await connect(proxy)
    await client.send_all(handshake("s.test") + login_start("Idle"))
    await wait_until(lambda: len(proxy.sessions) == 1)
    player = proxy.sessions[0]
    await read_until_eof(client, timeout=3)
    await wait_until(lambda: player.result is not None)
    assert player.result is not None and player.result.reason is infrarust.ForwardEndReason.ERROR


KEEPALIVE = Keepalive(time=42.0, interval=7.0, retries=4)


def keepalive_options(sock: trio.socket.SocketType) -> tuple[int, int, int, int, int]:
    return (
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    )


async def test_accepted_clients_inherit_nodelay_and_keepalive_from_the_listener() -> None:
    listener = await open_listener(Address("127.0.0.1", 0), keepalive=KEEPALIVE)
    async with listener:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        accepted = await listener.accept()
        assert keepalive_options(accepted.socket) == (1, 1, 42, 7, 4)
        await client.aclose()
        await accepted.aclose()


async def test_backend_sockets_get_nodelay_and_keepalive(backend: Backend) -> None:
    connected = await connect_backend(server("s", ["s.test"], [backend.address]), 1.0, KEEPALIVE)
    assert connected is not None
    stream, address = connected
    assert address == backend.address
    assert keepalive_options(stream.socket) == (1, 1, 42, 7, 4)
    await stream.aclose()


@pytest.mark.parametrize("mode", [ProxyMode.PASSTHROUGH, ProxyMode.ZERO_COPY])
async def test_relayed_sockets_lift_trios_unsent_limit(nursery: trio.Nursery, mode: ProxyMode) -> None:
    # trio caps unsent bytes at 16 KiB on every SocketStream; a relay lifts it (0 = the system default).
    async def hold(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    pair = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
    assert all(s.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 16384 for s in pair)
    with trio.move_on_after(0.2):
        await select_forwarder(mode).forward(pair[0], pair[1], Traffic())
    assert [s.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) for s in pair] == [0, 0]
    for stream in pair:
        await stream.aclose()
