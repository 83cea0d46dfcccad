"""Listening sockets and their accept loop, shared by the proxy's port and the metrics endpoint."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import weakref
from typing import Any

import trio

from infrarust import logs
from infrarust.config import Address, Keepalive
from infrarust.transport import relay_stream, tune_socket

log = logs.get_logger("infrarust.listener")

# Accept errors that mean "out of a resource for a moment", not "the listener is broken".
ACCEPT_CAPACITY_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# Errors about one connection that died before it was accepted (accept(2), "Error handling"): the next one
# is tried at once, as trio.SocketListener does.
ACCEPT_SKIP_ERRORS = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if hasattr(errno, name)
)
# The listening socket was closed under the accept.
ACCEPT_CLOSED_ERRORS = frozenset({errno.EBADF, errno.ENOTSOCK})
ACCEPT_RETRY_DELAY = 0.1
LISTEN_BACKLOG = 4096
DEFER_ACCEPT_SECONDS = 1
_TCP_DEFER_ACCEPT: int | None = getattr(socket, "TCP_DEFER_ACCEPT", None)


async def open_listener(
    bind: Address,
    *,
    backlog: int = LISTEN_BACKLOG,
    reuseport: bool = False,
    keepalive: Keepalive | None = None,
    client_speaks_first: bool = False,
) -> trio.SocketListener:
    """A listening TCP socket on ``bind``; ``reuseport`` sets SO_REUSEPORT (several processes, one port).

    ``keepalive`` tunes the listener (TCP_NODELAY and keepalive), which Linux passes on to every accepted
    connection: cheaper than tuning each one. ``client_speaks_first`` (the game port: a Minecraft client
    always sends first) sets TCP_DEFER_ACCEPT where the platform has it: a connection is handed over once
    its first bytes are there, so the first read never waits, and one that stays silent is handed over
    after about ``DEFER_ACCEPT_SECONDS`` anyway (its handshake timeout then runs as usual). A real client
    is never delayed. Raises OSError (the socket closed) when it cannot listen.
    """
    infos = await trio.socket.getaddrinfo(
        bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, type_, proto, _, sockaddr = infos[0]
    # Made as a standard socket and wrapped: accept_peer keeps using the standard one (see _Burst).
    raw = socket.socket(family, type_, proto)
    try:
        sock = trio.socket.from_stdlib_socket(raw)
    except BaseException:
        raw.close()
        raise
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if keepalive is not None:
            tune_socket(sock, keepalive)
        else:
            # Accepted connections inherit it; accept() wraps them without setting it again.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if client_speaks_first and _TCP_DEFER_ACCEPT is not None:
            # Where it is refused, the first read just waits as usual.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_DEFER_ACCEPT, DEFER_ACCEPT_SECONDS)
        await sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    _BURSTS[sock] = _Burst(raw)
    return trio.SocketListener(sock)


class _Burst:
    """How a listener made by :func:`open_listener` is accepted from: accept(2) on the standard socket
    until it would block, waiting for readability only then.

    trio's ``accept`` yields to the scheduler after every connection (a checkpoint), a round of the run
    loop per connection under a flood. Here connections are taken back to back, and the accepting task
    yields once every ``BURST`` connections so the tasks it starts get to run.
    """

    BURST = 64
    __slots__ = ("family", "proto", "raw", "streak")

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        self.family = int(raw.family)
        self.proto = raw.proto
        self.streak = 0

    async def accept(self) -> tuple[socket.socket, Any]:
        raw = self.raw
        while True:
            try:
                # What socket.accept() does, minus its per-call enum conversions of family and type (the
                # same ones for every connection of a listener): accept4(2), then the socket object.
                fd, peer = raw._accept()  # type: ignore[attr-defined]
            except BlockingIOError:
                self.streak = 0
                await trio.lowlevel.wait_readable(raw)
                continue
            try:
                accepted = socket.socket(self.family, socket.SOCK_STREAM, self.proto, fileno=fd)
            except BaseException:
                os.close(fd)
                raise
            self.streak += 1
            if self.streak >= self.BURST:
                self.streak = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
            return accepted, peer


# Listeners made by open_listener, by their trio socket (a listener passed in by an embedding program is
# accepted from through trio as usual).
_BURSTS: weakref.WeakKeyDictionary[trio.socket.SocketType, _Burst] = weakref.WeakKeyDictionary()


async def accept(listener: trio.SocketListener, what: str) -> trio.SocketStream:
    """The next connection; running out of fds or memory for a moment is logged and retried, other
    errors (a broken listener) are raised (``trio.ClosedResourceError`` once the listener is closed).
    """
    stream, _ = await accept_peer(listener, what)
    return stream


async def accept_peer(listener: trio.SocketListener, what: str) -> tuple[trio.SocketStream, Any]:
    """:func:`accept`, with the peer's address as accept(2) returned it (no getpeername call after).

    A listener made by :func:`open_listener` is accepted from in bursts (see ``_Burst``), any other through
    its trio socket (which tries accept(2) before it waits); the socket is wrapped by ``relay_stream``:
    ``trio.SocketListener.accept`` would build a SocketStream that sets two socket options the relay
    does not want (TCP_NODELAY comes from the listener, see ``open_listener``).
    """
    burst = _BURSTS.get(listener.socket)
    while True:
        try:
            if burst is not None:
                raw, peer = await burst.accept()
                sock = trio.socket.from_stdlib_socket(raw)
            else:
                sock, peer = await listener.socket.accept()
        except OSError as exc:
            if exc.errno in ACCEPT_SKIP_ERRORS:
                continue
            if exc.errno in ACCEPT_CLOSED_ERRORS:
                raise trio.ClosedResourceError from None
            if exc.errno not in ACCEPT_CAPACITY_ERRORS:
                raise
            log.error("accept failed, retrying", listener=what, error=exc.strerror or str(exc))
        else:
            return relay_stream(sock), peer
        await trio.sleep(ACCEPT_RETRY_DELAY)
