"""Shared test helpers: real loopback backends, and proxies configured in code."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import attrs
import trio

import infrarust
from infrarust.config._models import Address, ProxyConfig, ProxyMode, RateLimit, ServerConfig
from infrarust.protocol import Handshake, NextState, encode_packet, encode_string


@attrs.define(eq=False)
class Backend:
    """A loopback TCP server that records what each connection sent and echoes it back."""

    port: int
    received: list[bytearray] = attrs.field(factory=list)
    echo: bool = True
    connected: trio.Event = attrs.field(factory=trio.Event)

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port)

    async def wait_for(self, index: int, size: int, timeout: float = 5.0) -> bytes:
        """Wait until connection ``index`` has delivered at least ``size`` bytes."""
        with trio.fail_after(timeout):
            while len(self.received) <= index or len(self.received[index]) < size:
                await trio.sleep(0.005)
        return bytes(self.received[index])


async def start_recording_backend(nursery: trio.Nursery, *, echo: bool = True) -> Backend:
    """Start a recording (and echoing) backend on 127.0.0.1 with a free port."""
    backend: Backend | None = None

    async def handle(stream: trio.SocketStream) -> None:
        assert backend is not None
        buffer = bytearray()
        backend.received.append(buffer)
        backend.connected.set()
        try:
            while data := await stream.receive_some(65536):
                buffer += data
                if backend.echo:
                    await stream.send_all(data)
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    backend = Backend(listeners[0].socket.getsockname()[1], echo=echo)
    return backend


def server(
    name: str,
    domains: Sequence[str],
    addresses: Sequence[Address],
    mode: ProxyMode = ProxyMode.PASSTHROUGH,
    **changes: Any,
) -> ServerConfig:
    """A server configuration built in code."""
    base = ServerConfig(name=name, addresses=tuple(addresses), domains=tuple(domains), proxy_mode=mode)
    return attrs.evolve(base, **changes) if changes else base


# Tests open many connections from 127.0.0.1; the per-IP budgets are tested on their own.
NO_RATE_LIMIT = RateLimit(max_connections=0, status_max=0)


def proxy_config(*servers: ServerConfig, **changes: Any) -> ProxyConfig:
    """A proxy configuration on a free loopback port, without per-IP rate limits."""
    config = ProxyConfig(bind=Address("127.0.0.1", 0), servers=servers, rate_limit=NO_RATE_LIMIT)
    return attrs.evolve(config, **changes) if changes else config


async def start_proxy(nursery: trio.Nursery, config: ProxyConfig) -> infrarust.Proxy:
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
    return proxy


def handshake(host: str, state: NextState = NextState.LOGIN, protocol: int = 765) -> bytes:
    return Handshake(protocol, host, 25565, state).encode()


def login_start(name: str) -> bytes:
    """A 1.20.4 login start: name and a required UUID."""
    return encode_packet(0x00, encode_string(name) + bytes(range(16)))


async def read_exactly(stream: trio.SocketStream, size: int, timeout: float = 5.0) -> bytes:
    data = bytearray()
    with trio.fail_after(timeout):
        while len(data) < size:
            chunk = await stream.receive_some(size - len(data))
            if not chunk:
                break
            data += chunk
    return bytes(data)


async def read_until_eof(stream: trio.SocketStream, timeout: float = 5.0) -> bytes:
    data = bytearray()
    with trio.fail_after(timeout):
        try:
            while chunk := await stream.receive_some(65536):
                data += chunk
        except trio.BrokenResourceError:
            pass
    return bytes(data)
