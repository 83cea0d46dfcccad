"""``python -m infrarust ping`` as operators and CI jobs run it: a real process against a real listener."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from _status_helpers import free_port, start_fake_status_server, start_silent_server, status_json
from helpers import proxy_config, server, start_proxy

from infrarust.config._models import Address, Motd
from infrarust.protocol import Handshake, NextState

ROOT = Path(__file__).resolve().parent.parent
PROCESS_LIMIT = 30.0  # a generous bound on one CLI run, interpreter start included
BIND_FREE = ("--bind", "127.0.0.1:0")


async def run_ping(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the ping command to completion; trio kills it (by its own PID) if the bound is hit."""
    with trio.fail_after(PROCESS_LIMIT):
        return await trio.run_process(
            [sys.executable, "-m", "infrarust", "ping", *args],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


def one_json_line(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {out}\nstderr: {err}"
    lines = out.splitlines()
    assert len(lines) == 1, out
    answer = json.loads(lines[0])
    assert isinstance(answer, dict) and set(answer) == {"status", "rtt_ms"}, answer
    assert isinstance(answer["rtt_ms"], int | float) and answer["rtt_ms"] >= 0, answer
    return answer


def assert_failed(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode()
    assert done.returncode == 1, f"exit {done.returncode}\nstdout: {done.stdout!r}\nstderr: {err}"
    assert done.stdout == b""
    assert "Traceback" not in err, err
    assert err.startswith("ping: "), err
    return err


async def test_modern_ping_through_the_proxy(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    answer = one_json_line(await run_ping(f"127.0.0.1:{proxy.port}", "--host", "lobby.test"))
    assert answer["status"] == json.loads(fake.status_json)
    assert fake.handshakes == [Handshake(765, "lobby.test", proxy.port, NextState.STATUS)]


async def test_protocol_option_is_announced_and_echoed(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    config = proxy_config(
        server("lobby", ["lobby.test"], [fake.address]), default_motd={"online": Motd(text="Who?")}
    )
    proxy = await start_proxy(nursery, config)
    address = f"127.0.0.1:{proxy.port}"
    one_json_line(await run_ping(address, "--host", "lobby.test", "--protocol", "47"))
    assert fake.handshakes[0].protocol_version == 47
    status = one_json_line(await run_ping(address, "--host", "typo.test", "--protocol", "340"))["status"]
    assert status["description"] == {"text": "Who?"}
    assert status["version"]["protocol"] == 340


async def test_without_host_the_address_is_the_handshake_host(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("local", ["127.0.0.1"], [fake.address])))
    assert one_json_line(await run_ping(f"127.0.0.1:{proxy.port}"))["status"] == json.loads(fake.status_json)
    assert fake.handshakes[0].host == "127.0.0.1"


async def test_legacy_ping_through_the_proxy(nursery: trio.Nursery) -> None:
    description = {"text": "Legacy ", "extra": [{"text": "hello", "color": "green"}]}
    fake = await start_fake_status_server(nursery, status_json(description, online=3, max_players=30))
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    answer = one_json_line(await run_ping(f"127.0.0.1:{proxy.port}", "--host", "lobby.test", "--legacy"))
    assert answer["status"] == {
        "motd": "Legacy §ahello",
        "online": 3,
        "max_players": 30,
        "protocol_version": 765,
        "version_name": "Fake 1.20.4",
    }
    assert fake.handshakes[0].host == "lobby.test"


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
async def test_closed_port_exits_1(legacy: bool) -> None:
    port = free_port()
    err = assert_failed(await run_ping(f"127.0.0.1:{port}", *(["--legacy"] if legacy else [])))
    assert f"127.0.0.1:{port}" in err


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
async def test_silent_server_exits_1_after_the_timeout(nursery: trio.Nursery, legacy: bool) -> None:
    port = await start_silent_server(nursery)  # accepts and never answers, for as long as the test runs
    err = assert_failed(
        await run_ping(f"127.0.0.1:{port}", "--timeout", "1", *(["--legacy"] if legacy else []))
    )
    assert "no answer within 1s" in err


async def test_bad_address_exits_1() -> None:
    assert_failed(await run_ping("127.0.0.1:notaport"))


async def test_ping_the_proxy_process_started_from_files(tmp_path: Path, nursery: trio.Nursery) -> None:
    """Both ends as operators run them: ``infrarust run`` from TOML files, ``infrarust ping`` against it."""
    fake = await start_fake_status_server(nursery)
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "lobby.toml").write_text(
        f'domains = ["lobby.test"]\naddresses = ["127.0.0.1:{fake.port}"]\n'
        '[motd.online]\ntext = "From the file"\n'
    )
    (tmp_path / "servers" / "down.toml").write_text(
        f'domains = ["down.test"]\naddresses = ["{Address("127.0.0.1", free_port())}"]\n'
        '[motd.unreachable]\ntext = "Down, says the file"\n'
    )
    (tmp_path / "infrarust.toml").write_text(
        'bind = "127.0.0.1:25565"\n[status_cache]\nttl = "1m"\n'
        '[default_motd.offline]\ntext = "No such server"\n'
    )
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "infrarust", "run", "-c", str(tmp_path / "infrarust.toml"), *BIND_FREE],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    log = bytearray()
    try:
        with trio.fail_after(PROCESS_LIMIT):
            while not (match := re.search(rb"listening on 127\.0\.0\.1:(\d+)", log)):
                chunk = await process.stderr.receive_some()
                assert chunk, log.decode()
                log += chunk
        address = f"127.0.0.1:{int(match.group(1))}"
        for _ in range(2):
            lobby = one_json_line(await run_ping(address, "--host", "lobby.test"))["status"]
            assert lobby["description"] == {"text": "From the file"}
            assert lobby["players"] == json.loads(fake.status_json)["players"]
        assert fake.connections == 1  # the second ping came from the cache
        down = one_json_line(await run_ping(address, "--host", "down.test", "--protocol", "4"))["status"]
        assert down["description"] == {"text": "Down, says the file"}
        assert down["version"]["protocol"] == 4
        unknown = one_json_line(await run_ping(address, "--host", "typo.test", "--legacy"))["status"]
        assert unknown["motd"] == "No such server"
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(PROCESS_LIMIT):
            while chunk := await process.stderr.receive_some():
                log += chunk
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
    assert "Traceback" not in log.decode()
