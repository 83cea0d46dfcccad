"""The per-connection socket path: streams built without trio's per-stream options, the literal-address
connect, and the accept loop, on real loopback sockets."""

from __future__ import annotations

import contextlib
import errno
import os
import socket

import pytest
import trio

from infrarust._listen import accept, open_listener
from infrarust.backend import open_connection
from infrarust.config._models import Address, Keepalive
from infrarust.transport import relay_stream

NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", None)


def _opt(stream: trio.SocketStream, option: int) -> int:
    value: int = stream.socket.getsockopt(socket.IPPROTO_TCP, option)
    return value


async def _pair(
    keepalive: Keepalive | None,
) -> tuple[trio.SocketListener, trio.SocketStream, trio.SocketStream]:
    listener = await open_listener(Address("127.0.0.1", 0), keepalive=keepalive)
    port = listener.socket.getsockname()[1]
    client = await open_connection(Address("127.0.0.1", port), keepalive)
    server = await accept(listener, "test")
    return listener, client, server


@pytest.mark.parametrize("keepalive", [Keepalive(), None])
async def test_accepted_and_connected_streams_have_nodelay_and_no_send_limit(
    keepalive: Keepalive | None,
) -> None:
    listener, client, server = await _pair(keepalive)
    with listener.socket, client.socket, server.socket:
        for stream in (client, server):
            assert isinstance(stream, trio.SocketStream)
            # Inherited from the listener (accepted side) or set before connecting (connected side).
            assert _opt(stream, socket.TCP_NODELAY) != 0
            if NOTSENT_LOWAT is not None:
                assert _opt(stream, NOTSENT_LOWAT) == 0  # trio's 16 KiB limit never set
        if keepalive is not None:
            assert client.socket.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


async def test_relay_streams_carry_bytes_and_half_close() -> None:
    listener, client, server = await _pair(Keepalive())
    with listener.socket, client.socket, server.socket:
        payload = bytes(range(256)) * 1024
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            got = bytearray()
            while len(got) < len(payload):
                got += await server.receive_some(65536)
        assert bytes(got) == payload
        await client.send_eof()
        assert await server.receive_some(10) == b""
        await server.send_all(b"after")
        assert await client.receive_some(10) == b"after"


async def test_relay_stream_still_refuses_two_concurrent_senders() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        stream = relay_stream(a)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        async with trio.open_nursery() as nursery:
            # The first blocks on a full buffer (nobody reads b); the second must be refused.
            nursery.start_soon(stream.send_all, b"x" * (1 << 22))
            await trio.sleep(0.05)
            with pytest.raises(trio.BusyResourceError):
                await stream.send_all(b"y")
            nursery.cancel_scope.cancel()


async def test_connect_to_a_closed_port_reports_the_os_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: the connect is refused
        with pytest.raises(OSError) as raised:
            await open_connection(Address("127.0.0.1", port), Keepalive())
    assert raised.value.errno == errno.ECONNREFUSED


async def test_connect_cancelled_while_waiting_closes_its_socket() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (never routed): the connect hangs until cancelled, or fails at once
    # where the machine has no route at all; either way no socket may leak.
    before = len(os.listdir("/proc/self/fd"))
    with trio.move_on_after(0.2):
        with contextlib.suppress(OSError):
            await open_connection(Address("192.0.2.1", 25565), None)
    assert len(os.listdir("/proc/self/fd")) == before


async def test_accept_takes_a_burst_without_losing_one() -> None:
    listener = await open_listener(Address("127.0.0.1", 0), keepalive=Keepalive())
    port = listener.socket.getsockname()[1]
    clients = []
    with listener.socket:
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            clients.append(s)
        try:
            accepted = [await accept(listener, "test") for _ in range(20)]
            peers = {a.socket.getpeername() for a in accepted}
            assert peers == {c.getsockname() for c in clients}
            for a in accepted:
                a.socket.close()
        finally:
            for c in clients:
                c.close()
        listener.socket.close()
        with pytest.raises(trio.ClosedResourceError):
            await accept(listener, "test")
