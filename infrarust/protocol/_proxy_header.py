"""HAProxy PROXY protocol headers: v1 (text) and v2 (binary) in, v2 out.

An upstream load balancer or DDoS filter sends one before the client's bytes, carrying the client's real
address; the proxy sends one to a backend for the same reason.
"""

from __future__ import annotations

import ipaddress
import struct

from attrs import frozen

from ._errors import ProtocolError
from ._varint import Buffer

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the spec's bound for the longest line, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_SIZE = 16
V2_MAX_ADDRESS_BLOCK = 4096
"""Cap on the v2 length field: addresses plus TLVs, which no sender needs more than a few hundred of."""

_V2_VERSION = 0x2
_CMD_LOCAL = 0x0
_CMD_PROXY = 0x1
_AF_UNSPEC = 0x0
_AF_INET = 0x1
_AF_INET6 = 0x2
_AF_UNIX = 0x3
_PROTO_STREAM = 0x1

Address = tuple[str, int]
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@frozen
class ProxyHeader:
    """The addresses a PROXY header carries; both None for LOCAL, UNKNOWN or non-IP families."""

    source: Address | None
    destination: Address | None


def parse_proxy_header(data: Buffer) -> tuple[ProxyHeader, int] | None:
    """Decode the PROXY header at the start of ``data``: ``(header, bytes consumed)``.

    None when ``data`` is a valid but incomplete start of a header; ProtocolError when it cannot be one,
    including a v1 line longer than the spec's 107 bytes or a v2 block above V2_MAX_ADDRESS_BLOCK.
    """
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)]:
        return _parse_v2(data)
    if data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)]:
        return _parse_v1(data)
    raise ProtocolError("not a PROXY protocol header")


def _parse_v1(data: Buffer) -> tuple[ProxyHeader, int] | None:
    end = bytes(data[:V1_MAX_LENGTH]).find(b"\r\n")
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProtocolError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes")
        return None
    try:
        line = bytes(data[:end]).decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("PROXY v1 line is not ASCII") from None
    fields = line.split(" ")
    consumed = end + 2
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        # The spec lets the sender put anything after UNKNOWN, and the receiver must ignore it.
        return ProxyHeader(None, None), consumed
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProtocolError(f"malformed PROXY v1 line {line!r}")
    version = 4 if fields[1] == "TCP4" else 6
    source_ip = _parse_ip(fields[2], version)
    destination_ip = _parse_ip(fields[3], version)
    source = (str(source_ip), _parse_port(fields[4]))
    destination = (str(destination_ip), _parse_port(fields[5]))
    return ProxyHeader(source, destination), consumed


def _parse_ip(text: str, version: int) -> _IP:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProtocolError(f"bad address {text!r} in PROXY v1 line") from None
    if address.version != version:
        raise ProtocolError(f"address {text!r} is not IPv{version}")
    return address


def _parse_port(text: str) -> int:
    # isdigit alone accepts non-ASCII digits; the spec wants plain decimal, 0 to 65535.
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 0xFFFF):
        raise ProtocolError(f"bad port {text!r} in PROXY v1 line")
    return int(text)


def _parse_v2(data: Buffer) -> tuple[ProxyHeader, int] | None:
    if len(data) < V2_HEADER_SIZE:
        return None
    version_command, family_protocol, length = struct.unpack(">BBH", bytes(data[12:V2_HEADER_SIZE]))
    if version_command >> 4 != _V2_VERSION:
        raise ProtocolError(f"PROXY v2 header with version {version_command >> 4}")
    command = version_command & 0x0F
    if command not in (_CMD_LOCAL, _CMD_PROXY):
        raise ProtocolError(f"PROXY v2 header with unknown command {command}")
    if length > V2_MAX_ADDRESS_BLOCK:
        raise ProtocolError(f"PROXY v2 address block of {length} bytes exceeds {V2_MAX_ADDRESS_BLOCK}")
    consumed = V2_HEADER_SIZE + length
    if len(data) < consumed:
        return None
    family = family_protocol >> 4
    if family > _AF_UNIX or family_protocol & 0x0F > 0x2:
        raise ProtocolError(f"PROXY v2 header with unknown family/protocol 0x{family_protocol:02x}")
    # LOCAL is the balancer's own health check: the real endpoints are the socket's, whatever follows.
    if command == _CMD_LOCAL or family in (_AF_UNSPEC, _AF_UNIX):
        return ProxyHeader(None, None), consumed
    block = bytes(data[V2_HEADER_SIZE:consumed])
    size = 4 if family == _AF_INET else 16
    if length < 2 * size + 4:
        raise ProtocolError(f"PROXY v2 address block of {length} bytes is too short for its family")
    source_ip = ipaddress.ip_address(block[:size])
    destination_ip = ipaddress.ip_address(block[size : 2 * size])
    source_port, destination_port = struct.unpack(">HH", block[2 * size : 2 * size + 4])
    # Whatever follows the addresses is TLVs (ALPN, unique id...): skipped, as the proxy needs none.
    return ProxyHeader((str(source_ip), source_port), (str(destination_ip), destination_port)), consumed


def encode_proxy_v2(source: Address, destination: Address) -> bytes:
    """A PROXY v2 header (command PROXY, TCP) for a connection from ``source`` to ``destination``.

    IPv4-mapped IPv6 addresses (what a dual-stack listener reports) are sent as IPv4; when the two
    families still differ, the IPv4 one is mapped into IPv6, since a header has a single family.
    """
    source_ip = _address_for_header(source[0])
    destination_ip = _address_for_header(destination[0])
    if source_ip.version != destination_ip.version:
        source_ip = _as_ipv6(source_ip)
        destination_ip = _as_ipv6(destination_ip)
    family = _AF_INET if source_ip.version == 4 else _AF_INET6
    try:
        ports = struct.pack(">HH", source[1], destination[1])
    except struct.error:
        raise ProtocolError(f"ports {source[1]}, {destination[1]} are not unsigned 16-bit values") from None
    block = source_ip.packed + destination_ip.packed + ports
    header = struct.pack(">BBH", (_V2_VERSION << 4) | _CMD_PROXY, (family << 4) | _PROTO_STREAM, len(block))
    return V2_SIGNATURE + header + block


def _address_for_header(text: str) -> _IP:
    # Sockets may report "[::1]" or a zone ("fe80::1%eth0"); the header has room for neither.
    text = text.removeprefix("[").removesuffix("]").partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProtocolError(f"{text!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _as_ipv6(address: _IP) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + address.packed)
