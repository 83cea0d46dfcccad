"""Operating the proxy: signals with shutdown_grace in a real process, readiness during a drain, the status
cache per domain, the global IP filter, and what the logs say about legacy logins."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio
from helpers import (
    ask_status,
    handshake,
    legacy_login_1_6,
    login_start,
    proxy_config,
    read_exactly,
    read_until_eof,
    server,
    start_proxy,
    start_recording_backend,
)

from infrarust.config import Address, IpFilter
from infrarust.config import Metrics as MetricsConfig
from infrarust.protocol import (
    PacketReader,
    encode_packet,
    encode_pong,
    encode_string,
    parse_handshake,
    parse_ping,
)


async def wait_until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.005)


# --- the status cache keeps each domain's own answer --------------------------------------------------


async def host_echoing_status_server(stream: trio.SocketStream) -> None:
    """A backend whose MOTD names the host it was asked for (virtual hosts on one server do that)."""
    reader = PacketReader()
    packets = []
    with trio.move_on_after(10):
        try:
            while data := await stream.receive_some(4096):
                reader.feed(data)
                while (packet := reader.next_packet()) is not None:
                    packets.append(packet)
                    if len(packets) == 2:
                        host = parse_handshake(packets[0]).host
                        status = {"version": {"name": "x", "protocol": 765}, "description": {"text": host}}
                        await stream.send_all(encode_packet(0x00, encode_string(json.dumps(status))))
                    elif packet.packet_id == 0x01:
                        await stream.send_all(encode_pong(parse_ping(packet)))
        except trio.BrokenResourceError:
            pass


async def test_two_domains_of_one_server_get_their_own_cached_answers(nursery: trio.Nursery) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, host_echoing_status_server, 0, host="127.0.0.1"))
    backend = Address("127.0.0.1", listeners[0].socket.getsockname()[1])
    proxy = await start_proxy(nursery, proxy_config(server("vh", ["a.test", "b.test"], [backend])))
    for _ in range(2):  # the second round comes from the cache
        first = await ask_status(proxy.port, "a.test")
        second = await ask_status(proxy.port, "b.test")
        assert json.loads(first.text)["description"]["text"] == "a.test"
        assert json.loads(second.text)["description"]["text"] == "b.test"
    assert proxy.metrics.status_answers[("vh", "cache")] == 2


# --- the global [ip_filter] ---------------------------------------------------------------------------


async def test_the_global_ip_filter_applies_before_every_server(nursery: trio.Nursery) -> None:
    backend = await start_recording_backend(nursery)
    config = proxy_config(
        server("s", ["s.test"], [backend.address], ip_filter=IpFilter(whitelist=("127.0.0.0/8",))),
        ip_filter=IpFilter(blacklist=("127.0.0.1/32",)),
    )
    proxy = await start_proxy(nursery, config)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await stream.send_all(handshake("s.test") + login_start("Steve"))
    assert b"not allowed" in await read_until_eof(stream)
    assert backend.received == []


# --- legacy logins are named in their session line ----------------------------------------------------


async def test_a_legacy_logins_name_is_in_its_session_ended_line(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    backend = await start_recording_backend(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("old", ["old.test"], [backend.address])))
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    hello = legacy_login_1_6("Notch", "old.test")
    await stream.send_all(hello)
    assert await read_exactly(stream, len(hello)) == hello  # relayed exactly as it came, echoed back
    await stream.send_eof()
    await read_until_eof(stream)
    await wait_until(lambda: "session ended" in caplog.text)
    line = next(r.getMessage() for r in caplog.records if "session ended" in r.getMessage())
    assert "player=Notch" in line and "server=old" in line


# --- readiness during a drain -------------------------------------------------------------------------


async def get(address: tuple[str, int] | None, path: str) -> int:
    assert address is not None
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
        reply = await read_until_eof(stream)
    return int(reply.split(b" ", 2)[1])


async def test_readyz_fails_during_a_drain_while_healthz_holds(nursery: trio.Nursery) -> None:
    backend = await start_recording_backend(nursery)
    config = proxy_config(
        server("s", ["s.test"], [backend.address]), metrics=MetricsConfig(Address("127.0.0.1", 0))
    )
    proxy = await start_proxy(nursery, config)
    assert await get(proxy.metrics_address, "/readyz") == 200
    holder = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await holder.send_all(handshake("s.test") + login_start("Holder"))
    await wait_until(lambda: len(proxy.sessions) == 1)
    nursery.start_soon(proxy.drain, 5)
    await wait_until(lambda: proxy.draining)
    assert await get(proxy.metrics_address, "/readyz") == 503
    assert await get(proxy.metrics_address, "/healthz") == 200
    await holder.aclose()


# --- signals in a real process ------------------------------------------------------------------------


class ProxyProcess:
    """``python -m infrarust run`` on a config file, its stderr collected."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "infrarust", "run", "-c", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []

    async def read_until(self, needle: str, timeout: float = 15.0) -> str:
        assert self.process.stderr is not None
        with trio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                line = await trio.to_thread.run_sync(self.process.stderr.readline)
                if not line:
                    raise AssertionError(f"the proxy exited before {needle!r}:\n{''.join(self.lines)}")
                self.lines.append(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def write_config(tmp_path: Path, backend_port: int, grace: str) -> Path:
    servers = tmp_path / "servers"
    servers.mkdir()
    (servers / "s.toml").write_text(f'domains = ["s.test"]\naddresses = ["127.0.0.1:{backend_port}"]\n')
    config = tmp_path / "infrarust.toml"
    config.write_text(
        f'bind = "127.0.0.1:0"\nshutdown_grace = "{grace}"\n[rate_limit]\nmax_connections = 0\n'
        f'[ban]\nfile = "{tmp_path / "bans.json"}"\n'
    )
    return config


async def test_sigterm_drains_for_shutdown_grace_and_a_second_one_ends_at_once(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    backend = await start_recording_backend(nursery)
    proxy = ProxyProcess(write_config(tmp_path, backend.port, "30s"))
    try:
        line = await proxy.read_until("listening on")
        port = int(line.rsplit(":", 1)[1].split()[0])
        polite = await trio.open_tcp_stream("127.0.0.1", port)
        stays = await trio.open_tcp_stream("127.0.0.1", port)
        await polite.send_all(handshake("s.test") + login_start("Polite"))
        await stays.send_all(handshake("s.test") + login_start("Stays"))
        await wait_until(lambda: len(backend.received) == 2)
        proxy.process.send_signal(signal.SIGTERM)
        await proxy.read_until("draining")
        with pytest.raises(OSError):  # the listener is gone at once
            await trio.open_tcp_stream("127.0.0.1", port)
        await stays.send_all(b"during the grace")  # still relayed
        # Its backend connection, whichever place it took (both logins are accepted in one burst).
        stays_first = handshake("s.test") + login_start("Stays")
        await wait_until(lambda: any(bytes(data).startswith(stays_first) for data in backend.received))
        index = next(i for i, data in enumerate(backend.received) if bytes(data).startswith(stays_first))
        assert await backend.wait_for(index, len(stays_first) + 16) == stays_first + b"during the grace"
        await polite.send_eof()
        await read_until_eof(polite)
        ended = await proxy.read_until("player=Polite")
        assert "reason=ClientClosed" in ended
        assert proxy.process.poll() is None  # still waiting for the other session
        proxy.process.send_signal(signal.SIGTERM)  # the second one ends everything now
        stopped = await proxy.read_until("player=Stays")
        assert "reason=Shutdown" in stopped
        with trio.fail_after(10):
            code = await trio.to_thread.run_sync(proxy.process.wait)
        assert code == 0
        assert not any(line.startswith("Traceback") for line in proxy.lines)
        await stays.aclose()
    finally:
        proxy.stop()


async def test_log_format_json_in_the_file_makes_json_lines(nursery: trio.Nursery, tmp_path: Path) -> None:
    backend = await start_recording_backend(nursery)
    config = write_config(tmp_path, backend.port, "0s")
    config.write_text(config.read_text().replace('shutdown_grace = "0s"', 'log_format = "json"'))
    proxy = ProxyProcess(config)
    try:
        line = await proxy.read_until("listening on")
        record = json.loads(line)
        assert record["event"].startswith("listening on") and record["level"] == "info"
        proxy.process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await trio.to_thread.run_sync(proxy.process.wait) == 0
    finally:
        proxy.stop()
