"""What a running proxy tells embedding programs: frozen event objects, and the bus that delivers them.

``async with proxy.subscribe() as events: async for event in events: ...`` receives every event published
after the subscription started, in order. Publishing never waits: each subscriber has a bounded buffer, and
one that falls behind loses events, then gets a single :class:`EventsDropped` with their count before the
next event it is given. With no subscriber, publishing costs one truth test.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

import trio
from attrs import frozen

from infrarust.config import ConfigProblem, ServerConfig
from infrarust.transport import ForwardResult

if TYPE_CHECKING:
    from infrarust.player import Player

DEFAULT_BUFFER = 1024
_CANCEL_CHECK_EVERY = 32

RefusalReason = Literal[
    "banned",
    "rate_limited",
    "ip_filtered",
    "full",
    "unknown_domain",
    "denied",
    "backend_unreachable",
    "bad_handshake",
    "handshake_timeout",
    "max_connections",
    "draining",
    "server_starting",  # a [server_manager] server was not ready within start_timeout: retry
    "server_crashed",  # a [server_manager] server crashed starting (or is in its back-off)
]
"""Why a connection went no further (``ConnectionRefused.reason``, the metrics label, the log field)."""


@frozen
class SessionStarted:
    """A player's connection reached its backend and relaying began."""

    player: Player


@frozen
class SessionEnded:
    """A session ended; ``result`` is the same :class:`~infrarust.ForwardResult` as ``player.result``."""

    player: Player
    result: ForwardResult


@frozen
class ConnectionRefused:
    """A connection went no further than admission or connect.

    ``client`` is the client's address (``host:port``, the one a trusted PROXY header named), ``server``
    the server it was routed to (None when no route was chosen), ``name`` the player's name when a login
    start carried one, ``message`` what the client was told (None when it was closed without a word).
    """

    client: str
    reason: RefusalReason
    server: ServerConfig | None
    name: str | None = None
    message: str | None = None


@frozen
class ConfigReloaded:
    """A reload was attempted: ``ok`` says whether the new configuration was taken; ``problems`` why not
    (and the warnings of an accepted one)."""

    ok: bool
    problems: tuple[ConfigProblem, ...] = ()


@frozen
class PlayerChat:
    """A player of an intercepted session (``offline``, ``client_only``) said ``message`` in chat (observed;
    it goes on to the backend)."""

    player: Player
    message: str


@frozen
class PlayerCommand:
    """A player of an intercepted session ran ``command`` (without its slash). Backend commands go on to
    the backend unless a command hook cancels them (published either way, before the hooks run); the
    proxy's own ``/infrarust`` commands are published too and never forwarded."""

    player: Player
    command: str


@frozen
class EventsDropped:
    """This subscriber fell behind and lost ``count`` events, just before the next one it receives."""

    count: int


Event = (
    SessionStarted
    | SessionEnded
    | ConnectionRefused
    | ConfigReloaded
    | PlayerChat
    | PlayerCommand
    | EventsDropped
)


class _Subscriber:
    __slots__ = ("buffer", "dropped", "limit", "lot", "parked")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer: collections.deque[Event] = collections.deque()
        self.dropped = 0  # events lost since the last one buffered; reported before the next
        self.lot = trio.lowlevel.ParkingLot()
        # True while the reader waits in the lot: a publish wakes it only then (a busy reader that has not
        # drained its buffer yet needs no wake-up, and unpark_all costs ~8 calls per event for nothing).
        self.parked = False

    def put(self, event: Event) -> None:
        buffer = self.buffer
        if len(buffer) >= self.limit:
            if buffer and isinstance(buffer[-1], EventsDropped):
                buffer[-1] = EventsDropped(buffer[-1].count + 1)
            else:  # the marker may take one place past the limit, so the count is never lost
                buffer.append(EventsDropped(1))
        else:
            buffer.append(event)
        if self.parked:
            self.parked = False  # woken now: later events until it runs need no second wake-up
            self.lot.unpark_all()


class EventBus:
    """Delivers published events to every current subscriber (see the module docstring)."""

    def __init__(self) -> None:
        self._subscribers: list[_Subscriber] = []
        # True when someone listens: callers skip building events otherwise. An attribute, not __bool__:
        # the per-connection path asks twice per session.
        self.listening = False

    def __bool__(self) -> bool:
        """Same as :attr:`listening`."""
        return self.listening

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber; never blocks, never raises."""
        for subscriber in self._subscribers:
            subscriber.put(event)

    @asynccontextmanager
    async def subscribe(self, buffer: int = DEFAULT_BUFFER) -> AsyncIterator[AsyncIterator[Event]]:
        """Receive the events published while the block runs; ``buffer`` bounds what may wait unread."""
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {buffer}")
        subscriber = _Subscriber(buffer)
        self._subscribers.append(subscriber)
        self.listening = True
        try:
            yield _iterate(subscriber)
        finally:
            self._subscribers.remove(subscriber)
            self.listening = bool(self._subscribers)


async def _iterate(subscriber: _Subscriber) -> AsyncIterator[Event]:
    buffer = subscriber.buffer
    taken = 0
    while True:
        if buffer:
            yield buffer.popleft()
            taken += 1
            # Nothing is published while this task runs, so a reader that awaits nothing else drains at most
            # the buffer before it parks (a checkpoint); it also looks for cancellation every few events.
            if taken % _CANCEL_CHECK_EVERY == 0:
                await trio.lowlevel.checkpoint_if_cancelled()
        else:
            subscriber.parked = True
            try:
                await subscriber.lot.park()
            finally:
                subscriber.parked = False
