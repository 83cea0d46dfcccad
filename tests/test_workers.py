"""``workers = N``: a supervisor with N SO_REUSEPORT worker processes, as a real process tree."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio
from helpers import Backend, handshake, login_start, read_exactly

ROOT = Path(__file__).resolve().parent.parent


def worker_pids(parent: int) -> set[int]:
    """PIDs of the live (not zombie) children of ``parent``, read from /proc."""
    children: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z":
            children.add(int(entry))
    return children


def is_running(pid: int) -> bool:
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


class Supervisor:
    """A ``python -m infrarust`` process with workers, and everything it wrote to stderr."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = bytearray()

    async def read_until(self, pattern: bytes, count: int = 1) -> None:
        assert self.process.stderr is not None
        with trio.move_on_after(20):
            while len(re.findall(pattern, self.log)) < count:
                chunk = await self.process.stderr.receive_some()
                assert chunk, self.log.decode()
                self.log += chunk
            return
        raise AssertionError(f"{pattern!r} x{count} not seen in:\n{self.log.decode()}")


async def relay_once(port: int, name: str) -> None:
    client = await trio.open_tcp_stream("127.0.0.1", port)
    first = handshake("w.test") + login_start(name)
    await client.send_all(first)
    assert await read_exactly(client, len(first)) == first
    await client.aclose()


async def test_workers_share_the_port_restart_and_stop_together(tmp_path: Path, backend: Backend) -> None:
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "w.toml").write_text(
        f'domains = ["w.test"]\naddresses = ["127.0.0.1:{backend.port}"]\n'
    )
    (tmp_path / "infrarust.toml").write_text("workers = 2\n[rate_limit]\nmax_connections = 0\n")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "infrarust", "-c", str(tmp_path / "infrarust.toml"), "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    supervisor = Supervisor(process)
    try:
        await supervisor.read_until(rb"listening on 127\.0\.0\.1:\d+")
        match = re.search(rb"listening on 127\.0\.0\.1:(\d+) workers=2", supervisor.log)
        assert match, supervisor.log.decode()
        port = int(match.group(1))
        first_workers = worker_pids(process.pid)
        assert len(first_workers) == 2

        # Both workers take connections: the kernel spreads them over the two listeners.
        for index in range(40):
            await relay_once(port, f"p{index}")
        await supervisor.read_until(rb"session ended", 40)
        served_by = set(re.findall(rb"worker=(\d) session ended", supervisor.log))
        assert served_by == {b"1", b"2"}

        # A worker that dies is started again, and the port keeps answering meanwhile.
        victim = min(first_workers)
        os.kill(victim, signal.SIGKILL)
        await supervisor.read_until(rb"worker exited worker=\d code=-9 restarting=yes")
        with trio.fail_after(20):
            while b"worker started worker=" not in supervisor.log.split(b"restarting=yes", 1)[1]:
                await relay_once(port, "during")
                await supervisor.read_until(rb"session ended", supervisor.log.count(b"session ended") + 1)
        await supervisor.read_until(rb"worker started worker=\d", 3)
        assert victim not in worker_pids(process.pid) and len(worker_pids(process.pid)) == 2
        await relay_once(port, "after")

        # SIGHUP reaches every worker.
        process.send_signal(signal.SIGHUP)
        await supervisor.read_until(rb"configuration reloaded", 2)
        assert set(re.findall(rb"worker=(\d) configuration reloaded", supervisor.log)) == {b"1", b"2"}

        workers = worker_pids(process.pid)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await process.wait() == 0
        assert not any(map(is_running, workers))  # every worker is gone, none orphaned
        assert supervisor.log.count(b"listening on") == 1
    finally:
        if process.returncode is None:
            for pid in worker_pids(process.pid):
                os.kill(pid, signal.SIGKILL)
            process.kill()
            await process.wait()


async def test_workers_end_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    (tmp_path / "infrarust.toml").write_text("workers = 2\n")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "infrarust", "-c", str(tmp_path / "infrarust.toml"), "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    supervisor = Supervisor(process)
    workers: set[int] = set()
    try:
        await supervisor.read_until(rb"listening on")
        workers = worker_pids(process.pid)
        assert len(workers) == 2
        process.kill()  # SIGKILL: the supervisor cannot pass anything on
        await process.wait()
        with trio.fail_after(15):
            while any(map(is_running, workers)):
                await trio.sleep(0.1)
    finally:
        for pid in filter(is_running, workers):
            os.kill(pid, signal.SIGKILL)


async def test_a_worker_that_cannot_start_is_an_error_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:  # the metrics port is already in use, so worker 1 cannot start
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "infrarust.toml").write_text(f'workers = 2\n[metrics]\nbind = "127.0.0.1:{port}"\n')
        result = await trio.run_process(
            [
                sys.executable,
                "-m",
                "infrarust",
                "-c",
                str(tmp_path / "infrarust.toml"),
                "--bind",
                "127.0.0.1:0",
            ],
            cwd=ROOT,
            capture_stderr=True,
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 1
    # Under workers = N the supervisor serves the one metrics endpoint (infrarust.metrics), so it is the
    # supervisor that cannot listen, before any worker starts.
    assert "metrics.bind: cannot listen on" in stderr, stderr
    assert "Traceback" not in stderr
