"""Domain -> server routing, and the cleanup that turns a handshake host into a routing key."""

from __future__ import annotations

import re
from collections.abc import Iterable

from infrarust.config import ServerConfig

_WILDCARD_CHARS = frozenset("*?")


def split_host(host: str) -> tuple[str, str]:
    """Split a handshake host into the name the player typed and the suffix clients and shields append.

    Forge appends ``\\0FML\\0`` (and ``\\0FML2\\0``, ``\\0FML3\\0``, ``\\0FORGE``), TCPShield appends
    ``///ip:port///timestamp///signature``. The suffix is kept byte for byte when the host is rewritten.
    """
    cut = len(host)
    nul = host.find("\0")
    if nul >= 0:
        cut = nul
    shield = host.find("///", 0, cut)
    if shield >= 0:
        cut = shield
    return host[:cut], host[cut:]


def routing_key(host: str) -> str:
    """The name used to look a handshake host up: suffixes removed, trailing dots removed, lower-cased."""
    return split_host(host)[0].rstrip(".").lower()


def rewrite_host(host: str, new_name: str) -> str:
    """Replace only the name part of a handshake host, keeping any Forge or TCPShield suffix."""
    return new_name + split_host(host)[1]


def is_wildcard(pattern: str) -> bool:
    """True when a configured domain is a pattern (``*`` any run, ``?`` one character)."""
    return not _WILDCARD_CHARS.isdisjoint(pattern)


def _compile_wildcard(pattern: str) -> re.Pattern[str]:
    # Only '*' and '?' are special: fnmatch would also treat '[...]' as a class, which domains never mean.
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


class Router:
    """Maps routing keys to servers: exact names first, then wildcard patterns in file order.

    ``servers`` are in file order (sorted file name); for an exact name claimed twice the later file wins,
    as the configuration loader warns.
    """

    def __init__(self, servers: Iterable[ServerConfig]) -> None:
        self._exact: dict[str, ServerConfig] = {}
        self._wildcards: list[tuple[re.Pattern[str], ServerConfig]] = []
        for server in servers:
            for domain in server.domains:
                name = domain.rstrip(".").lower()
                if is_wildcard(name):
                    self._wildcards.append((_compile_wildcard(name), server))
                else:
                    self._exact[name] = server

    def route(self, host: str) -> ServerConfig | None:
        """The server for a raw handshake host, or None when no server claims it."""
        return self.lookup(host)[0]

    def lookup(self, host: str) -> tuple[ServerConfig | None, str]:
        """The server for a raw handshake host and how it matched: ``exact``, ``wildcard`` or ``-``."""
        key = routing_key(host)
        server = self._exact.get(key)
        if server is not None:
            return server, "exact"
        for pattern, candidate in self._wildcards:
            if pattern.fullmatch(key):
                return candidate, "wildcard"
        return None, "-"
