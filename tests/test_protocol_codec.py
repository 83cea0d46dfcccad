"""The per-direction codec and the connection state: round trips through compression and
encryption, chunking independence, caps, and that garbage only ever raises ProtocolError."""

from __future__ import annotations

import os
import uuid
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infrarust.protocol import (
    MAX_UNCOMPRESSED_SIZE,
    Direction,
    LoginSuccess,
    MinecraftConnection,
    PacketDecoder,
    PacketEncoder,
    ProtocolError,
    Role,
    State,
    decode_varint,
    encode_login_success,
    encode_set_compression,
    encode_varint,
    packet_ids,
)

SECRET = bytes(range(16))
packets = st.lists(st.tuples(st.integers(0, 0x7F), st.binary(max_size=600)), min_size=1, max_size=8)
thresholds = st.sampled_from([-1, 0, 1, 64, 256])


def _pair(threshold: int, secret: bytes | None) -> tuple[PacketEncoder, PacketDecoder]:
    encoder, decoder = PacketEncoder(), PacketDecoder()
    encoder.set_compression(threshold)
    decoder.set_compression(threshold)
    if secret is not None:
        encoder.enable_encryption(secret)
        decoder.enable_encryption(secret)
    return encoder, decoder


def _drain(decoder: PacketDecoder) -> list[tuple[int, bytes]]:
    out = []
    while (packet := decoder.next_packet()) is not None:
        out.append((packet.packet_id, packet.body))
    return out


@given(packets, thresholds, st.booleans())
def test_round_trip_through_compression_and_encryption(
    items: list[tuple[int, bytes]], threshold: int, encrypted: bool
) -> None:
    encoder, decoder = _pair(threshold, SECRET if encrypted else None)
    wire = b"".join(encoder.encode(packet_id, body) for packet_id, body in items)
    if encrypted:
        assert encoder.encode(0, b"plain text here") != PacketEncoder().encode(0, b"plain text here")
    decoder.feed(wire)
    assert _drain(decoder) == items
    assert decoder.buffered == 0


@given(packets, thresholds, st.booleans(), st.data())
@settings(max_examples=50)
def test_any_chunking_gives_the_same_packets(
    items: list[tuple[int, bytes]], threshold: int, encrypted: bool, data: st.DataObject
) -> None:
    encoder, _ = _pair(threshold, SECRET if encrypted else None)
    wire = b"".join(encoder.encode(packet_id, body) for packet_id, body in items)
    _, whole = _pair(threshold, SECRET if encrypted else None)
    whole.feed(wire)
    expected = _drain(whole)
    _, bytewise = _pair(threshold, SECRET if encrypted else None)
    got: list[tuple[int, bytes]] = []
    for byte in wire:
        bytewise.feed(bytes((byte,)))
        got += _drain(bytewise)
    assert got == expected == items
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    _, chunked = _pair(threshold, SECRET if encrypted else None)
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        chunked.feed(wire[start:end])
        got += _drain(chunked)
    assert got == items


@given(st.binary(max_size=400), thresholds, st.booleans())
@settings(max_examples=300)
def test_arbitrary_bytes_raise_only_protocol_error(garbage: bytes, threshold: int, encrypted: bool) -> None:
    _, decoder = _pair(threshold, SECRET if encrypted else None)
    decoder.feed(garbage)
    try:
        while (packet := decoder.next_packet()) is not None:
            _ = packet.body
    except ProtocolError:
        pass


@given(packets, st.sampled_from([-1, 0, 64, 256]), st.sampled_from([-1, 0, 64, 256]))
def test_relay_between_thresholds(items: list[tuple[int, bytes]], inbound: int, outbound: int) -> None:
    sender, receiver = _pair(inbound, None)
    receiver.feed(b"".join(sender.encode(packet_id, body) for packet_id, body in items))
    relay, final = _pair(outbound, SECRET)
    wire = b""
    while (packet := receiver.next_packet()) is not None:
        wire += relay.encode_packet(packet)
    final.feed(wire)
    assert _drain(final) == items


def test_relay_reuses_the_frame_without_inflating_it() -> None:
    sender, receiver = _pair(64, None)
    body = os.urandom(50) * 40
    receiver.feed(sender.encode(0x21, body))
    packet = receiver.next_packet()
    assert packet is not None and packet.compressed and packet.packet_id == 0x21
    relay = PacketEncoder()
    relay.set_compression(64)
    assert relay.encode_packet(packet) == encode_varint(len(packet.payload)) + packet.payload
    assert packet._body is None  # the id was peeked, the body never inflated


def _compressed_frame(declared: int, data: bytes) -> bytes:
    payload = encode_varint(declared) + zlib.compress(data)
    return encode_varint(len(payload)) + payload


def test_zip_bomb_is_an_error_not_memory() -> None:
    decoder = PacketDecoder()
    decoder.set_compression(256)
    decoder.feed(_compressed_frame(MAX_UNCOMPRESSED_SIZE + 1, b"\x00" * 1000))
    with pytest.raises(ProtocolError, match="above the limit"):
        decoder.next_packet()
    # A stream that inflates past what it declares stops at the declared size plus one byte.
    liar = PacketDecoder()
    liar.set_compression(256)
    liar.feed(_compressed_frame(300, b"\x01" + b"\x00" * 50_000_000))
    packet = liar.next_packet()
    assert packet is not None
    with pytest.raises(ProtocolError, match="does not inflate to exactly"):
        _ = packet.body


def test_vanilla_compression_rules() -> None:
    decoder = PacketDecoder()
    decoder.set_compression(256)
    decoder.feed(_compressed_frame(10, b"\x05" + b"x" * 9))
    with pytest.raises(ProtocolError, match="below the threshold"):
        decoder.next_packet()
    # Data length 0: sent as is, whatever its size (vanilla reads it so).
    accepting = PacketDecoder()
    accepting.set_compression(256)
    packet = b"\x00\x07" + b"y" * 1000
    accepting.feed(encode_varint(len(packet)) + packet)
    received = accepting.next_packet()
    assert received is not None and (received.packet_id, received.body) == (7, b"y" * 1000)
    encoder = PacketEncoder()
    encoder.set_compression(256)
    assert _data_length(encoder.encode(1, b"z" * 254)) == 0  # 255 bytes with the id: below the threshold
    assert _data_length(encoder.encode(1, b"z" * 255)) == 256


def _data_length(frame: bytes) -> int:
    header = decode_varint(frame)
    assert header is not None
    data_length = decode_varint(frame, header[1])
    assert data_length is not None
    return data_length[0]


def test_encryption_covers_bytes_buffered_before_it_was_enabled() -> None:
    encoder = PacketEncoder()
    first = encoder.encode(1, b"response")
    encoder.enable_encryption(SECRET)
    data = first + encoder.encode(2, b"secret stuff")
    decoder = PacketDecoder()
    decoder.feed(data)
    packet = decoder.next_packet()
    assert packet is not None and packet.body == b"response"
    decoder.enable_encryption(SECRET)
    packet = decoder.next_packet()
    assert packet is not None and packet.body == b"secret stuff"


def test_bad_secret_and_oversized_frames() -> None:
    with pytest.raises(ProtocolError, match="16"):
        PacketEncoder().enable_encryption(b"short")
    with pytest.raises(ProtocolError, match="above the limit"):
        PacketEncoder().encode(0, bytes(2_100_000))
    decoder = PacketDecoder()
    decoder.feed(encode_varint(2_100_000))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.next_packet()


def _login_success_body(protocol: int) -> bytes:

    return encode_login_success(protocol, LoginSuccess(uuid.UUID(int=1), "Notch"))


@pytest.mark.parametrize("protocol", [47, 763, 764, 775])
def test_connection_follows_login_configuration_and_play(protocol: int) -> None:
    server = MinecraftConnection(Role.SERVER, protocol)  # the proxy on the client leg
    client = MinecraftConnection(Role.CLIENT, protocol)  # the player
    client.receive_data(server.send("set_compression", encode_set_compression(64)))
    assert server.compression_threshold == 64
    inbound = client.next_packet()
    assert inbound is not None and inbound.name == "set_compression"
    assert client.compression_threshold == 64
    client.receive_data(server.send("login_success", _login_success_body(protocol)))
    inbound = client.next_packet()
    assert inbound is not None and inbound.name == "login_success"
    if protocol < 764:
        assert client.inbound_state is State.PLAY and client.outbound_state is State.PLAY
        assert server.outbound_state is State.PLAY and server.inbound_state is State.PLAY
    else:
        assert (client.inbound_state, client.outbound_state) == (State.CONFIGURATION, State.LOGIN)
        steps = [
            (client, server, "login_acknowledged", State.CONFIGURATION),
            (server, client, "finish_configuration", State.PLAY),
            (client, server, "finish_configuration", State.PLAY),
            (server, client, "start_configuration", State.CONFIGURATION),
            (client, server, "configuration_acknowledged", State.CONFIGURATION),
        ]
        for sender, receiver, name, after in steps:
            receiver.receive_data(sender.send(name, b""))
            inbound = receiver.next_packet()
            assert inbound is not None and inbound.name == name
            assert receiver.inbound_state is after and sender.outbound_state is after
    ids = packet_ids(protocol)
    assert ids is not None and server.ids is ids


def test_connection_relays_between_legs_with_different_thresholds() -> None:
    backend_side = MinecraftConnection(Role.CLIENT, 765, State.PLAY)
    backend_side.set_compression(256)
    client_side = MinecraftConnection(Role.SERVER, 765, State.PLAY)
    player = MinecraftConnection(Role.CLIENT, 765, State.PLAY)
    client_side.enable_encryption(SECRET)
    player.enable_encryption(SECRET)
    backend = MinecraftConnection(Role.SERVER, 765, State.PLAY)
    backend.set_compression(256)
    chunk = os.urandom(2_000_000)
    backend_side.receive_data(backend.send_id(0x27, chunk) + backend.send("keep_alive", bytes(8)))
    while (packet := backend_side.next_packet()) is not None:
        player.receive_data(client_side.relay(packet))
    first, second = player.next_packet(), player.next_packet()
    assert first is not None and (first.packet_id, first.body) == (0x27, chunk) and first.name is None
    assert second is not None and second.name == "keep_alive"


def test_unsupported_version_and_unknown_packets() -> None:
    with pytest.raises(ProtocolError, match="not supported"):
        MinecraftConnection(Role.SERVER, 5)
    connection = MinecraftConnection(Role.CLIENT, 47, State.PLAY)
    connection.receive_data(PacketEncoder().encode(0x7E, b"opaque"))
    packet = connection.next_packet()
    assert packet is not None and packet.name is None and packet.body == b"opaque"
    assert connection.ids.name_of(State.PLAY, Direction.CLIENTBOUND, 0x40) == "disconnect"


@given(
    st.lists(st.tuples(st.integers(0, 8), st.binary(max_size=40)), max_size=12),
    st.sampled_from([47, 340, 759, 764, 765, 775]),
    st.sampled_from(list(Role)),
)
@settings(max_examples=200)
def test_connection_survives_any_packet_sequence(
    items: list[tuple[int, bytes]], protocol: int, role: Role
) -> None:
    """Well-framed packets with arbitrary ids and bodies, in any state: only ProtocolError escapes."""
    connection = MinecraftConnection(role, protocol, State.HANDSHAKE if role is Role.SERVER else State.LOGIN)
    encoder = PacketEncoder()
    try:
        for packet_id, body in items:
            connection.receive_data(encoder.encode(packet_id, body))
            encoder.set_compression(connection.decoder.threshold)
            while (packet := connection.next_packet()) is not None:
                _ = packet.body
    except ProtocolError:
        pass
