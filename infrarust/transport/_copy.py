"""The portable forwarder: read each direction into the process and write it back out."""

from __future__ import annotations

from collections.abc import Awaitable

from ._session import RELAY_ERRORS, Direction, Session, SessionForwarder

# Chosen by measurement (2 GiB loopback transfers, endpoints in other processes, 2-core machine): process
# CPU per GiB relayed was ~0.66 s at 64 KiB, ~0.50 s at 256 KiB, ~0.42 s at 1 MiB. 256 KiB takes most of
# the gain at a quarter of the 1 MiB memory per busy direction; the buffer only exists while a read is in
# flight (see copy_direction), so idle sessions hold none. recv_into a kept buffer measured no better.
DEFAULT_BUFFER_SIZE = 256 * 1024


async def copy_direction(
    session: Session, direction: Direction, buffer_size: int, pending: bytes = b""
) -> None:
    """Relay one direction through userspace until EOF (then half-close) or an error (then fail the session).

    ``pending`` is sent first: bytes the splice path had already taken out of the source when it fell back.

    The raw trio socket is used rather than ``SocketStream.send_all`` so that every partial send is counted
    the moment it returns: ``send_all`` reports nothing until the whole chunk is out, which would leave the
    counters short if a cancellation lands in the middle of a chunk. ``recv`` (not ``recv_into`` a buffer
    kept by the task) means an idle session holds no buffer.
    """
    src = direction.src.socket
    dst = direction.dst.socket
    traffic = session.traffic
    to_backend = direction.client_to_backend
    data = pending
    while True:
        if not data:
            try:
                data = await src.recv(buffer_size)
            except RELAY_ERRORS as exc:
                session.fail(f"reading from {direction.src_name}: {exc}")
                return
            if not data:
                break
        direction.writing = True
        try:
            sent = await dst.send(data)
            if to_backend:
                traffic.client_to_backend += sent
            else:
                traffic.backend_to_client += sent
            if sent < len(data):
                with memoryview(data) as view:
                    while sent < len(view):
                        more = await dst.send(view[sent:])
                        sent += more
                        if to_backend:
                            traffic.client_to_backend += more
                        else:
                            traffic.backend_to_client += more
        except RELAY_ERRORS as exc:
            session.fail(f"writing to {direction.dst_name}: {exc}")
            return
        direction.writing = False
        data = b""
    session.source_closed(direction)


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
        # A plain function handing back copy_direction's coroutine: no wrapper coroutine per direction.
        return copy_direction(session, direction, self.buffer_size)
