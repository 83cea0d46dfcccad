"""Shared test helpers, one module: real loopback backends and proxies configured in code; the server-list
side (a counting fake status backend, a silent listener, modern and legacy clients); and the transport side
(a client, a backend and the two proxy-side streams between them). Every wait is bounded."""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import cache, partial
from typing import Any

import attrs
import trio

import infrarust
from infrarust.config import Address, ProxyConfig, ProxyMode, RateLimit, ServerConfig
from infrarust.protocol import (
    Handshake,
    HelloReader,
    InboundPacket,
    LoginStart,
    MinecraftConnection,
    NextState,
    Packet,
    PacketReader,
    Role,
    encode_packet,
    encode_ping,
    encode_pong,
    encode_status_request,
    encode_string,
    parse_handshake,
    parse_login_start,
    parse_ping,
    parse_status_response,
)


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


# --- the server list --------------------------------------------------------------------------------

# A negative, full-width i64: an echo that loses the sign or the high bytes is caught.
PING_TOKEN = -0x1234_5678_9ABC_DEF0
WAIT = 5.0  # seconds any single exchange on loopback may take


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, read, closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def status_json(
    description: Any = "A fake backend",
    *,
    online: int = 7,
    max_players: int = 50,
    protocol: int = 765,
    version_name: str = "Fake 1.20.4",
    **extra: Any,
) -> str:
    """A backend status JSON text."""
    status = {
        "version": {"name": version_name, "protocol": protocol},
        "players": {"max": max_players, "online": online},
        "description": description,
        **extra,
    }
    return json.dumps(status)


@attrs.define(eq=False)
class FakeStatusServer:
    """A backend that answers status requests with a fixed JSON text and counts its connections.

    ``release``, when given, holds every answer until it is set, so concurrent pings provably overlap.
    ``trailing`` is appended inside the status packet, after the JSON string (some servers do that).
    """

    port: int
    status_json: str
    trailing: bytes = b""
    release: trio.Event | None = None
    connections: int = 0
    received: list[bytearray] = attrs.field(factory=list)
    handshakes: list[Handshake] = attrs.field(factory=list)

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        received = bytearray()
        self.received.append(received)
        reader = PacketReader()
        packets: list[Packet] = []
        try:
            with trio.move_on_after(30):
                while len(packets) < 2:  # handshake, then status request
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    received += data
                    reader.feed(data)
                    while (packet := reader.next_packet()) is not None:
                        packets.append(packet)
                self.handshakes.append(parse_handshake(packets[0]))
                if self.release is not None:
                    await self.release.wait()
                await stream.send_all(encode_packet(0x00, encode_string(self.status_json) + self.trailing))
                # Like a real server: echo a ping if one comes, then wait for the other side to close.
                while data := await stream.receive_some(65536):
                    received += data
                    reader.feed(data)
                    while (packet := reader.next_packet()) is not None:
                        if packet.packet_id == 0x01:
                            await stream.send_all(encode_pong(parse_ping(packet)))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


async def start_fake_status_server(
    nursery: trio.Nursery,
    status: str | None = None,
    *,
    port: int = 0,
    trailing: bytes = b"",
    release: trio.Event | None = None,
) -> FakeStatusServer:
    """Start a :class:`FakeStatusServer` on 127.0.0.1 (a free port unless ``port`` is given)."""
    fake = FakeStatusServer(0, status if status is not None else status_json(), trailing, release)
    listeners = await nursery.start(partial(trio.serve_tcp, fake.handle, port, host="127.0.0.1"))
    fake.port = listeners[0].socket.getsockname()[1]
    return fake


async def start_silent_server(nursery: trio.Nursery) -> int:
    """A listener that accepts connections and never sends a byte; returns its port."""

    async def hold(stream: trio.SocketStream) -> None:
        try:
            await trio.sleep_forever()
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


@attrs.frozen
class StatusAnswer:
    """What a modern client got: the status JSON text exactly as sent, and the echoed ping number."""

    text: str
    pong: int

    @property
    def json(self) -> dict[str, Any]:
        value = json.loads(self.text)
        assert isinstance(value, dict), self.text
        return value


async def next_packet(stream: trio.SocketStream, reader: PacketReader, timeout: float = WAIT) -> Packet:
    """The next packet from ``stream``; fails if the peer closes first or nothing comes in time."""
    with trio.fail_after(timeout):
        while (packet := reader.next_packet()) is None:
            data = await stream.receive_some(65536)
            assert data, "the connection closed before a complete packet arrived"
            reader.feed(data)
    return packet


async def expect_eof(stream: trio.SocketStream, timeout: float = WAIT) -> bytes:
    """Read until the peer closes; returns anything that came first (should be nothing)."""
    return await read_until_eof(stream, timeout)


async def ask_status(
    port: int,
    host: str,
    *,
    protocol: int = 765,
    token: int = PING_TOKEN,
    one_write: bool = False,
) -> StatusAnswer:
    """A modern server-list ping: handshake, status request, ping; then the proxy must close.

    ``one_write`` sends the handshake, the request and the ping in a single write, as some clients do.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        first = Handshake(protocol, host, port, NextState.STATUS).encode() + encode_status_request()
        if one_write:
            first += encode_ping(token)
        await stream.send_all(first)
        reader = PacketReader()
        text = parse_status_response(await next_packet(stream, reader))
        if not one_write:
            await stream.send_all(encode_ping(token))
        pong = await next_packet(stream, reader)
        assert pong.packet_id == 0x01, pong
        echoed = parse_ping(pong)
        assert reader.take_leftover() == b""
        assert await expect_eof(stream) == b"", "the proxy sent more after the pong"
    return StatusAnswer(text, echoed)


def string16(text: str) -> bytes:
    """A pre-1.7 string: a 16-bit count of UTF-16 code units, then UTF-16BE."""
    data = text.encode("utf-16-be")
    return struct.pack(">H", len(data) // 2) + data


def legacy_login_1_6(username: str, host: str, port: int = 25565, protocol: int = 78) -> bytes:
    """The 0x02 login handshake of a 1.6 client: protocol byte, user, host, int32 port."""
    return bytes((0x02, protocol)) + string16(username) + string16(host) + struct.pack(">i", port)


def decode_legacy_kick_text(data: bytes) -> str:
    """The text of a complete 0xFF kick, decoded by hand (id, string16), checking nothing follows it."""
    assert data[:1] == b"\xff", data[:16]
    (units,) = struct.unpack(">H", data[1:3])
    assert len(data) == 3 + 2 * units, f"the kick is {len(data)} bytes, its string says {3 + 2 * units}"
    return data[3:].decode("utf-16-be")


def png_bytes(width: int = 64, height: int = 64) -> bytes:
    """A valid RGB PNG of the given size (a solid colour)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x20\x80\xe0" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --- transport plumbing ----------------------------------------------------------------------------

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


async def assert_eof(stream: trio.SocketStream) -> None:
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


# --- the server side of the game protocol, for test backends ------------------------------------------


async def read_packet(stream: trio.SocketStream, connection: MinecraftConnection) -> InboundPacket:
    """The next packet ``connection`` decodes from ``stream``; EOFError if the peer closes first."""
    while (packet := connection.next_packet()) is None:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError("peer closed")
        connection.receive_data(data)
    return packet


async def read_until(stream: trio.SocketStream, connection: MinecraftConnection, name: str) -> InboundPacket:
    """Packets are read and dropped until one called ``name``, which is returned."""
    while (packet := await read_packet(stream, connection)).name != name:
        pass
    return packet


async def accept_login(stream: trio.SocketStream) -> tuple[MinecraftConnection, LoginStart]:
    """A test server's side of a modern client's handshake and login start: the connection (in the login
    state, fed what followed) and the login start. EOFError if the client closes first; AssertionError for
    anything but a login start a test server can read."""
    hello = HelloReader()
    handshake = None
    while handshake is None:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError("client closed before its handshake")
        handshake = hello.feed(data)
    assert isinstance(handshake, Handshake), handshake
    connection = MinecraftConnection(Role.SERVER, handshake.protocol_version)
    connection.receive_data(hello.take_leftover())
    start = await read_packet(stream, connection)
    login = parse_login_start(Packet(start.packet_id, start.body), handshake.protocol_version)
    assert login is not None, start
    return connection, login
