"""The modern handshake: a real client's bytes, round trips with real-world host suffixes, and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import (
    Handshake,
    NextState,
    Packet,
    PacketReader,
    ProtocolError,
    parse_handshake,
)

# A 1.20.4 client (protocol 765) joining localhost:25565.
HANDSHAKE_1_20_4 = bytes.fromhex("10 00 fd05 09 6c6f63616c686f7374 63dd 02")


def read_one(raw: bytes) -> Packet:
    reader = PacketReader()
    reader.feed(raw)
    packet = reader.next_packet()
    assert packet is not None
    assert reader.take_leftover() == b""
    return packet


def test_real_1_20_4_handshake() -> None:
    handshake = parse_handshake(read_one(HANDSHAKE_1_20_4))
    assert handshake == Handshake(765, "localhost", 25565, NextState.LOGIN)
    assert handshake.encode() == HANDSHAKE_1_20_4


def test_with_host_replaces_the_field() -> None:
    handshake = parse_handshake(read_one(HANDSHAKE_1_20_4)).with_host("play.example.com")
    assert parse_handshake(read_one(handshake.encode())).host == "play.example.com"


hosts = st.one_of(
    st.from_regex(r"[a-z0-9.-]{0,60}", fullmatch=True),
    st.from_regex(r"[a-z0-9.-]{1,60}", fullmatch=True).map(lambda h: h + "\0FML2\0"),
    st.from_regex(r"[a-z0-9.-]{1,60}", fullmatch=True).map(lambda h: h + "\0FML\0"),
    st.from_regex(r"[a-z0-9.-]{1,60}///[0-9.]{7,15}///[0-9]{10}///[A-Za-z0-9+/=]{344}", fullmatch=True),
    st.text(max_size=100).filter(lambda h: not any(0xD800 <= ord(c) <= 0xDFFF for c in h)),
)


@given(
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    hosts,
    st.integers(min_value=0, max_value=0xFFFF),
    st.sampled_from(NextState),
)
def test_round_trip(protocol: int, host: str, port: int, state: NextState) -> None:
    handshake = Handshake(protocol, host, port, state)
    assert parse_handshake(read_one(handshake.encode())) == handshake


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (Packet(0x01, b""), "expected a handshake"),
        (Packet(0x00, bytes.fromhex("fd05 09 6c6f63616c686f7374 63dd 04")), "next state"),
        (Packet(0x00, bytes.fromhex("fd05 09 6c6f63616c686f7374 63dd 02 00")), "unexpected bytes"),
        (Packet(0x00, bytes.fromhex("fd05 09 6c6f63616c686f7374 63")), "port truncated"),
        (Packet(0x00, bytes.fromhex("fd05 0a 6c6f63616c686f7374")), "string truncated"),
    ],
)
def test_bad_handshakes(packet: Packet, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_handshake(packet)


def test_port_out_of_range_cannot_be_encoded() -> None:
    with pytest.raises(ProtocolError):
        Handshake(765, "a", 70000, NextState.LOGIN).encode()


@given(st.binary(max_size=64))
def test_arbitrary_bodies(data: bytes) -> None:
    try:
        handshake = parse_handshake(Packet(0, data))
    except ProtocolError:
        return
    # Non-minimal VarInts re-encode shorter, so compare decoded values, not bytes.
    assert parse_handshake(read_one(handshake.encode())) == handshake
