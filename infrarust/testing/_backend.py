"""A small Minecraft server for tests: :class:`FakeBackend`, started by :class:`BackendFactory`."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from typing import Any, Literal, NoReturn, get_args

import attrs
import trio

from infrarust.config import Address
from infrarust.protocol import (
    Handshake,
    LoginStart,
    NextState,
    Packet,
    PacketReader,
    ProtocolError,
    ProxyHeader,
    build_status_json,
    encode_login_disconnect,
    encode_pong,
    encode_status_response,
    parse_handshake,
    parse_login_start,
    parse_ping,
    parse_proxy_header,
)

from ._waiting import Changes
from ._wire import check_protocol, encode_login_success, offline_uuid

Behavior = Literal["answer", "refuse", "close", "hang", "close_after_handshake", "echo"]
"""What a :class:`FakeBackend` does with a connection.

``"answer"``: status and offline login like a server; ``"refuse"``: nothing listens, so connecting fails
(the port stays reserved); ``"close"``: accept and close at once; ``"hang"``: accept, read and record,
never answer; ``"close_after_handshake"``: close as soon as the handshake is read; ``"echo"``: send every
byte back as it arrives, speaking no protocol (to test relaying). Every behaviour but ``"close"`` still
decodes and records the PROXY header and the handshake.
"""

STATUS_REQUEST_ID = 0x00
PING_ID = 0x01
LOGIN_START_ID = 0x00
_READ_SIZE = 65536
_DEFAULT_TEXT = "infrarust fake backend"

StatusSetting = str | Mapping[str, Any] | None
"""A fake backend's status answer: JSON text sent as is, a mapping encoded to JSON, or None (a default)."""


@attrs.define(eq=False)
class BackendConnection:
    """One TCP connection a :class:`FakeBackend` accepted and everything it received on it, in order.

    ``proxy_header`` is the PROXY protocol header (v1 or v2) the connection started with, if any (a
    server with ``send_proxy_protocol``). ``handshake`` and ``login`` are filled in as they are decoded
    (``login`` stays None when the Login Start has a layout the protocol package cannot read).
    ``answers`` lists what the backend sent (``"status"``, ``"pong"``, ``"login_success"``,
    ``"login_disconnect"``); ``error`` says why it stopped reading packets if the client sent something it
    could not decode; ``ended`` becomes True once the connection is closed, by either side.
    """

    peer: tuple[str, int]
    received: bytearray = attrs.field(factory=bytearray)
    proxy_header: ProxyHeader | None = None
    handshake: Handshake | None = None
    login: LoginStart | None = None
    answers: list[str] = attrs.field(factory=list)
    error: str | None = None
    ended: bool = False
    _changes: Changes = attrs.field(factory=Changes, repr=False)

    async def wait_received(self, size: int, *, timeout: float = 5.0) -> bytes:
        """Wait until at least ``size`` bytes arrived on this connection; returns all received so far."""
        await self._changes.wait_until(
            lambda: len(self.received) >= size, timeout, f"{size} bytes received from {self.peer}"
        )
        return bytes(self.received)

    async def wait_ended(self, *, timeout: float = 5.0) -> None:
        """Wait until this connection is closed."""
        await self._changes.wait_until(lambda: self.ended, timeout, f"the connection from {self.peer} ended")


class FakeBackend:
    """A Minecraft server for tests on a loopback port, recording every connection it accepts.

    ``status`` is the status JSON it answers (a ``str`` sent as is, a mapping encoded to JSON, or None for
    a small default that echoes the client's protocol number). Logins get Login Success with the
    offline-mode UUID of the name, in the layout of the client's protocol (1.8 to 26.1; other numbers get a
    Login Disconnect saying so), or a Login Disconnect carrying ``login_disconnect`` when that is set.
    ``behavior`` (see :data:`Behavior`) may be changed at any time: it applies to the connections
    accepted afterwards, and ``"refuse"`` stops listening at once (and starts again when changed back).
    """

    def __init__(
        self,
        *,
        status: StatusSetting = None,
        behavior: Behavior = "answer",
        login_disconnect: str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        _check_behavior(behavior)
        self.host = host
        self.port = 0
        self.status = status
        self.login_disconnect = login_disconnect
        self.connections: list[BackendConnection] = []
        self._behavior: Behavior = behavior
        self._listener: trio.socket.SocketType | None = None
        self._placeholder: socket.socket | None = None
        self._running = False
        self._changes = Changes()

    @property
    def address(self) -> Address:
        """Where it listens, for a :class:`~infrarust.ServerConfig`'s ``addresses``."""
        return Address(self.host, self.port)

    @property
    def handshakes(self) -> list[Handshake]:
        """The handshake of every connection that sent one, in the order the connections were accepted."""
        return [conn.handshake for conn in self.connections if conn.handshake is not None]

    @property
    def behavior(self) -> Behavior:
        """What it does with the next connection (see :data:`Behavior`)."""
        return self._behavior

    @behavior.setter
    def behavior(self, value: Behavior) -> None:
        _check_behavior(value)
        if self._running and (value == "refuse") != (self._behavior == "refuse"):
            if value == "refuse":
                self._stop_listening()
            else:
                self._start_listening()
        self._behavior = value

    async def wait_connections(self, count: int = 1, *, timeout: float = 5.0) -> list[BackendConnection]:
        """Wait until ``count`` connections were accepted in all; returns every connection so far."""
        await self._changes.wait_until(
            lambda: len(self.connections) >= count, timeout, f"{count} connections to the fake backend"
        )
        return list(self.connections)

    async def run(self, *, task_status: trio.TaskStatus[FakeBackend] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Serve until cancelled; ``await nursery.start(backend.run)`` returns it once listening."""
        if self.port:
            raise RuntimeError("a FakeBackend runs once (it keeps its port for its whole life)")
        self._running = True
        try:
            if self._behavior == "refuse":
                self._placeholder = _bind(self.host, 0)
                self.port = self._placeholder.getsockname()[1]
            else:
                self._listener = _listen(self.host, 0)
                self.port = self._listener.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                await self._accept_forever(nursery)
        finally:
            self._running = False
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None

    async def _accept_forever(self, nursery: trio.Nursery) -> NoReturn:
        while True:
            listener = self._listener
            if listener is None:  # refusing: wait for the behaviour to change
                await self._changes.wait_until(lambda: self._listener is not None, float("inf"), "listening")
                continue
            try:
                sock, peer = await listener.accept()
            except (trio.ClosedResourceError, OSError):
                if listener is self._listener:
                    raise
                continue  # closed by a switch to "refuse"
            nursery.start_soon(self._serve_connection, trio.SocketStream(sock), peer)

    def _stop_listening(self) -> None:
        assert self._listener is not None
        # trio's close wakes the accept() waiting on it; the placeholder then keeps the port ours, and a
        # bound socket that does not listen makes the kernel answer a connect with a reset.
        self._listener.close()
        self._listener = None
        self._placeholder = _bind(self.host, self.port)
        self._changes.notify()

    def _start_listening(self) -> None:
        assert self._placeholder is not None
        self._listener = _listen(self.host, self.port)
        self._placeholder.close()
        self._placeholder = None
        self._changes.notify()

    async def _serve_connection(self, stream: trio.SocketStream, peer: Any) -> None:
        conn = BackendConnection((str(peer[0]), int(peer[1])))
        self.connections.append(conn)
        self._changes.notify()
        behavior = self._behavior
        try:
            if behavior != "close":
                await _Exchange(self, conn, stream, behavior).run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the peer reset the connection: what it sent is recorded, nothing else to do
        finally:
            await trio.aclose_forcefully(stream)
            conn.ended = True
            conn._changes.notify()
            self._changes.notify()

    def status_text(self, handshake: Handshake) -> str:
        """The status JSON answered to ``handshake``."""
        if isinstance(self.status, str):
            return self.status
        if self.status is not None:
            return json.dumps(self.status)
        return build_status_json(
            version_name=_DEFAULT_TEXT,
            protocol=handshake.protocol_version,
            max_players=20,
            online=0,
            description=_DEFAULT_TEXT,
            favicon=None,
        )


@attrs.define
class _Exchange:
    """One connection's conversation: handshake, then status or login, then recording only."""

    backend: FakeBackend
    conn: BackendConnection
    stream: trio.SocketStream
    behavior: Behavior
    stage: Literal["proxy_header", "handshake", "status", "login", "record", "close"] = "proxy_header"

    async def run(self) -> None:
        reader = PacketReader()
        while data := await self.stream.receive_some(_READ_SIZE):
            self.conn.received += data
            self.conn._changes.notify()
            if self.behavior == "echo":
                await self.stream.send_all(data)
            if self.stage == "record":
                continue
            try:
                if self.stage == "proxy_header":
                    data = self._proxy_header()
                reader.feed(data)
                while self.stage not in ("record", "close") and (packet := reader.next_packet()) is not None:
                    await self._on_packet(packet)
            except ProtocolError as exc:
                self.conn.error = str(exc)
                self.backend._changes.notify()
                if self.behavior not in ("hang", "echo"):
                    return
                self.stage = "record"  # these never answer from what they decode: keep going
            if self.stage == "close":
                return

    def _proxy_header(self) -> bytes:
        """The bytes after a PROXY header at the start of the connection (all of them when there is none).

        A header cannot be mistaken for a handshake: after its first byte (a plausible handshake length)
        comes ``R`` or ``\\n``, where a handshake has its packet id 0.
        """
        received = bytes(self.conn.received)
        try:
            parsed = parse_proxy_header(received)
        except ProtocolError:
            self.stage = "handshake"
            return received
        if parsed is None:
            return b""  # not complete yet, and kept in ``received``
        self.conn.proxy_header, consumed = parsed
        self.stage = "handshake"
        return received[consumed:]

    async def _on_packet(self, packet: Packet) -> None:
        if self.stage == "handshake":
            handshake = parse_handshake(packet)
            self.conn.handshake = handshake
            self.backend._changes.notify()
            if self.behavior == "close_after_handshake":
                self.stage = "close"
            elif self.behavior in ("hang", "echo"):
                self.stage = "record"
            else:
                self.stage = "status" if handshake.next_state == NextState.STATUS else "login"
        elif self.stage == "status":
            await self._status(packet)
        else:
            await self._login(packet)

    async def _status(self, packet: Packet) -> None:
        assert self.conn.handshake is not None
        if packet.packet_id == STATUS_REQUEST_ID:
            await self._send(encode_status_response(self.backend.status_text(self.conn.handshake)), "status")
        elif packet.packet_id == PING_ID:
            await self._send(encode_pong(parse_ping(packet)), "pong")
        else:
            raise ProtocolError(f"packet 0x{packet.packet_id:02x} in the status state")

    async def _login(self, packet: Packet) -> None:
        assert self.conn.handshake is not None
        if packet.packet_id != LOGIN_START_ID:
            raise ProtocolError(f"packet 0x{packet.packet_id:02x} where a Login Start belongs")
        protocol = self.conn.handshake.protocol_version
        login = parse_login_start(packet, protocol)
        self.conn.login = login
        self.backend._changes.notify()
        self.stage = "close"
        try:
            check_protocol(protocol)
        except ProtocolError as exc:
            await self._send(encode_login_disconnect(f"{_DEFAULT_TEXT}: {exc}"), "login_disconnect")
            return
        if login is None:
            message = f"{_DEFAULT_TEXT}: unreadable Login Start for protocol {protocol}"
            await self._send(encode_login_disconnect(message), "login_disconnect")
        elif self.backend.login_disconnect is not None:
            await self._send(encode_login_disconnect(self.backend.login_disconnect), "login_disconnect")
        else:
            # Offline-mode servers ignore the UUID a client sends and derive it from the name.
            success = encode_login_success(login.name, offline_uuid(login.name), protocol)
            await self._send(success, "login_success")
            self.stage = "record"

    async def _send(self, data: bytes, answer: str) -> None:
        await self.stream.send_all(data)
        self.conn.answers.append(answer)
        self.conn._changes.notify()


class BackendFactory:
    """Starts :class:`FakeBackend` servers in a nursery: ``backend = await factory(status=..., ...)``.

    This is what the ``fake_backend`` fixture gives a test; the backends stop with the nursery.
    """

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    async def __call__(
        self,
        *,
        status: StatusSetting = None,
        behavior: Behavior = "answer",
        login_disconnect: str | None = None,
        host: str = "127.0.0.1",
    ) -> FakeBackend:
        """Start a :class:`FakeBackend` on ``host`` with a free port and return it, listening."""
        backend = FakeBackend(status=status, behavior=behavior, login_disconnect=login_disconnect, host=host)
        started: FakeBackend = await self._nursery.start(backend.run)
        return started


def _check_behavior(value: str) -> None:
    if value not in get_args(Behavior):
        raise ValueError(f"unknown behavior {value!r}: expected one of {', '.join(get_args(Behavior))}")


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # The port goes back and forth between a listener and a placeholder; REUSEADDR lets either bind it
    # while the other's accepted connections (or their TIME_WAIT) still hold it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def _bind(host: str, port: int) -> socket.socket:
    sock = _socket(host)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _listen(host: str, port: int) -> trio.socket.SocketType:
    sock = _bind(host, port)
    try:
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return trio.socket.from_stdlib_socket(sock)
