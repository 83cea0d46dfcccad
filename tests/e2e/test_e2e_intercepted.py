"""The intercepted modes end to end: real PrismarineJS minecraft-protocol servers and clients through the
real proxy (embedded, so the tests also drive the active Player API).

Two Node servers per version are shared by the module, one with compression and one without (all
started at once, so they boot in parallel); each cell of the version x mode x compression matrix starts
a proxy, logs a real client in through ``offline`` or ``client_only`` (then online, against a loopback
session server whose ``join`` the client calls), and checks what the client library and the server
decoded: chat echoed, a 2 MB packet intact, messages/action bar/titles from the embedding program,
``/infrarust`` answered by the proxy and never seen by the server, tab completion, and
``disconnect(reason)``. Command hooks are checked on three versions (each layout of the command packet).
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import trio
import trio.lowlevel
from _session_server import SessionServer as FakeSessionServer
from helpers import proxy_config

import infrarust
from infrarust.auth import offline_uuid
from infrarust.config import Address, Auth, Permissions, ProxyConfig, ProxyMode, ServerConfig
from infrarust.events import PlayerChat, PlayerCommand, SessionEnded
from infrarust.intercepted import ActivePlayer
from infrarust.transport import ForwardEndReason

from .harness import E2E_DIR, ManagedProcess, node_executable

# version -> (library, protocol number)
VERSIONS: dict[str, tuple[str, int]] = {
    "1.8.9": ("1.54", 47),
    "1.12.2": ("1.54", 340),
    "1.16.5": ("1.54", 754),
    "1.19.4": ("1.54", 762),
    "1.20.1": ("1.54", 763),
    "1.20.4": ("1.54", 765),
    "1.21.1": ("1.54", 767),
    "1.21.4": ("1.54", 769),
    "1.21.8": ("1.68", 772),
    "26.1": ("1.68", 775),
}
MODES = (ProxyMode.OFFLINE, ProxyMode.CLIENT_ONLY)
COMPRESSION = (True, False)  # the backend sends Set Compression (threshold 256), or never does
STARTUP_TIMEOUT = 60.0
WAIT = 20.0
BIG_LENGTH = 2_000_000


class Backend(ManagedProcess):
    """``node mc_intercept_server.js`` for one version, with compression or without."""

    def __init__(self, node: str, version: str, compressed: bool) -> None:
        library, _ = VERSIONS[version]
        argv = [node, str(E2E_DIR / "mc_intercept_server.js"), "--library", library, "--version", version]
        argv += ["--compression", "on" if compressed else "off"]
        super().__init__(argv, name=f"backend {version} {compressed_id(compressed)}", cwd=E2E_DIR)
        self.port = 0

    def wait_listening(self) -> None:
        line = self.stdout.wait_for(lambda line: '"listening"' in line, STARTUP_TIMEOUT)
        if line is None:
            raise AssertionError(f"the backend did not start\n{self.describe()}")
        self.port = int(json.loads(line)["port"])

    def events(self, username: str) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.stdout.snapshot() if line.startswith("{")]
        return [event for event in found if event.get("username") == username]

    async def wait(self, username: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        with trio.move_on_after(WAIT):
            while True:
                for event in self.events(username):
                    if predicate(event):
                        return event
                await trio.sleep(0.02)
        raise AssertionError(f"the backend never reported it for {username}\n{self.describe()}")


Backends = dict[tuple[str, bool], Backend]
"""``(version, compressed) -> backend``."""


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    node = node_executable()
    started: Backends = {}
    try:
        for version in VERSIONS:
            for compressed in COMPRESSION:
                started[version, compressed] = Backend(node, version, compressed)
        for backend in started.values():
            backend.wait_listening()
        yield started
    finally:
        for backend in started.values():
            backend.stop()
            backend.kill()


def compressed_id(compressed: bool) -> str:
    return "compressed" if compressed else "uncompressed"


def domain(mode: ProxyMode, version: str, compressed: bool) -> str:
    return f"{mode.value.replace('_', '-')}-{version.replace('.', '-')}-{compressed_id(compressed)}.test"


def config_for(backends: Backends, session_url: str, **changes: Any) -> ProxyConfig:
    servers = tuple(
        ServerConfig(
            name=f"{mode.value}-{version.replace('.', '-')}-{compressed_id(compressed)}",
            addresses=(Address("127.0.0.1", backend.port),),
            domains=(domain(mode, version, compressed),),
            proxy_mode=mode,
        )
        for (version, compressed), backend in backends.items()
        for mode in MODES
    )
    return proxy_config(
        *servers,
        auth=Auth(session_server=session_url),
        permissions=Permissions(admins=("Admin",)),
        **changes,
    )


class Client:
    """``node mc_intercept_client.js``: a real client driven on stdin, its JSON lines collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._changed = trio.Event()

    @classmethod
    async def start(
        cls,
        nursery: trio.Nursery,
        version: str,
        port: int,
        host: str,
        username: str,
        *,
        online: tuple[str, str, str] | None = None,
    ) -> Client:
        library = VERSIONS[version][0] if version in VERSIONS else "1.68"
        argv = [node_executable(), str(E2E_DIR / "mc_intercept_client.js"), "--library", library]
        argv += ["--version", version, "--port", str(port), "--host", host, "--username", username]
        if online is not None:
            token, player_uuid, url = online
            argv += ["--token", token, "--uuid", player_uuid, "--session-server", url]
        process: trio.Process = await nursery.start(
            partial(
                trio.run_process,
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                check=False,
                cwd=E2E_DIR,
            )
        )
        client = cls(process)
        nursery.start_soon(client._pump)
        return client

    async def _pump(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    self.events.append(json.loads(line))
            self._changed.set()
            self._changed = trio.Event()

    async def wait(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        with trio.move_on_after(WAIT):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                await self._changed.wait()
        raise AssertionError(f"the client never saw {what}: {self.events[-10:]}")

    async def wait_text(self, text: str) -> dict[str, Any]:
        return await self.wait(
            lambda e: e["event"] == "packet" and text in json.dumps(e["params"], ensure_ascii=False), text
        )

    async def say(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def commands_seen(backend: Backend, name: str) -> list[str]:
    return [e["command"] for e in backend.events(name) if e["event"] == "command"]


async def find_player(proxy: infrarust.Proxy, name: str) -> ActivePlayer:
    with trio.fail_after(WAIT):
        while True:
            for player in proxy.sessions:
                if player.name == name and isinstance(player, ActivePlayer):
                    return player
            await trio.sleep(0.02)


@pytest.mark.parametrize("compressed", COMPRESSION, ids=compressed_id)
@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
@pytest.mark.parametrize("version", list(VERSIONS))
async def test_real_client_and_server_through_the_proxy(
    version: str, mode: ProxyMode, compressed: bool, backends: Backends, nursery: trio.Nursery
) -> None:
    _, protocol = VERSIONS[version]
    backend = backends[version, compressed]
    fake = await nursery.start(FakeSessionServer().serve)
    name = f"{'On' if mode is ProxyMode.CLIENT_ONLY else 'Off'}{protocol}"
    account = fake.add_account(f"token-{name}", name)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config_for(backends, fake.url))
    seen = await events_of(proxy, nursery)
    online = (f"token-{name}", account.hex, fake.url) if mode is ProxyMode.CLIENT_ONLY else None
    client = await Client.start(
        nursery, version, proxy.port, domain(mode, version, compressed), name, online=online
    )
    try:
        await client.wait(lambda e: e["event"] == "play", "the play state")
        login = await backend.wait(name, lambda e: e["event"] == "login")
        assert login["uuid"] == str(offline_uuid(name))  # the backend leg is an offline login
        player = await find_player(proxy, name)
        assert player.active and player.protocol_version == protocol
        assert player.uuid == (account if mode is ProxyMode.CLIENT_ONLY else offline_uuid(name))
        assert player.verified is (mode is ProxyMode.CLIENT_ONLY)
        if mode is ProxyMode.CLIENT_ONLY:
            assert [query for query in fake.requests if "hasJoined" in query[1]]

        await client.say("chat hello through the proxy")
        await client.wait_text(f"<{name}> hello through the proxy")
        await client.say("chat big")
        big = await backend.wait(name, lambda e: e["event"] == "big")
        payload = await client.wait(lambda e: e["event"] == "payload", "the 2 MB packet")
        assert payload["length"] == big["length"] == BIG_LENGTH and payload["sha256"] == big["sha256"]

        await player.send_message("§aembedded message")
        await client.wait_text("embedded message")
        await player.send_action_bar("embedded bar")
        await client.wait_text("embedded bar")
        await player.send_title("embedded title", "embedded subtitle", fade_in=5, stay=40, fade_out=5)
        await client.wait_text("embedded title")
        await client.wait_text("embedded subtitle")

        await client.say("command ir list")
        await client.wait_text("player(s) online")
        await client.wait_text(f": {name}")
        await client.say(f"command infrarust find {name}")
        await client.wait_text(
            f"{name} §6is on §e{mode.value}-{version.replace('.', '-')}-{compressed_id(compressed)}"
        )
        await client.say("command ir kick Nobody")
        await client.wait_text("permission")  # not an admin
        await client.say("command backendcmd")
        await backend.wait(name, lambda e: e["event"] == "command" and e["command"] == "backendcmd")
        assert not [
            e for e in backend.events(name) if e["event"] == "command" and "ir" in e["command"].split()[:1]
        ]
        assert not [
            e for e in backend.events(name) if e["event"] == "command" and "infrarust" in e["command"]
        ]
        if protocol >= 393:
            tree = await client.wait(lambda e: e["event"] == "commands", "a command tree")
            assert {"infrarust", "ir"} <= set(tree["names"])

        await player.disconnect("§cembedded goodbye")
        await client.wait_text("embedded goodbye")
        result = await player.wait_ended()
        assert result.reason is ForwardEndReason.SHUTDOWN
        # Counted as written on each leg: the 2 MB payload itself when the legs do not compress.
        assert result.client_to_backend > 0
        assert result.backend_to_client > (0 if compressed else BIG_LENGTH)
        chats = [e for e in seen if isinstance(e, PlayerChat)]
        assert [e.message for e in chats] == ["hello through the proxy", "big"]
        commands = [e.command for e in seen if isinstance(e, PlayerCommand)]
        assert "ir list" in commands and "backendcmd" in commands
        with trio.fail_after(WAIT):
            while not any(isinstance(e, SessionEnded) for e in seen):
                await trio.sleep(0.02)
    finally:
        client.stop()


async def events_of(proxy: infrarust.Proxy, nursery: trio.Nursery) -> list[object]:
    """A list the proxy's events are appended to as they come (the subscription lasts as long as
    ``nursery``)."""
    seen: list[object] = []

    async def watch() -> None:
        async with proxy.subscribe() as events:
            async for event in events:
                seen.append(event)

    nursery.start_soon(watch)
    await trio.lowlevel.checkpoint()
    return seen


@pytest.mark.parametrize(("version", "compressed"), [("1.12.2", True), ("1.20.4", False), ("26.1", True)])
async def test_admin_commands_and_an_unverified_admin_name(
    version: str, compressed: bool, backends: Backends, nursery: trio.Nursery
) -> None:
    """A verified admin broadcasts and kicks; an ``offline`` player named like an admin is refused."""
    backend = backends[version, compressed]
    fake = await nursery.start(FakeSessionServer().serve)
    admin_uuid = fake.add_account("token-admin", "Admin")
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config_for(backends, fake.url))
    admin = await Client.start(
        nursery,
        version,
        proxy.port,
        domain(ProxyMode.CLIENT_ONLY, version, compressed),
        "Admin",
        online=("token-admin", admin_uuid.hex, fake.url),
    )
    victim = await Client.start(
        nursery, version, proxy.port, domain(ProxyMode.OFFLINE, version, compressed), "Victim"
    )
    try:
        await admin.wait(lambda e: e["event"] == "play", "the play state")
        await victim.wait(lambda e: e["event"] == "play", "the play state")
        await admin.say("command ir broadcast hello everyone")
        await victim.wait_text("hello everyone")
        await admin.wait_text("hello everyone")
        await admin.say("command infrarust kick victim go away now")
        await admin.wait_text("Kicked")
        await victim.wait_text("go away now")
        await victim.wait(lambda e: e["event"] == "end", "the end of its session")
        await admin.say("quit")
    finally:
        admin.stop()
        victim.stop()
    impostor = await Client.start(
        nursery, version, proxy.port, domain(ProxyMode.OFFLINE, version, compressed), "Admin"
    )
    try:
        await impostor.wait(lambda e: e["event"] == "play", "the play state")
        await impostor.say("command ir broadcast i am admin")
        await impostor.wait_text("You do not have permission to use /ir broadcast")
        await impostor.say("command ir help")
        await impostor.wait_text("/infrarust find")
        assert not [
            e for e in impostor.events if "i am admin" in json.dumps(e) and "permission" not in json.dumps(e)
        ]
    finally:
        impostor.stop()
    for name in ("Admin", "Victim"):
        assert not [e for e in backend.events(name) if e["event"] == "command"], (
            "a proxy command reached the server"
        )


@pytest.mark.parametrize(("version", "compressed"), [("1.8.9", True), ("1.20.4", False), ("26.1", False)])
async def test_client_only_refusals_leave_other_sessions_alone(
    version: str, compressed: bool, backends: Backends, nursery: trio.Nursery
) -> None:
    fake = await nursery.start(FakeSessionServer().serve)
    uuid_hex = fake.add_account("token-x", "Joiner").hex
    # The proxy asks a session server that hangs; the client's join goes to the working one.
    hanging = await nursery.start(FakeSessionServer(slow=True).serve)
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config_for(backends, hanging.url))
    seen = await events_of(proxy, nursery)
    bystander = await Client.start(
        nursery, version, proxy.port, domain(ProxyMode.OFFLINE, version, compressed), "Bystander"
    )
    await bystander.wait(lambda e: e["event"] == "play", "the play state")
    slow = await Client.start(
        nursery,
        version,
        proxy.port,
        domain(ProxyMode.CLIENT_ONLY, version, compressed),
        "Joiner",
        online=("token-x", uuid_hex, fake.url),
    )
    with trio.fail_after(WAIT):
        while not hanging.requests:
            await trio.sleep(0.02)
    await bystander.say("chat still here")
    await bystander.wait_text("<Bystander> still here")
    await slow.wait_text("Failed to verify username!")
    assert not [e for e in slow.events if e["event"] == "play"]

    # Never called join: hasJoined answers 204.
    answering: infrarust.Proxy = await nursery.start(infrarust.serve, config_for(backends, fake.url))
    seen_answering = await events_of(answering, nursery)
    stranger = await Client.start(
        nursery, version, answering.port, domain(ProxyMode.CLIENT_ONLY, version, compressed), "Stranger"
    )
    await stranger.wait_text("Failed to verify username!")
    await stranger.wait(lambda e: e["event"] == "end", "the end")
    assert not [e for e in stranger.events if e["event"] == "play"]

    # The refusal is published once the proxy's finish stage is done with the connection.
    with trio.fail_after(WAIT):
        while (
            len(refused := [e for e in seen + seen_answering if isinstance(e, infrarust.ConnectionRefused)])
            < 2
        ):
            await trio.sleep(0.02)
    assert [(e.reason, e.name) for e in refused] == [("denied", "Joiner"), ("denied", "Stranger")]
    assert [p.name for p in proxy.sessions] == ["Bystander"]
    await bystander.say("chat after the refusals")
    await bystander.wait_text("<Bystander> after the refusals")
    bystander.stop()


async def test_session_server_down_refuses(backends: Backends, nursery: trio.Nursery) -> None:
    fake = await nursery.start(FakeSessionServer().serve)
    uuid_hex = fake.add_account("token-d", "Downed").hex
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    closed_port = listener.socket.getsockname()[1]
    await listener.aclose()  # nothing listens there now
    config = config_for(backends, f"http://127.0.0.1:{closed_port}")
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
    client = await Client.start(
        nursery,
        "1.21.4",
        proxy.port,
        domain(ProxyMode.CLIENT_ONLY, "1.21.4", False),
        "Downed",
        online=("token-d", uuid_hex, fake.url),
    )
    await client.wait_text("Failed to verify username!")
    assert not [e for e in client.events if e["event"] == "play"]


HOOK_DELAY = 0.3  # each command hook call takes this long: a packet that overtook a command would show
HOOK_TIMEOUT = 1.0
COUNTED_ACKNOWLEDGEMENT = 761  # 1.19.3: a signed command acknowledges the chat seen with a count


# 1.12.2 sends commands as chat lines with a slash, 1.20.4 as a signed chat_command, 1.21.4 as the
# unsigned chat_command of 1.20.5+.
@pytest.mark.parametrize(("version", "compressed"), [("1.12.2", False), ("1.20.4", True), ("1.21.4", False)])
async def test_command_hooks_cancel_commands_and_keep_their_order(
    version: str,
    compressed: bool,
    backends: Backends,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    backend = backends[version, compressed]
    signed = VERSIONS[version][1] >= COUNTED_ACKNOWLEDGEMENT
    fake = await nursery.start(FakeSessionServer().serve)
    proxy: infrarust.Proxy = await nursery.start(
        infrarust.serve, config_for(backends, fake.url, hook_timeout=HOOK_TIMEOUT)
    )
    seen = await events_of(proxy, nursery)
    asked: list[tuple[str | None, str]] = []

    def plain(player: infrarust.Player, command: str) -> infrarust.CancelCommand | None:
        if command == "boom":
            raise RuntimeError("bug in a command hook")
        if command == "weird":
            return "yes"  # type: ignore[return-value]  # not a decision: logged, and the command goes on
        return None

    async def guard(player: infrarust.Player, command: str) -> infrarust.CancelCommand | None:
        asked.append((player.name, command))
        await trio.sleep(WAIT if command == "slow" else HOOK_DELAY)
        if command.startswith("secret "):
            return infrarust.CancelCommand("§cThat command is not for you")
        if command == "quiet":
            return infrarust.CancelCommand()
        return None

    proxy.on_command(plain)
    handle = proxy.on_command(guard)
    name = "Hooked"
    client = await Client.start(
        nursery, version, proxy.port, domain(ProxyMode.OFFLINE, version, compressed), name
    )
    try:
        await client.wait(lambda e: e["event"] == "play", "the play state")

        await client.say("command secret hunter2")
        await client.say("chat after secret")
        await client.wait_text("That command is not for you")
        await client.wait_text(f"<{name}> after secret")
        await client.say("command quiet")
        await client.say("chat after quiet")
        await client.wait_text(f"<{name}> after quiet")
        assert [e for e in client.events if "quiet" in _dump(e)] == [
            e for e in client.events if f"<{name}> after quiet" in _dump(e)
        ]  # a cancellation without a message tells the player nothing

        await client.say("command other with args")
        await client.say("chat after other")
        await client.wait_text(f"<{name}> after other")
        # The echo can reach the test before the reader thread has the server's own line: wait for that.
        await backend.wait(name, lambda e: e["event"] == "chat" and e["message"] == "after other")
        order = [
            e.get("command") or e.get("message")
            for e in backend.events(name)
            if e["event"] in ("command", "chat")
        ]
        assert order == ["after secret", "after quiet", "other with args", "after other"]

        await client.say("command ir server")  # the proxy's own command: answered, never asked about
        await client.wait_text("§6You are on")
        await client.say("command boom")
        await backend.wait(name, lambda e: e["event"] == "command" and e["command"] == "boom")
        assert "command hook failed" in caplog.text and "bug in a command hook" in caplog.text
        await client.say("command weird")
        await backend.wait(name, lambda e: e["event"] == "command" and e["command"] == "weird")
        assert "command hook returned something else than None or CancelCommand" in caplog.text
        await client.say("command slow")
        await client.say("chat after slow")
        await backend.wait(name, lambda e: e["event"] == "command" and e["command"] == "slow")
        await client.wait_text(f"<{name}> after slow")
        assert "command hook timed out" in caplog.text
        if signed:
            # The backend still gets the acknowledgement a cancelled signed command carried.
            await client.say("signed 3 secret signed")
            await client.say("chat after signed")
            await client.wait_text(f"<{name}> after signed")
            await client.say("signed 2 other signed")
            await backend.wait(name, lambda e: e["event"] == "command" and e["command"] == "other signed")

        handle.remove()
        await client.say("command secret again")
        await backend.wait(name, lambda e: e["event"] == "command" and e["command"] == "secret again")
    finally:
        client.stop()
    extra = ["other signed"] if signed else []
    assert commands_seen(backend, name) == [
        "other with args",
        "boom",
        "weird",
        "slow",
        *extra,
        "secret again",
    ]
    said = [
        f"ack {e['count']}" if e["event"] == "ack" else e.get("command") or e.get("message")
        for e in backend.events(name)
        if e["event"] in ("command", "chat", "ack")
    ]
    signed_said = ["ack 3", "after signed", "other signed"] if signed else []
    assert said == [
        "after secret",
        "after quiet",
        "other with args",
        "after other",
        "boom",
        "weird",
        "slow",
        "after slow",
        *signed_said,
        "secret again",
    ]
    assert {who for who, _ in asked} == {name}
    assert [command for _, command in asked] == [
        "secret hunter2",
        "quiet",
        "other with args",
        "boom",
        "weird",
        "slow",
        *(["secret signed", "other signed"] if signed else []),
    ]
    published = [e.command for e in seen if isinstance(e, PlayerCommand)]
    assert published == [
        "secret hunter2",
        "quiet",
        "other with args",
        "ir server",
        "boom",
        "weird",
        "slow",
        *(["secret signed", "other signed"] if signed else []),
        "secret again",
    ]
    cancelled = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("command cancelled by a hook")
    ]
    assert len(cancelled) == (3 if signed else 2)
    assert (
        "command=secret" in cancelled[0] and f"player={name}" in cancelled[0] and "told=True" in cancelled[0]
    )
    assert "command=quiet" in cancelled[1] and "told=False" in cancelled[1]
    assert "hunter2" not in caplog.text  # arguments may be passwords: log lines name the command only


@pytest.mark.parametrize(
    ("mode", "version"),
    [
        ("velocity", "1.16.5"),  # login plugin messages, and so modern forwarding, start at 1.13
        ("velocity", "1.20.4"),
        ("velocity", "26.1"),
        ("bungeecord", "1.8.9"),
        ("bungeecord", "1.20.4"),
        ("bungeeguard", "1.12.2"),
        ("bungeeguard", "26.1"),
    ],
)
async def test_forwarding_backends_see_the_real_player(
    version: str, mode: str, nursery: trio.Nursery, tmp_path: Any
) -> None:
    from _forwarding_backend import ForwardingBackend

    from infrarust.config import Forwarding, ForwardingMode

    secret = "s3cret-forwarding"
    (tmp_path / "forwarding.secret").write_text(secret + "\n")
    fake = await nursery.start(FakeSessionServer().serve)
    account = fake.add_account("token-f", "Forwarded")
    backend = await nursery.start(ForwardingBackend(mode=mode, secret=secret.encode(), token=secret).serve)
    server = ServerConfig(
        name="forwarded",
        addresses=(Address("127.0.0.1", backend.port),),
        domains=("forwarded.test",),
        proxy_mode=ProxyMode.CLIENT_ONLY,
        forwarding_mode=ForwardingMode(mode),
    )
    config = proxy_config(
        server,
        auth=Auth(session_server=fake.url),
        forwarding=Forwarding(secret_file=str(tmp_path / "forwarding.secret")),
    )
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, config)
    client = await Client.start(
        nursery, version, proxy.port, "forwarded.test", "Forwarded", online=("token-f", account.hex, fake.url)
    )
    await client.wait_text(f"forwarded Forwarded {account} 127.0.0.1")
    assert [(p.name, p.uuid, p.address) for p in backend.players] == [("Forwarded", account, "127.0.0.1")]


async def test_velocity_backend_without_forwarding_refuses(nursery: trio.Nursery) -> None:
    from _forwarding_backend import VELOCITY_REQUIRED, ForwardingBackend

    backend = await nursery.start(ForwardingBackend(mode="velocity", secret=b"x").serve)
    server = ServerConfig(
        name="velocity",
        addresses=(Address("127.0.0.1", backend.port),),
        domains=("velocity.test",),
        proxy_mode=ProxyMode.OFFLINE,
    )
    proxy: infrarust.Proxy = await nursery.start(infrarust.serve, proxy_config(server))
    client = await Client.start(nursery, "1.20.4", proxy.port, "velocity.test", "NoForward")
    await client.wait_text(VELOCITY_REQUIRED)
    assert backend.refusals == [VELOCITY_REQUIRED]


@pytest.mark.parametrize("version", ["1.12.2", "1.20.4"])
async def test_mineflayer_spawns_and_chats_on_flying_squid_through_offline(
    version: str, nursery: trio.Nursery
) -> None:
    node = node_executable()
    squid = ManagedProcess(
        [node, str(E2E_DIR / "squid_server.js"), "--version", version],
        name=f"flying-squid {version}",
        cwd=E2E_DIR,
    )
    try:
        line = await trio.to_thread.run_sync(
            lambda: squid.stdout.wait_for(lambda text: '"listening"' in text, STARTUP_TIMEOUT)
        )
        assert line is not None, squid.describe()
        port = json.loads(line)["port"]
        server = ServerConfig(
            name="squid",
            addresses=(Address("127.0.0.1", port),),
            domains=("squid.test",),
            proxy_mode=ProxyMode.OFFLINE,
        )
        proxy: infrarust.Proxy = await nursery.start(infrarust.serve, proxy_config(server))
        argv = [node, str(E2E_DIR / "mineflayer_bot.js"), "--version", version, "--port", str(proxy.port)]
        argv += ["--host", "squid.test", "--username", "Flayer", "--say", "hello squid"]
        with trio.fail_after(90):
            result = await trio.run_process(argv, capture_stdout=True, check=False, cwd=E2E_DIR)
        events = [json.loads(text) for text in result.stdout.decode().splitlines() if text.startswith("{")]
        assert any(e["event"] == "spawn" for e in events), events
        assert any(e["event"] == "message" and "hello squid" in e["text"] for e in events), events
        assert not [e for e in events if e["event"] in ("error", "kicked")], events
        heard = [json.loads(text) for text in squid.stdout.snapshot() if '"chat"' in text]
        assert [(e["username"], e["message"]) for e in heard] == [("Flayer", "hello squid")]
    finally:
        squid.stop()
        squid.kill()
