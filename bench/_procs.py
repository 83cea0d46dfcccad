"""Starting and stopping what the benchmark runs: the backend, the relays, the load generator.

Every process is started here and ended here, by its own pid, in ``finally`` blocks of the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bench import _proc

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BUILD = BENCH_DIR / "build"
DOMAIN = "bench.local"
PIPE_SIZE = 65536
# The "listening on" line is logged at info level; the proxy then logs one info line per session.
LOG = ("--log-level", "info")


class NotBuiltError(Exception):
    """A contender that cannot run here (not built yet, refused its configuration, missing tool)."""


def _stop(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; only ever this one pid."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
    return proc.returncode


def free_port() -> int:
    """A port that was free a moment ago (for HAProxy, which cannot report a port 0 bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Poll until something accepts on 127.0.0.1:port, the process died, or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
                return True
            except OSError:
                time.sleep(0.05)
    return False


class Backend:
    """The C sink/source/echo server (backend.c), one for the whole run."""

    def __init__(self, lowat: int) -> None:
        self.proc = subprocess.Popen(
            [str(BUILD / "backend"), "max_s=3600", f"lowat={lowat}"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCH_DIR,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            _stop(self.proc)
            raise RuntimeError(f"backend did not start: {line!r}")
        self.port = int(line.split()[1])
        self.pid = self.proc.pid
        self.stats: dict[str, Any] = {}

    def stop(self) -> None:
        _stop(self.proc)
        assert self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            last = self.proc.stdout.read().strip().splitlines()
            if last:
                self.stats = json.loads(last[-1])


class Contender:
    """Something the load generator connects to: a relay in front of the backend, or the backend."""

    name: str
    port: int
    pid: int | None  # the relay's root process; None for direct

    def stop(self) -> None:
        """End the relay (no-op for direct)."""

    def alive(self) -> bool:
        """False once the relay's process has exited."""
        return True

    def problems(self) -> str:
        """Anything the relay logged that looks wrong, for the report."""
        return ""


class Direct(Contender):
    def __init__(self, backend: Backend) -> None:
        self.name = "direct"
        self.port = backend.port
        self.pid = None


def haproxy_binary() -> str | None:
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


def haproxy_version() -> str:
    exe = haproxy_binary()
    if exe is None:
        return "not installed"
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10).stdout
    return out.splitlines()[0] if out else "unknown"


class HAProxy(Contender):
    """HAProxy in tcp mode with splice forced both ways and our pipe size.

    One thread, like one infrarust worker, so that throughput and CPU compare per core."""

    def __init__(self, backend: Backend, workdir: Path, threads: int = 1) -> None:
        exe = haproxy_binary()
        if exe is None:
            raise NotBuiltError("haproxy is not installed (run: python -m bench.setup)")
        self.name = "haproxy"
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # HAProxy refuses to start if maxconn needs more descriptors than it may open: 2 sockets per
        # connection plus a pipe pair for a quarter of them (its default maxpipes).
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        maxconn = max(1000, min(20000, (nofile - 1000) * 2 // 5))
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(
            "global\n"
            f"    maxconn {maxconn}\n"
            f"    tune.pipesize {PIPE_SIZE}\n"
            f"    nbthread {threads}\n"
            "defaults\n"
            "    mode tcp\n"
            f"    maxconn {maxconn}\n"
            "    timeout connect 5s\n"
            "    timeout client 10m\n"
            "    timeout server 10m\n"
            "    option splice-request\n"
            "    option splice-response\n"
            "listen bench\n"
            f"    bind 127.0.0.1:{self.port}\n"
            f"    server backend 127.0.0.1:{backend.port}\n"
        )
        self.log = (workdir / "haproxy.log").open("w")
        self.proc = subprocess.Popen(
            [exe, "-f", str(cfg), "-db"], stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir
        )
        self.pid = self.proc.pid
        if not wait_port(self.port, self.proc, 10.0):
            self.stop()
            raise NotBuiltError(f"haproxy did not start: {(workdir / 'haproxy.log').read_text()[-500:]}")

    def stop(self) -> None:
        try:
            _stop(self.proc)
        finally:
            self.log.close()

    def alive(self) -> bool:
        return self.proc.poll() is None


class Floor(Contender):
    """bench/floor.py: the smallest Trio relay doing infrarust's per-connection work (the design's limit)."""

    def __init__(self, backend: Backend) -> None:
        self.name = "floor"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.floor", str(backend.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            _stop(self.proc)
            raise NotBuiltError(f"floor relay did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        _stop(self.proc)

    def alive(self) -> bool:
        return self.proc.poll() is None


_LISTENING = re.compile(r"listening on \[?([0-9a-fA-F.:]+?)\]?:(\d+)")


# The admission features as conf/ turns them on, for every infrarust contender: rate limits on (with
# budgets the single bench address never exhausts: every bench connection comes from 127.0.0.1, so the
# per-IP window does all its work and refuses nothing), a loaded ban list that matches no bench client
# (player, UUID, address and CIDR bans), and the Prometheus endpoint on.
ADMISSION_RATE_LIMIT = (
    'max_connections = 100000000\nwindow = "10s"\nstatus_max = 100000000\nstatus_window = "10s"\n'
)
BANNED_PLAYERS = 1000
BANNED_ADDRESSES = 200


def write_bans(path: Path) -> None:
    """A ban file of the size a busy network keeps: names, UUIDs, single addresses and a few CIDRs."""
    stamp = "2026-01-01T00:00:00Z"
    bans: list[dict[str, Any]] = []
    for i in range(BANNED_PLAYERS):
        bans.append({"name": f"griefer{i:04d}", "reason": "bench", "created_at": stamp, "expires_at": None})
        bans.append(
            {
                "uuid": f"00000000-0000-4000-8000-{i:012d}",
                "reason": "bench",
                "created_at": stamp,
                "expires_at": None,
            }
        )
    for i in range(BANNED_ADDRESSES):
        bans.append(
            {
                "ip": f"198.51.{i // 250}.{i % 250 + 1}",
                "reason": "bench",
                "created_at": stamp,
                "expires_at": None,
            }
        )
    for cidr in ("203.0.113.0/24", "192.0.2.0/24", "100.64.0.0/10", "2001:db8::/32", "198.18.0.0/15"):
        bans.append({"ip": cidr, "reason": "bench", "created_at": stamp, "expires_at": None})
    path.write_text(json.dumps({"version": 1, "bans": bans}))


def admission_tables(workdir: Path, workers: int = 1) -> str:
    """The ``[ban]`` and ``[metrics]`` tables (files written into ``workdir``)."""
    write_bans(workdir / "bans.json")
    port = free_port()
    while workers > 1 and not all(_port_free(port + i) for i in range(1, workers)):
        port = free_port()
    return f'\n[ban]\nfile = "bans.json"\n\n[metrics]\nbind = "127.0.0.1:{port}"\n'


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# What bench/embedded.py prints once its hook and subscriber are registered again / taken away.
WATCHED_ON = "hook and subscriber on"
WATCHED_OFF = "hook and subscriber off"


class Embedded(Contender):
    """One state of a bench/embedded.py process, as a contender of its own: ``hooked`` (its no-op hook
    and subscriber registered) or ``embedded`` (taken away). :meth:`select` puts the process in it."""

    def __init__(self, process: Infrarust, hooked: bool) -> None:
        self.process = process
        self.hooked = hooked
        self.name = "hooked" if hooked else "embedded"
        self.port = process.port
        self.pid = process.pid

    def select(self) -> None:
        self.process.watch(self.hooked)

    def alive(self) -> bool:
        return self.process.alive()


class Infrarust(Contender):
    """``python -m infrarust run`` with one server routing bench.local to the backend, and the admission
    features configured as in ``conf/`` (see ``ADMISSION_RATE_LIMIT`` and :func:`admission_tables`)."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        workdir: Path,
        mode: str,
        workers: int = 1,
        embedded: bool = False,
        *,
        rate_limit: str = ADMISSION_RATE_LIMIT,
        extra: str = "",
        features: bool = True,
    ) -> None:
        self.name = name
        self.workers = workers
        self.workdir = workdir
        (workdir / "servers").mkdir(parents=True, exist_ok=True)
        cfg = workdir / "infrarust.toml"
        cfg.write_text(
            'bind = "127.0.0.1:0"\n'
            'servers_dir = "servers"\n'
            + (f"workers = {workers}\n" if workers != 1 else "")
            + "\n[rate_limit]\n"
            + rate_limit
            + f"\n[zero_copy]\npipe_size = {PIPE_SIZE}\n"
            + extra  # fleetwire: bench.fleet's [cluster]
            + (admission_tables(workdir, workers) if features else "")
        )
        (workdir / "servers" / "bench.toml").write_text(
            f'domains = ["{DOMAIN}"]\naddresses = ["127.0.0.1:{backend.port}"]\nproxy_mode = "{mode}"\n'
        )
        self.log_path = workdir / "infrarust.log"
        self.log: IO[str] = self.log_path.open("w")
        # stderr goes to a file, not a pipe: the proxy logs a line per session and must never block on
        # a full pipe, and nothing here has to spend CPU draining it during a trial.
        # embedded: bench/embedded.py, the same file served through infrarust.serve with a no-op
        # on_pre_connect hook and one events subscriber registered.
        command = (
            [sys.executable, "-m", "bench.embedded", str(cfg)]
            if embedded
            else [sys.executable, "-m", "infrarust", "run", "-c", str(cfg), "--bind", "127.0.0.1:0", *LOG]
        )
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        self.pid = self.proc.pid
        self.port = 0
        self.watched = embedded  # bench/embedded.py starts with its hook and subscriber registered

    def watch(self, on: bool, timeout: float = 10.0) -> None:
        """bench/embedded.py only: register (``on``) or take away its hook and subscriber, and return once
        the program says it did (SIGUSR1 toggles them)."""
        if on == self.watched:
            return
        line = WATCHED_ON if on else WATCHED_OFF
        seen = self.log_path.read_text(errors="replace").count(line)
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while self.log_path.read_text(errors="replace").count(line) == seen:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: no {line!r} within {timeout:g} s")
            time.sleep(0.02)
        self.watched = on

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Read the log until the ``listening on HOST:PORT`` line; NotBuiltError if it never comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            found = _LISTENING.search(text)
            if found:
                self.port = int(found.group(2))
                if wait_port(self.port, self.proc, 5.0) and self._workers_listening(deadline):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-3:])
        raise NotBuiltError(tail[-400:] or "no output")

    def _workers_listening(self, deadline: float) -> bool:
        """With workers > 1, wait until that many processes hold the listening socket: a setting
        that is accepted but does not start the processes is "not built", not a worker count."""
        listening: list[int] = []
        deadline = min(deadline, time.monotonic() + 5.0)
        while time.monotonic() < deadline and self.proc.poll() is None:
            listening = _proc.listening_processes(_proc.process_tree(self.proc.pid), self.port)
            if len(listening) >= self.workers:
                return True
            time.sleep(0.1)
        self.stop()
        raise NotBuiltError(
            f"workers = {self.workers} accepted, but {len(listening)} process(es) listen on the port"
        )

    def stop(self) -> None:
        try:
            _stop(self.proc, timeout=10.0)
        finally:
            self.log.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def problems(self) -> str:
        """Counts of warning/error/traceback lines in the proxy's log, with the first few kinds."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        bad = [ln for ln in lines if re.search(r"\b(WARNING|ERROR|CRITICAL)\b|^Traceback", ln)]
        if not bad:
            return ""
        kinds: list[str] = []
        # Errors and tracebacks first: the known start-up warnings would hide them otherwise.
        bad.sort(key=lambda ln: 0 if re.search(r"\b(ERROR|CRITICAL)\b|^Traceback", ln) else 1)
        for ln in bad:
            # Drop the timestamp so that repeats of one message count once.
            kind = re.sub(r"^\S+ \S+ ", "", ln)[:160]
            if kind not in kinds:
                kinds.append(kind)
        return f"{len(bad)} warning/error lines, e.g. " + " | ".join(kinds[:3])


def run_loadgen(args: list[str], timeout: float, cpu: int | None = None) -> dict[str, Any]:
    """Run one load generator command (pinned to `cpu` if given) and return its JSON line."""
    proc = subprocess.run(
        [str(BUILD / "loadgen"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BENCH_DIR,
        preexec_fn=None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu})),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen {' '.join(args)} failed: {proc.stderr.strip()[-300:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


class Hold:
    """A load generator that keeps idle sessions open and opens/closes them on command."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [str(BUILD / "loadgen"), "hold", f"port={port}", f"domain={DOMAIN}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=BENCH_DIR,
        )

    def command(self, line: str) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        # Each command is bounded inside the load generator (opening: 60 s).
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"hold: no answer to {line!r}")
        result: dict[str, Any] = json.loads(answer)
        return result

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    self.proc.stdin.write("quit\n")
                    self.proc.stdin.close()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
        finally:
            _stop(self.proc)


def thread_ids(pids: list[int]) -> list[int]:
    """Every thread of the given processes (CPU affinity is set per thread)."""
    tids: list[int] = []
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            tids.extend(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    return tids


@contextlib.contextmanager
def pinned(pids: list[int], cpu: int) -> Iterator[None]:
    """Run the given processes (all their threads) on one CPU for a while, then restore their masks."""
    saved: dict[int, set[int]] = {}
    try:
        for tid in thread_ids(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                saved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {cpu})
        yield
    finally:
        for tid, mask in saved.items():
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                os.sched_setaffinity(tid, mask)
