"""A real ``redis-server`` (Debian's package) for the fleet tests: started on a free loopback port without
persistence, frozen (SIGSTOP), stopped and restarted empty, always ended by its own PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from helpers import free_port

from infrarust.config import RedisUrl

STARTUP_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """The ``redis-server`` binary; fails (never skips) when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `make test` installs it (apt-get install redis-server)")
    return binary


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``restart()`` brings it back empty on the same port."""

    def __init__(self, *, password: str | None = None, tls: bool = False) -> None:
        self.binary = redis_server_binary()
        self.port = free_port()
        self.password = password
        self.tls = tls
        self.folder = Path(tempfile.mkdtemp(prefix="infrarust-redis-"))
        self.cert = self.folder / "cert.pem"
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def url(self, db: int = 0, password: str | None = None) -> RedisUrl:
        """The URL of this server (with its password unless another is given)."""
        return RedisUrl("127.0.0.1", self.port, db, tls=self.tls, password=password or self.password)

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        argv += ["no", "--dir", str(self.folder), "--loglevel", "warning", "--daemonize", "no"]
        if self.tls:
            self._make_certificate()
            argv[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            argv += ["--tls-cert-file", str(self.cert), "--tls-key-file", str(self.folder / "key.pem")]
            argv += ["--tls-auth-clients", "no"]
        if self.password is not None:
            argv += ["--requirepass", self.password]
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the process writes it
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start:\n{self.log()}")
            time.sleep(0.01)

    def _make_certificate(self) -> None:
        """A self-signed certificate for 127.0.0.1 (Debian's openssl command)."""
        if self.cert.exists():
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.fail("openssl is not installed: `make test` installs it (apt-get install openssl)")
        argv = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        argv += ["-nodes", "-keyout", str(self.folder / "key.pem"), "-out", str(self.cert), "-days", "1"]
        argv += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                sock = raw
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.cert))
                    sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
                sock.sendall(b"PING\r\n")
                answer = sock.recv(64)
        except OSError:
            return False
        return answer.startswith((b"+PONG", b"-NOAUTH"))

    def log(self) -> str:
        return (self.folder / "redis.log").read_text(errors="replace")

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        """End the process by its PID (SIGTERM, then SIGKILL); its data is gone (no persistence)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if self.frozen:
            self.thaw_pid(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def thaw_pid(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def restart(self) -> None:
        """Stop, then start again on the same port: an empty Redis."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
