"""Who may come in: per-IP rate limits, per-server IP filters, and trusted PROXY-protocol senders."""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable

from infrarust.config._models import IpFilter

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

    def __bool__(self) -> bool:
        return bool(self._whitelist or self._blacklist)

    def allows(self, address: IpAddress | None) -> bool:
        """True when a client at ``address`` may reach the server."""
        if self._whitelist:
            return address in self._whitelist
        return address not in self._blacklist
