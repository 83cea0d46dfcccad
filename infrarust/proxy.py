"""The proxy: its listeners, the per-connection pipeline, the live sessions, drain, reload and :func:`serve`.

Every connection takes one path, in one direction:

    accept -> preamble -> admission -> connect -> relay -> finish

The preamble is read by the sans-IO :class:`~infrarust.protocol.Preamble`; admission
(:class:`~infrarust.admission.Admission`) decides who comes in and where they go (hooks included);
a stage that stops a connection returns an outcome, and :meth:`Proxy._finish` is the one place that tells
the client, logs, counts and publishes it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import socket
import struct
import sys
import uuid as uuid_module
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, NamedTuple

import attrs
import trio

from infrarust import logs
from infrarust._listen import accept_peer, open_listener
from infrarust._ondemand import OnDemand
from infrarust.admission import Admission, NetworkSet, parse_ip
from infrarust.backend import backend_handshake, close
from infrarust.bans import (
    BanEntry,
    BanFileError,
    BanList,
    maintain,
    normalize_ip,
    normalize_name,
    open_ban_list,
    open_ban_list_async,
    parse_uuid,
)
from infrarust.config import (
    Address,
    ConfigError,
    ConfigProblem,
    ProxyConfig,
    ServerConfig,
    UnknownDomainBehavior,
    format_duration,
    load_config,
)
from infrarust.connection import Answered, Connection, Failed, Ignored, Outcome, Refusal
from infrarust.events import (
    DEFAULT_BUFFER,
    ConfigReloaded,
    ConnectionRefused,
    Event,
    EventBus,
    SessionEnded,
    SessionStarted,
)
from infrarust.hooks import CommandHook, CommandHooks, HookHandle, Hooks, PreConnectHook
from infrarust.intercepted import serve_intercepted
from infrarust.metrics import Metrics, serve_metrics, worker_bind
from infrarust.player import Player
from infrarust.protocol import (
    NEED_DATA,
    ClientClosed,
    Handshake,
    HelloReceived,
    LegacyLogin,
    LegacyPing,
    LoginStart,
    LoginStartReceived,
    Preamble,
    PreambleComplete,
    ProtocolError,
    ProxyHeaderReceived,
    encode_legacy_disconnect,
    encode_login_disconnect,
    encode_proxy_v2,
)
from infrarust.routing import Router
from infrarust.scaling import Scaling
from infrarust.serverlist import ServerList
from infrarust.transport import (
    ForwardEndReason,
    Forwarders,
    ForwardResult,
    Traffic,
    tune_socket,
    unacknowledged,
    write_all,
)

log = logs.get_logger(__name__)

# How long a lone ``FE`` or ``FE 01`` waits for more bytes before it is taken as a legacy ping: the Beta and
# 1.4/1.5 clients send nothing else, while a modern handshake of length 254 starts with the same two bytes
# and is followed at once by the rest of its packet.
LEGACY_PING_WAIT = 0.25
# One read of the client's first bytes; a handshake plus login start is a few hundred bytes.
HELLO_READ_SIZE = 4096
# Linux copies a listening socket's TCP_NODELAY and keepalive options to the connections it accepts.
LISTENER_OPTIONS_INHERITED = sys.platform == "linux"
# A cut session (disconnect(), the end of a drain) is half-closed both ways, then given this long at most
# for its peers to take what is already queued for them before the sockets close.
CUT_LINGER = 1.0
CUT_POLL = 0.01
# A refusal is sent to a client that may not read it: never wait on it for long.
REFUSAL_SEND_TIMEOUT = 2.0
# Connections that carry nothing to act on are summarised at INFO this often (each one is a DEBUG line).
IGNORED_SUMMARY_INTERVAL = 60.0

_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() drops the send queue and resets
_METRIC_OUTCOME: dict[str, Any] = {"max_connections": "refused_max_connections"}


@attrs.frozen
class Relayed:
    """A session that relayed and ended: the finish stage's last kind of outcome."""

    player: Player
    result: ForwardResult


class _Generation:
    """Everything derived from one configuration; a reload swaps it whole, so a connection sees one."""

    def __init__(self, config: ProxyConfig, metrics: Metrics, scaling: Scaling) -> None:
        self.config = config
        self.router = Router(config.servers)
        self.admission = Admission(config, self.router)
        self.serverlist = ServerList(config, metrics)
        self.serverlist.scaling = scaling  # fleetwire: balanced status order, fleet-wide counts
        self.trusted = NetworkSet(config.proxy_protocol_trusted)


class Proxy:
    """A running proxy: its address, live sessions, hooks, events, bans, :meth:`drain` and :meth:`reload`.

    Made by :func:`serve`; an embedding program gets it from ``await nursery.start(infrarust.serve, config)``.
    ``bans`` is the :class:`~infrarust.bans.BanList` of ``[ban] file`` (``proxy.bans.ban_player(name=...,
    reason=...)`` bans and saves); a reload keeps it unless ``[ban] file`` changes. An invalid ban file
    raises :class:`~infrarust.bans.BanFileError` here.
    ``metrics`` is its :class:`~infrarust.metrics.Metrics` registry (kept across reloads), served over HTTP
    when the configuration has ``[metrics]``; ``metrics_address`` is then the endpoint's bound (host, port).
    ``worker`` is the worker number under ``workers = N`` (1 to N).
    """

    def __init__(
        self,
        config: ProxyConfig,
        *,
        worker: int | None = None,
        bans: BanList | None = None,
        file_config: ProxyConfig | None = None,
    ) -> None:
        self.metrics = Metrics(
            open_connections=lambda: self._connections,
            live_sessions=lambda: self._sessions,
            servers=lambda: self._generation.config.servers,
            ready=lambda: self._accepting,
        )
        self.metrics_address: tuple[str, int] | None = None
        self._worker = worker
        # fleetwire: balancers, health checks and the [cluster] fleet; they outlive reloads
        self.scaling = Scaling(config, self.metrics, worker)
        self._generation = _Generation(config, self.metrics, self.scaling)
        # What the file said, before command-line options: a reload from the file is compared with it.
        self._file_config = file_config if file_config is not None else config
        # serve() reads the ban file off the event loop and passes it in.
        self.bans: BanList = bans if bans is not None else open_ban_list(config)
        self._events = EventBus()
        self._hooks = Hooks()
        self._clock: Callable[[], float] = trio.current_time
        self.command_hooks = CommandHooks()  # see on_command
        self._forwarders = Forwarders()
        self._sessions: set[Player] = set()
        self._players_by_server: collections.Counter[str] = collections.Counter()
        self._connections = 0
        self._listeners: list[trio.SocketListener] = []
        self._accept_scopes: list[trio.CancelScope] = []
        self._connections_scope: trio.CancelScope | None = None
        self._accepting = False
        self._draining = False
        self._idle = trio.Event()  # set once draining and no connection is left
        self._drained = trio.Event()
        self._ignored: collections.Counter[str] = collections.Counter()
        self.address: tuple[str, int] = (config.bind.host, config.bind.port)
        # ondemand: routes from files, code (add_server) and Docker; [server_manager] servers
        self._ondemand = OnDemand(config, self._routes_changed)
        # A managed server is idle only when the whole fleet has no player on it (without [cluster]: 0).
        self._ondemand.managers.players_elsewhere = self.scaling.fleet_players

    # --- what an embedding program reads -------------------------------------------------------------

    @property
    def config(self) -> ProxyConfig:
        """The configuration new connections use."""
        return self._generation.config

    @property
    def port(self) -> int:
        """The port the (first) listener is bound to (the real one when the configuration asked for 0)."""
        return self.address[1]

    @property
    def sessions(self) -> tuple[Player, ...]:
        """The sessions relaying right now."""
        return tuple(self._sessions)

    @property
    def connections(self) -> int:
        """Client connections open right now, relaying or still handshaking."""
        return self._connections

    @property
    def accepting(self) -> bool:
        """True while the proxy listens and is not draining: what a readiness check asks."""
        return self._accepting

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` (or a signal with ``shutdown_grace``) has begun."""
        return self._draining

    @property
    def hooks(self) -> Hooks:
        """The registered pre-connect hooks (register with :meth:`on_pre_connect`)."""
        return self._hooks

    def players_on(self, server: str) -> int:
        """Sessions relaying to the server named ``server`` right now."""
        return self._players_by_server[server]

    # --- steering ------------------------------------------------------------------------------------

    async def ban_player(
        self,
        name: str | None = None,
        uuid: str | uuid_module.UUID | None = None,
        *,
        reason: str,
        duration: float | None = None,
        source: str = "api",
    ) -> BanEntry:
        """Ban a player (name, UUID or both) on this proxy and, with ``[cluster]``, on the whole fleet.

        The ban file is written off the event loop (it is the fleet's last known copy too).
        """
        entry = await self.bans.ban_player_async(name, uuid, reason=reason, duration=duration, source=source)
        if self.scaling.fleet is not None:
            await self.scaling.fleet.ban(entry)
        return entry

    async def ban_ip(
        self, cidr: str, *, reason: str, duration: float | None = None, source: str = "api"
    ) -> BanEntry:
        """Ban an address or CIDR on this proxy and, with ``[cluster]``, on the whole fleet."""
        entry = await self.bans.ban_ip_async(cidr, reason=reason, duration=duration, source=source)
        if self.scaling.fleet is not None:
            await self.scaling.fleet.ban(entry)
        return entry

    async def unban_player(
        self, name: str | None = None, uuid: str | uuid_module.UUID | None = None, *, source: str = "api"
    ) -> list[BanEntry]:
        """Lift a player's bans here and, with ``[cluster]``, on the whole fleet; returns those lifted."""
        lifted = await self.bans.unban_player_async(name, uuid, source=source)
        folded = normalize_name(name).casefold() if name is not None else None  # names match in any case
        wanted = parse_uuid(uuid) if uuid is not None else None
        return await self._unban_fleet(
            lifted,
            lambda entry: (
                (folded is not None and (entry.name or "").casefold() == folded)
                or (wanted is not None and entry.uuid == wanted)
            ),
        )

    async def unban_ip(self, cidr: str, *, source: str = "api") -> list[BanEntry]:
        """Lift the ban of an address or CIDR here and, with ``[cluster]``, fleet-wide."""
        lifted = await self.bans.unban_ip_async(cidr, source=source)
        target = normalize_ip(cidr)
        return await self._unban_fleet(lifted, lambda entry: entry.ip == target)

    async def _unban_fleet(
        self, lifted: list[BanEntry], matches: Callable[[BanEntry], bool]
    ) -> list[BanEntry]:
        """With a fleet, also lift the matching bans other instances made (this one's file lacks them)."""
        fleet = self.scaling.fleet
        if fleet is None:
            return lifted
        known = {entry.target for entry in lifted}
        lifted = lifted + [e for e in fleet.export_bans() if matches(e) and e.target not in known]
        for entry in lifted:
            await fleet.unban(entry)
        return lifted

    def on_pre_connect(self, fn: PreConnectHook) -> HookHandle:
        """Run ``async fn(connection) -> None | Deny | Redirect`` for every login and server-list connection
        before connecting (see :mod:`infrarust.hooks`); ``handle.remove()`` unregisters it."""
        return self._hooks.add(fn)

    def on_command(self, fn: CommandHook) -> HookHandle:
        """Run ``fn(player, command) -> None | CancelCommand`` (plain or async) for every command a player
        of an intercepted session sends to the backend; ``CancelCommand`` keeps it from the backend (see
        :mod:`infrarust.hooks`). ``handle.remove()`` unregisters it."""
        return self.command_hooks.add(fn)

    def subscribe(self, buffer: int = DEFAULT_BUFFER) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """``async with proxy.subscribe() as events: async for event in events:`` (see
        :mod:`infrarust.events`); at most ``buffer`` events wait unread before :class:`EventsDropped`."""
        return self._events.subscribe(buffer)

    async def drain(self, grace: float) -> None:
        """Stop accepting (the listeners close), let sessions run for up to ``grace`` seconds, then end the
        rest with ``Shutdown``; returns when no connection is left, and :func:`serve` then returns too.

        Logins that arrive on already-accepted connections meanwhile are told the proxy is restarting.
        """
        if not self._draining:
            self._draining = True
            self._stop_accepting()
            log.info(
                "draining",
                grace=format_duration(grace),
                sessions=len(self._sessions),
                connections=self._connections,
            )
        if self._connections == 0:
            self._idle.set()
        with trio.move_on_after(grace):
            await self._idle.wait()
        if not self._idle.is_set():
            for player in tuple(self._sessions):
                player.disconnect()
            with trio.move_on_after(CUT_LINGER + 0.5):
                await self._idle.wait()
            if self._connections_scope is not None:  # connections still reading a preamble or answering
                self._connections_scope.cancel()
                await self._idle.wait()
        self._drained.set()

    async def reload(self, config: ProxyConfig | None = None) -> None:
        """Use a new configuration for new connections; sessions already relaying are untouched.

        Without an argument the configuration is read again from its file (off the event loop). A
        configuration that fails to load, or whose ban file is invalid, is rejected whole: the old one stays
        and :class:`~infrarust.ConfigError` is raised with every problem. ``bind``, ``workers`` and
        ``[metrics]`` apply at start only; a change to them is kept out and warned about.
        """
        try:
            await self._reload(config)
        except ConfigError as exc:
            self.metrics.config_reload("rejected")
            self.publish(ConfigReloaded(False, exc.problems))
            raise
        self.metrics.config_reload("ok")
        self.publish(ConfigReloaded(True))

    async def _reload(self, config: ProxyConfig | None) -> None:
        current = self._generation.config
        if config is None:
            if current.source is None:
                raise ConfigError(
                    [ConfigProblem("-", "-", "the configuration was not loaded from a file: nothing to read")]
                )
            config = await trio.to_thread.run_sync(load_config, current.source)
        source = str(config.source or "-")
        # A file reload is compared with the file as it was (the command line may have changed the running
        # values); a configuration built in code, with what runs.
        before = self._file_config if config.source is not None else current
        for key in ("bind", "workers", "metrics", "so_reuseport"):
            if getattr(config, key) != getattr(before, key):
                log.warning(
                    f"{key} changes take effect at the next start", key=key, kept=getattr(current, key)
                )
        config = attrs.evolve(
            config,
            bind=current.bind,
            workers=current.workers,
            metrics=current.metrics,
            so_reuseport=current.so_reuseport,
        )
        try:  # the ban file is read again too (the same one, or the new one); a bad one rejects it all
            bans = await open_ban_list_async(config, self.bans)
        except BanFileError as exc:
            raise exc.config_error(config.source or source) from None
        self.bans = bans
        if config.source is not None:
            self._file_config = config
        config = self._ondemand.from_file(config)  # ondemand: the code and Docker routes are kept
        self._generation = _Generation(config, self.metrics, self.scaling)
        self.scaling.reload(config)  # fleetwire
        await self._ondemand.follow(config, self._generation.serverlist)  # ondemand
        for listener in self._listeners:  # new keepalive settings for the connections accepted from now on
            tune_socket(listener.socket, config.keepalive)
        log.info("configuration reloaded", servers=len(config.servers))

    # --- ondemand: servers added from code, and every provider's change (infrarust/_ondemand.py) ------

    async def add_server(self, server: ServerConfig) -> None:
        """Route ``server`` from now on (an added server of the same name is replaced), as a reload does:
        sessions are untouched and ``ConfigReloaded`` is published. The configuration's own servers win a
        domain or name they also claim (the conflict is logged); a reload keeps added servers."""
        await self._ondemand.add_server(server)

    async def remove_server(self, name: str) -> bool:
        """Stop routing the server ``name`` added by :meth:`add_server` (its sessions go on); False when
        no server of that name was added."""
        return await self._ondemand.remove_server(name)

    async def _routes_changed(self) -> None:
        """A route provider changed: the running configuration with the merged servers, like a reload."""
        config = self._ondemand.routed(self._generation.config)
        self._generation = _Generation(config, self.metrics, self.scaling)
        self.scaling.reload(config)  # fleetwire: balancers follow the servers
        await self._ondemand.follow(config, self._generation.serverlist)
        log.info("routes changed", servers=len(config.servers))
        self.publish(ConfigReloaded(True))

    async def follow_signals(
        self,
        signals: AsyncIterator[int],
        cancel_scope: trio.CancelScope,
        *,
        on_stopping: Callable[[], object] | None = None,
    ) -> None:
        """Act on process signals until the proxy has stopped: SIGHUP reloads (a rejection is one log
        line); the first SIGINT/SIGTERM drains for ``shutdown_grace`` then cancels ``cancel_scope``; a
        second one cancels it at once."""
        async with trio.open_nursery() as nursery:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:
                        await self.reload()
                    except ConfigError as exc:
                        log.error(
                            "reload rejected",
                            action="keeping the old configuration",
                            problems="; ".join(str(problem) for problem in exc.problems),
                        )
                    continue
                name = signal.Signals(signum).name
                if self._draining:
                    log.info("shutting down now", signal=name, sessions=len(self._sessions))
                    cancel_scope.cancel()
                    return
                grace = self._generation.config.shutdown_grace
                if on_stopping is not None:
                    on_stopping()
                log.info("shutting down", signal=name, grace=format_duration(grace))
                nursery.start_soon(self._drain_then_cancel, grace, cancel_scope)

    async def _drain_then_cancel(self, grace: float, cancel_scope: trio.CancelScope) -> None:
        await self.drain(grace)
        cancel_scope.cancel()

    # --- running -------------------------------------------------------------------------------------

    async def run(
        self,
        *,
        listeners: Sequence[trio.SocketListener] | None = None,
        task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen (on ``listeners`` if given, else on ``config.bind``), report this object through
        ``task_status`` once listening, and serve until cancelled or drained."""
        # The run's clock, read straight (trio.current_time goes through two more calls per read).
        self._clock = trio.lowlevel.current_clock().current_time
        config = self._generation.config
        if listeners is None:
            listeners = [
                await open_listener(
                    config.bind,
                    reuseport=config.so_reuseport,
                    keepalive=config.keepalive,
                    client_speaks_first=True,
                )
            ]
        elif not listeners:
            raise ValueError("serve() needs at least one listener")
        else:
            for listener in listeners:
                tune_socket(listener.socket, config.keepalive)
        self._listeners = list(listeners)
        sockname = self._listeners[0].socket.getsockname()
        self.address = (sockname[0], sockname[1])
        try:
            async with trio.open_nursery() as services:
                services.start_soon(
                    maintain, lambda: self.bans, lambda: self._generation.config.ban.purge_interval
                )
                services.start_soon(self._summarise_ignored)
                # fleetwire: health checks, and the fleet joined (or degraded) before accepting
                await services.start(self.scaling.run, self.bans.entries())
                await services.start(self._ondemand.run, config.docker)  # ondemand: managers, Docker routes
                await self._ondemand.follow(self._generation.config, self._generation.serverlist)
                if config.metrics is not None:
                    bind = worker_bind(config.metrics.bind, self._worker)
                    self.metrics_address = await services.start(serve_metrics, self.metrics, bind)
                    log.info(
                        f"metrics on {Address(*self.metrics_address)}", address=Address(*self.metrics_address)
                    )
                async with trio.open_nursery() as connections:
                    self._connections_scope = connections.cancel_scope
                    for listener in self._listeners:
                        scope = trio.CancelScope()
                        self._accept_scopes.append(scope)
                        connections.start_soon(self._accept_loop, listener, connections, scope)
                    self._accepting = not self._draining
                    task_status.started(self)
                    await self._drained.wait()
                services.cancel_scope.cancel()
        finally:
            self._accepting = False
            self._stop_accepting()
            self._forwarders.close()

    def _stop_accepting(self) -> None:
        self._accepting = False
        for scope in self._accept_scopes:
            scope.cancel()
        for listener in self._listeners:
            listener.socket.close()

    async def _accept_loop(
        self, listener: trio.SocketListener, nursery: trio.Nursery, scope: trio.CancelScope
    ) -> None:
        with scope:
            while True:
                try:
                    stream, peer = await accept_peer(listener, "proxy")
                except (trio.ClosedResourceError, OSError):
                    if self._draining or not self._accepting:
                        return
                    raise
                nursery.start_soon(self._handle_connection, stream, peer)

    async def _summarise_ignored(self) -> None:
        while True:
            await trio.sleep(IGNORED_SUMMARY_INTERVAL)
            if self._ignored:
                for kind, count in sorted(self._ignored.items()):
                    log.info("ignored connections", count=count, by=kind)
                self._ignored.clear()

    # --- the pipeline --------------------------------------------------------------------------------

    async def _handle_connection(self, stream: trio.SocketStream, peer: Any = None) -> None:
        generation = self._generation  # a reload mid-connection does not change what this one sees
        client = (peer[0], peer[1]) if peer else _address(stream.socket.getpeername)
        connection = Connection(client, self._clock())
        try:
            limit = generation.config.max_connections
            if limit and self._connections >= limit:
                await self._finish(stream, connection, generation, Refusal("max_connections", None))
                return
            self._connections += 1
            try:
                outcome = await self._pipeline(stream, connection, generation)
                if isinstance(outcome, _Connected):
                    # Relayed from here, not from the pipeline: its frame and the preamble reader it held
                    # are gone for the session's life (idle sessions are what an operator holds thousands of).
                    try:
                        await self._relay(stream, connection, generation.config, outcome)
                    finally:
                        close(outcome.backend)
                elif outcome is not None:
                    await self._finish(stream, connection, generation, outcome)
            finally:
                self.scaling.end(connection)  # fleetwire: its fleet reservation and balancer session
                self._connections -= 1
                if self._connections == 0 and self._draining:
                    self._idle.set()
        finally:
            close(stream)

    async def _pipeline(
        self, stream: trio.SocketStream, connection: Connection, generation: _Generation
    ) -> Outcome | _Connected | None:
        """preamble -> admission -> connect: the backend to relay to, or how the connection stopped (None once
        an intercepted session ended: it finishes its own session, even when cancelled)."""
        config = generation.config
        clock = self._clock
        try:
            preamble = self._new_preamble(connection, generation)
            # Most clients send the handshake and the login start at once, and the listener accepts only
            # once data has arrived (TCP_DEFER_ACCEPT): the first read is tried without waiting, and a
            # deadline scope is only entered when the proxy has to wait for more.
            tried = _read_now(stream, preamble, connection)
            stopped = None if isinstance(tried, _Wait) else tried
            if isinstance(tried, _Wait):
                # The deadline counts from the accept (when the client started to wait for us).
                deadline = trio.CancelScope(deadline=connection.accepted_at + config.handshake_timeout)
                with deadline:
                    stopped = await _read_preamble(stream, preamble, connection)
                if deadline.cancelled_caught:
                    return Refusal(
                        "handshake_timeout", None, {"after": format_duration(config.handshake_timeout)}
                    )
            if stopped is not None:
                return stopped
            started = clock()
            self.metrics.handshake_time(started - connection.accepted_at)
            refusal = await generation.admission.admit(connection, self)
            if refusal is not None:
                return refusal
            server = connection.server
            assert server is not None and connection.handshake is not None
            if log.enabled(logging.DEBUG):
                log.debug(
                    "route chosen",
                    client=connection.client_text,
                    host=connection.handshake.host,
                    server=server.name,
                    match=connection.route,
                )
            proxy_header = _outbound_proxy_header(server, connection, stream)
            if isinstance(connection.event, LegacyPing):
                await generation.serverlist.answer_legacy_ping(stream, connection.event, server, proxy_header)
                return Answered("legacy_ping")
            if connection.is_status:
                await generation.serverlist.answer_status(
                    stream, connection.handshake, connection.rest, server, proxy_header
                )
                return Answered("status")
            if server.server_manager is not None:  # ondemand: a login waits for a managed server to start
                held = await self._ondemand.wake(server)
                if held is not None:
                    return held
            if not server.proxy_mode.is_forwarding:  # offline, client_only: the proxy speaks the protocol
                return await serve_intercepted(self, stream, connection, config)
            connected = await self.scaling.connect(connection, server, config)  # fleetwire: balanced
            if connected is None:
                return Refusal("backend_unreachable", server.disconnect_message)
            connected_at = clock()
            self.metrics.backend_connect_time(server.name, connected_at - started)
        except ProtocolError as exc:  # a client speaking nonsense after its handshake (server list)
            return Failed("bad_packet", str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            return Failed("connection_lost", str(exc) or type(exc).__name__)
        return _Connected(*connected, proxy_header, connected_at)

    def _new_preamble(self, connection: Connection, generation: _Generation) -> Preamble:
        """The sans-IO reader of this connection's first bytes (a PROXY header first, when one is due)."""
        config = generation.config
        expect_header = config.receive_proxy_protocol and (
            not generation.trusted or parse_ip(connection.ip) in generation.trusted
        )
        return Preamble(proxy_header=expect_header)

    async def _relay(
        self,
        client_stream: trio.SocketStream,
        connection: Connection,
        config: ProxyConfig,
        connected: _Connected,
    ) -> None:
        backend, address, proxy_header, started_at = connected
        if not LISTENER_OPTIONS_INHERITED:
            tune_socket(client_stream, config.keepalive)
        server = connection.server
        assert server is not None and connection.handshake is not None
        player = Player(
            server,
            connection.client_text,
            connection.handshake,
            connection.login,
            started_at,
            backend_address=str(address),
        )
        self.session_started(player)
        traffic = player.traffic
        result: ForwardResult | None = None
        try:
            first = proxy_header + _first_bytes(connection, server, address)  # mostly connection.received
            await _send_first(backend, first)
            traffic.client_to_backend += len(first)
            forwarder = self._forwarders.get(server.proxy_mode, config.zero_copy.pipe_size)
            result = await forwarder.forward(
                client_stream,
                backend,
                traffic,
                read_timeout=server.timeouts.read,
                write_timeout=server.timeouts.write,
                cut=player._cut,
            )
            if result is None:  # disconnect() or the end of a drain cut the session
                result = await _cut(client_stream, backend, traffic)
            elif result.reason is ForwardEndReason.ERROR:
                result = _acknowledged(client_stream, backend, traffic, result.reason, result.error)
        except trio.BrokenResourceError as exc:
            result = _acknowledged(
                client_stream, backend, traffic, ForwardEndReason.ERROR, str(exc) or "backend closed early"
            )
        finally:
            if result is None:  # cancelled from outside: the proxy is stopping at once
                result = _acknowledged(client_stream, backend, traffic, ForwardEndReason.SHUTDOWN)
            self.session_ended(connection, player, result)

    # --- what every kind of relay reports (forwarding here, the intercepted modes in their module) ------

    def session_started(self, player: Player) -> None:
        """A session begins relaying: it is live (``sessions``, counts); ``SessionStarted`` is published."""
        self._sessions.add(player)
        self._players_by_server[player.server.name] += 1
        if player.server.server_manager is not None:  # ondemand: idle detection
            self._ondemand.session_started(player.server)
        self.metrics.connection("relayed")
        if self._events.listening:
            self._events.publish(SessionStarted(player))

    def session_ended(self, connection: Connection, player: Player, result: ForwardResult) -> None:
        """A session is over (call exactly once per :meth:`session_started`, also when cancelled)."""
        self._sessions.discard(player)
        self._players_by_server[player.server.name] -= 1
        if player.server.server_manager is not None:  # ondemand: idle detection
            self._ondemand.session_ended(player.server)
        self._record(connection, Relayed(player, result))

    # --- finish --------------------------------------------------------------------------------------

    async def _finish(
        self, stream: trio.SocketStream, connection: Connection, generation: _Generation, outcome: Outcome
    ) -> None:
        """Tell the client (in its own protocol), then log, count and publish the outcome."""
        if isinstance(outcome, Refusal) and not outcome.told:
            # A client that left first is not told: what it would have been told is in the log line.
            with (
                trio.move_on_after(REFUSAL_SEND_TIMEOUT),
                contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, OSError, ProtocolError
                ),
            ):
                await self._tell(stream, connection, generation, outcome)
        self._record(connection, outcome)

    async def _tell(
        self, stream: trio.SocketStream, connection: Connection, generation: _Generation, refusal: Refusal
    ) -> None:
        if refusal.reason == "unknown_domain" and connection.is_status:
            if generation.config.unknown_domain_behavior is UnknownDomainBehavior.DROP:
                return
            handshake = connection.handshake
            assert handshake is not None
            if isinstance(connection.event, LegacyPing):
                await generation.serverlist.answer_legacy_ping(stream, connection.event, None, b"")
            else:
                await generation.serverlist.answer_status(stream, handshake, connection.rest, None, b"")
            return
        if refusal.message is None or connection.is_status or connection.handshake is None:
            return
        if refusal.reason == "unknown_domain" and (
            generation.config.unknown_domain_behavior is UnknownDomainBehavior.DROP
        ):
            return
        if isinstance(connection.event, LegacyLogin):
            await stream.send_all(encode_legacy_disconnect(refusal.message))
        else:
            await stream.send_all(encode_login_disconnect(refusal.message))

    def _record(self, connection: Connection, outcome: Outcome | Relayed) -> None:
        """The one place a connection's end is logged, counted and published."""
        if isinstance(outcome, Relayed):
            player, result = outcome.player, outcome.result
            duration = self._clock() - player.started_at
            self.metrics.session_ended(player.server.name, player.mode.value, result, duration)
            _log_session_end(player, result, duration)
            player._finish(result)
            if self._events.listening:
                self._events.publish(SessionEnded(player, result))
            return
        if isinstance(outcome, Answered):
            self.metrics.connection(outcome.kind)  # type: ignore[arg-type]
            return
        if isinstance(outcome, Ignored):
            self.metrics.connection(outcome.kind)  # type: ignore[arg-type]
            self._ignored[outcome.kind] += 1
            log.debug("client closed before its handshake", client=connection.client_text)
            return
        if isinstance(outcome, Failed):
            if outcome.kind == "closed_early":
                self.metrics.connection("closed_early")
            log.info(
                "client connection lost",
                client=connection.client_text,
                kind=outcome.kind,
                error=outcome.error,
            )
            return
        reason = outcome.reason
        self.metrics.connection(_METRIC_OUTCOME.get(reason, reason))
        server = connection.server
        if reason == "backend_unreachable" and server is not None:
            self.metrics.backend_connect_failure(server.name)
        handshake = connection.handshake
        host = handshake.host if handshake is not None else None
        if reason == "unknown_domain" and connection.is_status:
            log.debug("unknown domain", client=connection.client_text, host=host or "-", kind="status")
            self._ignored["unknown_domain_ping"] += 1
        else:
            fields: dict[str, object] = {"client": connection.client_text}
            if server is not None:
                fields["server"] = server.name
            elif host:
                fields["host"] = host
            if connection.name:
                fields["player"] = connection.name
            fields.update(outcome.detail)
            log.info(_REFUSAL_EVENT[reason], reason=reason, **fields)
        if self._events.listening:
            self._events.publish(
                ConnectionRefused(
                    connection.client_text,
                    reason,
                    server,
                    connection.name,
                    None if connection.is_status else outcome.message,
                )
            )

    def publish(self, event: Event) -> None:
        """Hand ``event`` to the subscribers (what every relay and stage reports through); costs one truth
        test when nobody listens."""
        if self._events.listening:
            self._events.publish(event)


_REFUSAL_EVENT: dict[str, str] = {
    "banned": "connection refused",
    "rate_limited": "rate limited",
    "ip_filtered": "ip filtered",
    "full": "server full",
    "unknown_domain": "unknown domain",
    "denied": "connection refused",
    "backend_unreachable": "backend unreachable",
    "bad_handshake": "bad handshake",
    "handshake_timeout": "handshake timeout",
    "max_connections": "connection refused",
    "draining": "connection refused",
    "server_starting": "server starting",  # ondemand
    "server_crashed": "server crashed",  # ondemand
}


async def serve(
    config: ProxyConfig,
    *,
    listeners: Sequence[trio.SocketListener] | None = None,
    task_status: trio.TaskStatus[Proxy] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a proxy; use with ``proxy = await nursery.start(serve, config)``.

    ``nursery.start`` returns the :class:`Proxy` once it is listening (``proxy.port`` is the bound port).
    With ``listeners`` (trio ``SocketListener`` objects, e.g. from ``trio.open_tcp_listeners`` or a socket
    passed by systemd) the proxy serves those instead of binding ``config.bind``, as
    ``trio.serve_listeners`` does; they are closed when it stops. Cancelling the surrounding nursery ends
    every session at once with reason ``Shutdown``; ``await proxy.drain(grace)`` stops gently, and
    ``serve`` returns once the drain is over.
    """
    bans = await open_ban_list_async(config)
    await Proxy(config, bans=bans).run(listeners=listeners, task_status=task_status)


async def _cut(client: trio.SocketStream, backend: trio.SocketStream, traffic: Traffic) -> ForwardResult:
    """End a session the proxy cuts: half-close both ways so each peer sees the end after what is already
    queued for it, give them up to :data:`CUT_LINGER` to take it, then count what they acknowledged."""
    for stream in (client, backend):
        with contextlib.suppress(OSError):
            if not stream.socket.did_shutdown_SHUT_WR and stream.socket.fileno() != -1:
                stream.socket.shutdown(trio.socket.SHUT_WR)
    # Polled: the kernel has no readiness event for "the peer acknowledged everything".
    with trio.move_on_after(CUT_LINGER):
        while unacknowledged(client.socket) or unacknowledged(backend.socket):  # noqa: ASYNC110
            await trio.sleep(CUT_POLL)
    return _acknowledged(client, backend, traffic, ForwardEndReason.SHUTDOWN)


def _acknowledged(
    client: trio.SocketStream,
    backend: trio.SocketStream,
    traffic: Traffic,
    reason: ForwardEndReason,
    error: str | None = None,
) -> ForwardResult:
    """Close an ended session's sockets and count only what each peer's TCP acknowledged.

    A socket closed with bytes still queued would go on sending them after the count is taken (or drop them
    on a reset), so such a socket is closed abortively: its queue is dropped and the count stays exact.
    """
    unsent = []
    for stream in (backend, client):
        sock = stream.socket
        queued = unacknowledged(sock)
        if queued and sock.did_shutdown_SHUT_WR:
            queued -= 1  # our FIN takes one sequence number of the queue, and no byte of data
        if queued:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
        unsent.append(queued)
        sock.close()
    return ForwardResult(
        traffic.client_to_backend - unsent[0], traffic.backend_to_client - unsent[1], reason, error
    )


def _first_bytes(connection: Connection, server: ServerConfig, address: Address) -> bytes:
    """What the backend gets before relaying: the handshake (rewritten if asked) and all that followed."""
    event = connection.event
    if not isinstance(event, Handshake):  # a legacy login is relayed exactly as it came
        return connection.received
    shown = backend_handshake(event, server, address)
    if shown is event:
        return connection.received
    if log.enabled(logging.DEBUG):
        log.debug("handshake rewritten", server=server.name, host=event.host, shown=shown.host)
    return shown.encode() + connection.rest


def _outbound_proxy_header(server: ServerConfig, connection: Connection, stream: trio.SocketStream) -> bytes:
    """The PROXY v2 header a server with ``send_proxy_protocol`` gets first, naming the real client."""
    if not server.send_proxy_protocol or connection.client is None:
        return b""
    local = connection.local or _address(stream.socket.getsockname)
    return encode_proxy_v2(connection.client, local) if local is not None else b""


async def _send_first(backend: trio.SocketStream, data: bytes) -> None:
    """``backend.send_all(data)`` on the raw socket, without the stream layer's conflict detector and
    error-translating context manager (nothing else writes to a backend before its relay starts)."""
    try:
        # A fresh socket's send buffer takes a handshake and a login start whole: one write(2), no trio.
        await write_all(backend.socket, data)
    except OSError as exc:
        raise trio.BrokenResourceError(str(exc)) from exc


class _Connected(NamedTuple):
    """The pipeline's end for a forwarding mode: the backend's stream, the address it was reached at, the
    PROXY header it gets first (or ``b""``) and when it was connected; the handler relays."""

    backend: trio.SocketStream
    address: Address
    proxy_header: bytes
    connected_at: float


class _Wait:
    """The preamble needs bytes that have not arrived yet: the caller waits (under its deadline)."""


_WAIT: Final = _Wait()


def _read_now(
    stream: trio.SocketStream, preamble: Preamble, connection: Connection
) -> Outcome | _Wait | None:
    """One read that does not wait: the bytes already received, fed to ``preamble``; its outcome, or
    ``_WAIT`` when more must come. A plain ``read(2)`` on the non-blocking socket, so the common case needs
    neither trio's socket layer nor a cancel scope."""
    try:
        data = os.read(stream.socket.fileno(), HELLO_READ_SIZE)
    except BlockingIOError:
        return _WAIT
    except OSError as exc:
        return Failed("closed_early", str(exc))
    preamble.receive_data(data)
    return _take_events(preamble, connection)


async def _read_preamble(
    stream: trio.SocketStream, preamble: Preamble, connection: Connection
) -> Outcome | None:
    """Feed the client's bytes to ``preamble`` until it is complete; fills ``connection``."""
    while True:
        stopped = _take_events(preamble, connection)
        if not isinstance(stopped, _Wait):
            return stopped
        if preamble.legacy_ping_pending:
            data = b""
            with trio.move_on_after(LEGACY_PING_WAIT):
                try:
                    data = await stream.receive_some(HELLO_READ_SIZE)
                except trio.BrokenResourceError as exc:
                    return Failed("closed_early", str(exc))
            if not data:
                preamble.silence()
                continue
        else:  # the raw socket: the stream layer's checks cost ~30 calls per connection
            try:
                data = await stream.socket.recv(HELLO_READ_SIZE)
            except OSError as exc:
                return Failed("closed_early", str(exc))
        preamble.receive_data(data)


def _take_events(preamble: Preamble, connection: Connection) -> Outcome | _Wait | None:
    """Take the preamble's events into ``connection`` until it needs data (``_WAIT``) or is done (None,
    or how the connection ends: a client that closed early or sent a bad handshake)."""
    try:
        while True:
            event = preamble.next_event()
            if event is NEED_DATA:
                return _WAIT
            if isinstance(event, HelloReceived):
                connection.event = event.event
                connection.handshake = event.handshake
                if isinstance(event.event, LegacyLogin):
                    connection.login = LoginStart(event.event.username, None)
            elif isinstance(event, LoginStartReceived):
                connection.login = event.login
            elif isinstance(event, PreambleComplete):
                connection.received = event.received
                connection.rest = event.rest
                return None
            elif isinstance(event, ProxyHeaderReceived):
                if event.header.source is not None:
                    connection.client = event.header.source
                    connection.local = event.header.destination
                    log.debug("proxy header read", client=connection.client_text)
            elif isinstance(event, ClientClosed):
                return Ignored("closed_early")
    except ProtocolError as exc:
        return Refusal("bad_handshake", None, {"error": str(exc)})


def _log_session_end(player: Player, result: ForwardResult, duration: float) -> None:
    fields: dict[str, object] = {
        "server": player.server.name,
        "player": player.name or "-",
        "mode": player.mode.value,
        "c2b": result.client_to_backend,
        "b2c": result.backend_to_client,
        "reason": result.reason.value,
        "duration": f"{duration:.3f}s",
        "client": player.client_address,
    }
    if result.error:
        fields["error"] = result.error
    log.info("session ended", **fields)


def _address(get: Callable[[], Any]) -> tuple[str, int] | None:
    """``getpeername`` / ``getsockname`` as (host, port), None when the socket is already gone."""
    try:
        name = get()
    except OSError:
        return None
    return (name[0], name[1])
