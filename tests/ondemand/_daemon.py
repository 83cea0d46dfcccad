"""A private Docker daemon for the tests, and the few Engine API calls they make to set up containers.

The daemon runs with its own data root, exec root, pidfile and socket in a fresh folder under /tmp (short
paths: unix socket paths are limited to 107 bytes), without a bridge or iptables rules, so it never touches
the machine's own Docker, if any, nor its network. It is stopped by its PID. No registry is reachable, so
the one image is imported from an empty tarball; containers bind-mount the host's /usr (and the /lib,
/bin... links into it), /etc and the e2e folder read-only and use host networking, so they run the host's
Node and the tests' own Minecraft server on 127.0.0.1.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

IMAGE = "infrarust-test-empty:latest"
STARTUP_TIMEOUT = 60.0
E2E_DIR = Path(__file__).resolve().parent.parent / "e2e"
HOST_MOUNTS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")


class DockerDaemon:
    """``dockerd`` started by the tests; :meth:`restart` stops and starts it on the same folders."""

    def __init__(self) -> None:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            pytest.fail("dockerd is not installed: `apt-get install -y docker.io` (make test does it)")
        self.dockerd = dockerd
        self.root = Path(tempfile.mkdtemp(prefix="irdk-", dir="/tmp"))
        self.socket_path = self.root / "docker.sock"
        self.endpoint = f"unix://{self.socket_path}"
        self.log_path = self.root / "dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            self.dockerd,
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host={self.endpoint}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"dockerd exited with code {self.process.returncode}\n{self.describe()}")
            if self.answers():
                return
            time.sleep(0.1)
        pytest.fail(f"dockerd did not answer within {STARTUP_TIMEOUT}s\n{self.describe()}")

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return client.get("/_ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM (dockerd stops its containers and its containerd), SIGKILL after 30 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def describe(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        return "--- dockerd log (last lines) ---\n" + "\n".join(lines[-30:])

    def client(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket_path)), base_url="http://docker"
        )

    def import_empty_image(self) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w"):
            pass
        repo, tag = IMAGE.split(":")
        with self.client() as client:
            response = client.post(
                "/images/create",
                params={"fromSrc": "-", "repo": repo, "tag": tag},
                content=buffer.getvalue(),
                headers={"Content-Type": "application/x-tar"},
                timeout=60,
            )
            response.raise_for_status()

    def cleanup(self) -> None:
        """Remove the folder, after the mounts dockerd leaves behind (its network namespace handle)."""
        prefix = f"{self.root}/"
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", point], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def free_port() -> int:
    """A loopback port nobody listens on right now (the container binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def minecraft_container(
    *,
    port: int,
    labels: dict[str, str] | None = None,
    restart_always: bool = False,
    healthcheck: bool = False,
    health_port: int | None = None,
    version: str = "1.20.4",
) -> dict[str, Any]:
    """The create body of a container running the tests' Minecraft server on 127.0.0.1:``port``."""
    node = shutil.which("node") or "node"
    binds = [f"{path}:{path}:ro" for path in HOST_MOUNTS if os.path.exists(path)]
    binds.append(f"{E2E_DIR}:{E2E_DIR}:ro")
    body: dict[str, Any] = {
        "Image": IMAGE,
        "Cmd": [
            node,
            str(E2E_DIR / "mc_server.js"),
            *("--version", version, "--port", str(port)),
            "--lifetime",
            "600",
        ],
        "WorkingDir": str(E2E_DIR),
        "Labels": labels or {},
        "HostConfig": {
            "NetworkMode": "host",
            "Binds": binds,
            "RestartPolicy": {"Name": "always" if restart_always else "no"},
        },
    }
    if healthcheck:
        # Healthy once something listens on the port: a bare TCP connect, by the host's Node.
        probe = (
            f"require('net').connect({health_port or port}, '127.0.0.1')"
            ".on('connect', () => process.exit(0)).on('error', () => process.exit(1))"
        )
        body["Healthcheck"] = {
            "Test": ["CMD", node, "-e", probe],
            "Interval": 200_000_000,  # nanoseconds
            "Timeout": 1_000_000_000,
            "Retries": 3,
            "StartPeriod": 0,
        }
    return body


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


class Containers:
    """Async container set-up calls for the tests (the code under test has its own client)."""

    def __init__(self, daemon: DockerDaemon) -> None:
        self.daemon = daemon
        self.created: list[str] = []

    def _client(self) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.daemon.socket_path))
        return httpx.AsyncClient(transport=transport, base_url="http://docker", timeout=30)

    async def create(self, name: str, body: dict[str, Any]) -> None:
        async with self._client() as client:
            response = await client.post("/containers/create", params={"name": name}, json=body)
            assert response.status_code == 201, response.text
        self.created.append(name)

    async def start(self, name: str) -> None:
        async with self._client() as client:
            response = await client.post(f"/containers/{name}/start")
            assert response.status_code in (204, 304), response.text

    async def run(self, name: str, body: dict[str, Any]) -> None:
        await self.create(name, body)
        await self.start(name)

    async def stop(self, name: str) -> None:
        async with self._client() as client:
            response = await client.post(f"/containers/{name}/stop", params={"t": "5"})
            assert response.status_code in (204, 304), response.text

    async def inspect(self, name: str) -> dict[str, Any]:
        async with self._client() as client:
            response = await client.get(f"/containers/{name}/json")
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()
            return result

    async def remove_all(self) -> None:
        async with self._client() as client:
            for name in self.created:
                await client.delete(f"/containers/{name}", params={"force": "true"})
        self.created.clear()
