"""One client connection on its way through the pipeline, and the values its stages return.

accept -> preamble -> admission -> connect -> relay -> finish. Each stage reads and fills a
:class:`Connection`; a stage that stops the connection returns an outcome (:class:`Refusal`,
:class:`Answered`, :class:`Ignored`, :class:`Failed`) instead of logging or counting it itself, and the one
finish stage does that, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from attrs import frozen

from infrarust.config import Address, ServerConfig
from infrarust.events import RefusalReason
from infrarust.protocol import Handshake, LegacyLogin, LegacyPing, LoginStart, NextState


@attrs.define(eq=False, slots=True)
class Connection:
    """What the pipeline knows about a connection so far.

    ``client`` is the peer's address, or the client a trusted PROXY header named; ``local`` the address it
    connected to, when a PROXY header named it. ``event`` and ``handshake`` come from the preamble
    (a legacy ping or login is also seen as a ``handshake``); ``received`` holds every byte the client sent
    after any PROXY header, ``rest`` the part after its first packet. ``server`` is the router's choice,
    then admission's (a hook may redirect).
    """

    client: tuple[str, int] | None
    accepted_at: float
    local: tuple[str, int] | None = None
    event: Handshake | LegacyPing | LegacyLogin | None = None
    handshake: Handshake | None = None
    login: LoginStart | None = None
    received: bytes = b""
    rest: bytes = b""
    server: ServerConfig | None = None
    route: str = "-"  # how the router matched ("exact", "wildcard", "hook", "-")

    @property
    def client_text(self) -> str:
        """The client as ``host:port`` (``-`` when unknown), for logs and events."""
        if self.client is None:
            return "-"
        return str(Address(*self.client))

    @property
    def ip(self) -> str:
        """The client's IP, as rate limits, filters and bans see it."""
        return self.client[0] if self.client is not None else "-"

    @property
    def is_status(self) -> bool:
        """True for a server-list connection (modern status or legacy ping)."""
        return self.handshake is not None and self.handshake.next_state is NextState.STATUS

    @property
    def legacy(self) -> bool:
        """True for a pre-1.7 client."""
        return isinstance(self.event, LegacyPing | LegacyLogin)

    @property
    def name(self) -> str | None:
        """The player's name, from the login start or the legacy login."""
        return self.login.name if self.login is not None else None


@frozen
class Refusal:
    """The connection goes no further: ``reason`` names why (event, metric and log label); a login is
    told ``message`` (None: closed without a word; status pings are never told anything but may be
    answered with the default MOTD, see the finish stage); ``detail`` holds extra log fields."""

    reason: RefusalReason
    message: str | None = None
    detail: Mapping[str, object] = attrs.field(factory=dict)
    told: bool = False  # the stage already sent ``message`` (an encrypted or compressed leg, say)


@frozen
class Answered:
    """The proxy answered a server-list connection itself (``kind``: ``status`` or ``legacy_ping``)."""

    kind: str


@frozen
class Ignored:
    """A connection that carried nothing to act on (``closed_early``: scanners, TCP health checks)."""

    kind: str


@frozen
class Failed:
    """A connection broken by the client or the network after its handshake was read."""

    kind: str
    error: str


Outcome = Refusal | Answered | Ignored | Failed
