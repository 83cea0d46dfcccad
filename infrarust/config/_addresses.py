"""``host:port`` strings, host names and domain patterns as the configuration writes them."""

from __future__ import annotations

import ipaddress
import re

from ._models import Address

# Host names as operators write them: DNS labels, plus "_" for container and compose service names.
_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_IPV4_LIKE = re.compile(r"[0-9.]+", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
# Domains a server claims: host name characters plus the wildcards "*" (any run) and "?" (one character).
_DOMAIN = re.compile(r"[A-Za-z0-9_.*?-]+", re.ASCII)


def parse_address(text: str, *, default_port: int = 25565) -> Address:
    """An :class:`Address` from ``"host:port"``, ``"host"``, ``"[::1]:25565"`` or ``"[::]"``.

    The port defaults to ``default_port``; IPv6 literals need brackets (``"[::1]"``), because without them
    ``"::1:25565"`` could be read two ways. Surrounding whitespace is ignored. :class:`ValueError` names what
    is wrong: no host, a bad port, an invalid IPv6 literal...
    """
    if not 0 <= default_port <= 65535:
        raise ValueError(f"default port {default_port} is not in 0..65535")
    if not isinstance(text, str):
        raise ValueError('an address is a string like "host:port"')
    stripped = text.strip()
    if not stripped:
        raise ValueError('empty address; expected "host:port"')
    if stripped.startswith("["):
        close = stripped.find("]")
        if close < 0:
            raise ValueError(f'invalid address {text!r}: missing "]" after the IPv6 address')
        host, rest = stripped[1:close], stripped[close + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid address {text!r}: {host!r} is not an IPv6 address") from None
        if not rest:
            return Address(host, default_port)
        if not rest.startswith(":"):
            raise ValueError(f'invalid address {text!r}: expected ":port" after "]"')
        return Address(host, _parse_port(rest[1:], text))
    if stripped.count(":") > 1:
        raise ValueError(f'invalid address {text!r}: put IPv6 addresses in brackets, like "[::1]:25565"')
    host, colon, port = stripped.partition(":")
    _check_host(host, text)
    return Address(host, _parse_port(port, text) if colon else default_port)


def is_host(host: str) -> bool:
    """True for a host name, an IPv4 address or an IPv6 address (without brackets)."""
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        _check_host(host, host)
    except ValueError:
        return False
    return True


def _check_host(host: str, text: str) -> None:
    shown = repr(text)
    if not host:
        raise ValueError(f"invalid address {shown}: missing host")
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"invalid address {shown}: {host!r} is not a host name or IP address")
    if _IPV4_LIKE.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"invalid address {shown}: {host!r} is not a valid IPv4 address") from None


def _parse_port(port: str, text: str) -> int:
    if not port:
        raise ValueError(f'invalid address {text!r}: missing port after ":"')
    if not _PORT.fullmatch(port) or int(port) > 65535:
        raise ValueError(f"invalid address {text!r}: port {port!r} is not a number from 0 to 65535")
    return int(port)


def normalize_domain(domain: str) -> str:
    """A server's domain or pattern, lower-cased without a trailing dot; ValueError if it has bad characters.

    Clients' hosts are matched case-insensitively and without a trailing dot, so the configuration is
    stored the same way. Internationalized names go in their ``xn--`` (punycode) form.
    """
    if not domain:
        raise ValueError("empty domain")
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(
            f"invalid domain {domain!r}: use letters, digits, '-', '.', '_' and the wildcards '*' and '?'"
            " (internationalized names in their xn-- form)"
        )
    normalized = domain.lower().removesuffix(".")
    if not normalized:
        raise ValueError(f"invalid domain {domain!r}")
    return normalized


def normalize_cidr(text: str) -> str:
    """A CIDR (or one address) in canonical form, host bits cleared: ``"10.1.2.3/8"`` is ``"10.0.0.0/8"``."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise ValueError(
            f"invalid CIDR {text!r}: expected an address or network like '10.0.0.0/8' or '2001:db8::/32'"
        ) from None
