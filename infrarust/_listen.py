"""Listening sockets and their accept loop, shared by the proxy's port and the metrics endpoint."""

from __future__ import annotations

import errno
import socket

import trio

from infrarust import logs
from infrarust.config._models import Address, Keepalive
from infrarust.transport import tune_socket

log = logs.get_logger("infrarust.listener")

# Accept errors that mean "out of a resource for a moment", not "the listener is broken".
ACCEPT_CAPACITY_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_DELAY = 0.1
LISTEN_BACKLOG = 4096


async def open_listener(
    bind: Address,
    *,
    backlog: int = LISTEN_BACKLOG,
    reuseport: bool = False,
    keepalive: Keepalive | None = None,
) -> trio.SocketListener:
    """A listening TCP socket on ``bind``; ``reuseport`` sets SO_REUSEPORT (several processes, one port).

    ``keepalive`` tunes the listener (TCP_NODELAY and keepalive), which Linux passes on to every accepted
    connection: cheaper than tuning each one. Raises OSError (the socket closed) when it cannot listen.
    """
    infos = await trio.socket.getaddrinfo(
        bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, type_, proto, _, sockaddr = infos[0]
    sock = trio.socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if keepalive is not None:
            tune_socket(sock, keepalive)
        await sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def accept(listener: trio.SocketListener, what: str) -> trio.SocketStream:
    """The next connection; running out of fds or memory for a moment is logged and retried, other
    errors (a broken listener) are raised."""
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRORS:
                raise
            log.error("accept failed, retrying", listener=what, error=exc.strerror or str(exc))
        await trio.sleep(ACCEPT_RETRY_DELAY)
