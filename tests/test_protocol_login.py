"""Login Start across every layout since 1.7, and the Login Disconnect the proxy sends."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import (
    LoginStart,
    Packet,
    PacketReader,
    encode_login_disconnect,
    parse_login_start,
    read_string,
)

NOTCH = uuid.UUID("069a79f4-44e9-4726-a5be-fca90e38aaf5")
NAME = bytes.fromhex("05 4e6f746368")  # "Notch"
UUID_BYTES = bytes.fromhex("069a79f444e94726a5befca90e38aaf5")
# 1.19 signature data: expiry timestamp, an X.509 RSA key (294 bytes) and Mojang's signature (512 bytes).
SIGNATURE_DATA = (
    bytes.fromhex("01 0000018298a5b4c0")
    + bytes.fromhex("a602")
    + b"\x30" * 294
    + bytes.fromhex("8004")
    + b"\x5a" * 512
)


@pytest.mark.parametrize(
    ("protocol", "body", "expected"),
    [
        (47, NAME, LoginStart("Notch", None)),  # 1.8
        (758, NAME, LoginStart("Notch", None)),  # 1.18.2
        (759, NAME + SIGNATURE_DATA, LoginStart("Notch", None)),  # 1.19, signed
        (759, NAME + b"\x00", LoginStart("Notch", None)),  # 1.19, offline client: no signature
        (760, NAME + b"\x00" + b"\x01" + UUID_BYTES, LoginStart("Notch", NOTCH)),  # 1.19.2
        (760, NAME + SIGNATURE_DATA + b"\x01" + UUID_BYTES, LoginStart("Notch", NOTCH)),
        (760, NAME + b"\x00\x00", LoginStart("Notch", None)),
        (761, NAME + b"\x01" + UUID_BYTES, LoginStart("Notch", NOTCH)),  # 1.19.3
        (763, NAME + b"\x01" + UUID_BYTES, LoginStart("Notch", NOTCH)),  # 1.20.1
        (763, NAME + b"\x00", LoginStart("Notch", None)),
        (764, NAME + UUID_BYTES, LoginStart("Notch", NOTCH)),  # 1.20.2
        (765, NAME + UUID_BYTES, LoginStart("Notch", NOTCH)),  # 1.20.4
        (767, NAME + UUID_BYTES, LoginStart("Notch", NOTCH)),  # 1.21
    ],
)
def test_each_version_family(protocol: int, body: bytes, expected: LoginStart) -> None:
    assert parse_login_start(Packet(0x00, body), protocol) == expected


def test_real_1_20_4_frame() -> None:
    reader = PacketReader()
    reader.feed(bytes.fromhex("17 00 05 4e6f746368 069a79f444e94726a5befca90e38aaf5"))
    packet = reader.next_packet()
    assert packet is not None
    assert parse_login_start(packet, 765) == LoginStart("Notch", NOTCH)


@pytest.mark.parametrize(
    ("protocol", "packet"),
    [
        (765, Packet(0x00, NAME)),  # 1.20.4 without its required UUID
        (47, Packet(0x00, NAME + UUID_BYTES)),  # wrong version guess: bytes left over
        (47, Packet(0x01, NAME)),  # not a login start
        (47, Packet(0x00, bytes.fromhex("11") + b"a" * 17)),  # name over 16 characters
        (759, Packet(0x00, NAME + b"\x02")),  # a boolean that is not one
    ],
)
def test_unparsable_gives_none(protocol: int, packet: Packet) -> None:
    assert parse_login_start(packet, protocol) is None


@given(st.binary(max_size=80), st.integers(min_value=-(2**31), max_value=2**31 - 1), st.integers(0, 3))
def test_arbitrary_bytes_never_raise(body: bytes, protocol: int, packet_id: int) -> None:
    result = parse_login_start(Packet(packet_id, body), protocol)
    assert result is None or len(result.name) <= 16


@given(st.sampled_from([47, 759, 760, 763, 765]), st.binary(max_size=80))
def test_arbitrary_bytes_after_a_name(protocol: int, rest: bytes) -> None:
    assert parse_login_start(Packet(0, NAME + rest), protocol) in (None, *_possible(rest))


def _possible(rest: bytes) -> list[LoginStart]:
    return [LoginStart("Notch", None), LoginStart("Notch", uuid.UUID(bytes=rest[-16:].rjust(16, b"\0")))]


def test_login_disconnect() -> None:
    raw = encode_login_disconnect('Server is "down"')
    reader = PacketReader()
    reader.feed(raw)
    packet = reader.next_packet()
    assert packet is not None
    assert packet.packet_id == 0x00
    text, end = read_string(packet.body, 0)
    assert end == len(packet.body)
    assert json.loads(text) == {"text": 'Server is "down"'}
