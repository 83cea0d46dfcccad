"""``python -m infrarust ping`` as operators and CI jobs run it: a real process against a real listener."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import (
    free_port,
    proxy_config,
    server,
    start_fake_status_server,
    start_proxy,
    start_silent_server,
    status_json,
)

from infrarust.config._models import Address, Motd, UnknownDomainBehavior
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


# --- --expect-backend ---------------------------------------------------------------------------------


def source_line(done: subprocess.CompletedProcess[bytes], code: int) -> dict[str, Any]:
    """The JSON line of an ``--expect-backend`` ping that exited ``code``."""
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == code, f"exit {done.returncode}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err
    (line,) = out.splitlines()
    answer: dict[str, Any] = json.loads(line)
    assert set(answer) == {"status", "rtt_ms", "source"}, answer
    assert "infrarust" not in answer["status"]  # the proxy's mark is moved out of the status
    return answer


async def test_expect_backend_up_fresh_then_cached(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    config = proxy_config(server("lobby", ["lobby.test"], [fake.address]))
    proxy = await start_proxy(nursery, config)
    address = f"127.0.0.1:{proxy.port}"
    first = source_line(await run_ping(address, "--host", "lobby.test", "--expect-backend"), 0)
    assert first["source"] == "backend"
    assert first["status"] == json.loads(fake.status_json)
    cached = source_line(await run_ping(address, "--host", "lobby.test", "--expect-backend"), 0)
    assert cached["source"] == "cache"
    assert fake.connections == 1
    # The backend never sees the proxy-only request: it got a plain, empty status request.
    assert bytes(fake.received[0]).endswith(b"\x01\x00")


async def test_expect_backend_down_exits_1(nursery: trio.Nursery) -> None:
    down = Address("127.0.0.1", free_port())
    config = proxy_config(
        server("down", ["down.test"], [down], motd={"unreachable": Motd(text="Down for now")})
    )
    proxy = await start_proxy(nursery, config)
    address = f"127.0.0.1:{proxy.port}"
    done = await run_ping(address, "--host", "down.test", "--expect-backend")
    answer = source_line(done, 1)
    assert answer["source"] == "unreachable"
    assert answer["status"]["description"] == {"text": "Down for now"}
    assert "answered by infrarust itself (source=unreachable)" in done.stderr.decode()
    # Without the flag the same answer is a success, as before.
    assert one_json_line(await run_ping(address, "--host", "down.test"))["status"] == answer["status"]


async def test_expect_backend_unknown_domain_exits_1(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, proxy_config())
    done = await run_ping(f"127.0.0.1:{proxy.port}", "--host", "typo.test", "--expect-backend")
    assert source_line(done, 1)["source"] == "unknown_domain"
    assert "source=unknown_domain" in done.stderr.decode()


async def test_expect_backend_unknown_domain_dropped_exits_1(nursery: trio.Nursery) -> None:
    config = proxy_config(unknown_domain_behavior=UnknownDomainBehavior.DROP)
    proxy = await start_proxy(nursery, config)
    assert_failed(await run_ping(f"127.0.0.1:{proxy.port}", "--host", "typo.test", "--expect-backend"))


async def test_expect_backend_against_a_server_that_is_not_infrarust(nursery: trio.Nursery) -> None:
    """An answer without the proxy's mark came from a server itself: that is the backend."""
    fake = await start_fake_status_server(nursery)
    answer = source_line(await run_ping(f"127.0.0.1:{fake.port}", "--expect-backend"), 0)
    assert answer["source"] == "backend"
    assert answer["status"] == json.loads(fake.status_json)


async def test_expect_backend_refuses_the_legacy_ping() -> None:
    done = await run_ping("127.0.0.1:1", "--legacy", "--expect-backend")
    assert done.returncode == 2
    assert b"--expect-backend needs the modern ping" in done.stderr


async def test_ipv6_target_in_brackets(nursery: trio.Nursery) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, start_silent_handler, 0, host="::1"))
    port = listeners[0].socket.getsockname()[1]
    err = assert_failed(await run_ping(f"[::1]:{port}", "--timeout", "0.5"))
    assert f"[::1]:{port}" in err and "no answer within 0.5s" in err
    assert "put IPv6 addresses in brackets" in assert_failed(await run_ping("::1:25565"))


async def start_silent_handler(stream: trio.SocketStream) -> None:
    try:
        await trio.sleep_forever()
    finally:
        await trio.aclose_forcefully(stream)
