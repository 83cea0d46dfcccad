"""Forwarders over real loopback sockets: integrity, half-close, errors, shutdown, fds, fallback, timeouts."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from helpers import (
    MIB,
    Received,
    Relay,
    assert_eof,
    blob,
    cyclic_digest,
    exact,
    open_fds,
    open_relay,
    pipe_fds,
    receive_all,
    relay,
    reset_close,
    send_forever,
    send_then_eof,
)

from infrarust.config._models import Keepalive, ProxyMode
from infrarust.transport import (
    SPLICE_SUPPORTED,
    CopyForwarder,
    ForwardEndReason,
    Forwarder,
    ForwardResult,
    PipePool,
    SpliceForwarder,
    Traffic,
    _pipes,
    _splice,
    select_forwarder,
    tune_socket,
)

linux_only = pytest.mark.skipif(not SPLICE_SUPPORTED, reason="splice(2) is Linux-only")


@pytest.fixture(params=["copy", pytest.param("splice", marks=linux_only)])
def forwarder(request: pytest.FixtureRequest) -> Iterator[Forwarder]:
    """Each forwarder; the splice one with its own pool, emptied and checked afterwards."""
    if request.param == "copy":
        yield CopyForwarder()
        return
    pool = PipePool(65536, max_idle=4)
    yield SpliceForwarder(65536, pool)
    assert pool.in_use == 0, "a pipe was neither released nor discarded"
    pool.clear()


def pool_of(forwarder: Forwarder) -> PipePool | None:
    return forwarder.pool if isinstance(forwarder, SpliceForwarder) else None


async def forward(
    forwarder: Forwarder,
    pair: Relay,
    traffic: Traffic,
    *,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
) -> ForwardResult:
    result = await forwarder.forward(
        pair.proxy_client, pair.proxy_backend, traffic, read_timeout=read_timeout, write_timeout=write_timeout
    )
    assert result is not None  # no cut given: forward always has a result
    return result


# --- integrity --------------------------------------------------------------------------------------------


async def test_64_mib_each_way_at_once_arrives_intact(forwarder: Forwarder) -> None:
    up, down = blob(1), blob(2)
    at_backend, at_client = Received(), Received()
    traffic = Traffic()
    async with relay() as pair, trio.open_nursery() as nursery:
        nursery.start_soon(send_then_eof, pair.client, up)
        nursery.start_soon(send_then_eof, pair.backend, down)
        nursery.start_soon(receive_all, pair.backend, at_backend)
        nursery.start_soon(receive_all, pair.client, at_client)
        result = await forward(forwarder, pair, traffic)
    assert at_backend.eof and at_client.eof
    assert at_backend.hexdigest() == cyclic_digest(up, len(up))
    assert at_client.hexdigest() == cyclic_digest(down, len(down))
    assert (result.client_to_backend, result.backend_to_client) == (len(up), len(down))
    assert result.reason in (ForwardEndReason.CLIENT_CLOSED, ForwardEndReason.BACKEND_CLOSED)
    assert result.error is None
    assert (traffic.client_to_backend, traffic.backend_to_client) == (len(up), len(down))


# --- half-close -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["client", "backend"])
async def test_half_close_passes_eof_and_keeps_the_other_direction(forwarder: Forwarder, first: str) -> None:
    early, late = blob(3, 100_000), blob(4, 3 * MIB)
    async with relay() as pair:
        closer, other = (pair.client, pair.backend) if first == "client" else (pair.backend, pair.client)

        async def conversation() -> None:
            await send_then_eof(closer, early)
            assert await exact(other, len(early)) == early
            await assert_eof(other)  # the EOF was passed on...
            async with trio.open_nursery() as inner:  # ...and the closer still hears everything after it
                inner.start_soon(send_then_eof, other, late)
                assert await exact(closer, len(late)) == late
                await assert_eof(closer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(conversation)
            result = await forward(forwarder, pair, Traffic())
    if first == "client":
        assert result.reason is ForwardEndReason.CLIENT_CLOSED
        assert (result.client_to_backend, result.backend_to_client) == (len(early), len(late))
    else:
        assert result.reason is ForwardEndReason.BACKEND_CLOSED
        assert (result.client_to_backend, result.backend_to_client) == (len(late), len(early))


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resetter", ["client", "backend"])
async def test_reset_is_an_error_that_ends_both_directions(forwarder: Forwarder, resetter: str) -> None:
    async with relay() as pair:
        async with trio.open_nursery() as nursery:

            async def conversation() -> None:
                await pair.client.send_all(b"c" * 1000)
                await exact(pair.backend, 1000)
                await pair.backend.send_all(b"b" * 2000)
                await exact(pair.client, 2000)
                reset_close(pair.client if resetter == "client" else pair.backend)

            nursery.start_soon(conversation)
            result = await forward(forwarder, pair, Traffic())
        # The survivor never closed anything, yet its direction ended too: it now sees the proxy hang up
        # once the caller closes (and nothing arrived meanwhile).
        survivor = pair.backend if resetter == "client" else pair.client
        await pair.proxy_client.aclose()
        await pair.proxy_backend.aclose()
        await assert_eof(survivor)
    assert result.reason is ForwardEndReason.ERROR
    assert result.error
    assert (result.client_to_backend, result.backend_to_client) == (1000, 2000)


async def test_broken_destination_during_bulk_transfer_is_an_error(forwarder: Forwarder) -> None:
    async with relay() as pair:
        traffic = Traffic()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_forever, pair.backend, blob(5, MIB))

            async def read_some_then_reset() -> None:
                await exact(pair.client, 2 * MIB)
                reset_close(pair.client)

            nursery.start_soon(read_some_then_reset)
            result = await forward(forwarder, pair, traffic)
            nursery.cancel_scope.cancel()
    assert result.reason is ForwardEndReason.ERROR
    assert result.backend_to_client >= 2 * MIB
    assert result.client_to_backend == 0


# --- shutdown ---------------------------------------------------------------------------------------------


async def test_shutdown_mid_transfer_leaves_exact_counts(forwarder: Forwarder) -> None:
    up, down = blob(6, 8 * MIB), blob(7, 8 * MIB)
    at_backend, at_client = Received(), Received()
    traffic = Traffic()
    raised_cancelled = False
    async with relay() as pair, trio.open_nursery() as nursery:
        senders = trio.CancelScope()

        async def senders_task() -> None:
            with senders:
                async with trio.open_nursery() as inner:
                    inner.start_soon(send_forever, pair.client, up)
                    inner.start_soon(send_forever, pair.backend, down)

        flowing_up, flowing_down = trio.Event(), trio.Event()
        receivers_done = trio.Event()

        async def receivers_task() -> None:
            async with trio.open_nursery() as inner:
                inner.start_soon(lambda: receive_all(pair.backend, at_backend, notify=flowing_up))
                inner.start_soon(lambda: receive_all(pair.client, at_client, notify=flowing_down))
            receivers_done.set()

        nursery.start_soon(senders_task)
        nursery.start_soon(receivers_task)
        with trio.CancelScope() as session_scope:

            async def shut_down_when_flowing() -> None:
                await flowing_up.wait()
                await flowing_down.wait()
                session_scope.cancel()

            nursery.start_soon(shut_down_when_flowing)
            try:
                await forward(forwarder, pair, traffic)
            except trio.Cancelled:
                raised_cancelled = True
                raise
        assert session_scope.cancelled_caught and raised_cancelled
        # Hang up the proxy side gracefully: everything it handed to the kernel reaches the receivers.
        await pair.proxy_client.send_eof()
        await pair.proxy_backend.send_eof()
        await receivers_done.wait()
        senders.cancel()
    assert at_backend.eof and at_client.eof
    assert at_backend.count >= MIB and at_client.count >= MIB
    assert traffic.client_to_backend == at_backend.count
    assert traffic.backend_to_client == at_client.count
    assert at_backend.hexdigest() == cyclic_digest(up, at_backend.count)
    assert at_client.hexdigest() == cyclic_digest(down, at_client.count)
    result = traffic.result(ForwardEndReason.SHUTDOWN)
    assert result.reason is ForwardEndReason.SHUTDOWN


# --- resources --------------------------------------------------------------------------------------------

ENDINGS = ["client_eof", "backend_eof", "reset", "shutdown", "timeout"]


async def _one_session(forwarder: Forwarder, pair: Relay, ending: str) -> None:
    traffic = Traffic()
    payload = b"x" * 20_000
    async with trio.open_nursery() as nursery:
        if ending in ("client_eof", "backend_eof"):
            closer, other = (
                (pair.client, pair.backend) if ending == "client_eof" else (pair.backend, pair.client)
            )

            async def talk() -> None:
                await send_then_eof(closer, payload)
                await exact(other, len(payload))
                await assert_eof(other)
                await send_then_eof(other, payload)
                await exact(closer, len(payload))
                await assert_eof(closer)

            nursery.start_soon(talk)
            result = await forward(forwarder, pair, traffic)
            assert result.reason is not ForwardEndReason.ERROR
        elif ending == "reset":

            async def reset() -> None:
                await pair.client.send_all(payload)
                await exact(pair.backend, len(payload))
                reset_close(pair.client)

            nursery.start_soon(reset)
            result = await forward(forwarder, pair, traffic)
            assert result.reason is ForwardEndReason.ERROR
        elif ending == "shutdown":
            # The backend floods a client that does not read, so a pipe holds bytes when the cancel lands.
            nursery.start_soon(send_forever, pair.backend, payload)
            with trio.CancelScope() as scope:

                async def cancel_once_stuck() -> None:
                    with trio.fail_after(10):
                        while traffic.backend_to_client == 0:
                            await trio.sleep(0.001)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(cancel_once_stuck)
                await forward(forwarder, pair, traffic)
            assert scope.cancelled_caught
            nursery.cancel_scope.cancel()
        else:
            result = await forward(forwarder, pair, traffic, read_timeout=0.01)
            assert result.reason is ForwardEndReason.ERROR


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds through /proc")
async def test_no_fd_leaks_after_200_sessions_of_every_ending(forwarder: Forwarder) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0]:
        before = open_fds()
        for index in range(200):
            pair = await open_relay(listeners[0])
            try:
                await _one_session(forwarder, pair, ENDINGS[index % len(ENDINGS)])
            finally:
                await pair.aclose()
        pool = pool_of(forwarder)
        if pool is not None:
            assert pool.in_use == 0
            assert pool.idle <= pool.max_idle
            pool.clear()
        assert open_fds() == before


@linux_only
async def test_idle_session_holds_no_pipe() -> None:
    pool = PipePool(65536, max_idle=0)  # nothing kept: any pipe fd seen below is one a session holds
    forwarder = SpliceForwarder(65536, pool)
    baseline = pipe_fds()
    async with relay() as pair, trio.open_nursery() as nursery:
        nursery.start_soon(forward, forwarder, pair, Traffic())
        for _ in range(3):
            await pair.client.send_all(b"ping" * 10_000)
            await exact(pair.backend, 40_000)
            await pair.backend.send_all(b"pong" * 10_000)
            await exact(pair.client, 40_000)
            await trio.testing.wait_all_tasks_blocked()
            assert pool.in_use == 0
            assert pipe_fds() == baseline
        nursery.cancel_scope.cancel()


@linux_only
async def test_busy_session_borrows_a_pipe_and_gives_it_back() -> None:
    pool = PipePool(65536, max_idle=2)
    forwarder = SpliceForwarder(65536, pool)
    size = 8 * MIB
    async with relay() as pair, trio.open_nursery() as nursery:
        # Small buffers toward the client, so 8 MiB cannot all hide in the kernel while it does not read.
        pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        pair.proxy_client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        nursery.start_soon(forward, forwarder, pair, Traffic())
        nursery.start_soon(pair.backend.send_all, blob(12, size))
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_use == 1  # stuck on a full client with bytes in its pipe
        await exact(pair.client, size)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.in_use == 0  # the source ran dry: the pipe went back
        assert pool.idle == 1
        nursery.cancel_scope.cancel()
    pool.clear()
    assert pool.idle == 0


# --- splice fallbacks -------------------------------------------------------------------------------------


def _is_pipe(fd: int) -> bool:
    return stat.S_ISFIFO(os.fstat(fd).st_mode)


@linux_only
@pytest.mark.parametrize("refused", ["socket_to_pipe", "pipe_to_socket", "no_pipe"])
async def test_splice_refused_falls_back_to_copy_with_one_warning(
    refused: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_splice = os.splice
    refusals = 0

    def refusing_splice(src: int, dst: int, count: int, *args: Any) -> int:
        nonlocal refusals
        wanted = _is_pipe(src) if refused == "pipe_to_socket" else _is_pipe(dst)
        if wanted and refusals == 0:
            refusals += 1
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_splice(src, dst, count, *args)

    def no_pipe(flags: int) -> tuple[int, int]:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    if refused == "no_pipe":
        monkeypatch.setattr(_pipes, "pipe_fn", no_pipe)
    else:
        monkeypatch.setattr(_splice, "os_splice", refusing_splice)
    caplog.set_level(logging.WARNING, logger="infrarust.transport")
    pool = PipePool(65536, max_idle=2)
    up, down = blob(8, 6 * MIB), blob(9, 6 * MIB)
    at_backend, at_client = Received(), Received()
    async with relay() as pair, trio.open_nursery() as nursery:
        nursery.start_soon(send_then_eof, pair.client, up)
        nursery.start_soon(send_then_eof, pair.backend, down)
        nursery.start_soon(receive_all, pair.backend, at_backend)
        nursery.start_soon(receive_all, pair.client, at_client)
        result = await forward(SpliceForwarder(65536, pool), pair, Traffic())
    assert at_backend.hexdigest() == cyclic_digest(up, len(up))
    assert at_client.hexdigest() == cyclic_digest(down, len(down))
    assert (result.client_to_backend, result.backend_to_client) == (len(up), len(down))
    assert result.reason is not ForwardEndReason.ERROR
    warnings = [r for r in caplog.records if r.name == "infrarust.transport" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "fall" in warnings[0].getMessage()
    assert refused == "no_pipe" or refusals == 1
    assert pool.in_use == 0
    pool.clear()


@linux_only
async def test_eperm_from_setpipe_sz_keeps_the_pipe_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fcntl = _pipes.fcntl_fn

    def quota_exceeded(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == _pipes.F_SETPIPE_SZ:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(_pipes, "fcntl_fn", quota_exceeded)
    pool = PipePool(1024 * 1024, max_idle=2)
    pipe = pool.acquire()
    default_size = pipe.size
    pool.release(pipe)
    assert 0 < default_size < 1024 * 1024
    data = blob(10, 4 * MIB)
    at_client = Received()
    async with relay() as pair, trio.open_nursery() as nursery:
        nursery.start_soon(send_then_eof, pair.backend, data)
        nursery.start_soon(receive_all, pair.client, at_client)
        nursery.start_soon(send_then_eof, pair.client, b"")
        result = await forward(SpliceForwarder(1024 * 1024, pool), pair, Traffic())
    assert result.backend_to_client == len(data)
    assert at_client.hexdigest() == cyclic_digest(data, len(data))
    pool.clear()


@linux_only
def test_pipe_size_is_read_back() -> None:
    pool = PipePool(100_000, max_idle=1)  # the kernel rounds up to a power of two pages
    pipe = pool.acquire()
    assert pipe.size >= 100_000
    pool.release(pipe)
    pool.release(pool.acquire())
    assert pool.idle == 1
    extra = [pool.acquire(), pool.acquire()]
    for pipe in extra:
        pool.release(pipe)
    assert pool.idle == 1  # bounded: the extra one was closed
    pool.discard(pool.acquire())
    assert (pool.idle, pool.in_use) == (0, 0)


# --- timeouts ---------------------------------------------------------------------------------------------


async def _advance_until_done(
    clock: trio.testing.MockClock, done: trio.Event, step: float, limit: int
) -> int:
    """Jump the mock clock by ``step`` until ``done`` is set; returns the number of jumps."""
    for jumps in range(1, limit + 1):
        await trio.testing.wait_all_tasks_blocked()
        if done.is_set():
            return jumps - 1
        clock.jump(step)
    await trio.testing.wait_all_tasks_blocked()
    return limit


async def test_read_timeout_ends_an_idle_session(
    forwarder: Forwarder, mock_clock: trio.testing.MockClock
) -> None:
    done = trio.Event()
    results: list[ForwardResult] = []
    async with relay() as pair, trio.open_nursery() as nursery:

        async def run() -> None:
            results.append(await forward(forwarder, pair, Traffic(), read_timeout=1.0))
            done.set()

        nursery.start_soon(run)
        jumps = await _advance_until_done(mock_clock, done, 0.3, limit=20)
    assert done.is_set()
    assert 4 <= jumps <= 5  # 1.0 s is reached on the 4th jump of 0.3 s; the watchdog ticks every 0.25 s
    (result,) = results
    assert result.reason is ForwardEndReason.ERROR
    assert result.error == "idle for 1s"


async def test_read_timeout_spares_a_busy_session(
    forwarder: Forwarder, mock_clock: trio.testing.MockClock
) -> None:
    traffic = Traffic()
    async with relay() as pair, trio.open_nursery() as nursery:
        results: list[ForwardResult] = []

        async def run() -> None:
            results.append(await forward(forwarder, pair, traffic, read_timeout=1.0))

        nursery.start_soon(run)
        for index in range(12):  # 12 x 0.4 s: far past the timeout in total, never idle for 1 s
            sender, receiver = (pair.client, pair.backend) if index % 2 else (pair.backend, pair.client)
            await sender.send_all(b"tick")
            await exact(receiver, 4)
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.4)
            await trio.testing.wait_all_tasks_blocked()
            assert not results
        await pair.client.send_eof()
        await assert_eof(pair.backend)
        await pair.backend.send_eof()
        await assert_eof(pair.client)
    (result,) = results
    assert result.reason is ForwardEndReason.CLIENT_CLOSED
    assert (result.client_to_backend, result.backend_to_client) == (24, 24)


async def test_write_timeout_ends_a_session_whose_destination_does_not_read(
    forwarder: Forwarder, mock_clock: trio.testing.MockClock
) -> None:
    done = trio.Event()
    results: list[ForwardResult] = []
    async with relay() as pair, trio.open_nursery() as nursery:
        nursery.start_soon(send_forever, pair.client, blob(11, MIB))

        async def run() -> None:
            results.append(await forward(forwarder, pair, Traffic(), write_timeout=2.0))
            done.set()

        nursery.start_soon(run)
        jumps = await _advance_until_done(mock_clock, done, 0.5, limit=40)
        nursery.cancel_scope.cancel()
    assert done.is_set() and jumps <= 8
    (result,) = results
    assert result.reason is ForwardEndReason.ERROR
    assert result.error == "backend not writable for 2s"
    assert result.client_to_backend > 0


# --- selection and socket options -------------------------------------------------------------------------


def test_select_forwarder_picks_per_mode() -> None:
    for mode in ProxyMode:
        chosen = select_forwarder(mode)
        if mode is ProxyMode.ZERO_COPY and sys.platform == "linux" and hasattr(os, "splice"):
            assert isinstance(chosen, SpliceForwarder)
            assert chosen.name == "splice"
        else:
            assert isinstance(chosen, CopyForwarder)
            assert chosen.name == "copy"
        assert select_forwarder(mode) is chosen  # reused, not rebuilt per session
    if SPLICE_SUPPORTED:
        big = select_forwarder(ProxyMode.ZERO_COPY, pipe_size=1 << 20)
        assert isinstance(big, SpliceForwarder)
        assert big.pipe_size == 1 << 20 and big.pool.pipe_size == 1 << 20
        assert big is not select_forwarder(ProxyMode.ZERO_COPY)


def test_splice_forwarder_rejects_a_pool_of_another_size() -> None:
    with pytest.raises(ValueError):
        SpliceForwarder(65536, PipePool(1 << 20))


async def test_tune_socket_sets_nodelay_and_keepalive() -> None:
    async with relay() as pair:
        sock = pair.client.socket
        tune_socket(pair.client, Keepalive(time=0.2, interval=10.4, retries=0))
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        for name, value in (("TCP_KEEPIDLE", 1), ("TCP_KEEPINTVL", 11), ("TCP_KEEPCNT", 1)):
            option = getattr(socket, name, None)
            if option is not None:
                assert sock.getsockopt(socket.IPPROTO_TCP, option) == value, name
        await pair.backend.aclose()
        tune_socket(pair.backend, Keepalive())  # closed: no error
    a, b = socket.socketpair()  # not TCP: the TCP options are skipped, nothing raises
    with a, b, trio.socket.from_stdlib_socket(a) as trio_sock:
        tune_socket(trio.SocketStream(trio_sock), Keepalive())
