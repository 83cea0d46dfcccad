"""A server-list ping client: what ``python -m infrarust ping`` runs, for operators and CI jobs.

Kept light on purpose: importing it loads trio and the protocol codecs, not the proxy (a CI loop that
pings every half second pays the interpreter start each time).
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio

from infrarust._answersource import AnswerSource, encode_source_request, take_source
from infrarust.protocol import (
    Handshake,
    LegacyPingKind,
    NextState,
    Packet,
    PacketReader,
    ProtocolError,
    encode_legacy_ping,
    encode_ping,
    encode_status_request,
    parse_legacy_kick,
    parse_ping,
    parse_status_response,
)

# The protocol a modern ping announces by default: 1.20.4. Servers answer any number; some MOTDs differ.
DEFAULT_PING_PROTOCOL = 765
# The protocol a 1.6 client announces in its legacy ping (1.6.4).
LEGACY_PING_PROTOCOL = 78
READ_SIZE = 65536
MAX_STATUS_SIZE = 1 << 21


@attrs.frozen
class PingResult:
    """A server's answer: the status as JSON-ready data and the round trip of the ping, in milliseconds.

    ``source`` is where an infrarust proxy says the answer came from, when the ping asked (``ask_source``)
    and the server said; None otherwise.
    """

    status: dict[str, Any]
    rtt_ms: float
    source: AnswerSource | None = None

    def to_json(self, *, source: AnswerSource | None = None) -> str:
        """The answer as one line of JSON; with ``source`` it has a ``"source"`` field too."""
        line: dict[str, Any] = {"status": self.status, "rtt_ms": round(self.rtt_ms, 3)}
        if source is not None:
            line["source"] = source
        return json.dumps(line)


class PingError(Exception):
    """The server did not give a valid answer (the message says what happened)."""


async def ping(
    host: str,
    port: int = 25565,
    *,
    domain: str | None = None,
    protocol: int = DEFAULT_PING_PROTOCOL,
    ask_source: bool = False,
) -> PingResult:
    """A modern status ping: handshake, status request, then a ping whose echo gives the round trip.

    ``ask_source`` asks an infrarust proxy where its answer comes from (a request vanilla servers refuse
    by closing the connection); the answer's mark is taken out of ``status`` into ``source``.
    """
    async with await _connect(host, port) as stream:
        try:
            handshake = Handshake(protocol, domain or host, port, NextState.STATUS)
            request = encode_source_request() if ask_source else encode_status_request()
            await stream.send_all(handshake.encode() + request)
            reader = PacketReader(max_packet_size=MAX_STATUS_SIZE)
            status_json = parse_status_response(await _next_packet(stream, reader))
            token = int(trio.current_time() * 1000)
            start = trio.current_time()
            await stream.send_all(encode_ping(token))
            echoed = parse_ping(await _next_packet(stream, reader))
            rtt = (trio.current_time() - start) * 1000
        except (ProtocolError, trio.BrokenResourceError) as exc:
            raise PingError(f"bad answer from {host}:{port}: {exc}") from None
    if echoed != token:
        raise PingError(f"the server echoed {echoed} instead of {token}")
    try:
        status = json.loads(status_json)
    except ValueError as exc:
        raise PingError(f"the status is not JSON: {exc}") from None
    if not isinstance(status, dict):
        raise PingError("the status is not a JSON object")
    return PingResult(status, rtt, take_source(status) if ask_source else None)


async def legacy_ping(
    host: str, port: int = 25565, *, domain: str | None = None, protocol: int = LEGACY_PING_PROTOCOL
) -> PingResult:
    """A 1.6 legacy ping (``FE 01 FA`` with ``MC|PingHost``); the round trip is the whole exchange."""
    start = trio.current_time()
    async with await _connect(host, port) as stream:
        try:
            await stream.send_all(encode_legacy_ping(LegacyPingKind.V1_6, protocol, domain or host, port))
            answer = bytearray()
            while data := await stream.receive_some(READ_SIZE):
                answer += data
                if len(answer) > MAX_STATUS_SIZE:
                    raise PingError("the legacy answer is too long")
            kick = parse_legacy_kick(bytes(answer))
        except (ProtocolError, trio.BrokenResourceError) as exc:
            raise PingError(f"bad legacy answer from {host}:{port}: {exc}") from None
    rtt = (trio.current_time() - start) * 1000
    return PingResult(attrs.asdict(kick), rtt)


async def _connect(host: str, port: int) -> trio.SocketStream:
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise PingError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None


async def _next_packet(stream: trio.SocketStream, reader: PacketReader) -> Packet:
    while (packet := reader.next_packet()) is None:
        data = await stream.receive_some(READ_SIZE)
        if not data:
            raise PingError("the server closed the connection before answering")
        reader.feed(data)
    return packet


def parse_target(text: str, default_port: int = 25565) -> tuple[str, int]:
    """``HOST[:PORT]`` as the ping command takes it (IPv6 in brackets: ``[::1]:25565``); ValueError if bad.

    A client-side cousin of :func:`infrarust.config.parse_address`, here so that the ping command does not
    load the configuration package.
    """
    stripped = text.strip()
    if stripped.startswith("["):
        host, bracket, rest = stripped[1:].partition("]")
        if not bracket:
            raise ValueError('missing "]" after the IPv6 address')
        if rest and not rest.startswith(":"):
            raise ValueError('expected ":PORT" after "]"')
        port = rest[1:] if rest else None
    elif stripped.count(":") > 1:
        raise ValueError('put IPv6 addresses in brackets, like "[::1]:25565"')
    else:
        host, colon, after = stripped.partition(":")
        port = after if colon else None
    if not host or any(ch.isspace() or ch in "/[]" for ch in host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    if port is None:
        return host, default_port
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")
    return host, int(port)
