"""The real command line in a subprocess: start it, read its stderr as it comes, stop it by its own PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
PROCESS_LIMIT = 30.0  # a generous bound on one CLI step, interpreter start included


class CliProcess:
    """A running ``python -m infrarust ...`` and everything it wrote to stderr so far."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.log = bytearray()

    @property
    def text(self) -> str:
        return self.log.decode(errors="replace")

    async def read_until(self, pattern: bytes, timeout: float = PROCESS_LIMIT) -> re.Match[bytes]:
        """Read stderr until ``pattern`` appears in it; fails if the process ends or time runs out first."""
        assert self.process.stderr is not None
        with trio.move_on_after(timeout):
            while not (match := re.search(pattern, self.log)):
                chunk = await self.process.stderr.receive_some()
                assert chunk, f"the process ended before {pattern!r}:\n{self.text}"
                self.log += chunk
            return match
        raise AssertionError(f"{pattern!r} not seen within {timeout}s in:\n{self.text}")

    async def listening_port(self) -> int:
        return int((await self.read_until(rb"listening on 127\.0\.0\.1:(\d+)")).group(1))

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum``, read stderr to its end, and return the exit code."""
        assert self.process.stderr is not None
        self.process.send_signal(signum)
        return await self.finish()

    async def finish(self) -> int:
        """Read stderr to its end and return the exit code."""
        assert self.process.stderr is not None
        with trio.fail_after(PROCESS_LIMIT):
            while chunk := await self.process.stderr.receive_some():
                self.log += chunk
            return await self.process.wait()


@asynccontextmanager
async def cli_process(
    *args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> AsyncIterator[CliProcess]:
    """``python -m infrarust ARGS`` with stderr piped; killed (by its PID) if still running at the end."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "infrarust", *args],
        cwd=cwd,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    try:
        yield CliProcess(process)
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()


async def run_to_end(*args: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """Run ``python -m infrarust ARGS`` to completion (bounded); its exit code and stderr."""
    async with cli_process(*args, cwd=cwd, env=env) as cli:
        code = await cli.finish()
    return code, cli.text
