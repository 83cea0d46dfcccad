"""The command line as operators and CI harnesses use it: real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import trio
from helpers import Backend, handshake, login_start, read_exactly

ROOT = Path(__file__).resolve().parent.parent


def write_config(folder: Path, backend_port: int, mode: str = "passthrough") -> Path:
    (folder / "servers").mkdir()
    (folder / "servers" / "main.toml").write_text(
        f'domains = ["cli.test"]\naddresses = ["127.0.0.1:{backend_port}"]\nproxy_mode = "{mode}"\n'
    )
    path = folder / "infrarust.toml"
    path.write_text('bind = "127.0.0.1:25565"\nhandshake_timeout = "2s"\n')
    return path


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infrarust", *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def test_check_accepts_the_shipped_configuration() -> None:
    result = run_cli("check", "-c", "conf/infrarust.toml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_names_file_and_key_and_exits_1(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1)
    path.write_text('bind = "127.0.0.1:25565"\nhandshake_timeout = "soon"\n')
    result = run_cli("check", "-c", str(path))
    assert result.returncode == 1
    assert re.search(r"infrarust\.toml: handshake_timeout: .+", result.stderr), result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_bad_file_without_a_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1)
    (tmp_path / "servers" / "main.toml").write_text('addresses = ["127.0.0.1:1"]\nproxy_mode = "offline"\n')
    result = run_cli("run", "-c", str(path), "--bind", "127.0.0.1:0")
    assert result.returncode == 1
    assert re.search(r"main\.toml: proxy_mode: .*not supported yet", result.stderr), result.stderr
    assert "Traceback" not in result.stderr


async def test_run_listens_relays_and_stops_on_sigterm_with_shutdown(
    tmp_path: Path, backend: Backend, nursery: trio.Nursery
) -> None:
    path = write_config(tmp_path, backend.port)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "infrarust", "-c", str(path), "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    log = bytearray()
    try:
        with trio.fail_after(20):
            while not (match := re.search(rb"listening on 127\.0\.0\.1:(\d+)", log)):
                chunk = await process.stderr.receive_some()
                assert chunk, log.decode()
                log += chunk
        port = int(match.group(1))
        client = await trio.open_tcp_stream("127.0.0.1", port)
        first = handshake("cli.test") + login_start("Herobrine")
        await client.send_all(first)
        assert await read_exactly(client, len(first)) == first
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            while chunk := await process.stderr.receive_some():
                log += chunk
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
    text = log.decode()
    assert text.count("listening on") == 1
    line = next(line for line in text.splitlines() if "session ended" in line)
    assert "server=main player=Herobrine mode=passthrough" in line
    assert f"c2b={len(first)} b2c={len(first)} reason=Shutdown" in line
