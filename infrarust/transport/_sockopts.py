"""Socket options for relayed connections: no Nagle, and TCP keepalive from ``[keepalive]``."""

from __future__ import annotations

import fcntl
import functools
import math
import socket
import struct
import sys
import termios

import trio

from infrarust.config._models import Keepalive

# Linux caps: TCP_KEEPIDLE and TCP_KEEPINTVL at MAX_TCP_KEEPIDLE/INTVL (32767 s), TCP_KEEPCNT at 127.
# Past them setsockopt fails with EINVAL, so clamp rather than lose the option.
_MAX_KEEPALIVE_SECONDS = 32767
_MAX_KEEPALIVE_PROBES = 127

# macOS spells the idle time TCP_KEEPALIVE; Linux and the BSDs spell it TCP_KEEPIDLE.
_TCP_KEEPIDLE: int | None = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
_TCP_KEEPINTVL: int | None = getattr(socket, "TCP_KEEPINTVL", None)
_TCP_KEEPCNT: int | None = getattr(socket, "TCP_KEEPCNT", None)


def _whole_seconds(seconds: float) -> int:
    # Round up: a keepalive must never fire sooner than configured, and the kernel takes whole seconds >= 1.
    return min(_MAX_KEEPALIVE_SECONDS, max(1, math.ceil(seconds)))


@functools.lru_cache(maxsize=16)
def socket_options(keepalive: Keepalive) -> tuple[tuple[int, int, int], ...]:
    """The (level, option, value) triples :func:`tune_socket` sets, computed once per ``[keepalive]``."""
    options: list[tuple[int, int, int]] = [
        (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    ]
    if _TCP_KEEPIDLE is not None:
        options.append((socket.IPPROTO_TCP, _TCP_KEEPIDLE, _whole_seconds(keepalive.time)))
    if _TCP_KEEPINTVL is not None:
        options.append((socket.IPPROTO_TCP, _TCP_KEEPINTVL, _whole_seconds(keepalive.interval)))
    if _TCP_KEEPCNT is not None:
        options.append(
            (socket.IPPROTO_TCP, _TCP_KEEPCNT, min(_MAX_KEEPALIVE_PROBES, max(1, keepalive.retries)))
        )
    return tuple(options)


def tune_socket(
    stream: trio.SocketStream | trio.socket.SocketType | socket.socket, keepalive: Keepalive
) -> None:
    """Set TCP_NODELAY, SO_KEEPALIVE and the keepalive timers on a relayed connection.

    Game traffic is small packets: Nagle plus delayed ACK would add ~40 ms per round trip. Keepalive finds
    peers that vanished without a FIN. Options the platform lacks are skipped, and a socket that cannot take
    an option (already closed, not TCP) is left as it is: tuning never fails a connection.

    On Linux a listening socket passes these options on to every connection it accepts, so the proxy tunes
    its listener once rather than each client socket; a backend socket is tuned before it connects.
    """
    sock = stream.socket if isinstance(stream, trio.SocketStream) else stream
    for level, option, value in socket_options(keepalive):
        if sock.fileno() == -1:
            return  # closed under us: nothing left to tune
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            continue  # unsupported here (e.g. not a TCP socket) or the peer is already gone


# SIOCOUTQ (Linux, the same number as TIOCOUTQ): bytes in a TCP socket's send queue that the peer has not
# acknowledged yet, sent or not.
_SIOCOUTQ: int | None = getattr(termios, "TIOCOUTQ", None) if sys.platform == "linux" else None
_INT = struct.Struct("i")


def unacknowledged(sock: trio.socket.SocketType) -> int:
    """Bytes handed to the kernel on ``sock`` that its peer's TCP has not acknowledged (0 where unknown).

    A relay counts bytes as they are handed to the kernel; when a session is cut, what is still queued may
    never arrive (closing a socket with unread input resets it, and a reset drops the send queue), so the
    exact count of what the peer got is the handed-over count minus this.
    """
    if _SIOCOUTQ is None or sock.fileno() == -1:
        return 0
    try:
        value: int = _INT.unpack(fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0
    return max(value, 0)
