"""Durations, addresses and favicons: the value syntaxes of the configuration files."""

from __future__ import annotations

import base64
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infrarust.config import Address, format_duration, parse_address, parse_duration
from infrarust.config._favicon import favicon_size, load_favicon


def png(width: int = 64, height: int = 64) -> bytes:
    """A PNG signature and IHDR chunk: all the loader reads of an image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = struct.pack(">I", len(header)) + b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", zlib.crc32(b"IHDR" + header))


# --- durations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0.0),
        ("0ms", 0.0),
        ("500ms", 0.5),
        ("5s", 5.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("  10s  ", 10.0),
        ("1m30s250ms", 90.25),
        ("30m1h", 5400.0),
        ("1.5s", 1.5),
        ("0.5h", 1800.0),
        ("100ms", 0.1),
        ("300s", 300.0),
        # Infrarust v2's spellings (the units of the humantime crate it parses durations with).
        ("0", 0.0),
        ("1min", 60.0),
        ("5 s", 5.0),
        ("10 seconds", 10.0),
        ("1sec", 1.0),
        ("2secs", 2.0),
        ("1minute 5mins", 360.0),
        ("2hr", 7200.0),
        ("1hrs 1hour 1hours", 3 * 3600.0),
        ("1d", 86400.0),
        ("2days", 172800.0),
        ("1w", 604800.0),
        ("1wk 1wks 1week", 3 * 604800.0),
        ("1M", 2_630_016.0),
        ("1month", 2_630_016.0),
        ("1y", 31_557_600.0),
        ("1yr 1years", 2 * 31_557_600.0),
        ("1500msec", 1.5),
        ("250millis", 0.25),
        ("1500us", 0.0015),
        ("1500µs", 0.0015),
        ("2000usec", 0.002),
        ("1000000000ns", 1.0),
        ("1000000000nanos 1000000000nsec", 2.0),
        ("2h 37min", 9420.0),
        ("4.2s", 4.2),
    ],
)
def test_parse_duration_examples(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "5",
        "5S",
        "5Min",
        "5sex",
        "5 s s",
        "-5s",
        "+5s",
        "s",
        "1.s",
        ".5s",
        "5s-",
        "1h30",
        "1e3s",
        "5 ",
        "٣s",
        "00",
        "0.0",
        "5μs",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_error_says_what_is_expected() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5")
    assert str(info.value) == (
        "invalid duration '5': expected a number with a unit (ms, s, m, h, d...),"
        ' like "500ms", "5s", "2m", "1min" or "1h30m"'
    )


def test_parse_duration_names_an_unknown_unit() -> None:
    with pytest.raises(ValueError, match="unknown unit 'minz'"):
        parse_duration("1h 5minz")


def test_parse_duration_too_large_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 400 + "h")


_UNITS_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


@given(
    parts=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(_UNITS_MS))), min_size=1, max_size=6
    ),
    separators=st.lists(st.sampled_from(["", " ", "  ", "\t"]), min_size=6, max_size=6),
)
def test_parse_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]], separators: list[str]) -> None:
    text = "".join(
        f"{number}{unit}{separator}" for (number, unit), separator in zip(parts, separators, strict=False)
    )
    total_ms = sum(number * _UNITS_MS[unit] for number, unit in parts)
    assert parse_duration(text) == float(Fraction(total_ms, 1000))


@given(st.text())
def test_parse_duration_arbitrary_text_only_raises_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert seconds >= 0


@given(st.from_regex(r"[0-9hms. \-]{0,12}", fullmatch=True))
def test_parse_duration_near_miss_text_only_raises_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert seconds >= 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (5, "5s"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (3600.001, "1h1ms"),
        (0.0004, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(0, 10**12))
def test_format_duration_round_trips(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("seconds", [-1.0, float("inf"), float("nan")])
def test_format_duration_rejects(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_duration(seconds)


# --- addresses -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:25566", Address("127.0.0.1", 25566)),
        ("127.0.0.1", Address("127.0.0.1", 25565)),
        ("0.0.0.0:0", Address("0.0.0.0", 0)),
        ("mc.example.com:25577", Address("mc.example.com", 25577)),
        ("backend_1", Address("backend_1", 25565)),
        ("localhost:65535", Address("localhost", 65535)),
        (" localhost:1 ", Address("localhost", 1)),
        ("[::1]:25565", Address("::1", 25565)),
        ("[::]", Address("::", 25565)),
        ("[::]:0", Address("::", 0)),
        ("[2001:db8::1]:19132", Address("2001:db8::1", 19132)),
        ("[fe80::1%eth0]:25565", Address("fe80::1%eth0", 25565)),
        ("[::ffff:10.0.0.1]", Address("::ffff:10.0.0.1", 25565)),
    ],
)
def test_parse_address(text: str, address: Address) -> None:
    assert parse_address(text) == address


def test_parse_address_default_port() -> None:
    assert parse_address("example.com", default_port=9100) == Address("example.com", 9100)
    assert parse_address("[::1]", default_port=1) == Address("::1", 1)


def test_address_str_brackets_ipv6() -> None:
    assert str(parse_address("[::1]:25565")) == "[::1]:25565"
    assert str(parse_address("host")) == "host:25565"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty address"),
        ("   ", "empty address"),
        (":25565", "missing host"),
        ("host:", "missing port"),
        ("host:70000", "port '70000' is not a number from 0 to 65535"),
        ("host:-1", "is not a number from 0 to 65535"),
        ("host:abc", "is not a number from 0 to 65535"),
        ("host:+80", "is not a number from 0 to 65535"),
        ("host:123456", "is not a number from 0 to 65535"),
        ("::1", "put IPv6 addresses in brackets"),
        ("2001:db8::1:25565", "put IPv6 addresses in brackets"),
        ("[::1", 'missing "]"'),
        ("[::1]25565", 'expected ":port"'),
        ("[nope]:1", "'nope' is not an IPv6 address"),
        ("[127.0.0.1]:1", "is not an IPv6 address"),
        ("256.1.1.1:25565", "'256.1.1.1' is not a valid IPv4 address"),
        ("my host:25565", "is not a host name or IP address"),
        ("host/path", "is not a host name or IP address"),
    ],
)
def test_parse_address_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_address(text)
    assert reason in str(info.value)


def test_parse_address_rejects_bad_default_port() -> None:
    with pytest.raises(ValueError):
        parse_address("host", default_port=70000)


@given(st.text())
def test_parse_address_arbitrary_text_only_raises_value_error(text: str) -> None:
    try:
        address = parse_address(text)
    except ValueError:
        return
    assert 0 <= address.port <= 65535
    assert address.host


# --- favicons --------------------------------------------------------------------------------------------


def test_favicon_forms_give_the_same_data_uri(tmp_path: Path) -> None:
    image = png()
    (tmp_path / "icon.png").write_bytes(image)
    expected = "data:image/png;base64," + base64.b64encode(image).decode()
    encoded = base64.b64encode(image).decode()
    assert load_favicon("icon.png", tmp_path) == expected
    assert load_favicon(encoded, tmp_path) == expected
    assert load_favicon(encoded[:20] + "\n  " + encoded[20:], tmp_path) == expected
    assert load_favicon(expected, tmp_path) == expected
    assert favicon_size(expected) == (64, 64)


def test_favicon_size_reads_ihdr() -> None:
    uri = "data:image/png;base64," + base64.b64encode(png(128, 32)).decode()
    assert favicon_size(uri) == (128, 32)
    assert favicon_size("data:image/png;base64,iVBORw0KGgo=") is None
