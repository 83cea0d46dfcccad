"""The rolling-restart recipe of ``conf/haproxy.cfg``, scripted: Debian's HAProxy with ``send-proxy-v2`` in
front of two infrarust processes with ``receive_proxy_protocol``; 20 clients chat through it while A, then
B, is drained (SIGTERM with ``shutdown_grace``) and started again. A client whose session is on the
instance that is not draining never notices; one on the draining instance is cut only when the grace ends,
and its reconnect lands on the other instance.

The HAProxy configuration is the recipe file itself, with its addresses moved to loopback ports.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio
from helpers import free_port, handshake, login_start

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "conf" / "haproxy.cfg"
CLIENTS = 20
GRACE = 2.0
CHAT_EVERY = 0.1
ECHO_WAIT = 2.0  # a chat line not echoed within this is a client that noticed
# HAProxy's `inter 1s rise 2`: a restarted instance gets players again after two good checks.
RISE_WAIT = 3.0


def haproxy_binary() -> str:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.fail("haproxy is not installed: `make test` installs it (apt-get install haproxy)")
    return binary


def haproxy_config(front: int, a: int, b: int, folder: Path) -> str:
    """The recipe with its listener and instances on loopback, its admin socket in ``folder``."""
    text = RECIPE.read_text()
    text = text.replace("bind :25565", f"bind 127.0.0.1:{front}")
    text = text.replace("server a 10.0.0.11:25565", f"server a 127.0.0.1:{a}")
    text = text.replace("server b 10.0.0.12:25565", f"server b 127.0.0.1:{b}")
    text = text.replace("/run/haproxy/admin.sock", str(folder / "admin.sock"))
    # The recipe's maxconn needs an fd limit above 40000, which a test machine may not grant.
    text = text.replace("maxconn 20000", "maxconn 1000")
    assert f"127.0.0.1:{front}" in text and f"127.0.0.1:{a}" in text and f"127.0.0.1:{b}" in text
    return text


@attrs.define
class EchoBackend:
    """A backend that echoes, and learns the name each connection logged in with."""

    name: str
    port: int = 0
    players: set[str] = attrs.field(factory=set)

    async def handle(self, stream: trio.SocketStream) -> None:
        seen = bytearray()
        try:
            while data := await stream.receive_some(65536):
                if len(seen) < 256:
                    seen += data
                    found = re.search(rb"c\d\dr\d+", seen)
                    if found:
                        self.players.add(found[0].decode())
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)


class Instance:
    """An infrarust process behind HAProxy, restartable on its port."""

    def __init__(self, name: str, folder: Path, backend: EchoBackend) -> None:
        self.name = name
        self.port = free_port()
        self.folder = folder
        (folder / "servers").mkdir(parents=True)
        (folder / "servers" / "lobby.toml").write_text(
            f'domains = ["lobby.test"]\naddresses = ["127.0.0.1:{backend.port}"]\n'
        )
        (folder / "infrarust.toml").write_text(
            f'bind = "127.0.0.1:{self.port}"\nservers_dir = "servers"\n'
            'receive_proxy_protocol = true\nproxy_protocol_trusted = ["127.0.0.1/32"]\n'
            f'shutdown_grace = "{GRACE}s"\n'
            "[rate_limit]\nmax_connections = 0\nstatus_max = 0\n"
        )
        self.process: trio.Process | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "infrarust", "run", "-c", str(self.folder / "infrarust.toml")]
        log = open(self.folder / "infrarust.log", "ab")  # noqa: SIM115, ASYNC230 - the child writes it
        try:
            self.process = await trio.lowlevel.open_process(argv, env=env, stdout=log, stderr=log)
        finally:
            log.close()
        with trio.fail_after(20):
            while "listening on" not in self.log():
                assert self.process.returncode is None, self.log()
                await trio.sleep(0.05)

    def log(self) -> str:
        return (self.folder / "infrarust.log").read_text(errors="replace")

    async def drain(self) -> None:
        """SIGTERM: drain for the grace, then exit 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(GRACE + 10):
            code = await self.process.wait()
        assert code == 0, self.log()

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)


@attrs.define
class Client:
    """A player chatting through HAProxy; each connection has its own login name."""

    number: int
    rounds: int = 0
    lines: int = 0
    noticed: list[tuple[str, float]] = attrs.field(factory=list)  # (connection name, when)

    @property
    def connection(self) -> str:
        return f"c{self.number:02d}r{self.rounds}"

    async def chat(self, port: int, stop: trio.Event) -> None:
        while not stop.is_set():
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.1)
                continue
            try:
                async with stream:
                    hello = handshake("lobby.test") + login_start(self.connection)
                    await stream.send_all(hello)
                    await self._echo(stream, len(hello))
                    while not stop.is_set():
                        line = f"line {self.lines:06d} from {self.connection}".encode().ljust(48)
                        await stream.send_all(line)
                        await self._echo(stream, len(line))
                        self.lines += 1
                        await trio.sleep(CHAT_EVERY)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError):
                self.noticed.append((self.connection, trio.current_time()))
                self.rounds += 1

    async def _echo(self, stream: trio.SocketStream, size: int) -> None:
        got = 0
        with trio.fail_after(ECHO_WAIT):
            while got < size:
                data = await stream.receive_some(size - got)
                if not data:
                    raise trio.BrokenResourceError("closed")
                got += len(data)


async def test_rolling_restart_behind_haproxy(nursery: trio.Nursery, tmp_path: Path) -> None:
    binary = haproxy_binary()
    backends = {name: EchoBackend(name) for name in ("A", "B")}
    for backend in backends.values():
        listeners = await nursery.start(partial(trio.serve_tcp, backend.handle, 0, host="127.0.0.1"))
        backend.port = listeners[0].socket.getsockname()[1]
    instances = {name: Instance(name, tmp_path / name, backends[name]) for name in ("A", "B")}
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(front, instances["A"].port, instances["B"].port, tmp_path))
    checked = await trio.run_process([binary, "-c", "-f", str(config)], capture_stdout=True, check=False)
    assert checked.returncode == 0, checked.stdout
    haproxy_log = open(tmp_path / "haproxy.log", "ab")  # noqa: SIM115, ASYNC230 - the child writes it
    haproxy: trio.Process | None = None
    try:
        for instance in instances.values():
            await instance.start()
        haproxy = await trio.lowlevel.open_process(
            [binary, "-db", "-f", str(config)], stdout=haproxy_log, stderr=haproxy_log
        )
        await trio.sleep(RISE_WAIT)  # both instances checked up
        clients = [Client(number) for number in range(CLIENTS)]
        stop = trio.Event()
        windows: dict[str, tuple[float, float]] = {}
        async with trio.open_nursery() as chatting:
            for client in clients:
                chatting.start_soon(client.chat, front, stop)
                await trio.sleep(0.02)
            with trio.fail_after(10):
                while sum(len(b.players) for b in backends.values()) < CLIENTS:
                    await trio.sleep(0.05)
            on = {name: len(backend.players) for name, backend in backends.items()}
            assert on["A"] >= 5 and on["B"] >= 5, on  # leastconn spread them over both
            for name in ("A", "B"):
                began = trio.current_time()
                await instances[name].drain()
                windows[name] = (began, trio.current_time())
                await instances[name].start()
                await trio.sleep(RISE_WAIT)
            await trio.sleep(0.5)
            stop.set()
        instance_of = {player: name for name, backend in backends.items() for player in backend.players}
        for client in clients:
            assert client.lines > 0
            for connection, when in client.noticed:
                held_by = instance_of.get(connection)
                assert held_by is not None, (connection, client)
                began, ended = windows[held_by]
                # Only a session on the draining instance ends, and only when its grace has run out.
                assert began + GRACE - 0.5 <= when <= ended + 1.0, (connection, when, windows)
        cut = [connection for client in clients for connection, _ in client.noticed]
        assert any(instance_of[c] == "A" for c in cut) and any(instance_of[c] == "B" for c in cut)
        for instance in instances.values():
            assert "Traceback" not in instance.log()
    finally:
        stop_all = [instance.kill for instance in instances.values()]
        for kill in stop_all:
            kill()
        if haproxy is not None and haproxy.returncode is None:
            os.kill(haproxy.pid, signal.SIGKILL)
            await haproxy.wait()
        haproxy_log.close()
