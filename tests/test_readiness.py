"""Readiness as a service manager or a script sees it: ``sd_notify`` datagrams and ``--ready-file``.

The proxy runs as the real command line in a subprocess; the test plays systemd with a datagram socket of
its own named in ``NOTIFY_SOCKET``, and reads what the proxy sends.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from _cli_helpers import cli_process, run_to_end

from infrarust._readiness import Readiness, sd_notify

WAIT = 20.0
LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


@contextmanager
def notify_socket(abstract: bool = False) -> Iterator[tuple[trio.socket.SocketType, str]]:
    """A datagram socket standing in for systemd's, and the ``NOTIFY_SOCKET`` value that names it.

    The path lives in a short temporary folder: unix socket paths are limited to 107 bytes.
    """
    plain = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with plain, tempfile.TemporaryDirectory(prefix="ir-") as folder:
        if abstract:
            name = f"infrarust-test-{secrets.token_hex(8)}"
            plain.bind("\0" + name)
            value = "@" + name
        else:
            value = os.path.join(folder, "notify")
            plain.bind(value)
        yield trio.socket.from_stdlib_socket(plain), value


async def receive(sock: trio.socket.SocketType, timeout: float = WAIT) -> dict[str, str]:
    """One sd_notify datagram as its ``KEY=value`` lines."""
    with trio.fail_after(timeout):
        data = await sock.recv(4096)
    return dict(line.split("=", 1) for line in data.decode().split("\n") if line)


def listening_sockets(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (each SO_REUSEPORT worker has its own)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if local == f"0100007F:{port:04X}" and state == LISTEN_STATE:
            count += 1
    return count


def write_config(folder: Path, extra: str = "") -> Path:
    (folder / "servers").mkdir()
    path = folder / "infrarust.toml"
    path.write_text(f'bind = "127.0.0.1:0"\n{extra}')
    return path


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
async def test_sd_notify_ready_once_listening_then_stopping(tmp_path: Path, abstract: bool) -> None:
    config = write_config(tmp_path)
    ready_file = tmp_path / "ready"
    with notify_socket(abstract) as (sock, name):
        env = {**os.environ, "NOTIFY_SOCKET": name}
        async with cli_process("run", "-c", str(config), "--ready-file", str(ready_file), env=env) as cli:
            ready = await receive(sock)
            assert ready["READY"] == "1", ready
            address = ready["STATUS"].removeprefix("listening on ")
            host, port = address.rsplit(":", 1)
            assert host == "127.0.0.1"
            # Ready means listening: the port takes connections the moment READY=1 is sent.
            assert listening_sockets(int(port)) == 1
            await (await trio.open_tcp_stream(host, int(port))).aclose()
            assert ready_file.read_text() == f"{address}\n"
            assert await cli.listening_port() == int(port)
            cli.process.terminate()
            stopping = await receive(sock)
            assert stopping["STOPPING"] == "1", stopping
            assert await cli.finish() == 0
    assert not ready_file.exists()
    assert "Traceback" not in cli.text


async def test_workers_are_ready_once_every_worker_listens(tmp_path: Path) -> None:
    config = write_config(tmp_path, "workers = 2\n")
    ready_file = tmp_path / "ready"
    with notify_socket(abstract=True) as (sock, name):
        env = {**os.environ, "NOTIFY_SOCKET": name}
        async with cli_process("-c", str(config), "--ready-file", str(ready_file), env=env) as cli:
            ready = await receive(sock)
            assert ready["READY"] == "1", ready
            port = int(ready["STATUS"].rsplit(":", 1)[1])
            # Both workers' SO_REUSEPORT sockets listen by the time the supervisor says READY=1.
            assert listening_sockets(port) == 2
            assert ready_file.read_text() == f"127.0.0.1:{port}\n"
            await cli.read_until(rb"listening on 127\.0\.0\.1:\d+ workers=2")
            assert cli.text.count("worker started") == 2
            # Workers do not get NOTIFY_SOCKET: nothing else arrives before the shutdown says STOPPING=1.
            cli.process.terminate()
            assert (await receive(sock))["STOPPING"] == "1"
            assert await cli.finish() == 0
    assert not ready_file.exists()


async def test_ready_file_cannot_be_written_is_one_line_and_exit_1(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    target = tmp_path / "missing-folder" / "ready"
    code, err = await run_to_end("run", "-c", str(config), "--ready-file", str(target))
    assert code == 1, err
    assert f"--ready-file: cannot write {target}: No such file or directory" in err
    assert "Traceback" not in err


async def test_stale_ready_file_is_removed_even_when_the_start_fails(tmp_path: Path) -> None:
    """A file left by a killed run must not announce this one: it goes before listening is tried."""
    ready_file = tmp_path / "ready"
    ready_file.write_text("127.0.0.1:1\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = await run_to_end(
            "run", "--bind", f"127.0.0.1:{port}", "--ready-file", str(ready_file), cwd=tmp_path
        )
    assert code == 1, err
    assert not ready_file.exists()


def test_sd_notify_without_notify_socket_sends_nothing() -> None:
    assert sd_notify("READY=1", {}) is False


def test_sd_notify_to_a_socket_nobody_reads_is_a_warning_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert "sd_notify failed state=READY=1" in caplog.text


def test_sd_notify_refuses_non_unix_addresses(caplog: pytest.LogCaptureFixture) -> None:
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    assert "unsupported NOTIFY_SOCKET" in caplog.text


async def test_readiness_writes_the_file_atomically_and_close_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "ready"
    path.write_text("stale\n")
    readiness = Readiness(path, environ={})
    assert not path.exists()  # removed when the run begins
    await readiness.ready("[::1]:25565")
    assert path.read_text() == "[::1]:25565\n"
    assert sorted(os.listdir(tmp_path)) == ["ready"]  # no temporary file left
    readiness.close()
    readiness.close()  # twice is fine
    assert not path.exists()
