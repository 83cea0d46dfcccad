"""What both forwarders share: the interface, and one relayed session's bookkeeping.

A session is two directions (client to backend, backend to client), each pumped by its own task in a
nursery that ``forward`` owns. The session records what ended it *first*, cancels the nursery on an error
or once both directions saw EOF, and, when timeouts are set, runs a watchdog that compares the byte
counters over time instead of putting a cancel scope around every chunk.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from infrarust import logs
from infrarust.config._durations import format_duration

from ._result import ForwardEndReason, ForwardResult, Traffic
from ._stream import lift_send_limit

log = logs.get_logger("infrarust.transport")

# Errors that mean "this connection is broken", from the raw trio socket (OSError: ECONNRESET, EPIPE,
# ETIMEDOUT from keepalive...) and from trio itself (a socket closed or broken under us).
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if sys.platform == "linux" else None
_TCP_CLOSE = 7  # enum in include/net/tcp_states.h

RELAY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class Cut:
    """Ends one relay from outside (``Player.disconnect``, the end of a drain), at most once.

    Calling it cancels the relay's own nursery, now or as soon as the relay starts, and ``forward`` then
    returns None instead of a result: the caller decides how a cut session ends. It costs a plain object
    per session, where a cancel scope of its own around ``forward`` would cost a scope entered and left.
    """

    __slots__ = ("_scope", "called")

    def __init__(self) -> None:
        self.called = False
        self._scope: trio.CancelScope | None = None

    def __call__(self) -> None:
        self.called = True
        if self._scope is not None:
            self._scope.cancel()

    def attach(self, scope: trio.CancelScope) -> None:
        """The relay's nursery scope, which the cut cancels (at once if the cut came first)."""
        self._scope = scope
        if self.called:
            scope.cancel()


class Forwarder(Protocol):
    """Relays bytes between a client and a backend until both sides are done.

    ``forward`` never closes the streams (the caller does, in its ``finally``) but half-closes them: EOF from
    one side becomes ``shutdown(SHUT_WR)`` on the other while the other direction keeps going. It returns
    when both directions saw EOF, or at once on the first error or timeout in either direction.
    ``traffic`` is updated as bytes are delivered, so it is exact even when the caller's scope cancels
    ``forward`` (which lets ``trio.Cancelled`` propagate; the caller then reports ``Shutdown``). With a
    ``cut`` that is called while the relay runs, ``forward`` returns None.
    """

    name: str

    async def forward(
        self,
        client: trio.SocketStream,
        backend: trio.SocketStream,
        traffic: Traffic,
        *,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        cut: Cut | None = None,
    ) -> ForwardResult | None:
        """Relay until both directions end; see the class docstring."""
        ...


class SessionForwarder:
    """What both forwarders share: one :class:`Session` per ``forward`` call; a subclass says how one
    direction moves its bytes (``_pump``)."""

    name: str

    async def forward(
        self,
        client: trio.SocketStream,
        backend: trio.SocketStream,
        traffic: Traffic,
        *,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        cut: Cut | None = None,
    ) -> ForwardResult | None:
        """Relay until both directions end (see :class:`Forwarder`)."""
        lift_send_limit(client)
        lift_send_limit(backend)
        session = Session(client, backend, traffic, read_timeout, write_timeout)
        return await session.run(self._pump, cut)

    def _pump(self, session: Session, direction: Direction) -> Awaitable[None]:
        """Move one direction's bytes until it ends (a coroutine, or a function returning one)."""
        raise NotImplementedError


class Direction:
    """One way through a session: where bytes come from, where they go, and how they are counted."""

    __slots__ = ("client_to_backend", "dst", "dst_name", "src", "src_name", "writing")

    def __init__(self, src: trio.SocketStream, dst: trio.SocketStream, *, client_to_backend: bool) -> None:
        self.src = src
        self.dst = dst
        self.client_to_backend = client_to_backend
        self.src_name, self.dst_name = ("client", "backend") if client_to_backend else ("backend", "client")
        # True while this direction waits for its destination to take bytes; the watchdog's write timeout
        # reads it. Set around the waits only, never per byte.
        self.writing = False

    def delivered(self, traffic: Traffic) -> int:
        """Bytes this direction has delivered so far."""
        return traffic.client_to_backend if self.client_to_backend else traffic.backend_to_client


class Session:
    """The state of one ``forward`` call, shared by its direction tasks and its watchdog."""

    def __init__(
        self,
        client: trio.SocketStream,
        backend: trio.SocketStream,
        traffic: Traffic,
        read_timeout: float | None,
        write_timeout: float | None,
    ) -> None:
        self.traffic = traffic
        self.directions = (
            Direction(client, backend, client_to_backend=True),
            Direction(backend, client, client_to_backend=False),
        )
        # A timeout of zero or less would end every session at once: take it as "no timeout".
        self.read_timeout = read_timeout if read_timeout is not None and read_timeout > 0 else None
        self.write_timeout = write_timeout if write_timeout is not None and write_timeout > 0 else None
        self.reason: ForwardEndReason | None = None
        self.error: str | None = None
        self.copy_fallback: str | None = None  # why this session stopped splicing, once it did
        self._running = 2
        self._watched = self.read_timeout is not None or self.write_timeout is not None
        self._scope: trio.CancelScope | None = None

    def source_closed(self, direction: Direction) -> None:
        """``direction`` read EOF: pass it on as a half-close, and end the session once both did.

        A reset can read as EOF: Linux reports the RST to whichever call asks first, and trio yields after a
        failed send, so the reading task may see only the EOF and run before the writer reports the error.
        The first EOF of a session is therefore checked against the socket (pending error, TCP state) and
        turned into an error if the peer in fact reset.
        """
        if self.reason is None:
            reset = _reset_by_peer(direction.src.socket)
            if reset is not None:
                self.fail(f"reading from {direction.src_name}: {reset}")
                return
        _half_close(direction.dst.socket)
        if self.reason is None:
            self.reason = (
                ForwardEndReason.CLIENT_CLOSED
                if direction.client_to_backend
                else ForwardEndReason.BACKEND_CLOSED
            )
        self._running -= 1
        if self._running == 0 and self._watched and self._scope is not None:
            # Stops the watchdog. Without one the nursery ends by itself once both directions return;
            # cancelling it anyway would raise and catch a Cancelled in the waiting parent task.
            self._scope.cancel()

    def fail(self, message: str) -> None:
        """End both directions now; the session is an ``Error`` unless something ended it before."""
        if self.reason is None:
            self.reason = ForwardEndReason.ERROR
            self.error = message
        else:
            log.debug("relay error after the end", ended_by=self.reason.value, error=message)
        if self._scope is not None:
            self._scope.cancel()

    def fall_back_to_copy(self, why: str) -> None:
        """Switch every direction to the copy path at its next empty-pipe point; warns once per session."""
        if self.copy_fallback is None:
            self.copy_fallback = why
            log.warning(
                "splice unavailable, session falls back to copying",
                client=_peer(self.directions[0].src),
                reason=why,
            )

    async def run(
        self, pump: Callable[[Session, Direction], Awaitable[None]], cut: Cut | None = None
    ) -> ForwardResult | None:
        """Run ``pump`` for both directions (and the watchdog) and return how the session ended (None when
        ``cut`` stopped it)."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                if cut is not None:
                    cut.attach(nursery.cancel_scope)
                to_backend, to_client = self.directions
                nursery.start_soon(pump, self, to_backend)
                if self._watched:
                    nursery.start_soon(self._watchdog)
                # The nursery's body is a task already: running one direction here saves a task spawn per
                # session, which shows on the per-connection path. It sits inside the nursery's scope, so
                # an error or the end of the session stops it like the spawned one.
                await pump(self, to_client)
        except BaseExceptionGroup as group:
            # Outer cancellation surfaces as a group of Cancelled, one per task: hand the caller a plain
            # trio.Cancelled so ``except trio.Cancelled`` works too. Anything else goes out untouched.
            cancelled, rest = group.split(trio.Cancelled)
            if rest is None and cancelled is not None:
                raise _first_leaf(cancelled) from None
            raise
        if cut is not None and cut.called and self._running:  # stopped before both directions ended
            return None
        if self.reason is None:  # pragma: no cover - every way out of the nursery sets a reason
            self.reason, self.error = ForwardEndReason.ERROR, "relay ended without a reason"
        return self.traffic.result(self.reason, self.error)

    async def _watchdog(self) -> None:
        # Checks a few times per timeout; an idle session ends between 1x and 1.25x its timeout.
        read_timeout, write_timeout = self.read_timeout, self.write_timeout
        shortest = min(t for t in (read_timeout, write_timeout) if t is not None)
        interval = max(shortest / 4, 0.001)
        traffic = self.traffic
        now = trio.current_time()
        moved, idle_since = traffic.client_to_backend + traffic.backend_to_client, now
        # Per direction: the delivered count when it was first seen blocked on its destination, and when.
        blocked: list[tuple[int, float] | None] = [None, None]
        while True:
            await trio.sleep(interval)
            now = trio.current_time()
            total = traffic.client_to_backend + traffic.backend_to_client
            if total != moved:
                moved, idle_since = total, now
            elif read_timeout is not None and now - idle_since >= read_timeout:
                self.fail(f"idle for {format_duration(read_timeout)}")
                return
            if write_timeout is None:
                continue
            for index, direction in enumerate(self.directions):
                seen = blocked[index]
                count = direction.delivered(traffic)
                if not direction.writing:
                    blocked[index] = None
                elif seen is None or seen[0] != count:
                    blocked[index] = (count, now)
                elif now - seen[1] >= write_timeout:
                    self.fail(f"{direction.dst_name} not writable for {format_duration(write_timeout)}")
                    return


def _reset_by_peer(sock: trio.socket.SocketType) -> str | None:
    """Why ``sock`` is broken if its EOF was really a reset, else None.

    One getsockopt in the common case: tcpi_state (the first byte of struct tcp_info) is CLOSE after a
    reset (Linux's tcp_reset sets the pending error and closes the socket in one go), while a FIN we have
    not answered leaves it in CLOSE_WAIT. Only a CLOSE socket is asked for its pending error, for the
    message. Where TCP_INFO is missing, the pending error alone decides.
    """
    try:
        if _TCP_INFO is not None:
            if sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] != _TCP_CLOSE:
                return None
            pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return f"[Errno {pending or errno.ECONNRESET}] {os.strerror(pending or errno.ECONNRESET)}"
        pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if pending:
            return f"[Errno {pending}] {os.strerror(pending)}"
    except OSError:
        pass  # not TCP, or no such option here: take the EOF at its word
    return None


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except (OSError, ValueError, TypeError):
        return "?"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _half_close(sock: trio.socket.SocketType) -> None:
    # A destination that is already gone (ENOTCONN after a reset) is not this direction's error to report:
    # the other direction, which reads from it, sees the reset itself.
    if sock.did_shutdown_SHUT_WR or sock.fileno() == -1:
        return
    try:  # noqa: SIM105 - a plain try is three calls cheaper than contextlib.suppress, twice per session
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _first_leaf(group: BaseExceptionGroup[trio.Cancelled]) -> trio.Cancelled:
    first = group.exceptions[0]
    return first if isinstance(first, trio.Cancelled) else _first_leaf(first)
