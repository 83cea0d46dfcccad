"""Helpers for the server-list tests: a counting fake status backend, a silent listener, and clients.

Shared by ``test_serverlist.py``, ``test_ping_cli.py`` and ``e2e/test_e2e_status.py``. Everything runs on
real 127.0.0.1 sockets and every wait is bounded.
"""

from __future__ import annotations

import json
import socket
import struct
import zlib
from functools import partial
from typing import Any

import attrs
import trio
from helpers import read_until_eof

from infrarust.config._models import Address
from infrarust.protocol import (
    Handshake,
    NextState,
    Packet,
    PacketReader,
    encode_packet,
    encode_ping,
    encode_pong,
    encode_status_request,
    encode_string,
    parse_handshake,
    parse_ping,
    parse_status_response,
)

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
