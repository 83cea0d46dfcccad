"""Kernel pipes for splice, and the pool that lends them out only while bytes flow.

A pipe costs two fds and, once sized, counts against the user's pipe page quota
(``/proc/sys/fs/pipe-user-pages-soft``) for as long as it exists. Past the quota, new pipes come out small
and ``F_SETPIPE_SZ`` fails with EPERM. So a relay holds a pipe only while it is moving bytes and hands it
back empty as soon as its source runs dry, as HAProxy and Go's ``internal/poll`` do: an idle session then
holds no pipe at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

import trio

# Python 3.10+ has these on Linux; the numbers are the Linux ABI (F_LINUX_SPECIFIC_BASE + 7 / + 8).
F_SETPIPE_SZ: int = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ: int = getattr(fcntl, "F_GETPIPE_SZ", 1032)

# Module attribute so tests can inject failures (EPERM from F_SETPIPE_SZ, EMFILE from pipe2).
fcntl_fn = fcntl.fcntl
pipe_fn = os.pipe2 if hasattr(os, "pipe2") else None

# Idle pipes still count against the user's pipe page quota (16,384 pages = 64 MiB by default), so the
# pool keeps at most this many bytes of idle pipe: 64 pipes of 64 KiB, or 4 of 1 MiB.
DEFAULT_IDLE_BYTES = 4 * 1024 * 1024


class Pipe:
    """One kernel pipe: a read end, a write end, and its real capacity in bytes.

    Like trio's ``_FdHolder``, a closed pipe forgets its fd numbers (``-1``), so a stale reference can only
    ever get EBADF, never touch an fd number the kernel has since handed to someone else.
    """

    __slots__ = ("read_fd", "size", "write_fd")

    def __init__(self, read_fd: int, write_fd: int, size: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.size = size

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self.read_fd == -1

    def close(self) -> None:
        """Close both ends (idempotent); wakes any task waiting on them first."""
        if self.closed:
            return
        fds = (self.read_fd, self.write_fd)
        self.read_fd = self.write_fd = -1
        for fd in fds:
            with contextlib.suppress(RuntimeError):  # outside a Trio run nobody can be waiting
                trio.lowlevel.notify_closing(fd)
            os.close(fd)

    def __del__(self) -> None:
        # Last resort against fd leaks if a pipe is dropped without close(): no Trio call here, because
        # anything that could be waiting on the fd would still hold a reference to this object.
        if self.read_fd != -1:
            fds = (self.read_fd, self.write_fd)
            self.read_fd = self.write_fd = -1
            for fd in fds:
                os.close(fd)


def open_pipe(size: int) -> Pipe:
    """Create a non-blocking close-on-exec pipe and try to size it to ``size`` bytes.

    The size actually granted is read back with ``F_GETPIPE_SZ``: the kernel rounds up to a power of two
    pages, and refuses (EPERM) growth past the quota or ``/proc/sys/fs/pipe-max-size``. A refusal is not an
    error: the pipe keeps the size it has. Raises ``OSError`` only when no pipe can be made (EMFILE,
    ENFILE, ENOMEM) or the platform has no pipe2.
    """
    if pipe_fn is None:
        raise OSError("os.pipe2 is not available on this platform")
    read_fd, write_fd = pipe_fn(os.O_NONBLOCK | os.O_CLOEXEC)
    pipe = Pipe(read_fd, write_fd, 0)
    try:
        pipe.size = fcntl_fn(write_fd, F_GETPIPE_SZ)
        if pipe.size != size:
            # EPERM past the quota, EINVAL/EBUSY on odd sizes: keep whatever size the kernel gave us.
            with contextlib.suppress(OSError):
                fcntl_fn(write_fd, F_SETPIPE_SZ, size)
            pipe.size = fcntl_fn(write_fd, F_GETPIPE_SZ)
    except BaseException:
        pipe.close()
        raise
    return pipe


class PipePool:
    """Idle pipes of one requested size, shared by every session of a :class:`SpliceForwarder`.

    ``acquire`` hands out an idle pipe or makes a new one; ``release`` takes back an *empty* pipe (keeping at
    most ``max_idle``, closing the rest); ``discard`` closes a pipe that may still hold bytes, which must
    never be lent to another session. ``max_idle`` defaults to what fits in 4 MiB (at least 2). Trio runs
    every task on one thread, so no lock is needed.
    """

    def __init__(self, pipe_size: int = 65536, max_idle: int | None = None) -> None:
        if pipe_size < 1:
            raise ValueError("pipe_size must be positive")
        if max_idle is None:
            max_idle = max(2, DEFAULT_IDLE_BYTES // pipe_size)
        elif max_idle < 0:
            raise ValueError("max_idle must not be negative")
        self.pipe_size = pipe_size
        self.max_idle = max_idle
        self._idle: list[Pipe] = []
        self._in_use = 0

    @property
    def idle(self) -> int:
        """Pipes kept open for reuse."""
        return len(self._idle)

    @property
    def in_use(self) -> int:
        """Pipes lent out and not yet released or discarded."""
        return self._in_use

    def acquire(self) -> Pipe:
        """An empty pipe: a pooled one if any, else a new one (``OSError`` if none can be made)."""
        pipe = self._idle.pop() if self._idle else open_pipe(self.pipe_size)
        self._in_use += 1
        return pipe

    def release(self, pipe: Pipe) -> None:
        """Take back an empty pipe (the caller guarantees it holds no bytes)."""
        self._in_use -= 1
        if len(self._idle) < self.max_idle and not pipe.closed:
            self._idle.append(pipe)
        else:
            pipe.close()

    def discard(self, pipe: Pipe) -> None:
        """Close a lent pipe that may hold bytes instead of returning it."""
        self._in_use -= 1
        pipe.close()

    def clear(self) -> None:
        """Close every idle pipe (pipes lent out stay with their users)."""
        idle, self._idle = self._idle, []
        for pipe in idle:
            pipe.close()
