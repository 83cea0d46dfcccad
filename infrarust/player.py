"""A live session as an embedding program sees it: :class:`Player`."""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Generator
from typing import Any

import attrs
import trio

from infrarust.config import ProxyMode, ServerConfig
from infrarust.protocol import Handshake, LoginStart
from infrarust.transport import Cut, ForwardResult, Traffic


class PlayerNotActiveError(Exception):
    """The player's session relays raw bytes, so the proxy cannot speak the game protocol to it."""


class _Done:
    """What :meth:`Player.disconnect` returns: it acts at once, and awaiting it is allowed (and instant)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


@attrs.define(eq=False)
class Player:
    """A live session, as seen by an embedding program (``proxy.sessions``, the session events).

    Forwarding modes are passive: the proxy never reads the stream after the handshake, so it can only end
    the session (:meth:`disconnect`), not talk to the player or move them (those raise
    :class:`PlayerNotActiveError`).
    """

    server: ServerConfig
    client_address: str
    handshake: Handshake
    login: LoginStart | None
    started_at: float
    traffic: Traffic = attrs.field(factory=Traffic)
    result: ForwardResult | None = None  # set when the session has ended
    backend_address: str | None = None
    _cut: Cut = attrs.field(factory=Cut, alias="_cut")
    _ended: trio.Event | None = attrs.field(default=None, alias="_ended")  # made by the first waiter

    @property
    def name(self) -> str | None:
        """The user name from the login start (or legacy login), when it could be read."""
        return self.login.name if self.login is not None else None

    @property
    def uuid(self) -> uuid_module.UUID | None:
        """The UUID the client sent in its login start (1.19.1+ clients send one), when it could be read."""
        return self.login.uuid if self.login is not None else None

    @property
    def protocol_version(self) -> int:
        """The client's protocol version, from its handshake."""
        return self.handshake.protocol_version

    @property
    def mode(self) -> ProxyMode:
        """The server's proxy mode for this session."""
        return self.server.proxy_mode

    @property
    def active(self) -> bool:
        """True when the proxy speaks the game protocol on this session (never in a forwarding mode)."""
        return False

    def disconnect(self, reason: str | None = None) -> _Done:
        """End the session now with reason ``Shutdown``: relaying stops, both sides are half-closed and get
        a moment to read what is on its way, then the sockets close.

        Acts at once; the result may be awaited (``await player.disconnect()``) for symmetry with the active
        modes. A forwarding mode cannot show ``reason`` to the player (it is logged).
        """
        self._cut()
        return _Done()

    async def wait_ended(self) -> ForwardResult:
        """Wait for the session to end and return its :class:`~infrarust.ForwardResult`."""
        if self.result is None:
            if self._ended is None:
                self._ended = trio.Event()
            await self._ended.wait()
        assert self.result is not None
        return self.result

    async def send_message(self, message: str) -> None:
        """Not possible in a forwarding mode: always raises :class:`PlayerNotActiveError`."""
        raise PlayerNotActiveError(
            f"cannot send a message: {self.mode.value} sessions are relayed as raw bytes"
        )

    async def switch_server(self, server: str) -> None:
        """Not possible in a forwarding mode: always raises :class:`PlayerNotActiveError`."""
        raise PlayerNotActiveError(
            f"cannot switch server: {self.mode.value} sessions are relayed as raw bytes"
        )

    def _finish(self, result: ForwardResult) -> None:
        """Record how the session ended and wake :meth:`wait_ended` (the proxy's finish stage calls it)."""
        self.result = result
        if self._ended is not None:
            self._ended.set()
