"""The portable forwarder: read each direction into the process and write it back out.

Like the splice forwarder, a direction works on the raw file descriptors and waits only when the kernel
says it must (``wait_readable`` after EAGAIN on a read, ``wait_writable`` after a short or refused write),
with a checkpoint every few MiB so one hot session cannot starve the others. trio's socket methods would
add a scheduler round and ~15 calls to every read and write, which a 32-byte echo pays four times.

Reads go into one buffer per thread (:func:`read_buffer`), shared by every session: a chunk is written out
at once, straight from the buffer, and only a part the destination did not take is copied out before the
direction waits (the buffer is someone else's as soon as this task yields). A thread runs one trio loop at
a time, whose tasks take turns. An idle session holds no buffer, and a read allocates nothing.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Awaitable

import trio

from ._raw import read_now
from ._session import RELAY_ERRORS, Direction, Session, SessionForwarder

DEFAULT_BUFFER_SIZE = 256 * 1024
# Bytes a direction may move without yielding to the scheduler (as the splice forwarder).
CHECKPOINT_BYTES = 4 * 1024 * 1024


_local = threading.local()


def read_buffer(size: int) -> list[bytearray]:
    """This thread's shared read buffer of at least ``size`` bytes, as the one-element list ``os.readv``
    takes (see the module docstring); shared, so an idle direction holds no object of its own for it."""
    chunks: list[bytearray] | None = getattr(_local, "chunks", None)
    if chunks is None or len(chunks[0]) < size:
        chunks = _local.chunks = [bytearray(size)]
    return chunks


async def copy_direction(
    session: Session, direction: Direction, chunks: list[bytearray], pending: bytes = b""
) -> None:
    """Relay one direction through userspace until EOF (then half-close) or an error (then fail the session).

    ``chunks`` holds the read buffer (shared: see :func:`read_buffer`); ``pending`` is sent first: bytes the
    splice path had already taken out of the source when it fell back.

    Every write is counted the moment it returns, so the counters are exact even when a cancellation lands
    in the middle of a chunk.
    """
    src = direction.src.socket
    dst = direction.dst.socket
    traffic = session.traffic
    to_backend = direction.client_to_backend
    unyielded = 0
    try:
        src_fd, dst_fd = src.fileno(), dst.fileno()
        data: bytes | memoryview = pending
        while True:
            if not data:
                try:
                    got = read_now(src_fd, chunks)
                except OSError as exc:
                    session.fail(f"reading from {direction.src_name}: {exc}")
                    return
                if got < 0:
                    await trio.lowlevel.wait_readable(src)
                    continue
                if not got:
                    break
                data = memoryview(chunks[0])[:got]  # dropped below, before any wait
                unyielded += got
            try:
                # Inline, unlike the read (see read_now): a busy session pays for every call here, and an
                # idle one rarely found its destination full.
                sent = os.write(dst_fd, data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                session.fail(f"writing to {direction.dst_name}: {exc}")
                return
            if to_backend:
                traffic.client_to_backend += sent
            else:
                traffic.backend_to_client += sent
            # The rest leaves the shared buffer before this task waits for the destination.
            if sent < len(data) and not await _send_rest(session, direction, dst_fd, bytes(data[sent:])):
                return
            data = b""
            if unyielded >= CHECKPOINT_BYTES:
                unyielded = 0
                await trio.lowlevel.checkpoint()
    except RELAY_ERRORS as exc:  # a socket closed under a wait (the session is ending)
        session.fail(f"relaying from {direction.src_name} to {direction.dst_name}: {exc}")
        return
    session.source_closed(direction)


async def _send_rest(session: Session, direction: Direction, dst_fd: int, rest: bytes) -> bool:
    """Write ``rest`` as the destination takes it, counting each write; False when the session failed."""
    traffic = session.traffic
    to_backend = direction.client_to_backend
    dst = direction.dst.socket
    with memoryview(rest) as view:
        sent = 0
        while sent < len(view):
            direction.writing = True
            await trio.lowlevel.wait_writable(dst)
            direction.writing = False
            try:
                more = os.write(dst_fd, view[sent:])
            except BlockingIOError:
                continue
            except OSError as exc:
                session.fail(f"writing to {direction.dst_name}: {exc}")
                return False
            sent += more
            if to_backend:
                traffic.client_to_backend += more
            else:
                traffic.backend_to_client += more
    return True


class CopyForwarder(SessionForwarder):
    """Relays through a userspace buffer with one task per direction; works on every platform."""

    name = "copy"

    def __init__(self, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be positive")
        self.buffer_size = buffer_size

    def __repr__(self) -> str:
        return f"CopyForwarder(buffer_size={self.buffer_size})"

    def _pump(self, session: Session, direction: Direction) -> Awaitable[None]:
        return copy_direction(session, direction, read_buffer(self.buffer_size))
