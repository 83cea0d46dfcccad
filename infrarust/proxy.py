"""The listener, the per-connection flow, the live sessions, and :func:`serve`.

Data flows one way through :meth:`Proxy._handle_client`: accept -> read the hello (handshake, and the login
start when logging in) -> route -> connect -> send what the client sent -> relay -> log the result.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

import attrs
import trio

from infrarust._listen import accept, open_listener
from infrarust._logfmt import quote
from infrarust.admission import IpFilterRule, NetworkSet, RateLimiter, parse_ip
from infrarust.backend import backend_handshake, close, connect_backend
from infrarust.bans import BanFileError, BanList, maintain, open_ban_list
from infrarust.config import ProxyConfig, ServerConfig, format_duration, load_config
from infrarust.config._models import Address, ProxyMode, UnknownDomainBehavior
from infrarust.metrics import Metrics, serve_metrics, worker_bind
from infrarust.protocol import (
    Handshake,
    HelloReader,
    LegacyLogin,
    LegacyPing,
    LoginStart,
    NextState,
    PacketReader,
    ProtocolError,
    encode_legacy_disconnect,
    encode_login_disconnect,
    encode_proxy_v2,
    parse_login_start,
    parse_proxy_header,
)
from infrarust.routing import Router
from infrarust.serverlist import ServerList
from infrarust.transport import (
    ForwardEndReason,
    ForwardResult,
    Traffic,
    select_forwarder,
    tune_socket,
)

logger = logging.getLogger("infrarust")

# How long a lone ``FE`` or ``FE 01`` waits for more bytes before it is taken as a legacy ping: the Beta and
# 1.4/1.5 clients send nothing else, while a modern handshake of length 254 starts with the same two bytes
# and is followed at once by the rest of its packet.
LEGACY_PING_WAIT = 0.25
# One read of the client's first bytes; a handshake plus login start is a few hundred bytes.
HELLO_READ_SIZE = 4096
# A login start never comes near this; past it we stop looking for the name and forward the bytes as is.
LOGIN_START_LIMIT = 4096
# Linux copies a listening socket's TCP_NODELAY and keepalive options to the connections it accepts.
LISTENER_OPTIONS_INHERITED = sys.platform == "linux"
# What a refused player is told.
UNKNOWN_DOMAIN_MESSAGE = "There is no server at this address. Check the address you typed."
RATE_LIMITED_MESSAGE = "Too many connection attempts from your address. Please wait a moment and try again."
FILTERED_MESSAGE = "You are not allowed to join this server."
FULL_MESSAGE = "The server is full. Please try again later."


class PlayerNotActiveError(Exception):
    """The player's session relays raw bytes, so the proxy cannot speak the game protocol to it."""


@attrs.define(eq=False)
class Player:
    """A live relayed session, as seen by an embedding program (``proxy.sessions``).

    Forwarding modes are passive: the proxy never reads the stream after the handshake, so it can only end
    the session, not talk to the player or move them.
    """

    server: ServerConfig
    client_address: str
    handshake: Handshake
    login: LoginStart | None
    started_at: float
    traffic: Traffic = attrs.field(factory=Traffic)
    result: ForwardResult | None = None  # set when the session has ended
    _cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, alias="_cancel_scope")

    @property
    def name(self) -> str | None:
        """The user name from the login start, when it could be read."""
        return self.login.name if self.login is not None else None

    @property
    def mode(self) -> ProxyMode:
        """The server's proxy mode for this session."""
        return self.server.proxy_mode

    def disconnect(self) -> None:
        """End the session now: both sockets are closed and the session ends with reason ``Shutdown``."""
        self._cancel_scope.cancel()

    async def send_message(self, message: str) -> None:
        """Not possible in a forwarding mode: always raises :class:`PlayerNotActiveError`."""
        raise PlayerNotActiveError(
            f"cannot send a message: {self.mode.value} sessions are relayed as raw bytes"
        )

    async def switch_server(self, server: str) -> None:
        """Not possible in a forwarding mode: always raises :class:`PlayerNotActiveError`."""
        raise PlayerNotActiveError(
            f"cannot switch server: {self.mode.value} sessions are relayed as raw bytes"
        )


class _Generation:
    """Everything derived from one configuration; a reload swaps it whole, so a connection sees one."""

    def __init__(self, config: ProxyConfig, metrics: Metrics) -> None:
        self.config = config
        self.router = Router(config.servers)
        self.serverlist = ServerList(config, metrics)
        limits = config.rate_limit
        self.login_limiter = RateLimiter(limits.max_connections, limits.window)
        self.status_limiter = RateLimiter(limits.status_max, limits.status_window)
        self.ip_rules = {server.name: IpFilterRule(server.ip_filter) for server in config.servers}
        self.trusted = NetworkSet(config.proxy_protocol_trusted)


@attrs.frozen
class _Client:
    """Where a connection comes from: the peer, or the client a trusted PROXY header names."""

    address: tuple[str, int] | None
    local: tuple[str, int] | None  # the address the client connected to, when a PROXY header named it

    def __str__(self) -> str:
        return str(Address(*self.address)) if self.address is not None else "-"

    @property
    def ip(self) -> str:
        return self.address[0] if self.address is not None else "-"


@attrs.frozen
class _Hello:
    """What the client sent before relaying starts: the decoded first packet and every byte received."""

    event: Handshake | LegacyPing | LegacyLogin
    received: bytes  # everything read from the client so far, in order
    rest: bytes  # the bytes after the first packet (a suffix of ``received``)
    login: LoginStart | None = None


class Proxy:
    """A running proxy: its bound address, its live sessions, its bans, and :meth:`reload`.

    Made by :func:`serve`; an embedding program gets it from ``await nursery.start(infrarust.serve, config)``.
    ``bans`` is the :class:`~infrarust.bans.BanList` of ``[ban] file`` (``proxy.bans.ban_player(name=...,
    reason=...)`` bans and saves at once); a reload keeps it unless ``[ban] file`` changes. An invalid ban
    file raises :class:`~infrarust.bans.BanFileError` here.
    ``metrics`` is its :class:`~infrarust.metrics.Metrics` registry (kept across reloads), served over HTTP
    when the configuration has ``[metrics]``; ``metrics_address`` is then the endpoint's bound (host, port).
    ``worker`` is the worker number under ``workers = N`` (1 to N): worker N serves metrics on the
    configured port + N - 1.
    """

    def __init__(self, config: ProxyConfig, *, worker: int | None = None) -> None:
        self.metrics = Metrics(
            open_connections=lambda: self._connections, live_sessions=lambda: self._sessions
        )
        self.metrics_address: tuple[str, int] | None = None
        self._worker = worker
        self._generation = _Generation(config, self.metrics)
        self.bans: BanList = open_ban_list(config)
        self._sessions: set[Player] = set()
        self._players_by_server: collections.Counter[str] = collections.Counter()
        self._connections = 0
        self._listener: trio.SocketListener | None = None
        self.address: tuple[str, int] = (config.bind.host, config.bind.port)

    @property
    def config(self) -> ProxyConfig:
        """The configuration new connections use."""
        return self._generation.config

    @property
    def port(self) -> int:
        """The port the listener is bound to (the real one when the configuration asked for port 0)."""
        return self.address[1]

    @property
    def sessions(self) -> tuple[Player, ...]:
        """The sessions relaying right now."""
        return tuple(self._sessions)

    @property
    def connections(self) -> int:
        """Client connections open right now, relaying or still handshaking."""
        return self._connections

    def reload(self, config: ProxyConfig | None = None) -> bool:
        """Use a new configuration for new connections; sessions already relaying are untouched.

        Without an argument the configuration is loaded again from its file. A configuration that fails to
        load is rejected whole and the old one stays; the return value says whether the new one was taken.
        ``bind`` and ``workers`` are read at start only: the listener keeps its address.
        """
        current = self._generation.config
        if config is None:
            if current.source is None:
                logger.warning("reload skipped: the configuration was not loaded from a file")
                self.metrics.config_reload("rejected")
                return False
            try:
                config = load_config(current.source)
            except Exception as exc:  # a bad file must never take down a running proxy
                logger.error("reload rejected, keeping the old configuration: %s", exc)
                self.metrics.config_reload("rejected")
                return False
        # The listener is already bound: bind (and workers) are start-time settings.
        if config.metrics != current.metrics:  # the endpoint is already bound (or was never started)
            logger.warning("metrics changes take effect at the next start; the endpoint stays as it is")
        config = attrs.evolve(config, bind=current.bind, workers=current.workers, metrics=current.metrics)
        try:  # the ban file is read again too (the same one, or the new one); a bad one rejects it all
            self.bans = open_ban_list(config, self.bans)
        except BanFileError as exc:
            logger.error(
                "reload rejected, keeping the old configuration: %s", exc.config_error(config.source)
            )
            self.metrics.config_reload("rejected")
            return False
        self._generation = _Generation(config, self.metrics)
        self.metrics.config_reload("ok")
        if self._listener is not None:  # new keepalive settings for the connections accepted from now on
            tune_socket(self._listener.socket, config.keepalive)
        logger.info("configuration reloaded servers=%d", len(config.servers))
        return True

    async def run(self, *, task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Listen, report this object through ``task_status`` once listening, and serve until cancelled."""
        config = self._generation.config
        listener = await open_listener(config.bind, reuseport=config.so_reuseport, keepalive=config.keepalive)
        self._listener = listener
        async with listener, trio.open_nursery() as nursery:
            sockname = listener.socket.getsockname()
            self.address = (sockname[0], sockname[1])
            logger.debug("accepting on %s", Address(self.address[0], self.address[1]))
            nursery.start_soon(
                maintain, lambda: self.bans, lambda: self._generation.config.ban.purge_interval
            )
            if config.metrics is not None:
                bind = worker_bind(config.metrics.bind, self._worker)
                self.metrics_address = await nursery.start(serve_metrics, self.metrics, bind)
                logger.info("metrics on %s", Address(*self.metrics_address))
            task_status.started(self)
            while True:
                nursery.start_soon(self._handle_connection, await accept(listener, "proxy"))

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        try:
            limit = self._generation.config.max_connections
            if limit and self._connections >= limit:
                logger.info(
                    "connection refused client=%s reason=max_connections limit=%d", _peer(stream), limit
                )
                self.metrics.connection("refused_max_connections")
                return
            self._connections += 1
            try:
                await self._handle_client(stream)
            except ProtocolError as exc:  # a client speaking nonsense after its handshake (server list)
                logger.info("bad packet client=%s error=%s", _peer(stream), quote(str(exc)))
            except trio.BrokenResourceError as exc:
                logger.info("client connection lost client=%s error=%s", _peer(stream), quote(str(exc)))
            except Exception:  # one broken connection must never take the proxy down
                logger.exception("connection failed client=%s", _peer(stream))
            finally:
                self._connections -= 1
        finally:
            close(stream)

    async def _handle_client(self, stream: trio.SocketStream) -> None:
        generation = self._generation  # a reload mid-connection does not change what this one sees
        config = generation.config
        client = _Client(_address(stream.socket.getpeername), None)
        hello: _Hello | None = None
        with trio.move_on_after(config.handshake_timeout) as deadline:
            try:
                initial = b""
                if config.receive_proxy_protocol and (
                    not generation.trusted or parse_ip(client.ip) in generation.trusted
                ):
                    client, initial = await _read_proxy_header(stream, client)
                hello = await _read_hello(stream, initial)
            except ProtocolError as exc:
                logger.info("bad handshake client=%s error=%s", client, quote(str(exc)))
                self.metrics.connection("bad_handshake")
                return
            except trio.BrokenResourceError as exc:
                logger.info("client reset before its handshake client=%s error=%s", client, quote(str(exc)))
                self.metrics.connection("closed_early")
                return
        if deadline.cancelled_caught:
            logger.info(
                "handshake timeout client=%s after=%s", client, format_duration(config.handshake_timeout)
            )
            self.metrics.connection("handshake_timeout")
            return
        if hello is None:
            logger.info("client closed before its handshake client=%s", client)
            self.metrics.connection("closed_early")
            return
        event = hello.event
        if isinstance(event, LegacyPing):
            handshake = Handshake(
                event.protocol_version or 0, event.host or "", event.port or 0, NextState.STATUS
            )
        elif isinstance(event, LegacyLogin):
            handshake = Handshake(
                event.protocol_version or 0, event.host or "", event.port or 0, NextState.LOGIN
            )
        else:
            handshake = event
        status = handshake.next_state == NextState.STATUS
        # Logins only: a banned IP's server-list pings are answered, as vanilla servers do.
        if not status and self.bans:
            name, player_uuid = _identity(hello)
            ban = self.bans.match(client.ip, name, player_uuid)
            if ban is not None:
                self.bans.log_refusal(ban, client=str(client), name=name, uuid=player_uuid)
                self.metrics.connection("banned")
                await _send_quietly(stream, _refusal(hello, ban.message()))
                return
        limiter = generation.status_limiter if status else generation.login_limiter
        if not limiter.allow(client.ip, trio.current_time()):
            logger.info("rate limited client=%s kind=%s", client, "status" if status else "login")
            self.metrics.connection("rate_limited")
            if not status:
                await _send_quietly(stream, _refusal(hello, RATE_LIMITED_MESSAGE))
            return
        server = generation.router.route(handshake.host) if handshake.host else None
        if server is None:
            await self._unknown_domain(stream, hello, handshake, generation, client)
            return
        if not generation.ip_rules[server.name].allows(parse_ip(client.ip)):
            logger.info("ip filtered server=%s client=%s", server.name, client)
            self.metrics.connection("ip_filtered")
            if not status:
                await _send_quietly(stream, _refusal(hello, FILTERED_MESSAGE))
            return
        proxy_header = _outbound_proxy_header(server, client, stream)
        if isinstance(event, LegacyPing):
            self.metrics.connection("legacy_ping")
            await generation.serverlist.answer_legacy_ping(stream, event, server, proxy_header)
            return
        if status:
            self.metrics.connection("status")
            await generation.serverlist.answer_status(stream, handshake, hello.rest, server, proxy_header)
            return
        if server.max_players and self._players_by_server[server.name] >= server.max_players:
            logger.info(
                "server full server=%s client=%s max_players=%d", server.name, client, server.max_players
            )
            self.metrics.connection("full")
            await _send_quietly(stream, _refusal(hello, FULL_MESSAGE))
            return
        connected = await connect_backend(server, config.connect_timeout, config.keepalive)
        if connected is None:
            logger.info("backend unreachable server=%s client=%s", server.name, client)
            self.metrics.connection("backend_unreachable")
            self.metrics.backend_connect_failure(server.name)
            await _send_quietly(stream, _refusal(hello, server.disconnect_message))
            return
        backend, address = connected
        try:
            first = proxy_header + _first_bytes(hello, handshake, server, address)
            await self._relay(stream, backend, first, hello, handshake, server, client, config)
        finally:
            close(backend)

    async def _unknown_domain(
        self,
        stream: trio.SocketStream,
        hello: _Hello,
        handshake: Handshake,
        generation: _Generation,
        client: _Client,
    ) -> None:
        self.metrics.connection("unknown_domain")
        drop = generation.config.unknown_domain_behavior is UnknownDomainBehavior.DROP
        logger.info(
            "unknown domain client=%s host=%s action=%s",
            client,
            quote(handshake.host or "-"),
            "drop" if drop else "motd",
        )
        if drop:
            return
        if isinstance(hello.event, LegacyPing):
            await generation.serverlist.answer_legacy_ping(stream, hello.event, None, b"")
        elif handshake.next_state == NextState.STATUS:
            await generation.serverlist.answer_status(stream, handshake, hello.rest, None, b"")
        else:
            await _send_quietly(stream, _refusal(hello, UNKNOWN_DOMAIN_MESSAGE))

    async def _relay(
        self,
        client_stream: trio.SocketStream,
        backend: trio.SocketStream,
        first: bytes,
        hello: _Hello,
        handshake: Handshake,
        server: ServerConfig,
        client: _Client,
        config: ProxyConfig,
    ) -> None:
        if not LISTENER_OPTIONS_INHERITED:
            tune_socket(client_stream, config.keepalive)
        player = Player(server, str(client), handshake, hello.login, trio.current_time())
        self._sessions.add(player)
        self._players_by_server[server.name] += 1
        self.metrics.connection("relayed")
        result: ForwardResult | None = None
        try:
            await backend.send_all(first)
            player.traffic.client_to_backend += len(first)
            with player._cancel_scope:
                forwarder = select_forwarder(server.proxy_mode, pipe_size=config.zero_copy.pipe_size)
                result = await forwarder.forward(
                    client_stream,
                    backend,
                    player.traffic,
                    read_timeout=server.timeouts.read,
                    write_timeout=server.timeouts.write,
                )
            if result is None:  # disconnect() cancelled the scope
                result = player.traffic.result(ForwardEndReason.SHUTDOWN, "disconnected by the proxy")
        except trio.BrokenResourceError as exc:
            result = player.traffic.result(ForwardEndReason.ERROR, str(exc) or "backend closed early")
        finally:
            self._sessions.discard(player)
            self._players_by_server[server.name] -= 1
            if result is None:  # cancelled from outside: the proxy is shutting down
                result = player.traffic.result(ForwardEndReason.SHUTDOWN)
            player.result = result
            # In the same step as leaving _sessions: a scrape never counts these bytes twice or not at all.
            self.metrics.session_ended(server.name, server.proxy_mode.value, result)
            _log_session_end(player, result)


async def serve(
    config: ProxyConfig, *, task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Run a proxy until cancelled; use with ``proxy = await nursery.start(serve, config)``.

    ``nursery.start`` returns the :class:`Proxy` once it is listening (``proxy.port`` is the bound port).
    Cancelling the surrounding nursery is shutdown: every relayed session ends with reason ``Shutdown``.
    """
    await Proxy(config).run(task_status=task_status)


async def _read_proxy_header(stream: trio.SocketStream, client: _Client) -> tuple[_Client, bytes]:
    """Read the PROXY v1/v2 header a load balancer puts first; returns the client it names and the bytes
    that came after it. A LOCAL / UNKNOWN header (health checks) keeps the peer's own address.
    """
    received = bytearray()
    while (parsed := parse_proxy_header(received)) is None:
        data = await stream.receive_some(HELLO_READ_SIZE)
        if not data:
            raise ProtocolError("closed in the middle of the PROXY header" if received else "no PROXY header")
        received += data
    header, consumed = parsed
    if header.source is not None:
        client = _Client(header.source, header.destination)
    return client, bytes(received[consumed:])


async def _read_hello(stream: trio.SocketStream, initial: bytes = b"") -> _Hello | None:
    """Read the client's first packet, and for a login its login start; None if the client closed first.

    ``initial`` holds bytes already read (after a PROXY header). The caller bounds this with
    ``handshake_timeout``; every byte read is kept, in order, for the backend.
    """
    reader = HelloReader()
    received = bytearray(initial)
    event: Handshake | LegacyPing | LegacyLogin | None = reader.feed(initial) if initial else None
    while event is None:
        if reader.legacy_ping_pending:
            data = b""
            with trio.move_on_after(LEGACY_PING_WAIT):
                data = await stream.receive_some(HELLO_READ_SIZE)
        else:
            data = await stream.receive_some(HELLO_READ_SIZE)
            if not data:
                if not received:
                    return None
                event = reader.feed_eof()
                if event is None:
                    raise ProtocolError("client closed in the middle of its first packet")
                break
        if not data:  # a lone FE / FE 01 with nothing after it: a legacy ping
            event = reader.feed_eof()
            continue
        received += data
        event = reader.feed(data)
    rest = reader.take_leftover()
    login = None
    if isinstance(event, Handshake) and event.next_state != NextState.STATUS:
        login, extra = await _read_login_start(stream, event, rest)
        received += extra
        rest += extra
    return _Hello(event, bytes(received), bytes(rest), login)


async def _read_login_start(
    stream: trio.SocketStream, handshake: Handshake, rest: bytes
) -> tuple[LoginStart | None, bytes]:
    """Wait for the login start after a login handshake, to learn the player's name (best effort).

    Returns the parsed login start (None when it cannot be read) and the bytes read here, which the caller
    forwards like all the others.
    """
    packets = PacketReader(max_packet_size=LOGIN_START_LIMIT)
    extra = bytearray()
    packets.feed(rest)
    try:
        while (packet := packets.next_packet()) is None:
            data = await stream.receive_some(HELLO_READ_SIZE)
            if not data:
                return None, bytes(extra)
            extra += data
            packets.feed(data)
    except ProtocolError:
        return None, bytes(extra)
    return parse_login_start(packet, handshake.protocol_version), bytes(extra)


def _first_bytes(hello: _Hello, handshake: Handshake, server: ServerConfig, address: Address) -> bytes:
    """What the backend gets before relaying: the handshake (rewritten if asked) and all that followed."""
    if not isinstance(hello.event, Handshake):  # a legacy login is relayed exactly as it came
        return hello.received
    shown = backend_handshake(handshake, server, address)
    return hello.received if shown is handshake else shown.encode() + hello.rest


def _outbound_proxy_header(server: ServerConfig, client: _Client, stream: trio.SocketStream) -> bytes:
    """The PROXY v2 header a server with ``send_proxy_protocol`` gets first, naming the real client."""
    if not server.send_proxy_protocol or client.address is None:
        return b""
    local = client.local or _address(stream.socket.getsockname)
    return encode_proxy_v2(client.address, local) if local is not None else b""


def _identity(hello: _Hello) -> tuple[str | None, uuid.UUID | None]:
    """The name and UUID a logging-in client gave (a legacy login has only a name)."""
    if isinstance(hello.event, LegacyLogin):
        return hello.event.username, None
    if hello.login is None:
        return None, None
    return hello.login.name, hello.login.uuid


def _refusal(hello: _Hello, message: str) -> bytes:
    """The packet that tells a logging-in client why it goes no further, in its own protocol's format."""
    if isinstance(hello.event, LegacyLogin):
        return encode_legacy_disconnect(message)
    return encode_login_disconnect(message)


async def _send_quietly(stream: trio.SocketStream, data: bytes) -> None:
    """Send a last message to a client that may already be gone; a failure here changes nothing."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


def _log_session_end(player: Player, result: ForwardResult) -> None:
    duration = trio.current_time() - player.started_at
    extra = f" error={quote(result.error)}" if result.error else ""
    logger.info(
        "session ended server=%s player=%s mode=%s c2b=%d b2c=%d reason=%s duration=%.3fs client=%s%s",
        player.server.name,
        quote(player.name or "-"),
        player.mode.value,
        result.client_to_backend,
        result.backend_to_client,
        result.reason.value,
        duration,
        player.client_address,
        extra,
    )


def _address(get: Callable[[], Any]) -> tuple[str, int] | None:
    """``getpeername`` / ``getsockname`` as (host, port), None when the socket is already gone."""
    try:
        name = get()
    except OSError:
        return None
    return (name[0], name[1])


def _peer(stream: trio.SocketStream) -> str:
    return str(_Client(_address(stream.socket.getpeername), None))
