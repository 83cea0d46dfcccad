"""Loopback plumbing for the transport tests: a client, a backend, and the two proxy-side streams between."""

from __future__ import annotations

import hashlib
import os
import random
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

import attrs
import trio

MIB = 1024 * 1024


@cache
def blob(seed: int, size: int = 64 * MIB) -> bytes:
    """Deterministic random bytes (cached: the big ones are reused across tests)."""
    return random.Random(seed).randbytes(size)


@attrs.define
class Relay:
    """``client <-> proxy_client`` and ``proxy_backend <-> backend``: forward() joins the middle two."""

    client: trio.SocketStream
    proxy_client: trio.SocketStream
    proxy_backend: trio.SocketStream
    backend: trio.SocketStream

    @property
    def streams(self) -> tuple[trio.SocketStream, ...]:
        return (self.client, self.proxy_client, self.proxy_backend, self.backend)

    async def aclose(self) -> None:
        for stream in self.streams:
            await trio.aclose_forcefully(stream)


async def _tcp_pair(listener: trio.SocketListener) -> tuple[trio.SocketStream, trio.SocketStream]:
    host, port = listener.socket.getsockname()[:2]
    dialled = await trio.open_tcp_stream(host, port)
    accepted = await listener.accept()
    return dialled, accepted


async def open_relay(listener: trio.SocketListener) -> Relay:
    """Four connected loopback streams (two TCP connections through ``listener``)."""
    client, proxy_client = await _tcp_pair(listener)
    proxy_backend, backend = await _tcp_pair(listener)
    return Relay(client, proxy_client, proxy_backend, backend)


@asynccontextmanager
async def relay() -> AsyncIterator[Relay]:
    """A fresh :class:`Relay`, every stream closed on the way out."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        pair = await open_relay(listeners[0])
    finally:
        for listener in listeners:
            await listener.aclose()
    try:
        yield pair
    finally:
        await pair.aclose()


@attrs.define
class Received:
    """What a receiver got: the byte count and the running SHA-256."""

    count: int = 0
    digest: hashlib._Hash = attrs.field(factory=hashlib.sha256)
    eof: bool = False
    error: BaseException | None = None

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


async def receive_all(stream: trio.SocketStream, into: Received, *, notify: trio.Event | None = None) -> None:
    """Read until EOF (or a reset, recorded in ``into.error``), hashing everything."""
    while True:
        try:
            data = await stream.receive_some(1 * MIB)
        except trio.BrokenResourceError as exc:
            into.error = exc
            return
        if not data:
            into.eof = True
            return
        into.count += len(data)
        into.digest.update(data)
        if notify is not None and into.count >= MIB:
            notify.set()


async def send_then_eof(stream: trio.SocketStream, data: bytes, chunk: int = 1 * MIB) -> None:
    """Send ``data`` in chunks, then half-close."""
    with memoryview(data) as view:
        for start in range(0, len(view), chunk):
            await stream.send_all(view[start : start + chunk])
    await stream.send_eof()


async def send_forever(stream: trio.SocketStream, data: bytes, chunk: int = 256 * 1024) -> None:
    """Send ``data`` over and over until cancelled or the peer goes away."""
    with memoryview(data) as view:
        while True:
            for start in range(0, len(view), chunk):
                try:
                    await stream.send_all(view[start : start + chunk])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


def cyclic_digest(data: bytes, count: int) -> str:
    """SHA-256 of the first ``count`` bytes of ``data`` repeated forever."""
    digest = hashlib.sha256()
    whole, rest = divmod(count, len(data))
    for _ in range(whole):
        digest.update(data)
    digest.update(data[:rest])
    return digest.hexdigest()


async def exact(stream: trio.SocketStream, count: int) -> bytes:
    """Read exactly ``count`` bytes (fails on an early EOF)."""
    chunks = bytearray()
    while len(chunks) < count:
        data = await stream.receive_some(count - len(chunks))
        assert data, f"EOF after {len(chunks)} of {count} bytes"
        chunks += data
    return bytes(chunks)


async def expect_eof(stream: trio.SocketStream) -> None:
    assert await stream.receive_some(1) == b""


def reset_close(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER 0, so the peer gets an RST instead of a FIN."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


def open_fds() -> list[str]:
    """What this process has open, one ``/proc/self/fd`` link per fd."""
    links = []
    for name in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            continue  # the fd listdir itself used, closed by now
    return sorted(links)


def pipe_fds() -> int:
    return sum(link.startswith("pipe:") for link in open_fds())
