"""VarInt and string codecs: wiki.vg vectors and properties over the whole input space."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.protocol import (
    MAX_VARINT_BYTES,
    ProtocolError,
    decode_varint,
    encode_string,
    encode_varint,
    read_string,
)

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)

# The sample table of wiki.vg's "Protocol" page (VarInt and VarLong section).
VECTORS = [
    (0, "00"),
    (1, "01"),
    (2, "02"),
    (127, "7f"),
    (128, "80 01"),
    (255, "ff 01"),
    (25565, "dd c7 01"),
    (2097151, "ff ff 7f"),
    (2147483647, "ff ff ff ff 07"),
    (-1, "ff ff ff ff 0f"),
    (-2147483648, "80 80 80 80 08"),
]


@pytest.mark.parametrize(("value", "wire"), VECTORS)
def test_known_vectors(value: int, wire: str) -> None:
    raw = bytes.fromhex(wire)
    assert encode_varint(value) == raw
    assert decode_varint(raw) == (value, len(raw))


@given(INT32)
def test_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert len(raw) <= MAX_VARINT_BYTES
    assert decode_varint(b"junk" + raw + b"tail", 4) == (value, 4 + len(raw))


@given(INT32)
def test_every_strict_prefix_needs_more(value: int) -> None:
    raw = encode_varint(value)
    for cut in range(len(raw)):
        assert decode_varint(raw[:cut]) is None


@pytest.mark.parametrize("value", [2**31, -(2**31) - 1, 2**40])
def test_encode_out_of_range(value: int) -> None:
    with pytest.raises(ProtocolError):
        encode_varint(value)


def test_six_byte_varint_rejected() -> None:
    with pytest.raises(ProtocolError):
        decode_varint(bytes.fromhex("80 80 80 80 80 01"))
    # Five continuation bytes are already too many, whatever follows.
    with pytest.raises(ProtocolError):
        decode_varint(bytes.fromhex("ff ff ff ff ff"))


def test_non_minimal_accepted_like_vanilla() -> None:
    assert decode_varint(bytes.fromhex("80 00")) == (0, 2)


@given(st.binary(max_size=12), st.integers(min_value=0, max_value=12))
def test_decode_arbitrary_bytes(data: bytes, offset: int) -> None:
    try:
        result = decode_varint(data, offset)
    except ProtocolError:
        return
    if result is not None:
        value, end = result
        assert -(2**31) <= value < 2**31
        assert offset < end <= min(len(data), offset + MAX_VARINT_BYTES)


@given(st.text())
def test_string_round_trip(text: str) -> None:
    try:
        raw = encode_string(text)
    except ProtocolError:
        # Only strings holding lone surrogates have no UTF-8 form.
        assert any(0xD800 <= ord(char) <= 0xDFFF for char in text)
        return
    assert read_string(raw + b"x", 0, max_chars=2 * len(text) + 1) == (text, len(raw))


def test_string_limits_count_utf16_units() -> None:
    # An emoji is one code point but two UTF-16 units, as Java counts it.
    raw = encode_string("\U0001f600")
    assert read_string(raw, 0, max_chars=2) == ("\U0001f600", len(raw))
    with pytest.raises(ProtocolError):
        read_string(raw, 0, max_chars=1)


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # no length
        b"\x05abc",  # truncated
        b"\x02\xff\xfe",  # not UTF-8
        b"\xff\xff\xff\xff\x0f",  # negative length
        encode_string("a" * 17),  # over the limit
    ],
)
def test_bad_strings(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_string(raw, 0, max_chars=16)


def test_overlong_declared_string_refused_before_decoding() -> None:
    # 16 UTF-16 units take at most 48 UTF-8 bytes, so 49 is refused without looking at them.
    with pytest.raises(ProtocolError, match="exceeds"):
        read_string(encode_varint(49) + b"a" * 49, 0, max_chars=16)


@given(st.binary(max_size=40), st.integers(min_value=0, max_value=40), st.integers(0, 40))
def test_read_string_arbitrary_bytes(data: bytes, offset: int, max_chars: int) -> None:
    try:
        text, end = read_string(data, offset, max_chars)
    except ProtocolError:
        return
    assert offset < end <= len(data)
    assert len(text) <= max_chars
