"""Server list ping (1.7+): request, response, ping/pong and the status JSON."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import (
    Packet,
    PacketReader,
    ProtocolError,
    build_status_json,
    encode_ping,
    encode_pong,
    encode_status_request,
    encode_status_response,
    encode_string,
    parse_ping,
    parse_status_response,
)


def read_one(raw: bytes) -> Packet:
    reader = PacketReader()
    reader.feed(raw)
    packet = reader.next_packet()
    assert packet is not None
    assert reader.take_leftover() == b""
    return packet


def test_status_request_bytes() -> None:
    assert encode_status_request() == b"\x01\x00"


def test_ping_bytes() -> None:
    assert encode_ping(1) == bytes.fromhex("09 01 0000000000000001")
    assert encode_pong(-1) == bytes.fromhex("09 01 ffffffffffffffff")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_ping_round_trip(payload: int) -> None:
    assert parse_ping(read_one(encode_ping(payload))) == payload
    assert parse_ping(read_one(encode_pong(payload))) == payload


def test_ping_payload_out_of_range() -> None:
    with pytest.raises(ProtocolError):
        encode_ping(2**63)


@pytest.mark.parametrize(
    "packet", [Packet(0x00, b"\x00" * 8), Packet(0x01, b"\x00" * 7), Packet(0x01, b"\x00" * 9)]
)
def test_bad_pings(packet: Packet) -> None:
    with pytest.raises(ProtocolError):
        parse_ping(packet)


@given(st.text(max_size=200).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
def test_status_response_round_trip(text: str) -> None:
    assert parse_status_response(read_one(encode_status_response(text))) == text


def test_status_response_tolerates_trailing_bytes() -> None:
    assert parse_status_response(Packet(0x00, encode_string("{}") + b"\x00\x01")) == "{}"


def test_status_response_larger_than_the_string_limit() -> None:
    # Modded servers send more than 32767 characters (favicons, mod lists); clients cope, so do we.
    text = json.dumps({"favicon": "x" * 40000})
    assert parse_status_response(read_one(encode_status_response(text))) == text


def test_status_response_wrong_id() -> None:
    with pytest.raises(ProtocolError):
        parse_status_response(Packet(0x01, encode_string("{}")))


def test_build_status_json() -> None:
    player = uuid.UUID("069a79f4-44e9-4726-a5be-fca90e38aaf5")
    text = build_status_json(
        version_name="Infrarust",
        protocol=765,
        max_players=100,
        online=1,
        description="Hello §aworld",
        favicon="iVBORw0KGgo=",
        sample=[("Notch", player)],
    )
    assert json.loads(text) == {
        "version": {"name": "Infrarust", "protocol": 765},
        "players": {"max": 100, "online": 1, "sample": [{"name": "Notch", "id": str(player)}]},
        "description": {"text": "Hello §aworld"},
        "favicon": "data:image/png;base64,iVBORw0KGgo=",
    }


def test_build_status_json_minimal() -> None:
    text = build_status_json(
        version_name="1.20.4", protocol=-1, max_players=0, online=0, description="", favicon=None
    )
    status = json.loads(text)
    assert "favicon" not in status
    assert "sample" not in status["players"]
    prefixed = build_status_json(
        version_name="v",
        protocol=1,
        max_players=0,
        online=0,
        description="",
        favicon="data:image/png;base64,AAAA",
    )
    assert json.loads(prefixed)["favicon"] == "data:image/png;base64,AAAA"
