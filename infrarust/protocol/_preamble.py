"""Everything a client sends before the proxy decides where it goes, as one h11-style object.

The order is fixed: an optional PROXY header (only when the listener expects one), the first packet
(a modern handshake, a legacy ping or a legacy login), and for a modern login the login start. The caller
moves bytes in with :meth:`Preamble.receive_data` (``b""`` for EOF) and takes events out with
:meth:`Preamble.next_event` until it returns :class:`PreambleComplete`; ``NEED_DATA`` means "read more".
Every byte after the PROXY header is kept, in order, for the backend: nothing a client sent is dropped.
"""

from __future__ import annotations

import enum
from typing import Final

from attrs import frozen

from ._errors import ProtocolError
from ._framing import PacketReader
from ._handshake import Handshake, NextState
from ._hello import HelloReader
from ._legacy import LegacyLogin, LegacyPing
from ._login import LoginStart, parse_login_start
from ._proxy_header import ProxyHeader, parse_proxy_header

# A login start never comes near this; past it the name is not looked for and the bytes go on as they are.
LOGIN_START_LIMIT: Final = 4096
# The longest PROXY header (v2 with its address block cap) plus the v1 line bound; more is not a header.
_PROXY_HEADER_LIMIT: Final = 16 + 4096


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = _NeedData.NEED_DATA
"""Returned by :meth:`Preamble.next_event` when the next event needs more bytes from the client."""


@frozen
class ProxyHeaderReceived:
    """The upstream load balancer's PROXY header (LOCAL / UNKNOWN headers carry no addresses)."""

    header: ProxyHeader


@frozen
class HelloReceived:
    """The client's first packet. ``handshake`` is the same connection seen as a modern handshake: a legacy
    ping is a status handshake and a legacy login a login one, with the host and port they carry (if any).
    """

    event: Handshake | LegacyPing | LegacyLogin
    handshake: Handshake

    @property
    def is_status(self) -> bool:
        """True for a server-list connection (modern status or legacy ping)."""
        return self.handshake.next_state is NextState.STATUS

    @property
    def legacy(self) -> bool:
        """True for a pre-1.7 client, which is answered in the 0xFF format."""
        return not isinstance(self.event, Handshake)


@frozen
class LoginStartReceived:
    """A modern login's login start; ``login`` is None when it could not be parsed (forwarded as is)."""

    login: LoginStart | None


@frozen
class PreambleComplete:
    """Nothing more is needed to route the client. ``received`` is every byte after the PROXY header,
    ``rest`` the part of it after the first packet (login start, status request, pipelined bytes).
    """

    received: bytes
    rest: bytes


@frozen
class ClientClosed:
    """The client closed before sending a single byte of its first packet (scanners, TCP health checks)."""


PreambleEvent = ProxyHeaderReceived | HelloReceived | LoginStartReceived | PreambleComplete | ClientClosed


class _State(enum.Enum):
    PROXY_HEADER = enum.auto()
    HELLO = enum.auto()
    LOGIN_START = enum.auto()
    COMPLETE = enum.auto()
    DONE = enum.auto()


class Preamble:
    """Reads a connection's preamble; see the module docstring.

    ``proxy_header`` says a PROXY header must come first. Errors raise :class:`ProtocolError` from
    :meth:`next_event`; after an error or :class:`PreambleComplete` the object is spent.
    """

    __slots__ = ("_buffer", "_eof", "_hello", "_login", "_protocol", "_received", "_rest", "_state")

    def __init__(self, *, proxy_header: bool = False) -> None:
        self._state = _State.PROXY_HEADER if proxy_header else _State.HELLO
        self._buffer = bytearray()  # bytes not yet consumed by the current state
        self._received = bytearray()  # every byte after the PROXY header
        self._eof = False
        self._hello = HelloReader()
        self._login: PacketReader | None = None
        self._rest = b""
        self._protocol = 0  # the login's protocol version, which decides the login start's layout

    @property
    def legacy_ping_pending(self) -> bool:
        """True while the bytes so far are a whole legacy ping if nothing else follows (``FE``, ``FE 01``):
        the caller waits briefly for more, then calls :meth:`silence`.
        """
        return self._state is _State.HELLO and self._hello.legacy_ping_pending

    def receive_data(self, data: bytes) -> None:
        """Add bytes the client sent; ``b""`` means the client closed (or half-closed) its side."""
        if not data:
            self._eof = True
            return
        if self._state is _State.PROXY_HEADER:
            self._buffer += data
            return
        self._received += data
        self._feed(data)

    def silence(self) -> None:
        """The client sent nothing more for a while: a lone ``FE`` / ``FE 01`` is then a legacy ping."""
        if self.legacy_ping_pending:
            self._eof = True

    def next_event(self) -> PreambleEvent | _NeedData:
        """The next event, or ``NEED_DATA``; raises ProtocolError when the bytes cannot be a preamble."""
        state = self._state
        if state is _State.PROXY_HEADER:
            return self._next_proxy_header()
        if state is _State.HELLO:
            return self._next_hello()
        if state is _State.LOGIN_START:
            return self._next_login_start()
        if state is _State.COMPLETE:
            self._state = _State.DONE
            return PreambleComplete(bytes(self._received), self._rest)
        raise RuntimeError("the preamble is complete; its bytes belong to the relay now")

    def _feed(self, data: bytes) -> None:
        if self._state is _State.HELLO:
            self._buffer += data
        elif self._state is _State.LOGIN_START:
            assert self._login is not None
            self._rest += data
            self._login.feed(data)
        else:  # complete but not yet taken: the bytes are already in _received
            self._rest += data

    def _next_proxy_header(self) -> PreambleEvent | _NeedData:
        parsed = parse_proxy_header(self._buffer) if self._buffer else None
        if parsed is None:
            if self._eof:
                raise ProtocolError(
                    "closed in the middle of the PROXY header" if self._buffer else "no PROXY header"
                )
            if len(self._buffer) > _PROXY_HEADER_LIMIT:  # pragma: no cover - the parser bounds it first
                raise ProtocolError("PROXY header too long")
            return NEED_DATA
        header, consumed = parsed
        after = bytes(self._buffer[consumed:])
        self._buffer.clear()
        self._state = _State.HELLO
        if after:
            self._received += after
            self._feed(after)
        return ProxyHeaderReceived(header)

    def _next_hello(self) -> PreambleEvent | _NeedData:
        hello = self._hello
        event = hello.feed(bytes(self._buffer)) if self._buffer else None
        self._buffer.clear()
        if event is None:
            if not self._eof:
                return NEED_DATA
            if not self._received:
                self._state = _State.DONE
                return ClientClosed()
            event = hello.feed_eof()
            if event is None:  # pragma: no cover - feed_eof raises for anything incomplete
                raise ProtocolError("client closed in the middle of its first packet")
        self._rest = hello.take_leftover()
        if isinstance(event, Handshake):
            handshake = event
            if handshake.next_state is not NextState.STATUS:
                self._state = _State.LOGIN_START
                self._login = PacketReader(max_packet_size=LOGIN_START_LIMIT)
                self._protocol = handshake.protocol_version
                self._login.feed(self._rest)
                return HelloReceived(event, handshake)
        elif isinstance(event, LegacyPing):
            handshake = Handshake(
                event.protocol_version or 0, event.host or "", event.port or 0, NextState.STATUS
            )
        else:
            handshake = Handshake(
                event.protocol_version or 0, event.host or "", event.port or 0, NextState.LOGIN
            )
        self._state = _State.COMPLETE
        return HelloReceived(event, handshake)

    def _next_login_start(self) -> PreambleEvent | _NeedData:
        reader = self._login
        assert reader is not None
        try:
            packet = reader.next_packet()
        except ProtocolError:  # not a login start we can read: forward it as it is
            return self._login_done(None)
        if packet is None:
            return self._login_done(None) if self._eof else NEED_DATA
        return self._login_done(parse_login_start(packet, self._protocol))

    def _login_done(self, login: LoginStart | None) -> LoginStartReceived:
        self._login = None
        self._state = _State.COMPLETE
        return LoginStartReceived(login)
