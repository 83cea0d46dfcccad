"""Reaching a backend: its addresses tried in order, and the handshake it is shown."""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import os
import socket

import trio

from infrarust import logs
from infrarust.balance import Balancer
from infrarust.config import Address, Keepalive, RewriteKind, ServerConfig, format_duration
from infrarust.protocol import Handshake
from infrarust.routing import rewrite_host
from infrarust.transport import relay_stream, socket_options, tune_socket

log = logs.get_logger(__name__)


async def connect_backend(
    server: ServerConfig,
    default_timeout: float,
    keepalive: Keepalive | None = None,
    balancer: Balancer | None = None,
    *,
    status: bool = False,
) -> tuple[trio.SocketStream, Address] | None:
    """Try the server's addresses in order, each under its connect timeout; None when none answers.

    ``default_timeout`` is the proxy's ``connect_timeout``, used unless the server sets ``timeouts.connect``;
    ``keepalive``, when given, tunes the socket for relaying (TCP_NODELAY and keepalive) before it connects.
    With a ``balancer`` (fleetwire: ``load_balance``) the addresses come in its order, and one that fails is
    marked down at once (``status``: its server-list order).
    """
    timeout = server.timeouts.connect if server.timeouts.connect is not None else default_timeout
    addresses = server.addresses
    if balancer is not None:
        addresses = tuple(balancer.status_order() if status else balancer.order())
    for address in addresses:
        began = trio.current_time()
        try:
            # A literal address whose connect completed inside connect(2) (a backend on this host) needs
            # no wait, so no deadline scope either; anything else waits under the address's timeout.
            sock = start_connection(address, keepalive)
            if sock is not None and _established(sock):
                stream: trio.SocketStream | None = relay_stream(trio.socket.from_stdlib_socket(sock))
            else:
                stream = None
                with trio.CancelScope(deadline=began + timeout):
                    stream = await (
                        open_connection(address, keepalive)
                        if sock is None
                        else finish_connection(sock, address)
                    )
        except OSError as exc:
            # Also EMFILE from socket() itself: this line must need no new fd (see infrarust.logs).
            log.info(
                "backend connect failed",
                server=server.name,
                address=address,
                error=exc.strerror or str(exc),
            )
            if balancer is not None:
                balancer.mark_down(address, exc.strerror or str(exc))
            continue
        if stream is not None:
            if log.enabled(logging.DEBUG):
                log.debug(
                    "backend connected",
                    server=server.name,
                    address=address,
                    seconds=round(trio.current_time() - began, 6),
                )
            return stream, address
        log.info(
            "backend connect timed out", server=server.name, address=address, after=format_duration(timeout)
        )
        if balancer is not None:
            balancer.mark_down(address, "connect timed out")
    return None


async def open_connection(address: Address, keepalive: Keepalive | None = None) -> trio.SocketStream:
    """A TCP connection to ``address``; a literal IP is connected to directly, a name goes through DNS.

    The direct path skips trio's happy-eyeballs machinery (a nursery and a task per attempt) and trio's
    own ``connect`` (which resolves the address again), both costing more than the connect itself on
    loopback and LAN backends: a non-blocking ``connect_ex``, a wait for writability, the pending error,
    and the real OS error if it failed. The socket gets TCP_NODELAY (and keepalive, when given) before it
    connects, and is wrapped without trio's per-stream options (see ``relay_stream``).
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    sock = start_connection(address, keepalive)
    if sock is None:
        stream = await trio.open_tcp_stream(address.host, address.port)
        if keepalive is not None:
            tune_socket(stream, keepalive)
        return stream
    return await finish_connection(sock, address)


def start_connection(address: Address, keepalive: Keepalive | None = None) -> socket.socket | None:
    """A non-blocking socket connecting to ``address`` (connected already, or in progress), tuned before
    it connects; None when ``address`` is a name, not a literal IP. Raises OSError when the connect
    failed at once (refused on this host, no route, out of fds)."""
    family = _literal_family(address.host)
    if family is None:
        return None
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        # A socket made just now is open and TCP: set the options straight, without tune_socket's checks.
        for level, option, value in socket_options(keepalive) if keepalive is not None else _NODELAY:
            try:
                sock.setsockopt(level, option, value)
            except OSError:
                continue  # as tune_socket: tuning never fails a connection
        err = sock.connect_ex((address.host, address.port))
        if err and err != errno.EINPROGRESS:
            raise OSError(err, f"Error connecting to {(address.host, address.port)!r}: {os.strerror(err)}")
    except BaseException:
        sock.close()
        raise
    return sock


async def finish_connection(sock: socket.socket, address: Address) -> trio.SocketStream:
    """Wait for the connect ``start_connection`` began; the stream, or OSError with the real error. The
    socket is closed if it fails or the wait is cancelled."""
    try:
        await trio.lowlevel.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"Error connecting to {(address.host, address.port)!r}: {os.strerror(err)}")
    except BaseException:
        sock.close()
        raise
    return relay_stream(trio.socket.from_stdlib_socket(sock))


def _established(sock: socket.socket) -> bool:
    """True when the connect already completed (on this host the handshake runs inside connect(2)):
    one getpeername instead of registering for writability and waiting a scheduler round for it."""
    try:
        sock.getpeername()
    except OSError:
        return False  # ENOTCONN: still in progress (or failed: the wait then reports why)
    return True


_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


@functools.lru_cache(maxsize=1024)
def _literal_family(host: str) -> socket.AddressFamily | None:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None


def close(stream: trio.SocketStream) -> None:
    """Close a connection now, whatever state it is in (the ``finally`` of every connection).

    trio's ``socket.close()`` tells any task waiting on the fd first (``notify_closing``), and unlike
    ``aclose_forcefully`` it needs no cancel scope or checkpoint: two fewer per socket on the accept path.
    """
    stream.socket.close()


def backend_handshake(handshake: Handshake, server: ServerConfig, address: Address) -> Handshake:
    """The handshake the backend sees: the client's, with only the host name rewritten if the server asks."""
    rewrite = server.domain_rewrite
    if rewrite.kind is RewriteKind.NONE:
        return handshake
    name = rewrite.host if rewrite.kind is RewriteKind.EXPLICIT and rewrite.host else address.host
    return handshake.with_host(rewrite_host(handshake.host, name))
