"""The sans-IO preamble: PROXY header, first packet and login start, fed in any chunking."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infrarust.protocol import (
    NEED_DATA,
    ClientClosed,
    Handshake,
    HelloReceived,
    LegacyLogin,
    LegacyPing,
    LoginStartReceived,
    NextState,
    Preamble,
    PreambleComplete,
    PreambleEvent,
    ProtocolError,
    ProxyHeaderReceived,
    encode_packet,
    encode_proxy_v2,
    encode_string,
)

PLAYER_UUID = uuid.UUID(bytes=bytes(range(16)))


def login_start(name: str) -> bytes:
    return encode_packet(0x00, encode_string(name) + PLAYER_UUID.bytes)


def run(preamble: Preamble, chunks: list[bytes], eof: bool = False) -> list[PreambleEvent]:
    """Feed ``chunks`` one by one, taking every event out between them, then EOF if asked."""
    events: list[PreambleEvent] = []

    def drain() -> bool:
        while True:
            event = preamble.next_event()
            if event is NEED_DATA:
                return False
            events.append(event)
            if isinstance(event, PreambleComplete | ClientClosed):
                return True

    if drain():
        return events
    for chunk in chunks:
        preamble.receive_data(chunk)
        if drain():
            return events
    if eof:
        preamble.receive_data(b"")
        drain()
    return events


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def test_a_login_yields_hello_login_start_and_every_byte() -> None:
    hello = Handshake(765, "play.example.com", 25565, NextState.LOGIN).encode()
    after = login_start("Steve") + b"\x05pipelined"
    for chunks in ([hello + after], bytewise(hello + after)):
        events = run(Preamble(), chunks)
        assert [type(e) for e in events] == [HelloReceived, LoginStartReceived, PreambleComplete]
        first, login, done = events
        assert isinstance(first, HelloReceived) and first.handshake.host == "play.example.com"
        assert isinstance(login, LoginStartReceived) and login.login is not None
        assert login.login.name == "Steve" and login.login.uuid == PLAYER_UUID
        assert isinstance(done, PreambleComplete)
        assert done.received.startswith(hello) and done.rest.startswith(login_start("Steve"))
        # Bytes that arrived in the same read as the login start are kept too, in order.
        if len(chunks) == 1:
            assert done.received == hello + after and done.rest == after


def test_a_status_handshake_completes_without_waiting_for_more() -> None:
    hello = Handshake(765, "s.test", 25565, NextState.STATUS).encode()
    events = run(Preamble(), [hello + b"\x01\x00"])
    assert [type(e) for e in events] == [HelloReceived, PreambleComplete]
    assert isinstance(events[0], HelloReceived) and events[0].is_status
    assert isinstance(events[1], PreambleComplete) and events[1].rest == b"\x01\x00"


def test_a_proxy_header_comes_first_and_is_not_forwarded() -> None:
    header = encode_proxy_v2(("203.0.113.7", 40000), ("192.0.2.1", 25565))
    hello = Handshake(765, "s.test", 25565, NextState.LOGIN).encode() + login_start("Alex")
    for chunks in ([header + hello], bytewise(header + hello)):
        events = run(Preamble(proxy_header=True), chunks)
        assert isinstance(events[0], ProxyHeaderReceived)
        assert events[0].header.source == ("203.0.113.7", 40000)
        done = events[-1]
        assert isinstance(done, PreambleComplete) and done.received == hello


def test_a_missing_proxy_header_is_an_error() -> None:
    preamble = Preamble(proxy_header=True)
    preamble.receive_data(Handshake(765, "s.test", 25565, NextState.LOGIN).encode())
    with pytest.raises(ProtocolError):
        preamble.next_event()


def test_a_legacy_ping_offers_a_status_handshake_view() -> None:
    preamble = Preamble()
    preamble.receive_data(b"\xfe\x01")
    assert preamble.next_event() is NEED_DATA and preamble.legacy_ping_pending
    preamble.silence()  # nothing else came: a 1.4 ping
    event = preamble.next_event()
    assert isinstance(event, HelloReceived) and isinstance(event.event, LegacyPing) and event.legacy
    assert event.handshake.next_state is NextState.STATUS
    assert isinstance(preamble.next_event(), PreambleComplete)


def test_a_legacy_login_is_a_login_view_with_its_host() -> None:
    name, host = "Notch", "old.test"
    body = b"\x02\x4e" + _utf16(name) + _utf16(host) + (25565).to_bytes(4, "big")
    events = run(Preamble(), [body])
    assert isinstance(events[0], HelloReceived) and isinstance(events[0].event, LegacyLogin)
    assert events[0].handshake.host == host and events[0].handshake.next_state is NextState.LOGIN
    assert isinstance(events[-1], PreambleComplete) and events[-1].received == body


def _utf16(text: str) -> bytes:
    return len(text).to_bytes(2, "big") + text.encode("utf-16-be")


def test_eof_before_anything_is_client_closed() -> None:
    assert [type(e) for e in run(Preamble(), [], eof=True)] == [ClientClosed]


def test_eof_inside_the_handshake_is_an_error() -> None:
    hello = Handshake(765, "s.test", 25565, NextState.LOGIN).encode()
    preamble = Preamble()
    preamble.receive_data(hello[:5])
    assert preamble.next_event() is NEED_DATA
    preamble.receive_data(b"")
    with pytest.raises(ProtocolError):
        preamble.next_event()


def test_eof_before_the_login_start_completes_without_a_name() -> None:
    hello = Handshake(765, "s.test", 25565, NextState.LOGIN).encode()
    events = run(Preamble(), [hello], eof=True)
    assert [type(e) for e in events] == [HelloReceived, LoginStartReceived, PreambleComplete]
    assert isinstance(events[1], LoginStartReceived) and events[1].login is None


def test_an_unreadable_login_start_is_forwarded_as_is() -> None:
    hello = Handshake(765, "s.test", 25565, NextState.LOGIN).encode()
    garbage = b"\xff\xff\xff\xff\x7f" + b"x" * 10  # a length far over the cap
    events = run(Preamble(), [hello + garbage])
    assert isinstance(events[1], LoginStartReceived) and events[1].login is None
    assert isinstance(events[-1], PreambleComplete) and events[-1].rest == garbage


def test_the_object_is_spent_after_completion() -> None:
    preamble = Preamble()
    run(preamble, [Handshake(765, "s.test", 25565, NextState.STATUS).encode()])
    with pytest.raises(RuntimeError):
        preamble.next_event()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17), st.booleans())
def test_arbitrary_bytes_only_raise_protocol_error(data: bytes, step: int, header: bool) -> None:
    preamble = Preamble(proxy_header=header)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    try:
        events = run(preamble, chunks, eof=True)
    except ProtocolError:
        return
    if events and isinstance(events[-1], PreambleComplete):
        assert events[-1].received in data  # every byte kept, in order


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40), st.sampled_from([47, 340, 759, 760, 761, 765, 769]), st.binary(max_size=40))
def test_any_chunking_gives_the_same_events(host: str, protocol: int, tail: bytes) -> None:
    data = Handshake(protocol, host, 25565, NextState.LOGIN).encode() + login_start("Steve") + tail
    whole = run(Preamble(), [data])
    one_by_one = run(Preamble(), bytewise(data))
    assert [type(e) for e in whole] == [type(e) for e in one_by_one]
    assert whole[:2] == one_by_one[:2]
    done_whole, done_bytes = whole[-1], one_by_one[-1]
    assert isinstance(done_whole, PreambleComplete) and isinstance(done_bytes, PreambleComplete)
    # Byte by byte the preamble completes as soon as the login start is whole; the tail follows later.
    assert done_bytes.received == data[: len(done_bytes.received)]
    assert done_whole.received == data
