"""Pre-1.7 messages: pings and the kicks answering them (parsing pings, logins: test_protocol_hello)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import (
    LegacyPingKind,
    LegacyStatus,
    ProtocolError,
    encode_legacy_disconnect,
    encode_legacy_kick,
    encode_legacy_ping,
    parse_legacy_kick,
)


def string16(text: str) -> bytes:
    return len(text).to_bytes(2, "big") + text.encode("utf-16-be")


def test_beta_kick() -> None:
    raw = encode_legacy_kick(
        LegacyPingKind.BETA,
        motd="A §cred server",
        online=3,
        max_players=20,
        protocol=78,
        version_name="1.6.4",
    )
    # § separates the fields in this form, so the MOTD's colour codes go, letter and all.
    assert raw == b"\xff" + string16("A red server§3§20")


@pytest.mark.parametrize("kind", [LegacyPingKind.V1_4, LegacyPingKind.V1_6])
def test_modern_legacy_kick(kind: LegacyPingKind) -> None:
    raw = encode_legacy_kick(
        kind, motd="A Minecraft Server", online=0, max_players=20, protocol=78, version_name="1.6.4"
    )
    text = "§1\x0078\x001.6.4\x00A Minecraft Server\x000\x0020"
    assert raw == b"\xff" + string16(text)
    # Kick id, 35 UTF-16 units, then "§1", NUL, "78", NUL: the start of wiki.vg's example answer.
    assert raw.startswith(bytes.fromhex("ff 0023 00a7 0031 0000 0037 0038 0000"))


def test_kick_keeps_non_bmp_lengths_in_utf16_units() -> None:
    raw = encode_legacy_disconnect("\U0001f600")
    assert raw == b"\xff\x00\x02" + "\U0001f600".encode("utf-16-be")


def test_legacy_disconnect() -> None:
    assert encode_legacy_disconnect("Unknown host") == b"\xff" + string16("Unknown host")


def test_too_long_for_a_string16() -> None:
    with pytest.raises(ProtocolError):
        encode_legacy_disconnect("x" * 40000)


@pytest.mark.parametrize("kind", list(LegacyPingKind))
def test_kick_round_trip(kind: LegacyPingKind) -> None:
    raw = encode_legacy_kick(kind, motd="Hi", online=3, max_players=20, protocol=78, version_name="1.6.4")
    status = parse_legacy_kick(raw)
    if kind is LegacyPingKind.BETA:
        assert status == LegacyStatus("Hi", 3, 20, None, None)
    else:
        assert status == LegacyStatus("Hi", 3, 20, 78, "1.6.4")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xfe",
        b"\xff\x00\x05\x00a",  # truncated
        b"\xff" + string16("no separators"),
        b"\xff" + string16("motd§x§20"),
        b"\xff" + string16("§1\x0078\x001.6.4\x00motd\x000"),  # a field short
    ],
)
def test_bad_kicks(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_legacy_kick(raw)


def test_legacy_ping_bytes() -> None:
    assert encode_legacy_ping(LegacyPingKind.BETA) == b"\xfe"
    assert encode_legacy_ping(LegacyPingKind.V1_4) == b"\xfe\x01"
    # Byte for byte what a 1.6.4 client sends (see test_protocol_hello.PING_1_6_4).
    assert encode_legacy_ping(LegacyPingKind.V1_6, 78, "localhost", 25565) == bytes.fromhex(
        "fe01fa 000b 004d0043007c00500069006e00670048006f00730074 0019 4e"
        "0009 006c006f00630061006c0068006f00730074 000063dd"
    )
    with pytest.raises(ProtocolError):
        encode_legacy_ping(LegacyPingKind.V1_6)


@given(st.binary(max_size=60))
def test_parse_kick_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_legacy_kick(b"\xff" + data)
