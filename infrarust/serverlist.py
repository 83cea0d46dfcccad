"""Answering the server list: modern status (from the backend through the cache, or the proxy's own MOTDs)
and legacy (pre-1.7) pings. The proxy hands connections here once it knows they only want the server list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import trio

from infrarust._answersource import SOURCE_REQUEST_BODY, AnswerSource, mark_source
from infrarust._logfmt import quote
from infrarust.backend import backend_handshake, close, connect_backend
from infrarust.config import Motd, ProxyConfig, RewriteKind, ServerConfig
from infrarust.health import is_monitored
from infrarust.metrics import Metrics
from infrarust.protocol import (
    Handshake,
    LegacyPing,
    LegacyPingKind,
    NextState,
    Packet,
    PacketReader,
    ProtocolError,
    encode_legacy_kick,
    encode_pong,
    encode_status_request,
    encode_status_response,
    parse_ping,
    parse_status_response,
)
from infrarust.routing import routing_key
from infrarust.status import (
    BUILTIN_UNKNOWN_TEXT,
    BUILTIN_UNREACHABLE_TEXT,
    DEFAULT_MOTD_STATES,
    UNREACHABLE_STATES,
    StatusCache,
    StatusUnavailable,
    apply_online_motd,
    fleet_online,
    legacy_view,
    pick_motd,
    proxy_status_json,
)

if TYPE_CHECKING:  # fleetwire: scaling imports the backend module this one does
    from infrarust.scaling import Scaling

logger = logging.getLogger("infrarust")

STATUS_ID = 0x00
PING_ID = 0x01
# A client's status request and ping are a few bytes; anything bigger is not a server-list client.
CLIENT_PACKET_LIMIT = 64
# A backend's status (favicon and Forge mod lists included) stays well below this.
MAX_STATUS_SIZE = 1 << 21
READ_SIZE = 65536
# 1.4 and 1.5 clients do not say their protocol; answers made by the proxy use 1.5.2's so it shows as
# compatible in the most common of them.
LEGACY_V1_4_PROTOCOL = 61
# A 1.6 ping cut short before its MC|PingHost body gets 1.6.4's.
LEGACY_V1_6_PROTOCOL = 78
# The modern protocol asked of a backend on behalf of a legacy client (1.20.4); any number gets an answer.
LEGACY_BACKEND_PROTOCOL = 765


@attrs.frozen
class StatusAnswer:
    """A status for one client: its JSON text and where it came from (see :mod:`infrarust._answersource`)."""

    json: str
    source: AnswerSource


class ServerList:
    """Server-list answers for one configuration, with its status cache.

    Each answer is counted in ``metrics`` by its source (the proxy passes its own registry, which outlives
    this object across reloads).
    """

    def __init__(self, config: ProxyConfig, metrics: Metrics | None = None) -> None:
        self.config = config
        self.cache = StatusCache(config.status_cache.ttl, config.status_cache.max_entries)
        self.metrics = metrics if metrics is not None else Metrics()
        # ondemand: a managed server that is not online answers this MOTD (its state's) instead of asking
        # its backend or the cache; the proxy sets it (infrarust/_ondemand.py). A ping never starts it.
        self.managed_motd: Callable[[ServerConfig], Motd | None] | None = None
        self.scaling: Scaling | None = None  # fleetwire: set by the proxy

    async def answer_status(
        self,
        stream: trio.SocketStream,
        handshake: Handshake,
        rest: bytes,
        server: ServerConfig | None,
        proxy_header: bytes = b"",
    ) -> None:
        """Answer status requests and the ping on a status connection, under ``handshake_timeout``.

        ``rest`` holds what the client sent after its handshake (often the request and even the ping);
        ``server`` None means the domain is unknown and the default MOTD answers; ``proxy_header`` goes to
        the backend first when the server wants one. A request that asks for the answer's source (``ping
        --expect-backend``) gets it as an extra top-level field.
        """
        reader = PacketReader(max_packet_size=CLIENT_PACKET_LIMIT)
        reader.feed(rest)
        # Each wait for the client gets the whole handshake_timeout, while the backend exchange has its own
        # timeouts: a backend that never answers still leaves the client time for its ping. One request
        # per connection, as vanilla servers allow, keeps the connection's life bounded.
        answered = False
        while True:
            packet = reader.next_packet()
            if packet is None:
                data = b""
                with trio.move_on_after(self.config.handshake_timeout):
                    data = await stream.receive_some(READ_SIZE)
                if not data:
                    return
                reader.feed(data)
                continue
            if packet.packet_id == STATUS_ID and not answered:
                status = await self.status_answer(server, handshake, proxy_header)
                text = status.json
                if packet.body == SOURCE_REQUEST_BODY:
                    text = mark_source(text, status.source)
                await stream.send_all(encode_status_response(text))
                answered = True
            elif packet.packet_id == PING_ID:
                await stream.send_all(encode_pong(parse_ping(packet)))
                return
            else:
                raise ProtocolError(
                    f"packet 0x{packet.packet_id:02x} is not a (first) status request or a ping"
                )

    async def answer_legacy_ping(
        self,
        stream: trio.SocketStream,
        ping: LegacyPing,
        server: ServerConfig | None,
        proxy_header: bytes = b"",
    ) -> None:
        """Answer a pre-1.7 ping in the 0xFF format its client expects, from the routed server's status."""
        protocol = ping.protocol_version
        if protocol is None:
            protocol = LEGACY_V1_6_PROTOCOL if ping.kind is LegacyPingKind.V1_6 else LEGACY_V1_4_PROTOCOL
        handshake = Handshake(LEGACY_BACKEND_PROTOCOL, ping.host or "", ping.port or 25565, NextState.STATUS)
        status = await self.status_answer(server, handshake, proxy_header, echo_protocol=protocol)
        view = legacy_view(status.json)
        answer = encode_legacy_kick(
            ping.kind,
            motd=view.motd,
            online=view.online,
            max_players=view.max_players,
            protocol=view.protocol if view.protocol is not None else protocol,
            version_name=view.version_name,
        )
        await stream.send_all(answer)

    async def status_answer(
        self,
        server: ServerConfig | None,
        handshake: Handshake,
        proxy_header: bytes = b"",
        *,
        echo_protocol: int | None = None,
    ) -> StatusAnswer:
        """The status for a client: the backend's (cached, ``[motd.online]`` laid over), else a MOTD.

        MOTDs made by the proxy carry ``echo_protocol`` (default: the handshake's), the client's own number.
        """
        echo = handshake.protocol_version if echo_protocol is None else echo_protocol
        if server is None:
            self.metrics.status_answer("", "motd_default")
            motd = pick_motd(self.config.default_motd, DEFAULT_MOTD_STATES)
            return StatusAnswer(proxy_status_json(motd, BUILTIN_UNKNOWN_TEXT, echo), "unknown_domain")

        if self.managed_motd is not None and (state_motd := self.managed_motd(server)) is not None:
            self.metrics.status_answer(server.name, "motd_state")  # ondemand
            return StatusAnswer(proxy_status_json(state_motd, "", echo), "managed_state")

        fetched = False  # this answer came from its own backend exchange, not the cache or a shared one

        async def fetch() -> str:
            nonlocal fetched
            fetched = True
            return apply_online_motd(
                await self._fetch(server, handshake, proxy_header), server.motd.get("online")
            )

        try:
            answer, stored = await self.cache.lookup(_cache_key(server, handshake), fetch)
        except StatusUnavailable as exc:
            logger.info("status unavailable server=%s error=%s", server.name, quote(str(exc)))
            self.metrics.status_answer(server.name, "motd_unreachable")
            motd = pick_motd(server.motd, UNREACHABLE_STATES)
            return StatusAnswer(proxy_status_json(motd, BUILTIN_UNREACHABLE_TEXT, echo), "unreachable")
        self.metrics.status_answer(server.name, "backend" if fetched else "cache")
        fleet_count = self.scaling.player_count(server) if self.scaling is not None else None
        if fleet_count is not None:  # fleetwire: the fleet's players, wherever the backend counts them
            answer = fleet_online(answer, fleet_count)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "status answered server=%s host=%s source=%s",
                server.name,
                quote(handshake.host),
                "backend" if fetched else "cache",
            )
        return StatusAnswer(answer, "cache" if stored else "backend")

    async def _fetch(self, server: ServerConfig, handshake: Handshake, proxy_header: bytes) -> str:
        """One status exchange with the backend, with the client's (possibly rewritten) handshake."""
        balancer = None
        if self.scaling is not None and is_monitored(server):  # fleetwire: by load_balance
            balancer = self.scaling.balancers.for_server(server)
        connected = await connect_backend(server, self.config.connect_timeout, None, balancer, status=True)
        if connected is None:
            self.metrics.backend_connect_failure(server.name)
            raise StatusUnavailable("no backend address answered")
        backend, address = connected
        try:
            with trio.move_on_after(self.config.handshake_timeout) as deadline:
                shown = backend_handshake(handshake, server, address)
                request = proxy_header + shown.encode() + encode_status_request()
                await backend.send_all(request)
                text = parse_status_response(await _next_packet(backend))
                return balancer.aggregate(text, address) if balancer is not None else text
            assert deadline.cancelled_caught
            raise StatusUnavailable(f"no status answer within {self.config.handshake_timeout:g}s")
        except (ProtocolError, trio.BrokenResourceError) as exc:
            raise StatusUnavailable(f"bad status answer: {exc}") from None
        finally:
            close(backend)


def _cache_key(server: ServerConfig, handshake: Handshake) -> tuple[str, int, str]:
    """What a cached answer is shared by: the server, the client's protocol, and the host the backend is
    shown (a backend may answer each of its domains with its own MOTD). With a rewrite every client's host
    becomes the same one, so the host does not split the cache."""
    shown = routing_key(handshake.host) if server.domain_rewrite.kind is RewriteKind.NONE else ""
    return (server.name, handshake.protocol_version, shown)


async def _next_packet(stream: trio.SocketStream) -> Packet:
    reader = PacketReader(max_packet_size=MAX_STATUS_SIZE)
    while (packet := reader.next_packet()) is None:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise StatusUnavailable("the backend closed the connection before answering")
        reader.feed(data)
    return packet
