"""The command line as operators and CI harnesses use it: real processes, real signals."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import trio
from _cli_helpers import cli_process, run_to_end
from helpers import Backend, free_port, handshake, login_start, read_exactly, read_until_eof

import infrarust
from infrarust.__main__ import build_parser
from infrarust.collector import GC_THRESHOLD

ROOT = Path(__file__).resolve().parent.parent
FREE = ("--bind", "127.0.0.1:0")


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
    (tmp_path / "servers" / "main.toml").write_text('addresses = ["127.0.0.1:1"]\nproxy_mode = "full"\n')
    result = run_cli("run", "-c", str(path), "--bind", "127.0.0.1:0")
    assert result.returncode == 1
    assert re.search(r"main\.toml: proxy_mode: `full` is not supported", result.stderr), result.stderr
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


# --- version, help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_the_package_metadata(flag: str) -> None:
    result = run_cli(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"infrarust {metadata.version('infrarust')}\n"
    assert infrarust.__version__ == metadata.version("infrarust")


def walk(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser under ``parser`` (subcommands, sub-subcommands), with its full name."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from walk(child)


# infrarust/_bancli.py (not this test's module) still owes these a help text; remove them once it has one.
BAN_TARGETS_WITHOUT_HELP = {"infrarust ban player target", "infrarust unban player target"}


def test_every_option_has_help_and_every_command_examples() -> None:
    parser = build_parser("infrarust")
    missing = {
        f"{prog} {' '.join(action.option_strings) or action.dest}"
        for prog, sub in walk(parser)
        for action in sub._actions
        if not action.help and not isinstance(action, argparse._SubParsersAction)
    }
    assert missing <= BAN_TARGETS_WITHOUT_HELP
    for name in ("infrarust", "infrarust run", "infrarust check", "infrarust ping"):
        sub = dict(walk(parser))[name]
        assert sub.epilog is not None and "examples:" in sub.epilog, name
        assert "examples:" in sub.format_help()  # shown as written, not re-wrapped away


def test_help_prints_the_examples() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--expect-backend" in result.stdout
    assert "--ready-file" in run_cli("run", "--help").stdout


# --- start-up messages ----------------------------------------------------------------------------------


async def test_run_without_any_configuration_file_says_so_first(tmp_path: Path) -> None:
    async with cli_process("run", "--bind", "127.0.0.1:0", cwd=tmp_path) as cli:
        await cli.listening_port()
        assert await cli.stop() == 0
    warning, listening = cli.text.index("no configuration file"), cli.text.index("listening on")
    assert warning < listening
    line = next(line for line in cli.text.splitlines() if "no configuration file" in line)
    assert "WARNING" in line and "infrarust.toml not found" in line
    assert "built-in defaults with 0 servers" in line and "address is unknown" in line


async def test_a_configuration_file_gives_no_such_warning(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1)
    async with cli_process("run", "-c", str(path), "--bind", "127.0.0.1:0") as cli:
        await cli.listening_port()
        assert await cli.stop() == 0
    assert "no configuration file" not in cli.text


async def test_a_serving_process_raises_the_collectors_first_threshold(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1)
    async with cli_process("run", "-c", str(path), *FREE, "--log-level", "debug") as cli:
        await cli.listening_port()
        assert await cli.stop() == 0
    line = next(line for line in cli.text.splitlines() if "garbage collector tuned" in line)
    assert line.endswith(f"threshold={GC_THRESHOLD}")
    assert GC_THRESHOLD > 2_000  # above Python's own default in every supported version


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_bind_error_names_the_bind_option_when_it_set_the_address(
    tmp_path: Path, taken_port: int
) -> None:
    code, err = await run_to_end("run", "--bind", f"127.0.0.1:{taken_port}", cwd=tmp_path)
    assert code == 1
    assert f"--bind: cannot listen on 127.0.0.1:{taken_port}: Address already in use" in err
    assert "infrarust.toml: bind" not in err  # no file said it
    assert "Traceback" not in err


async def test_bind_error_names_file_and_key_when_the_file_set_the_address(
    tmp_path: Path, taken_port: int
) -> None:
    path = write_config(tmp_path, 1)
    path.write_text(f'bind = "127.0.0.1:{taken_port}"\n')
    code, err = await run_to_end("run", "-c", str(path))
    assert code == 1
    assert f"{path}: bind: cannot listen on 127.0.0.1:{taken_port}: Address already in use" in err


async def test_bad_bind_option_is_one_line(tmp_path: Path) -> None:
    code, err = await run_to_end("run", "--bind", "127.0.0.1:notaport", cwd=tmp_path)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("--bind: invalid address")


# --- --metrics-bind ---------------------------------------------------------------------------------


async def http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        return await read_until_eof(stream)


async def test_metrics_bind_option_turns_the_endpoint_on(tmp_path: Path) -> None:
    path = write_config(tmp_path, 1)  # a file without [metrics]
    port = free_port()
    async with cli_process("run", "-c", str(path), *FREE, "--metrics-bind", f"127.0.0.1:{port}") as cli:
        await cli.listening_port()
        answer = await http_get(port, "/metrics")
        assert await cli.stop() == 0
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
    assert b"\ninfrarust_" in answer


async def test_metrics_bind_error_names_the_option(tmp_path: Path, taken_port: int) -> None:
    code, err = await run_to_end("run", *FREE, "--metrics-bind", f"127.0.0.1:{taken_port}", cwd=tmp_path)
    assert code == 1
    assert f"--metrics-bind: cannot listen on 127.0.0.1:{taken_port}: Address already in use" in err
