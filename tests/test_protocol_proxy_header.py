"""PROXY protocol headers: the spec's v1 lines, v2 blocks, incremental reads, and our own v2 output."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import ProtocolError, ProxyHeader, encode_proxy_v2, parse_proxy_header

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            ProxyHeader(("192.168.0.1", 56324), ("192.168.0.11", 443)),
        ),
        (
            b"PROXY TCP6 2001:db8::1 2001:db8::2 4000 25565\r\n",
            ProxyHeader(("2001:db8::1", 4000), ("2001:db8::2", 25565)),
        ),
        (b"PROXY UNKNOWN\r\n", ProxyHeader(None, None)),
        (
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            ProxyHeader(None, None),
        ),
    ],
)
def test_v1(line: bytes, expected: ProxyHeader) -> None:
    assert parse_proxy_header(line + b"\x10\x00") == (expected, len(line))
    for cut in range(len(line)):
        assert parse_proxy_header(line[:cut]) is None


def test_v1_longest_line_is_107_bytes() -> None:
    # The spec's worst case: UNKNOWN followed by two full IPv6 addresses and ports.
    longest = b"PROXY UNKNOWN " + b" ".join([b"ffff:" * 7 + b"ffff"] * 2) + b" 65535 65535\r\n"
    assert len(longest) == 107
    assert parse_proxy_header(longest) == (ProxyHeader(None, None), 107)
    with pytest.raises(ProtocolError, match="longer"):
        parse_proxy_header(longest[:-2] + b"x\r\n")
    # 107 bytes without a line end are refused without waiting for more.
    with pytest.raises(ProtocolError, match="longer"):
        parse_proxy_header(longest[:-2] + b"xx")


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.\xff 1 2\r\n",
        b"GET / HTTP/1.1\r\n",
        b"\x10\x00\xfd\x05",
    ],
)
def test_v1_garbage(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_proxy_header(line)


def v2(command: int, family: int, block: bytes) -> bytes:
    return SIG + bytes((0x20 | command, family)) + len(block).to_bytes(2, "big") + block


IPV4_BLOCK = bytes([10, 0, 0, 1, 10, 0, 0, 2]) + (12345).to_bytes(2, "big") + (25565).to_bytes(2, "big")
IPV6_BLOCK = (
    bytes.fromhex("20010db8000000000000000000000001")
    + bytes.fromhex("20010db8000000000000000000000002")
    + (12345).to_bytes(2, "big")
    + (25565).to_bytes(2, "big")
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (v2(0x1, 0x11, IPV4_BLOCK), ProxyHeader(("10.0.0.1", 12345), ("10.0.0.2", 25565))),
        (v2(0x1, 0x21, IPV6_BLOCK), ProxyHeader(("2001:db8::1", 12345), ("2001:db8::2", 25565))),
        (v2(0x0, 0x00, b""), ProxyHeader(None, None)),  # LOCAL: a health check
        (v2(0x0, 0x11, IPV4_BLOCK), ProxyHeader(None, None)),  # LOCAL ignores any addresses
        (v2(0x1, 0x00, b""), ProxyHeader(None, None)),  # UNSPEC
        (v2(0x1, 0x31, b"\x00" * 216), ProxyHeader(None, None)),  # UNIX sockets
        # TLVs after the addresses (here PP2_TYPE_AUTHORITY) are skipped.
        (
            v2(0x1, 0x11, IPV4_BLOCK + b"\x02\x00\x04host"),
            ProxyHeader(("10.0.0.1", 12345), ("10.0.0.2", 25565)),
        ),
    ],
)
def test_v2(raw: bytes, expected: ProxyHeader) -> None:
    assert parse_proxy_header(raw + b"\x10\x00") == (expected, len(raw))
    for cut in range(len(raw)):
        assert parse_proxy_header(raw[:cut]) is None


@pytest.mark.parametrize(
    "raw",
    [
        v2(0x2, 0x11, IPV4_BLOCK),  # unknown command
        SIG + b"\x11\x11\x00\x0c" + IPV4_BLOCK,  # version 1 in the binary format
        v2(0x1, 0x11, IPV4_BLOCK[:11]),  # block too short for two IPv4 addresses and ports
        v2(0x1, 0x21, IPV4_BLOCK),  # block too short for IPv6
        v2(0x1, 0x41, b""),  # unknown family
        SIG + b"\x21\x11\x10\x01",  # block above the cap, refused before it arrives
    ],
)
def test_v2_garbage(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_proxy_header(raw)


@pytest.mark.parametrize(
    ("source", "destination", "family", "expected"),
    [
        (("10.0.0.1", 12345), ("10.0.0.2", 25565), 0x11, None),
        (("2001:db8::1", 12345), ("2001:db8::2", 25565), 0x21, None),
        # A dual-stack listener reports IPv4 clients as mapped addresses: sent as plain IPv4.
        (
            ("::ffff:10.0.0.1", 12345),
            ("::ffff:10.0.0.2", 25565),
            0x11,
            ProxyHeader(("10.0.0.1", 12345), ("10.0.0.2", 25565)),
        ),
        # Mixed families are carried as IPv6, the only family that holds both.
        (
            ("10.0.0.1", 12345),
            ("[2001:db8::2]", 25565),
            0x21,
            ProxyHeader(("::ffff:a00:1", 12345), ("2001:db8::2", 25565)),
        ),
        (("fe80::1%eth0", 1), ("fe80::2", 2), 0x21, ProxyHeader(("fe80::1", 1), ("fe80::2", 2))),
    ],
)
def test_encode_v2(
    source: tuple[str, int], destination: tuple[str, int], family: int, expected: ProxyHeader | None
) -> None:
    raw = encode_proxy_v2(source, destination)
    assert raw[:12] == SIG
    assert raw[12] == 0x21
    assert raw[13] == family
    assert parse_proxy_header(raw) == (expected or ProxyHeader(source, destination), len(raw))


def test_encode_v2_known_bytes() -> None:
    assert encode_proxy_v2(("10.0.0.1", 12345), ("10.0.0.2", 25565)) == v2(0x1, 0x11, IPV4_BLOCK)


@pytest.mark.parametrize(
    ("source", "destination"), [(("localhost", 1), ("10.0.0.1", 2)), (("10.0.0.1", 70000), ("10.0.0.2", 1))]
)
def test_encode_v2_refuses(source: tuple[str, int], destination: tuple[str, int]) -> None:
    with pytest.raises(ProtocolError):
        encode_proxy_v2(source, destination)


def check_arbitrary(data: bytes) -> None:
    try:
        result = parse_proxy_header(data)
    except ProtocolError:
        return
    if result is not None:
        assert 0 < result[1] <= len(data)


@given(st.binary(max_size=120))
def test_arbitrary_bytes(data: bytes) -> None:
    check_arbitrary(data)


@given(
    st.sampled_from([SIG, SIG + b"\x21\x11", SIG + b"\x21\x21\x00\x24", b"PROXY ", b"PROXY TCP4 "]),
    st.binary(max_size=120),
)
def test_arbitrary_bytes_after_a_signature(prefix: bytes, rest: bytes) -> None:
    check_arbitrary(prefix + rest)
