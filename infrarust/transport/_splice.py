"""The Linux forwarder: move bytes socket -> pipe -> socket with splice(2), never into the process.

Each direction runs the loop of Go's ``internal/poll/splice_linux.go``, arranged so that every EAGAIN has
exactly one meaning:

- splice socket -> pipe only when the pipe is empty, so EAGAIN there means "the source has nothing":
  hand the pipe back to the pool and wait for the source to be readable;
- then splice pipe -> socket until the pipe is empty, so EAGAIN there means "the destination is full":
  wait for it to be writable.

While both sides keep succeeding the loop never waits (one wakeup can move many pipefuls), with a
checkpoint every few MiB so one hot session cannot starve the others.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import trio

from ._copy import DEFAULT_BUFFER_SIZE, copy_direction, read_buffer
from ._pipes import Pipe, PipePool
from ._session import RELAY_ERRORS, Direction, Session, SessionForwarder

# Module attribute so tests can inject failures; None where the platform has no splice (the session then
# copies instead).
os_splice = getattr(os, "splice", None)

_SPLICE_FLAGS: int = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)

# Bytes a direction may move without yielding to the scheduler.
CHECKPOINT_BYTES = 4 * 1024 * 1024

# A first splice failing with these means "this kind of fd cannot be spliced": copy instead.
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})


def _splice_now(splice: Callable[..., int], src: int, dst: int, count: int) -> int:
    """One non-blocking splice(2): the bytes moved (0 at EOF), or -1 when it would block. EAGAIN is
    answered here, not raised into the direction's coroutine (see :mod:`._raw`)."""
    try:
        return splice(src, dst, count, None, None, _SPLICE_FLAGS)
    except BlockingIOError:
        return -1


class SpliceForwarder(SessionForwarder):
    """Relays inside the kernel with splice(2) through pooled pipes, one task per direction (Linux).

    A session falls back to copying (and logs one warning) when its sockets refuse splice (the first
    splice fails with EINVAL, ENOSYS or EOPNOTSUPP) or no pipe can be made (EMFILE, ENFILE...). Bytes moved
    before the switch stay counted and in order.
    """

    name = "splice"

    def __init__(self, pipe_size: int = 65536, pool: PipePool | None = None) -> None:
        if pool is None:
            pool = PipePool(pipe_size)
        elif pool.pipe_size != pipe_size:
            raise ValueError(f"pool makes {pool.pipe_size}-byte pipes, not {pipe_size}")
        self.pipe_size = pipe_size
        self.pool = pool

    def __repr__(self) -> str:
        return f"SpliceForwarder(pipe_size={self.pipe_size})"

    async def _pump(self, session: Session, direction: Direction) -> None:
        """Splice one direction until EOF or error; if the session falls back to copying, copy the rest.

        One coroutine per direction does both (rather than a wrapper awaiting a splice loop): an idle
        session's memory is mostly its coroutines and waits.
        """
        splice = os_splice
        if splice is None:
            session.fall_back_to_copy("os.splice is not available on this platform")
            await copy_direction(session, direction, read_buffer(DEFAULT_BUFFER_SIZE))
            return
        pool = self.pool
        traffic = session.traffic
        to_backend = direction.client_to_backend
        src = direction.src.socket
        dst = direction.dst.socket
        src_fd = src.fileno()
        dst_fd = dst.fileno()
        pipe: Pipe | None = None
        in_pipe = 0  # bytes in the pipe not yet delivered
        read_ok = write_ok = False  # a splice of each kind has worked: later EINVAL is a real error
        unyielded = 0
        leftover: bytes | None = None  # set when this direction switches to copying: bytes to send first
        try:
            while True:
                # The pipe is empty here: the one safe point to switch paths.
                if session.copy_fallback is not None:
                    leftover = b""
                    break
                if pipe is None:
                    try:
                        pipe = pool.acquire()
                    except OSError as exc:
                        session.fall_back_to_copy(f"cannot create a pipe: {exc}")
                        leftover = b""
                        break
                try:
                    moved = _splice_now(splice, src_fd, pipe.write_fd, pipe.size)
                except OSError as exc:
                    if not read_ok and exc.errno in _UNSUPPORTED:
                        session.fall_back_to_copy(f"splice from {direction.src_name} refused: {exc}")
                        leftover = b""
                        break
                    session.fail(f"reading from {direction.src_name}: {exc}")
                    return
                if moved < 0:
                    # The source has nothing: an idle direction holds no pipe while it waits.
                    pool.release(pipe)
                    pipe = None
                    await trio.lowlevel.wait_readable(src)
                    continue
                if moved == 0:
                    session.source_closed(direction)
                    return
                read_ok = True
                in_pipe = moved
                while in_pipe:
                    try:
                        # Inline, unlike the read: the destination is rarely full, and a busy session pays
                        # for every call here (the read's helper is there for the idle ones).
                        sent = splice(pipe.read_fd, dst_fd, in_pipe, None, None, _SPLICE_FLAGS)
                    except BlockingIOError:
                        sent = -1  # waited for below, outside the except block
                    except OSError as exc:
                        if not write_ok and exc.errno in _UNSUPPORTED:
                            session.fall_back_to_copy(f"splice to {direction.dst_name} refused: {exc}")
                            leftover = _take_out(pipe, in_pipe)
                            in_pipe = 0
                            break
                        session.fail(f"writing to {direction.dst_name}: {exc}")
                        return
                    if sent < 0:
                        direction.writing = True
                        await trio.lowlevel.wait_writable(dst)
                        direction.writing = False
                        continue
                    if not sent:  # pragma: no cover - a pipe holding bytes never yields 0; never spin on it
                        session.fail(f"writing to {direction.dst_name}: splice made no progress")
                        return
                    write_ok = True
                    in_pipe -= sent
                    if to_backend:
                        traffic.client_to_backend += sent
                    else:
                        traffic.backend_to_client += sent
                if leftover is not None:
                    break
                # After a read the source is asked again rather than waited for: on a connection's last
                # packet the EOF is often already there (one splice returning 0, where a wait would cost
                # an epoll_ctl and a scheduler pass per direction), and the minimal Trio relay does the
                # same. A game packet then costs one splice that gets EAGAIN before the wait.
                unyielded += moved
                if unyielded >= CHECKPOINT_BYTES:
                    unyielded = 0
                    await trio.lowlevel.checkpoint()
        except RELAY_ERRORS as exc:  # from the waits: the socket was closed or broke under us
            session.fail(f"waiting on {direction.src_name} or {direction.dst_name}: {exc}")
            return
        finally:
            if pipe is not None:
                if in_pipe:
                    pool.discard(pipe)  # bytes nobody will deliver: never lend this pipe again
                else:
                    pool.release(pipe)
        # Only a switch to copying gets here, with the pipe (empty) back in the pool.
        await copy_direction(session, direction, read_buffer(DEFAULT_BUFFER_SIZE), leftover)


def _take_out(pipe: Pipe, count: int) -> bytes:
    """Read the ``count`` bytes known to be in ``pipe`` (for the copy path to deliver)."""
    chunks: list[bytes] = []
    while count:
        chunk = os.read(pipe.read_fd, count)
        if not chunk:  # pragma: no cover - the kernel said these bytes are there
            break
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)
