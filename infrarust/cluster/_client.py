"""A small Redis client for Trio: hiredis' sans-IO ``Reader`` parses the replies, trio sockets carry them.

asyncio clients cannot run under Trio, and a thread per call would cost more than the call. hiredis is the
C reply parser of the official client, with a sans-IO interface (``feed`` bytes, ``gets`` replies) and
``pack_command`` for requests, so the only I/O code here is the socket loop. Every call is bounded by one
deadline covering the wait for the connection, the connect itself (and AUTH, SELECT) and the replies;
a connection that missed a deadline or broke is dropped, never reused half-read.
"""

from __future__ import annotations

import collections
import os
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis
import trio

from infrarust.backend import open_connection
from infrarust.config import Address, RedisUrl
from infrarust.transport import write_all

READ_SIZE = 65536
# A reply bigger than this is not one infrarust asked for (the largest is the ban hash).
MAX_REPLY_BUFFER = 64 << 20

Arg = str | bytes | int | float


class RedisError(Exception):
    """A Redis call failed; the message says why (never with the password)."""


class RedisUnavailable(RedisError):
    """Redis could not be reached, broke the connection, or did not answer within the deadline."""


class RedisReplyError(RedisError):
    """Redis answered with an error (``-ERR ...``, ``WRONGPASS``, ``LOADING``...)."""


_NEED_DATA = object()


class _Connection:
    """One open connection and its reply parser.

    Without TLS the socket is written and read directly (``write(2)`` / ``read(2)`` on the non-blocking
    socket, waiting for it only after EAGAIN), as the relay does: a login's round trip to Redis is on the
    per-connection path, and trio's stream methods add a scheduler pass and ~25 calls to each write and read.
    """

    def __init__(self, transport: trio.SocketStream, stream: trio.abc.Stream) -> None:
        self.transport = transport
        self.stream = stream
        self.raw: trio.socket.SocketType | None = transport.socket if stream is transport else None
        self.reader = hiredis.Reader(notEnoughData=_NEED_DATA)
        self.reader.setmaxbuf(MAX_REPLY_BUFFER)

    async def send(self, commands: Sequence[Sequence[Arg]]) -> None:
        # hiredis' stub types pack_command's argument as a 1-tuple; it takes any length.
        packed = [hiredis.pack_command(tuple(command)) for command in commands]  # type: ignore[arg-type]
        await self.write(b"".join(packed))

    async def write(self, data: bytes) -> None:
        """All of ``data`` to Redis (OSError or a trio error when the connection broke)."""
        if self.raw is None:
            await self.stream.send_all(data)
        else:
            await write_all(self.raw, data)

    async def reply(self) -> Any:
        raw = self.raw
        while (reply := self.reader.gets()) is _NEED_DATA:
            if raw is None:
                data = await self.stream.receive_some(READ_SIZE)
            else:
                try:
                    data = os.read(raw.fileno(), READ_SIZE)
                except BlockingIOError:
                    data = None  # waited for below, outside the except block
                if data is None:
                    await trio.lowlevel.wait_readable(raw)
                    continue
            if not data:
                raise RedisUnavailable("Redis closed the connection")
            self.reader.feed(bytes(data))
        return reply

    def close(self) -> None:
        # Synchronous and safe in any state: trio wakes any task waiting on the socket first.
        self.transport.socket.close()


async def _open(url: RedisUrl) -> _Connection:
    transport = await open_connection(Address(url.host, url.port))
    stream: trio.abc.Stream = transport
    try:
        if url.tls:
            stream = trio.SSLStream(transport, ssl.create_default_context(), server_hostname=url.host)
            await stream.do_handshake()
        connection = _Connection(transport, stream)
        setup: list[list[Arg]] = []
        if url.password is not None:
            setup.append(["AUTH", url.username, url.password] if url.username else ["AUTH", url.password])
        if url.db:
            setup.append(["SELECT", url.db])
        if setup:
            await connection.send(setup)
            for _ in setup:
                _raise_error(await connection.reply())
    except BaseException:
        transport.socket.close()
        raise
    return connection


def _raise_error(reply: Any) -> Any:
    if isinstance(reply, hiredis.ReplyError):
        raise RedisReplyError(str(reply))
    return reply


def _unavailable(exc: BaseException, url: RedisUrl) -> RedisUnavailable:
    if isinstance(exc, RedisUnavailable):
        return exc
    if isinstance(exc, OSError):
        return RedisUnavailable(f"{url}: {exc.strerror or exc}")
    # trio's SSLStream reports a failed TLS handshake as BrokenResourceError caused by the ssl error.
    reason = exc.__cause__ if exc.__cause__ is not None else exc
    return RedisUnavailable(f"{url}: {reason or type(reason).__name__}")


_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, hiredis.ProtocolError)


class _Slot:
    """The replies one pipelined call waits for, filled in order by whichever caller is reading."""

    __slots__ = ("expected", "failed", "replies")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.replies: list[Any] = []
        self.failed = False

    @property
    def done(self) -> bool:
        return self.failed or len(self.replies) >= self.expected


class RedisClient:
    """Commands on one lazily (re)opened connection; each call, pipelined or not, within ``timeout`` seconds.

    Calls from concurrent tasks share the connection without waiting for each other's round trips: their
    commands are queued in call order and written together by whichever caller gets the write turn first,
    then the replies are read in that order by whichever waiting caller holds the read turn, so fifty
    logins at once cost about one round trip and one write, not fifty. Raises :class:`RedisUnavailable`
    when Redis cannot be reached in time (or the connection broke under a call), :class:`RedisReplyError`
    when it answers with an error (the other replies of a pipeline are read first, so the connection stays
    usable).
    """

    def __init__(self, url: RedisUrl, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: _Connection | None = None
        self._pending: collections.deque[_Slot] = collections.deque()
        self._outbox: list[bytes] = []  # packed calls not written yet, in the order of _pending
        self._send_lock = trio.Lock()
        self._read_lock = trio.Lock()

    async def execute(self, *args: Arg) -> Any:
        """One command's reply."""
        return (await self.pipeline([args]))[0]

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """The replies of ``commands``, sent in one write and read in order: one round trip."""
        # hiredis' stub types pack_command's argument as a 1-tuple; it takes any length.
        packed = b"".join(
            hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
            for command in commands
        )
        # A deadline scope rather than fail_after: the same bound, without its generator-based context
        # manager on every call of a login's path.
        deadline = trio.CancelScope(deadline=trio.current_time() + self.timeout)
        try:
            with deadline:
                if self._connection is None:
                    async with self._send_lock:
                        if self._connection is None:
                            self._connection = await _open(self.url)
                connection = self._connection
                if connection is None:  # closed by a failing call the moment it opened
                    raise RedisUnavailable(f"{self.url}: the connection broke before the answer")
                # Queued together, with no checkpoint between: the wire order is the order of the replies.
                slot = _Slot(len(commands))
                self._pending.append(slot)
                self._outbox.append(packed)
                async with self._send_lock:
                    # Whoever gets the turn first writes every call queued meanwhile, in one write. (The
                    # lock's checkpoint, even when it is free, lets the other logins of this pass queue
                    # theirs first: measured, taking it without one made more, smaller writes.)
                    if self._outbox and not slot.failed:
                        data = b"".join(self._outbox)
                        self._outbox.clear()
                        try:
                            await connection.write(data)
                        except BaseException:
                            self._drop(connection)  # a partial write leaves the connection unusable
                            raise
                async with self._read_lock:
                    while not slot.done:
                        head = self._pending[0]
                        try:
                            reply = await connection.reply()
                        except BaseException:
                            self._drop(connection)  # a partial read, likewise
                            raise
                        head.replies.append(reply)
                        if head.done:
                            self._pending.popleft()
        except _CONNECTION_ERRORS as exc:
            raise _unavailable(exc, self.url) from None
        if deadline.cancelled_caught:
            raise RedisUnavailable(f"{self.url}: no answer within {self.timeout:g}s")
        if slot.failed:
            raise RedisUnavailable(f"{self.url}: the connection broke before the answer")
        for reply in slot.replies:
            _raise_error(reply)
        return slot.replies

    def _drop(self, connection: _Connection) -> None:
        if self._connection is connection:  # not a newer one another call opened meanwhile
            self.close()

    def close(self) -> None:
        """Drop the connection (the next call opens a new one); calls waiting on it fail."""
        connection, self._connection = self._connection, None
        for slot in self._pending:
            slot.failed = True
        self._pending = collections.deque()
        self._outbox = []
        if connection is not None:
            connection.close()


class RedisSubscription:
    """A pub/sub connection: :meth:`subscribe` within the deadline, then messages as they come."""

    def __init__(self, url: RedisUrl, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._connection: _Connection | None = None

    async def subscribe(self, *channels: str) -> None:
        """Open the connection and subscribe; returns once Redis confirmed every channel."""
        self.close()
        try:
            with trio.fail_after(self.timeout):
                connection = await _open(self.url)
                try:
                    await connection.send([("SUBSCRIBE", *channels)])
                    for _ in channels:
                        reply = _raise_error(await connection.reply())
                        if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                            raise RedisUnavailable(f"{self.url}: unexpected answer to SUBSCRIBE: {reply!r}")
                except BaseException:
                    connection.close()
                    raise
        except trio.TooSlowError:
            raise RedisUnavailable(f"{self.url}: no answer within {self.timeout:g}s") from None
        except _CONNECTION_ERRORS as exc:
            raise _unavailable(exc, self.url) from None
        self._connection = connection

    async def next_message(self) -> tuple[bytes, bytes]:
        """The next ``(channel, data)`` published; waits as long as it takes (no deadline)."""
        connection = self._connection
        if connection is None:
            raise RedisUnavailable("not subscribed")
        try:
            while True:
                reply = _raise_error(await connection.reply())
                if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                    return bytes(reply[1]), bytes(reply[2])
        except _CONNECTION_ERRORS as exc:
            self.close()
            raise _unavailable(exc, self.url) from None

    def close(self) -> None:
        """Drop the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
