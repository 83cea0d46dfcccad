"""Raw I/O on non-blocking sockets, for the paths that skip trio's stream methods (each of which adds a
scheduler pass and ~15-25 calls): the relay's copy path, the first bytes to a backend, the Redis client.

A call is tried first and waits only after EAGAIN. A long-lived coroutine (a relay direction) must not
catch that EAGAIN itself: an exception caught in a coroutine gives its frame an object of its own, kept as
long as the coroutine lives (~350 B per direction of an idle relayed session, measured).
"""

from __future__ import annotations

import os

import trio


def read_now(fd: int, chunks: list[bytearray]) -> int:
    """One readv(2) into ``chunks``: the bytes read (0 at EOF), or -1 when the source has nothing now.

    Other errors are raised. An idle relay direction waits after exactly such a read, which is why its
    EAGAIN is answered here (see the module docstring); the relay's writes stay inline, as a helper's call
    cost a busy session 1-2% of its CPU per GB.
    """
    try:
        return os.readv(fd, chunks)
    except BlockingIOError:
        return -1


async def write_all(sock: trio.socket.SocketType, data: bytes) -> None:
    """All of ``data`` to ``sock``: write(2) at once, waiting for the socket only when it takes nothing.
    OSError is raised as it came; nothing else may write to ``sock`` meanwhile. (A short-lived coroutine:
    it may catch EAGAIN itself.)"""
    view = memoryview(data)
    fd = sock.fileno()
    while view:
        try:
            sent = os.write(fd, view)
        except BlockingIOError:
            sent = -1  # waited for below, outside the except block
        if sent < 0:
            await trio.lowlevel.wait_writable(sock)
            continue
        view = view[sent:]
