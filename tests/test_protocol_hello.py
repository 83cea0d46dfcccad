"""HelloReader: every kind of first message, any chunking, refusals that do not wait, and leftovers kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import (
    MAX_HANDSHAKE_SIZE,
    Handshake,
    HelloReader,
    LegacyLogin,
    LegacyPing,
    LegacyPingKind,
    NextState,
    ProtocolError,
    encode_varint,
)

Hello = Handshake | LegacyPing | LegacyLogin

HANDSHAKE_1_20_4 = bytes.fromhex("10 00 fd05 09 6c6f63616c686f7374 63dd 02")
LOGIN_START_1_20_4 = bytes.fromhex("17 00 05 4e6f746368 069a79f444e94726a5befca90e38aaf5")

# What a 1.6.4 client (protocol 78) sends to list localhost:25565, in one write.
PING_1_6_4 = bytes.fromhex(
    "fe 01 fa"
    "000b 004d0043007c00500069006e00670048006f00730074"  # string16 "MC|PingHost"
    "0019"  # 25 bytes follow: 1 + (2 + 2 * 9) + 4
    "4e"  # protocol 78
    "0009 006c006f00630061006c0068006f00730074"  # string16 "localhost"
    "000063dd"  # port 25565
)


def string16(text: str) -> bytes:
    return len(text).to_bytes(2, "big") + text.encode("utf-16-be")


def feed_whole(data: bytes) -> tuple[Hello | None, bytes]:
    reader = HelloReader()
    event = reader.feed(data)
    return event, reader.take_leftover()


def feed_bytewise(data: bytes) -> tuple[Hello | None, bytes]:
    reader = HelloReader()
    for index in range(len(data)):
        event = reader.feed(data[index : index + 1])
        if event is not None:
            return event, reader.take_leftover() + data[index + 1 :]
    return None, reader.take_leftover()


def outcome(feed: object, data: bytes) -> object:
    assert callable(feed)
    try:
        return feed(data)
    except ProtocolError:
        return ProtocolError


def test_real_handshake_with_login_start_behind_it() -> None:
    expected = (Handshake(765, "localhost", 25565, NextState.LOGIN), LOGIN_START_1_20_4)
    assert feed_whole(HANDSHAKE_1_20_4 + LOGIN_START_1_20_4) == expected
    assert feed_bytewise(HANDSHAKE_1_20_4 + LOGIN_START_1_20_4) == expected


hosts = st.one_of(
    st.from_regex(r"[a-z0-9.-]{0,300}", fullmatch=True),
    st.from_regex(r"[a-z0-9.-]{1,60}", fullmatch=True).map(lambda h: h + "\0FML2\0"),
    st.from_regex(r"[a-z0-9.-]{1,60}///[0-9.]{7,15}///[0-9]{10}///[A-Za-z0-9+/=]{344}", fullmatch=True),
)


@given(
    st.integers(min_value=-1, max_value=2**31 - 1),
    hosts,
    st.integers(min_value=0, max_value=0xFFFF),
    st.sampled_from(NextState),
    st.binary(max_size=40),
    st.lists(st.integers(min_value=1, max_value=50), max_size=30),
)
def test_any_chunking_gives_the_same_handshake_and_leftover(
    protocol: int, host: str, port: int, state: NextState, tail: bytes, sizes: list[int]
) -> None:
    handshake = Handshake(protocol, host, port, state)
    data = handshake.encode() + tail
    assert feed_whole(data) == (handshake, tail)
    assert feed_bytewise(data) == (handshake, tail)
    reader = HelloReader()
    position, event = 0, None
    for size in [*sizes, len(data)]:
        event = reader.feed(data[position : position + size])
        position += size
        if event is not None:
            break
    assert event == handshake
    assert reader.take_leftover() + data[position:] == tail


def test_fe_01_00_is_a_254_byte_handshake() -> None:
    handshake = Handshake(765, "a" * 246, 25565, NextState.STATUS)
    raw = handshake.encode()
    assert raw[:3] == b"\xfe\x01\x00"
    assert feed_whole(raw + b"\x01\x00") == (handshake, b"\x01\x00")
    assert feed_bytewise(raw + b"\x01\x00") == (handshake, b"\x01\x00")


def test_legacy_1_6_ping() -> None:
    expected = (LegacyPing(LegacyPingKind.V1_6, 78, "localhost", 25565), b"")
    assert feed_whole(PING_1_6_4) == expected
    assert feed_bytewise(PING_1_6_4) == expected


def test_legacy_1_6_ping_with_wrong_declared_length() -> None:
    with pytest.raises(ProtocolError):
        HelloReader().feed(PING_1_6_4.replace(b"\x00\x19\x4e", b"\x00\x18\x4e"))


@pytest.mark.parametrize(
    ("sent", "kind"),
    [(b"\xfe", LegacyPingKind.BETA), (b"\xfe\x01", LegacyPingKind.V1_4)],
)
def test_short_legacy_pings_resolve_at_eof(sent: bytes, kind: LegacyPingKind) -> None:
    reader = HelloReader()
    assert not reader.legacy_ping_pending
    for byte in sent:
        assert reader.feed(bytes((byte,))) is None
    assert reader.legacy_ping_pending
    assert reader.feed_eof() == LegacyPing(kind, None, None, None)
    assert not reader.legacy_ping_pending
    assert reader.take_leftover() == b""


def test_fe_followed_by_another_byte_is_a_modern_length() -> None:
    reader = HelloReader()
    assert reader.feed(b"\xfe\x02") is None  # length 382: a handshake may follow
    assert not reader.legacy_ping_pending
    with pytest.raises(ProtocolError, match="not a handshake"):
        reader.feed(b"\x05")


def test_fe_01_then_not_fa_nor_00_is_refused() -> None:
    with pytest.raises(ProtocolError):
        HelloReader().feed(b"\xfe\x01\x02")


def test_legacy_login_1_3_to_1_6() -> None:
    raw = b"\x02\x4e" + string16("Notch") + string16("localhost") + (25565).to_bytes(4, "big")
    expected = (LegacyLogin(78, "Notch", "localhost", 25565), b"\xcd")
    assert feed_whole(raw + b"\xcd") == expected
    assert feed_bytewise(raw + b"\xcd") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Notch;localhost:25565", LegacyLogin(None, "Notch", "localhost", 25565)),
        ("Notch;[::1]:25565", LegacyLogin(None, "Notch", "[::1]", 25565)),
        ("Notch;example.com", LegacyLogin(None, "Notch", "example.com", None)),
        ("Notch", LegacyLogin(None, "Notch", None, None)),
    ],
)
def test_legacy_login_before_1_3(text: str, expected: LegacyLogin) -> None:
    raw = b"\x02" + string16(text)
    assert feed_whole(raw) == (expected, b"")
    assert feed_bytewise(raw) == (expected, b"")


def test_oversize_handshake_rejected_before_its_bytes() -> None:
    reader = HelloReader()
    with pytest.raises(ProtocolError, match="exceeds"):
        reader.feed(encode_varint(MAX_HANDSHAKE_SIZE + 1))


def test_handshake_at_the_cap_is_accepted() -> None:
    reader = HelloReader(max_handshake_size=len(HANDSHAKE_1_20_4) - 1)
    assert reader.feed(HANDSHAKE_1_20_4) is not None
    with pytest.raises(ProtocolError):
        HelloReader(max_handshake_size=len(HANDSHAKE_1_20_4) - 2).feed(HANDSHAKE_1_20_4[:1])


def test_wrong_first_packet_rejected_at_its_id() -> None:
    with pytest.raises(ProtocolError, match="not a handshake"):
        HelloReader().feed(b"\x10\x01")


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x80\x80\x80\x80",  # a length VarInt past 5 bytes
        b"\x00",  # a zero length
        b"GET / HTTP/1.1\r\n",  # 'G' is a 71-byte length, then packet id 'E'
    ],
)
def test_garbage_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        HelloReader().feed(data)


def test_eof_inside_a_modern_packet_is_an_error() -> None:
    reader = HelloReader()
    assert reader.feed(HANDSHAKE_1_20_4[:5]) is None
    with pytest.raises(ProtocolError):
        reader.feed_eof()


def test_eof_before_any_byte() -> None:
    assert HelloReader().feed_eof() is None


def test_feeding_after_the_event_is_a_bug() -> None:
    reader = HelloReader()
    assert reader.feed(HANDSHAKE_1_20_4) is not None
    with pytest.raises(RuntimeError):
        reader.feed(b"\x00")


prefixes = st.sampled_from(
    [b"", b"\xfe", b"\xfe\x01", b"\xfe\x01\xfa", b"\xfe\x01\xfa\x00\x0b", b"\x02", b"\x02\x4e"]
)


@given(prefixes, st.binary(max_size=120))
def test_arbitrary_bytes_only_protocol_errors(prefix: bytes, rest: bytes) -> None:
    data = prefix + rest
    whole = outcome(feed_whole, data)
    assert outcome(feed_bytewise, data) == whole
    if whole is not ProtocolError:
        reader = HelloReader()
        try:
            event = reader.feed(data)
            if event is None:
                reader.feed_eof()
        except ProtocolError:
            pass
