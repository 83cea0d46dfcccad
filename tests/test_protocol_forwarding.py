"""Player-info forwarding: Velocity's signed ``velocity:player_info`` data and BungeeCord's handshake
host, decoded the way a backend decodes them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.forwarding import (
    BUNGEEGUARD_PROPERTY,
    MODERN_DEFAULT,
    MODERN_LAZY_SESSION,
    VELOCITY_CHANNEL,
    bungeecord_host,
    parse_bungeecord_host,
    parse_velocity_forwarding_data,
    velocity_forwarding_data,
    velocity_version,
)
from infrarust.protocol import (
    Handshake,
    NextState,
    PacketReader,
    ProfileProperty,
    ProtocolError,
    parse_handshake,
)

SECRET = b"a forwarding secret"
PLAYER = uuid.UUID("069a79f4-44e9-4726-a5be-fca90e38aaf5")
SKIN = ProfileProperty("textures", "dGV4dHVyZXM=", "c2lnbmF0dXJl")


def test_velocity_payload_layout_byte_by_byte() -> None:
    data = velocity_forwarding_data(SECRET, 1, "203.0.113.7", PLAYER, "Notch", [SKIN])
    payload = data[32:]
    assert data[:32] == hmac.new(SECRET, payload, hashlib.sha256).digest()
    expected = (
        b"\x01"  # VarInt version
        + b"\x0b203.0.113.7"
        + PLAYER.bytes
        + b"\x05Notch"
        + b"\x01"  # one property
        + b"\x08textures"
        + b"\x0cdGV4dHVyZXM="
        + b"\x01\x0cc2lnbmF0dXJl"
    )
    assert payload == expected
    assert VELOCITY_CHANNEL == "velocity:player_info"


names = st.from_regex(r"[A-Za-z0-9_]{1,16}", fullmatch=True)
properties = st.builds(ProfileProperty, st.text(max_size=20), st.text(max_size=50), st.none() | st.text())


@given(st.text(max_size=40), st.uuids(), names, st.lists(properties, max_size=3))
def test_velocity_round_trip(
    address: str, player: uuid.UUID, name: str, props: list[ProfileProperty]
) -> None:
    data = velocity_forwarding_data(SECRET, MODERN_LAZY_SESSION, address, player, name, props)
    decoded = parse_velocity_forwarding_data(SECRET, data)
    assert decoded == (MODERN_LAZY_SESSION, address, player, name, tuple(props))


def test_velocity_wrong_secret_or_tampering_is_refused() -> None:
    data = velocity_forwarding_data(SECRET, 1, "127.0.0.1", PLAYER, "Notch")
    with pytest.raises(ProtocolError, match="signature"):
        parse_velocity_forwarding_data(b"another secret", data)
    tampered = data[:-1] + bytes((data[-1] ^ 1,))
    with pytest.raises(ProtocolError, match="signature"):
        parse_velocity_forwarding_data(SECRET, tampered)


@pytest.mark.parametrize(
    ("request_data", "protocol", "version"),
    [
        (b"", 765, MODERN_DEFAULT),  # an old backend sends no version: 1
        (b"\x01", 765, MODERN_DEFAULT),
        (b"\x04", 765, MODERN_LAZY_SESSION),
        (b"\x04", 760, MODERN_DEFAULT),  # 1.19.1: lazy sessions start at 1.19.3
        (b"\x03", 765, MODERN_DEFAULT),  # key versions need a chat key infrarust does not forward
        (b"\x07", 775, MODERN_LAZY_SESSION),
    ],
)
def test_velocity_version_choice(request_data: bytes, protocol: int, version: int) -> None:
    assert velocity_version(request_data, protocol) == version


def test_bungeecord_host() -> None:
    host = bungeecord_host("lobby.example.com", "203.0.113.7", PLAYER, [SKIN])
    parts = host.split("\0")
    assert parts[:3] == ["lobby.example.com", "203.0.113.7", "069a79f444e94726a5befca90e38aaf5"]
    assert json.loads(parts[3]) == [
        {"name": "textures", "value": "dGV4dHVyZXM=", "signature": "c2lnbmF0dXJl"}
    ]
    assert parse_bungeecord_host(host) == ("lobby.example.com", "203.0.113.7", PLAYER, (SKIN,))
    guarded = bungeecord_host("lobby.example.com", "::1", PLAYER, [], bungeeguard_token="s3cret")
    assert json.loads(guarded.split("\0")[3]) == [{"name": BUNGEEGUARD_PROPERTY, "value": "s3cret"}]
    assert parse_bungeecord_host("a\0b\0" + PLAYER.hex) == ("a", "b", PLAYER, ())
    for bad in ("plain.host", "a\0b\0not-a-uuid", f"a\0b\0{PLAYER.hex}\0{{oops"):
        with pytest.raises(ProtocolError):
            parse_bungeecord_host(bad)


def test_forwarded_host_fits_a_handshake() -> None:
    host = bungeecord_host("play.example.com", "203.0.113.7", PLAYER, [SKIN], bungeeguard_token="t" * 64)
    reader = PacketReader()
    reader.feed(Handshake(765, host, 25565, NextState.LOGIN).encode())
    packet = reader.next_packet()
    assert packet is not None and parse_handshake(packet).host == host
