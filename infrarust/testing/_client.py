"""Client helpers for tests: a server-list ping and an offline-mode login, each bounded by a timeout."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import attrs
import trio

from infrarust.protocol import (
    Handshake,
    NextState,
    Packet,
    PacketReader,
    ProtocolError,
    encode_ping,
    encode_status_request,
    parse_ping,
    parse_status_response,
)

from ._wire import (
    COOKIE_REQUEST_ID,
    DEFAULT_PROTOCOL,
    DISCONNECT_ID,
    ENCRYPTION_REQUEST_ID,
    PLUGIN_REQUEST_ID,
    SET_COMPRESSION_ID,
    SUCCESS_ID,
    LoginReader,
    acknowledges_login,
    check_protocol,
    compress_frame,
    encode_cookie_response_empty,
    encode_login_acknowledged,
    encode_login_start,
    encode_plugin_response_unknown,
    offline_uuid,
    parse_disconnect_reason,
    parse_login_success,
    parse_set_compression,
    plain_text,
)

_READ_SIZE = 65536
_PONG_ID = 0x01


class NoAnswerError(Exception):
    """The server closed the connection, or sent something that is not an answer, before answering.

    ``received`` holds every byte that came before that.
    """

    def __init__(self, message: str, received: bytes = b"") -> None:
        super().__init__(message)
        self.received = received


@attrs.frozen
class StatusAnswer:
    """What a server-list ping got: the status JSON (decoded, and as text) and the ping's round trip.

    ``latency`` is the seconds from sending the ping to reading the pong, or None when ``ping=False``.
    """

    json: dict[str, Any]
    text: str
    latency: float | None

    @property
    def description(self) -> str:
        """The visible text of the MOTD (``description``), formatting dropped."""
        return plain_text(self.json.get("description", ""))


@attrs.frozen
class LoginAnswer:
    """What a login got: Login Success (``name`` and ``uuid``) or Login Disconnect (``reason``).

    ``reason`` is the visible text of the disconnect message and ``reason_json`` the text component as
    sent; ``compression`` is the threshold the server set before answering, if it did.
    """

    name: str | None = None
    uuid: uuid.UUID | None = None
    reason: str | None = None
    reason_json: Any = None
    compression: int | None = None

    @property
    def accepted(self) -> bool:
        """True when the server answered Login Success."""
        return self.name is not None


async def status(
    host: str,
    port: int,
    *,
    domain: str | None = None,
    protocol: int = DEFAULT_PROTOCOL,
    ping: bool = True,
    timeout: float = 5.0,
) -> StatusAnswer:
    """Ask ``host:port`` for its status like the multiplayer screen does: handshake with ``domain``
    (default ``host``) and ``protocol``, status request, then a ping whose echo is checked.

    Raises :class:`NoAnswerError` when the server closes or answers nonsense, ``OSError`` when it cannot
    be reached, and ``trio.TooSlowError`` when the whole exchange takes longer than ``timeout`` seconds.
    """
    handshake = Handshake(protocol, domain if domain is not None else host, port, NextState.STATUS)
    received = bytearray()
    with trio.move_on_after(timeout):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(handshake.encode() + encode_status_request())
            reader = PacketReader()
            response = await _next_packet(stream, reader, received, "a status response")
            try:
                text = parse_status_response(response)
                decoded = json.loads(text)
            except (ProtocolError, ValueError) as exc:
                raise NoAnswerError(f"not a status response: {exc}", bytes(received)) from None
            if not isinstance(decoded, dict):
                raise NoAnswerError(f"the status JSON is not an object: {text[:200]}", bytes(received))
            latency = None
            if ping:
                token = random.getrandbits(63)
                sent_at = trio.current_time()
                await stream.send_all(encode_ping(token))
                pong = await _next_packet(stream, reader, received, "the pong")
                latency = trio.current_time() - sent_at
                if pong.packet_id != _PONG_ID or parse_ping(pong) != token:
                    raise NoAnswerError("the pong does not echo the ping", bytes(received))
            return StatusAnswer(decoded, text, latency)
    raise trio.TooSlowError(f"no status answer from {host}:{port} within {timeout:g}s")


async def login(
    host: str,
    port: int,
    *,
    domain: str | None = None,
    name: str = "Player",
    protocol: int = DEFAULT_PROTOCOL,
    player_uuid: uuid.UUID | None = None,
    timeout: float = 5.0,
) -> LoginAnswer:
    """Log in to ``host:port`` as an offline-mode client would and return what the server answered.

    Sends the handshake (``domain``, default ``host``) and a Login Start for ``name`` in the layout of
    ``protocol`` (1.8 to 26.1; ``player_uuid`` defaults to the offline UUID of the name). Follows Set
    Compression, answers plugin and cookie requests with "not understood", and sends Login Acknowledged
    after Login Success where the protocol expects it; then closes. Raises :class:`NoAnswerError` when
    the server closes without answering or asks for encryption (online mode), ``OSError`` when it cannot
    be reached, ``ValueError`` for a protocol outside the supported range, and ``trio.TooSlowError``
    after ``timeout`` seconds.
    """
    try:
        check_protocol(protocol)
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None
    handshake = Handshake(protocol, domain if domain is not None else host, port, NextState.LOGIN)
    player_uuid = player_uuid if player_uuid is not None else offline_uuid(name)
    received = bytearray()
    with trio.move_on_after(timeout):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(handshake.encode() + encode_login_start(name, player_uuid, protocol))
            return await _login_answer(stream, protocol, received)
    raise trio.TooSlowError(f"no login answer from {host}:{port} within {timeout:g}s")


async def _login_answer(stream: trio.SocketStream, protocol: int, received: bytearray) -> LoginAnswer:
    reader = LoginReader()

    async def send(frame: bytes) -> None:
        await stream.send_all(compress_frame(frame) if reader.compression is not None else frame)

    while True:
        packet = await _next_packet(stream, reader, received, "a login answer")
        try:
            if packet.packet_id == DISCONNECT_ID:
                reason = parse_disconnect_reason(packet.body)
                return LoginAnswer(
                    reason=plain_text(reason), reason_json=reason, compression=reader.compression
                )
            if packet.packet_id == SUCCESS_ID:
                name, player_uuid = parse_login_success(packet.body, protocol)
                if acknowledges_login(protocol):
                    await send(encode_login_acknowledged())
                return LoginAnswer(name=name, uuid=player_uuid, compression=reader.compression)
            if packet.packet_id == SET_COMPRESSION_ID:
                reader.set_compression(parse_set_compression(packet.body))
            elif packet.packet_id == PLUGIN_REQUEST_ID:
                await send(encode_plugin_response_unknown(packet.body))
            elif packet.packet_id == COOKIE_REQUEST_ID and protocol >= 766:
                await send(encode_cookie_response_empty(packet.body))
            elif packet.packet_id == ENCRYPTION_REQUEST_ID:
                raise NoAnswerError(
                    "the server asked for encryption (online mode); login() speaks offline mode only",
                    bytes(received),
                )
            else:
                raise NoAnswerError(f"unexpected login packet 0x{packet.packet_id:02x}", bytes(received))
        except ProtocolError as exc:
            raise NoAnswerError(
                f"bad login packet 0x{packet.packet_id:02x}: {exc}", bytes(received)
            ) from None


async def _next_packet(
    stream: trio.SocketStream, reader: PacketReader | LoginReader, received: bytearray, what: str
) -> Packet:
    while True:
        try:
            packet = reader.next_packet()
        except ProtocolError as exc:
            raise NoAnswerError(f"bad bytes where {what} belongs: {exc}", bytes(received)) from None
        if packet is not None:
            return packet
        try:
            data = await stream.receive_some(_READ_SIZE)
        except trio.BrokenResourceError as exc:
            raise NoAnswerError(f"connection reset before {what}: {exc}", bytes(received)) from None
        if not data:
            raise NoAnswerError(
                f"the server closed the connection before {what} ({len(received)} bytes received)",
                bytes(received),
            )
        received += data
        reader.feed(data)
