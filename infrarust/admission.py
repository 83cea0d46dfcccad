"""Who may come in: the admission stage, and its parts (per-IP rate limits, IP filters, trusted senders)."""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import trio

from infrarust import logs
from infrarust.config import IpFilter, ProxyConfig
from infrarust.connection import Connection, Refusal
from infrarust.hooks import Deny, Hooks, PreConnect, Redirect
from infrarust.routing import Router

if TYPE_CHECKING:  # bans uses this module's address helpers
    from infrarust.bans import BanList
    from infrarust.scaling import Scaling

log = logs.get_logger(__name__)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RateLimiter:
    """At most ``limit`` events per client IP in any ``window`` seconds (a sliding window); 0 = no limit.

    Memory stays bounded by the number of IPs seen within one window: IPs with nothing in the window are
    forgotten at most once per window.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}
        self._next_purge = 0.0

    def __len__(self) -> int:
        return len(self._events)

    def allow(self, ip: str, now: float) -> bool:
        """Count one event for ``ip`` at time ``now`` if its budget allows it; False when over budget."""
        if self.limit <= 0:
            return True
        if now >= self._next_purge:
            self._purge(now)
        horizon = now - self.window
        events = self._events.get(ip)
        if events is None:
            events = self._events[ip] = deque()
        while events and events[0] <= horizon:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def _purge(self, now: float) -> None:
        horizon = now - self.window
        for ip in [ip for ip, events in self._events.items() if not events or events[-1] <= horizon]:
            del self._events[ip]
        self._next_purge = now + self.window


def parse_ip(text: str) -> IpAddress | None:
    """The address of a peer, IPv4-mapped IPv6 (``::ffff:1.2.3.4``) taken as IPv4; None if not an IP."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class NetworkSet:
    """A set of CIDRs, asked whether an address is inside any of them."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in cidrs
        )

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, address: IpAddress | None) -> bool:
        return address is not None and any(address in network for network in self._networks)


class IpFilterRule:
    """A server's ``[ip_filter]``: a whitelist, when set, wins; otherwise the blacklist refuses."""

    def __init__(self, ip_filter: IpFilter) -> None:
        self._whitelist = NetworkSet(ip_filter.whitelist)
        self._blacklist = NetworkSet(ip_filter.blacklist)
        self.has_rules = bool(self._whitelist or self._blacklist)

    def __bool__(self) -> bool:
        return self.has_rules

    def allows(self, address: IpAddress | None) -> bool:
        """True when a client at ``address`` may reach the server."""
        if self._whitelist:
            return address in self._whitelist
        return address not in self._blacklist


# What a refused player is told.
UNKNOWN_DOMAIN_MESSAGE = "There is no server at this address. Check the address you typed."
RATE_LIMITED_MESSAGE = "Too many connection attempts from your address. Please wait a moment and try again."
FILTERED_MESSAGE = "You are not allowed to join this server."
FULL_MESSAGE = "The server is full. Please try again later."
DRAINING_MESSAGE = "The proxy is restarting. Please reconnect in a moment."


class AdmissionContext(Protocol):
    """What admission asks of the proxy that runs it (state that outlives one configuration)."""

    @property
    def bans(self) -> BanList: ...

    @property
    def hooks(self) -> Hooks: ...

    @property
    def draining(self) -> bool: ...

    def players_on(self, server: str) -> int:
        """Sessions relaying to ``server`` right now."""
        ...


class Admission:
    """The admission stage of one configuration: who may come in, and where they go.

    In this order, cheapest and most certain first: a login during a drain, bans (logins only: a banned
    IP's server-list pings are answered, as vanilla servers do), the per-IP rate limits, the pre-connect
    hooks (which may deny or redirect), an unknown domain, the global then the server's IP filter, and
    ``max_players`` (logins). Returns None to go on, with ``connection.server`` set, or a :class:`Refusal`.
    """

    def __init__(self, config: ProxyConfig, router: Router) -> None:
        self._router = router
        self._by_name = {server.name: server for server in config.servers}
        limits = config.rate_limit
        self._login_limiter = RateLimiter(limits.max_connections, limits.window)
        self._status_limiter = RateLimiter(limits.status_max, limits.status_window)
        self._global_filter = IpFilterRule(config.ip_filter)
        self._ip_rules = {server.name: IpFilterRule(server.ip_filter) for server in config.servers}
        self._hook_timeout = config.hook_timeout

    async def admit(self, connection: Connection, context: AdmissionContext) -> Refusal | None:
        """Decide on ``connection`` (see the class docstring)."""
        status = connection.is_status
        handshake = connection.handshake
        assert handshake is not None
        if not status and context.draining:
            return Refusal("draining", DRAINING_MESSAGE)
        bans = context.bans
        # fleetwire: with [cluster], bans, budgets and player counts are the fleet's
        scaling: Scaling | None = getattr(context, "scaling", None)
        fleet = scaling.fleet if scaling is not None else None
        if not status and (bans or fleet is not None):
            login = connection.login
            match = fleet.is_banned if fleet is not None else bans.match
            ban = match(connection.ip, login.name if login else None, login.uuid if login else None)
            if ban is not None:
                bans.log_refusal(
                    ban,
                    client=connection.client_text,
                    name=login.name if login else None,
                    uuid=login.uuid if login else None,
                )
                return Refusal("banned", ban.message())
        limiter = self._status_limiter if status else self._login_limiter
        if fleet is not None:  # fleetwire: one Redis round trip, local budgets when Redis is away
            allowed = await (fleet.allow_status if status else fleet.allow_login)(connection.ip)
        else:
            allowed = limiter.allow(connection.ip, trio.current_time())
        if not allowed:
            return Refusal("rate_limited", RATE_LIMITED_MESSAGE, {"kind": "status" if status else "login"})
        server, connection.route = self._router.lookup(handshake.host) if handshake.host else (None, "-")
        connection.server = server
        hooks = context.hooks
        if hooks:
            refusal = await self._run_hooks(connection, hooks)
            if refusal is not None:
                return refusal
            server = connection.server
        if server is None:
            return Refusal("unknown_domain", UNKNOWN_DOMAIN_MESSAGE)
        rule = self._ip_rules.get(server.name)
        if rule is None:  # a server built in code by a hook
            rule = IpFilterRule(server.ip_filter)
        if self._global_filter.has_rules or rule.has_rules:  # the address is parsed only then
            address = parse_ip(connection.ip)
            if not self._global_filter.allows(address):
                return Refusal("ip_filtered", FILTERED_MESSAGE, {"filter": "global"})
            if not rule.allows(address):
                return Refusal("ip_filtered", FILTERED_MESSAGE)
        if not status and scaling is not None and fleet is not None:  # fleetwire: held until the end
            if not await scaling.reserve(connection, server):
                return Refusal("full", FULL_MESSAGE, {"max_players": server.max_players})
            return None
        if not status and server.max_players and context.players_on(server.name) >= server.max_players:
            return Refusal("full", FULL_MESSAGE, {"max_players": server.max_players})
        return None

    async def _run_hooks(self, connection: Connection, hooks: Hooks) -> Refusal | None:
        handshake = connection.handshake
        assert handshake is not None
        login = connection.login
        decision = await hooks.decide(
            PreConnect(
                connection.client,
                handshake,
                connection.server,
                login.name if login else None,
                login.uuid if login else None,
                connection.legacy,
            ),
            self._hook_timeout,
        )
        if isinstance(decision, Deny):
            return Refusal("denied", decision.message)
        if isinstance(decision, Redirect):
            target = decision.server
            if isinstance(target, str):
                found = self._by_name.get(target)
                if found is None:
                    log.error("pre-connect hook redirected to an unknown server", server=target)
                    return None
                target = found
            connection.server = target
            connection.route = "hook"
        return None
