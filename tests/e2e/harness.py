"""Processes for the end-to-end tests: the Node Minecraft server and client, and the proxy's CLI.

Long-lived processes (the proxy, one Minecraft server per version) are shared by many tests, so they
are plain ``subprocess.Popen`` objects with a reader thread per output stream; the tests poll what the
threads collected. Every wait is bounded and every process is ended by its own PID.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
import trio

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parent.parent
MINECRAFT_PROTOCOL_VERSION = "1.54.0"
EVENT_WAIT = 10.0  # seconds to wait for a server event or a proxy log line that should come at once

Event = dict[str, Any]

_LISTENING = re.compile(r"listening on (?P<host>\S+):(?P<port>\d+)")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def node_executable() -> str:
    """The ``node`` binary, with minecraft-protocol installed beside the scripts; fails (never skips)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the e2e tests need Node.js >= 20 (see tests/e2e/package.json)")
    package = E2E_DIR / "node_modules" / "minecraft-protocol" / "package.json"
    if not package.is_file():
        pytest.fail(
            f"{package} is missing: run `cd tests/e2e && npm ci --no-audit --no-fund` (make pytest does it)"
        )
    version = json.loads(package.read_text())["version"]
    if version != MINECRAFT_PROTOCOL_VERSION:
        pytest.fail(f"minecraft-protocol {version} is installed, the tests pin {MINECRAFT_PROTOCOL_VERSION}")
    return node


def parse_fields(line: str) -> dict[str, str]:
    """The ``key=value`` fields of a log line; quoted values are unquoted."""
    fields = {}
    for key, value in _FIELD.findall(line):
        fields[key] = json.loads(value) if value.startswith('"') else value
    return fields


class _Lines:
    """Lines of one output stream, collected by a daemon thread."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.closed = False
        threading.Thread(target=self._pump, args=(stream,), name=name, daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[str], bool], timeout: float) -> str | None:
        """Block until a line matches (returned), the stream closes or the time is up (``None``)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if predicate(line):
                        return line
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    return None
                self._changed.wait(remaining)

    def snapshot(self) -> list[str]:
        with self._changed:
            return list(self.lines)


class ManagedProcess:
    """A child process whose stdout and stderr are collected line by line."""

    def __init__(
        self, argv: Sequence[str], *, name: str, cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout = _Lines(self.proc.stdout, f"{name}-stdout")
        self.stderr = _Lines(self.proc.stderr, f"{name}-stderr")

    def describe(self, tail: int = 40) -> str:
        """The last lines of output, for failure messages."""
        out = "\n".join(self.stdout.snapshot()[-tail:])
        err = "\n".join(self.stderr.snapshot()[-tail:])
        return (
            f"--- {self.name} (pid {self.proc.pid}, exit code {self.proc.poll()}) ---\n"
            f"stdout:\n{out}\nstderr:\n{err}"
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code, or ``None`` if it had to be killed."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            return None

    def kill(self) -> None:
        """Make sure the process is gone (used in ``finally``)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class MinecraftServer(ManagedProcess):
    """``node mc_server.js``: an offline-mode server of one Minecraft version."""

    def __init__(self, node: str, version: str) -> None:
        super().__init__(
            [node, str(E2E_DIR / "mc_server.js"), "--version", version, "--port", "0", "--lifetime", "900"],
            name=f"mc_server {version}",
            cwd=E2E_DIR,
        )
        self.version = version
        self.port = 0

    def wait_listening(self, timeout: float) -> None:
        line = self.stdout.wait_for(lambda line: '"listening"' in line, timeout)
        if line is None:
            raise AssertionError(f"the Minecraft server did not start listening\n{self.describe()}")
        self.port = int(json.loads(line)["port"])

    def events(self) -> list[Event]:
        return [json.loads(line) for line in self.stdout.snapshot() if line.startswith("{")]

    async def wait_event(self, event: str, username: str) -> Event:
        """The first ``event`` this server printed for ``username`` (waits ``EVENT_WAIT`` at most)."""
        with trio.move_on_after(EVENT_WAIT):
            while True:
                for item in self.events():
                    if item.get("event") == event and item.get("username") == username:
                        return item
                await trio.sleep(0.02)
        raise AssertionError(f"no {event!r} event for {username} from the server\n{self.describe()}")


class Proxy(ManagedProcess):
    """``python -m infrarust run``, started from a config file, listening on a free port."""

    def __init__(self, config: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "infrarust", "run", "-c", str(config)]
        argv += ["--bind", "127.0.0.1:0", "--log-level", "info"]
        super().__init__(argv, name="proxy", cwd=config.parent, env=env)
        self.port = 0

    def wait_listening(self, timeout: float) -> None:
        line = self.stderr.wait_for(lambda line: _LISTENING.search(line) is not None, timeout)
        if line is None:
            raise AssertionError(f"the proxy never logged 'listening on HOST:PORT'\n{self.describe()}")
        match = _LISTENING.search(line)
        assert match is not None
        self.port = int(match["port"])

    def session_ends(self) -> Iterator[dict[str, str]]:
        for line in self.stderr.snapshot():
            if "session ended" in line:
                yield parse_fields(line.split("session ended", 1)[1])

    async def wait_session_end(self, player: str) -> dict[str, str]:
        """The fields of the ``session ended`` line logged for ``player`` (waits ``EVENT_WAIT`` at most)."""
        with trio.move_on_after(EVENT_WAIT):
            while True:
                for fields in self.session_ends():
                    if fields.get("player") == player:
                        return fields
                await trio.sleep(0.02)
        raise AssertionError(f"the proxy logged no 'session ended' line for {player}\n{self.describe()}")


class ClientRun:
    """The outcome of one ``node mc_client.js`` run."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.events: list[Event] = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]

    def event(self, name: str) -> Event:
        for item in self.events:
            if item.get("event") == name:
                return item
        raise AssertionError(f"the client printed no {name!r} event\n{self.describe()}")

    def describe(self) -> str:
        return (
            f"--- mc_client (exit code {self.returncode}): {' '.join(self.argv)[:300]} ---\n"
            f"stdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}"
        )


async def run_client(
    node: str,
    *,
    version: str,
    port: int,
    host: str,
    username: str,
    message: str,
    give_up_after: float = 30.0,
) -> ClientRun:
    """Run the Node client to completion (it has its own time limit; we allow a little more)."""
    argv = [node, str(E2E_DIR / "mc_client.js"), "--version", version, "--port", str(port)]
    argv += ["--host", host, "--username", username, "--message", message, "--timeout", str(give_up_after)]
    with trio.fail_after(give_up_after + 15):
        done = await trio.run_process(
            argv, cwd=E2E_DIR, capture_stdout=True, capture_stderr=True, check=False
        )
    return ClientRun(
        argv,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


# The matrix: proxy modes that relay bytes, and Minecraft versions with their protocol numbers.
MODES = ("passthrough", "zero_copy", "server_only")
VERSIONS = {"1.8.9": 47, "1.12.2": 340, "1.20.4": 765, "1.21.4": 769}
_MODE_LABELS = {"passthrough": "pt", "zero_copy": "zc", "server_only": "so"}


def server_name(mode: str, version: str) -> str:
    """The proxy's server id for one cell of the matrix, e.g. ``pt-1-20-4``."""
    return f"{_MODE_LABELS[mode]}-{version.replace('.', '-')}"


def domain(mode: str, version: str) -> str:
    """The domain routed to that server, e.g. ``pt-1-20-4.e2e.test``."""
    return f"{server_name(mode, version)}.e2e.test"


def write_config(directory: Path, backends: dict[str, int]) -> Path:
    """An ``infrarust.toml`` plus one server file per (mode, version); ``backends`` maps version to port."""
    servers = directory / "servers"
    servers.mkdir(parents=True, exist_ok=True)
    config = directory / "infrarust.toml"
    config.write_text(
        'bind = "127.0.0.1:0"\n'
        'servers_dir = "servers"\n'
        "\n"
        "# Every test client comes from 127.0.0.1: no per-IP budget.\n"
        "[rate_limit]\n"
        "max_connections = 0\n"
        "status_max = 0\n"
        "\n"
        "[ban]\n"
        f"file = {json.dumps(str(directory / 'bans.json'))}\n"
    )
    for mode in MODES:
        for version, port in backends.items():
            (servers / f"{server_name(mode, version)}.toml").write_text(
                f"domains = [{json.dumps(domain(mode, version))}]\n"
                f'addresses = ["127.0.0.1:{port}"]\n'
                f'proxy_mode = "{mode}"\n'
            )
    return config
