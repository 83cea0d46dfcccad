"""Packet framing: any chunking of the stream gives the same packets and the same leftover."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import Packet, PacketReader, ProtocolError, encode_packet, encode_varint

packets_strategy = st.lists(
    st.builds(Packet, st.integers(min_value=0, max_value=2**31 - 1), st.binary(max_size=300)),
    max_size=5,
)


def chunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[start:end] for start, end in itertools.pairwise(points)]


def read_all(reader: PacketReader, pieces: list[bytes]) -> list[Packet]:
    out = []
    for piece in pieces:
        reader.feed(piece)
        while (packet := reader.next_packet()) is not None:
            out.append(packet)
    return out


@given(
    packets_strategy,
    st.integers(min_value=0, max_value=51),
    st.lists(st.integers(min_value=0), max_size=20),
)
def test_round_trip_any_chunking(packets: list[Packet], partial_size: int, cuts: list[int]) -> None:
    # The stream ends inside a 52-byte packet: those bytes must come back untouched as leftover.
    partial = encode_packet(0, b"x" * 50)[:partial_size]
    stream = b"".join(encode_packet(p.packet_id, p.body) for p in packets) + partial
    reader = PacketReader()
    assert read_all(reader, chunk(stream, cuts)) == packets
    assert reader.take_leftover() == partial
    assert reader.take_leftover() == b""


@given(packets_strategy)
def test_one_byte_at_a_time(packets: list[Packet]) -> None:
    stream = b"".join(encode_packet(p.packet_id, p.body) for p in packets) + b"\x05\x00ab"
    reader = PacketReader()
    assert read_all(reader, [stream[i : i + 1] for i in range(len(stream))]) == packets
    assert reader.take_leftover() == b"\x05\x00ab"


def test_known_frame() -> None:
    assert encode_packet(0x01, b"\x00" * 8) == b"\x09\x01" + b"\x00" * 8
    reader = PacketReader()
    reader.feed(b"\x09\x01" + b"\x00" * 8 + b"\x01")
    assert reader.next_packet() == Packet(1, b"\x00" * 8)
    assert reader.next_packet() is None
    assert reader.take_leftover() == b"\x01"


def test_length_over_cap_rejected_before_body() -> None:
    reader = PacketReader(max_packet_size=100)
    reader.feed(encode_varint(101))
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.next_packet()


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00",  # empty packet: no id
        encode_varint(-1),  # negative length
        b"\x80\x80\x80\x80\x80\x01",  # 6-byte length
        b"\x01\x80",  # the id runs past its one-byte packet
    ],
)
def test_bad_frames(frame: bytes) -> None:
    reader = PacketReader()
    reader.feed(frame)
    with pytest.raises(ProtocolError):
        reader.next_packet()


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes(data: bytes, cap: int) -> None:
    reader = PacketReader(max_packet_size=cap)
    reader.feed(data)
    try:
        while (packet := reader.next_packet()) is not None:
            assert len(packet.body) < cap
    except ProtocolError:
        pass
