"""``workers = N``: N proxy processes sharing one port through SO_REUSEPORT, under a supervising process.

The supervisor reserves the port (so ``:0`` means one free port for all), starts each worker as
``python -m infrarust run`` with hidden worker options, waits until every worker listens, then logs the one
``listening on`` line and announces readiness (ready file, ``sd_notify``). A worker that dies is started
again (at most once per ``RESTART_DELAY``); SIGTERM / SIGINT / SIGHUP are passed on to every worker. Each
worker is its own trio run and loads the same file, so a SIGHUP reload reaches them all.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from infrarust._readiness import NOTIFY_SOCKET
from infrarust.config import Address, ProxyConfig
from infrarust.metrics import serve_worker_metrics

logger = logging.getLogger("infrarust")

RESTART_DELAY = 1.0
PARENT_CHECK_INTERVAL = 1.0
# Time a worker has to start listening before the supervisor gives up on the start.
START_TIMEOUT = 30.0
# Time workers have to end their sessions after the supervisor passes shutdown on.
STOP_TIMEOUT = 30.0


@attrs.define(eq=False)
class _Worker:
    index: int
    process: trio.Process | None = None
    ready: bool = False  # listening, with its signal handlers in place
    stopping: bool = False  # set before the supervisor ends it, so its exit is not taken for a crash


def reserve_port(bind: Address) -> tuple[socket.socket, Address]:
    """Bind (without listening) a SO_REUSEPORT socket on ``bind``, fixing the port for every worker.

    A bound socket that does not listen takes no connections, but keeps a ``:0`` port the same for all
    workers and keeps other users' processes from taking it between worker restarts.
    """
    infos = socket.getaddrinfo(bind.host, bind.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    name = sock.getsockname()
    return sock, Address(name[0], name[1])


async def watch_parent(on_orphaned: trio.CancelScope, *, interval: float = PARENT_CHECK_INTERVAL) -> None:
    """Cancel ``on_orphaned`` (ending this worker like a SIGTERM) once its supervisor is gone.

    Polling the parent PID rather than prctl(PR_SET_PDEATHSIG): that signal follows the *thread* that
    started the process, and trio starts processes from worker threads that end when idle.
    """
    parent = os.getppid()
    while os.getppid() == parent:  # noqa: ASYNC110 (no event exists for "my parent died")
        await trio.sleep(interval)
    logger.warning("supervisor gone, shutting down pid=%d", parent)
    on_orphaned.cancel()


def notify_ready(fd: int) -> None:
    """Tell the supervisor this worker listens (one byte on the inherited pipe), then close the pipe."""
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)


async def _nothing(address: str) -> None:
    pass


async def supervise(
    config: ProxyConfig,
    config_path: str | None,
    log_level: str,
    *,
    worker_args: Sequence[str] = (),
    on_ready: Callable[[str], Awaitable[None]] = _nothing,
    on_stopping: Callable[[], None] = lambda: None,
) -> None:
    """Run ``config.workers`` worker processes until SIGINT/SIGTERM; pass SIGHUP on as a reload.

    ``worker_args`` are added to each worker's command line. ``on_ready(address)`` runs once every worker
    listens (after the ``listening on`` line); ``on_stopping()`` when a signal starts the shutdown.
    """
    reserved, address = reserve_port(config.bind)
    workers = [_Worker(index) for index in range(1, config.workers + 1)]
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                if config.metrics is not None:  # one endpoint for all workers, started before them
                    await nursery.start(serve_worker_metrics, config.metrics.bind)
                with trio.fail_after(START_TIMEOUT):
                    for worker in workers:
                        await nursery.start(
                            _keep_running, worker, address, config_path, log_level, worker_args
                        )
                logger.info("listening on %s workers=%d", address, len(workers))
                await on_ready(str(address))
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        _signal_all(workers, signal.SIGHUP)
                        continue
                    logger.info(
                        "shutting down signal=%s workers=%d", signal.Signals(signum).name, len(workers)
                    )
                    on_stopping()
                    break
                for worker in workers:
                    worker.stopping = True
                _signal_all(workers, signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT):
                    for worker in workers:
                        if worker.process is not None:
                            await worker.process.wait()
                _signal_all(workers, signal.SIGKILL)
                nursery.cancel_scope.cancel()  # the metrics endpoint, if any
    finally:
        reserved.close()


def _signal_all(workers: list[_Worker], signum: int) -> None:
    # A worker still starting has no handlers yet (SIGHUP would kill it); it reads the current file anyway.
    for worker in workers:
        if (
            worker.process is not None
            and worker.process.returncode is None
            and (worker.ready or signum != signal.SIGHUP)
        ):
            worker.process.send_signal(signum)


async def _keep_running(
    worker: _Worker,
    address: Address,
    config_path: str | None,
    log_level: str,
    worker_args: Sequence[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start a worker, report once it listens, and start it again whenever it dies unasked."""
    first = True
    while True:
        began = trio.current_time()
        try:
            process = await _start(worker, address, config_path, log_level, worker_args)
        except _NotReady as exc:
            if worker.stopping:
                return
            if first:
                raise WorkerStartError(str(exc)) from None
            logger.error("worker failed to start worker=%d error=%s", worker.index, exc)
        else:
            worker.ready = True
            logger.info("worker started worker=%d pid=%d", worker.index, process.pid)
            if first:
                task_status.started()
                first = False
            code = await process.wait()
            worker.ready = False
            if worker.stopping:
                return
            logger.error("worker exited worker=%d code=%d restarting=yes", worker.index, code)
        await trio.sleep(max(0.0, RESTART_DELAY - (trio.current_time() - began)))


class _NotReady(Exception):
    pass


class WorkerStartError(Exception):
    """A worker exited before it listened at the first start (its own error line says why)."""


async def _start(
    worker: _Worker, address: Address, config_path: str | None, log_level: str, worker_args: Sequence[str]
) -> trio.Process:
    """Start one worker process and wait until it says it listens."""
    read_fd, write_fd = os.pipe()
    command = [sys.executable, "-m", "infrarust", "run", "--bind", str(address), "--log-level", log_level]
    if config_path is not None:
        command += ["-c", config_path]
    command += [*worker_args, "--worker-id", str(worker.index), "--ready-fd", str(write_fd)]
    # Readiness is the supervisor's to announce: systemd takes it from the main process only anyway.
    env = {name: value for name, value in os.environ.items() if name != NOTIFY_SOCKET}
    try:
        worker.process = await trio.lowlevel.open_process(command, pass_fds=(write_fd,), env=env)
    finally:
        os.close(write_fd)
    async with trio.lowlevel.FdStream(read_fd) as ready:
        if await ready.receive_some(1) == b"1":
            return worker.process
    code = await worker.process.wait()
    raise _NotReady(f"worker {worker.index} exited before listening (code {code})")
