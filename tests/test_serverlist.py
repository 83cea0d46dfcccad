"""The server list through a real proxy on loopback: status relay, cache, MOTDs, legacy pings and logins.

Backends here are small trio servers (``helpers.FakeStatusServer``) that count their connections,
so "one status exchange at the backend" is counted where it happens. Real third-party clients against a
real Minecraft server are in ``e2e/test_e2e_status.py``.
"""

from __future__ import annotations

import base64
import json
import logging
from functools import partial
from pathlib import Path

import pytest
import trio
from helpers import (
    PING_TOKEN,
    WAIT,
    FakeStatusServer,
    ask_status,
    decode_legacy_kick_text,
    expect_eof,
    free_port,
    legacy_login_1_6,
    next_packet,
    png_bytes,
    proxy_config,
    read_exactly,
    read_until_eof,
    server,
    start_fake_status_server,
    start_proxy,
    start_recording_backend,
    start_silent_server,
    status_json,
)

import infrarust
from infrarust._answersource import encode_source_request, mark_source
from infrarust.admission import UNKNOWN_DOMAIN_MESSAGE
from infrarust.config import load_config
from infrarust.config._models import (
    Address,
    DomainRewrite,
    Motd,
    RewriteKind,
    StatusCache,
    UnknownDomainBehavior,
)
from infrarust.protocol import (
    Handshake,
    LegacyPingKind,
    LegacyStatus,
    NextState,
    PacketReader,
    encode_legacy_ping,
    encode_packet,
    encode_ping,
    encode_status_request,
    parse_legacy_kick,
    parse_ping,
    parse_status_response,
)
from infrarust.status import BUILTIN_UNREACHABLE_TEXT

PNG = png_bytes()
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
UNREACHABLE = Motd(text="§cDown for maintenance", version_name="Maintenance", max_players=20)


def drop(**changes: object) -> dict[str, object]:
    return {"unknown_domain_behavior": UnknownDomainBehavior.DROP, **changes}


async def send_and_read_all(port: int, data: bytes) -> bytes:
    """Send ``data`` in one write and read until the proxy closes (bounded)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        return await expect_eof(stream)


async def legacy_ping(port: int, kind: LegacyPingKind, host: str | None = None, protocol: int = 78) -> bytes:
    """A pre-1.7 ping of ``kind``; the whole answer up to the proxy's close."""
    if kind is LegacyPingKind.V1_6:
        assert host is not None
        return await send_and_read_all(port, encode_legacy_ping(kind, protocol, host, 25565))
    return await send_and_read_all(port, encode_legacy_ping(kind))


def legacy_status(answer: bytes) -> LegacyStatus:
    decode_legacy_kick_text(answer)  # a single, complete kick and nothing after it
    return parse_legacy_kick(answer)


# --- status relayed to the backend ---------------------------------------------------------------------


async def test_status_is_relayed_with_the_clients_handshake_and_the_ping_echoed(
    nursery: trio.Nursery,
) -> None:
    fake = await start_fake_status_server(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    answer = await ask_status(proxy.port, "Lobby.Test.", protocol=763)
    assert answer.text == fake.status_json
    assert answer.pong == PING_TOKEN
    # Exactly the client's handshake and status request; the ping is the proxy's to answer.
    handshake = Handshake(763, "Lobby.Test.", proxy.port, NextState.STATUS)
    assert bytes(fake.received[0]) == handshake.encode() + encode_status_request()
    assert fake.connections == 1


@pytest.mark.parametrize(
    ("rewrite", "seen"),
    [
        (DomainRewrite(RewriteKind.EXPLICIT, "backend.internal"), "backend.internal\0FML2\0"),
        (DomainRewrite(RewriteKind.FROM_BACKEND), "127.0.0.1\0FML2\0"),
        (DomainRewrite(), "lobby.test\0FML2\0"),
    ],
)
async def test_status_handshake_follows_domain_rewrite(
    nursery: trio.Nursery, rewrite: DomainRewrite, seen: str
) -> None:
    fake = await start_fake_status_server(nursery)
    config = proxy_config(server("lobby", ["lobby.test"], [fake.address], domain_rewrite=rewrite))
    proxy = await start_proxy(nursery, config)
    answer = await ask_status(proxy.port, "lobby.test\0FML2\0", protocol=47)
    assert answer.text == fake.status_json
    assert fake.handshakes == [Handshake(47, seen, proxy.port, NextState.STATUS)]


async def test_request_and_ping_in_the_handshakes_write_are_both_answered(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    answer = await ask_status(proxy.port, "lobby.test", one_write=True)
    assert answer.text == fake.status_json
    assert answer.pong == PING_TOKEN


async def test_request_sent_after_the_handshake_is_answered(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    sent = Handshake(765, "lobby.test", 25565, NextState.STATUS).encode()
    sent += encode_status_request() + encode_ping(1)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        for byte in sent:  # the worst chunking there is: one byte per write
            await stream.send_all(bytes((byte,)))
            await trio.sleep(0.005)
        reader = PacketReader()
        assert parse_status_response(await next_packet(stream, reader)) == fake.status_json
        assert parse_ping(await next_packet(stream, reader)) == 1
        assert await expect_eof(stream) == b""


@pytest.mark.parametrize("routed", [True, False], ids=["routed", "unknown-domain"])
async def test_ping_without_a_request_is_answered_without_asking_the_backend(
    nursery: trio.Nursery, routed: bool
) -> None:
    fake = await start_fake_status_server(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    host = "lobby.test" if routed else "nowhere.test"
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(
            Handshake(765, host, 25565, NextState.STATUS).encode() + encode_ping(PING_TOKEN)
        )
        pong = await next_packet(stream, PacketReader())
        assert pong.packet_id == 0x01 and parse_ping(pong) == PING_TOKEN
        assert await expect_eof(stream) == b""
    assert fake.connections == 0


async def test_backend_json_is_kept_exactly_forge_data_included(nursery: trio.Nursery) -> None:
    # Odd spacing and key order, non-ASCII text, Forge's forgeData and the older modinfo, and a mod list
    # far over the protocol's 32767-character string limit (big modpacks send that).
    mods = [{"modId": f"mod_{i:04d}", "modmarker": "1.0." + str(i)} for i in range(2000)]
    text = (
        '{ "description":{"text":"Modded §bServer ✓"},  "players":{"online":3,"max":100},\n'
        '"version":{"protocol":47,"name":"Forge 1.8.9"},'
        f'"modinfo":{{"type":"FML","modList":{json.dumps(mods)}}},'
        '"forgeData":{"channels":[],"mods":[],"fmlNetworkVersion":3,"d":"\\u0000abc"} }'
    )
    assert len(text) > 32767
    fake = await start_fake_status_server(nursery, text)
    proxy = await start_proxy(nursery, proxy_config(server("modded", ["modded.test"], [fake.address])))
    answer = await ask_status(proxy.port, "modded.test", protocol=47)
    assert answer.text == text


async def test_backend_with_trailing_bytes_after_the_json_still_works(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery, trailing=b"\x00\x01trailing garbage")
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    answer = await ask_status(proxy.port, "lobby.test")
    assert answer.text == fake.status_json
    assert answer.pong == PING_TOKEN


async def test_online_motd_overlays_the_backend_and_keeps_its_player_counts(nursery: trio.Nursery) -> None:
    sample = [{"name": "Alex", "id": "00000000-0000-0000-0000-00000000000a"}]
    backend = json.loads(status_json(online=7, max_players=50))
    backend["players"]["sample"] = sample
    backend["forgeData"] = {"fmlNetworkVersion": 3}
    fake = await start_fake_status_server(nursery, json.dumps(backend))
    online = Motd(text="§aWelcome to the network", favicon=DATA_URI, version_name="Net 1.20", max_players=100)
    config = proxy_config(server("lobby", ["lobby.test"], [fake.address], motd={"online": online}))
    proxy = await start_proxy(nursery, config)
    status = (await ask_status(proxy.port, "lobby.test")).json
    assert status == {
        "version": {"name": "Net 1.20", "protocol": 765},
        "players": {"max": 100, "online": 7, "sample": sample},
        "description": {"text": "§aWelcome to the network"},
        "favicon": DATA_URI,
        "forgeData": {"fmlNetworkVersion": 3},
    }


async def test_failover_address_answers_status(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    dead = Address("127.0.0.1", free_port())
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [dead, fake.address])))
    assert (await ask_status(proxy.port, "lobby.test")).text == fake.status_json


# --- the status cache ----------------------------------------------------------------------------------


async def test_concurrent_pings_share_one_backend_exchange(nursery: trio.Nursery) -> None:
    release = trio.Event()
    fake = await start_fake_status_server(nursery, release=release)
    config = proxy_config(
        server("lobby", ["lobby.test"], [fake.address]), status_cache=StatusCache(60.0, 100)
    )
    proxy = await start_proxy(nursery, config)
    streams = [await trio.open_tcp_stream("127.0.0.1", proxy.port) for _ in range(20)]
    try:
        for stream in streams:
            await stream.send_all(
                Handshake(765, "lobby.test", 25565, NextState.STATUS).encode() + encode_status_request()
            )
        # The backend holds its answer until every request has reached the proxy.
        with trio.fail_after(WAIT):
            while fake.connections == 0:
                await trio.sleep(0.005)
        await trio.sleep(0.3)
        release.set()
        texts: list[str] = []
        for index, stream in enumerate(streams):
            reader = PacketReader()
            texts.append(parse_status_response(await next_packet(stream, reader)))
            await stream.send_all(encode_ping(index))
            assert parse_ping(await next_packet(stream, reader)) == index
    finally:
        for stream in streams:
            await stream.aclose()
    assert texts == [fake.status_json] * 20
    assert fake.connections == 1
    # Within the ttl, later pings are answered from the cache too.
    assert (await ask_status(proxy.port, "lobby.test")).text == fake.status_json
    assert fake.connections == 1


async def test_answer_expires_after_ttl(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery, status_json("first"))
    config = proxy_config(server("lobby", ["lobby.test"], [fake.address]), status_cache=StatusCache(0.3, 100))
    proxy = await start_proxy(nursery, config)
    assert (await ask_status(proxy.port, "lobby.test")).json["description"] == "first"
    fake.status_json = status_json("second")
    await trio.sleep(0.5)  # past the ttl
    assert (await ask_status(proxy.port, "lobby.test")).json["description"] == "second"
    assert fake.connections == 2


async def test_protocol_versions_and_servers_are_separate_keys(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery, status_json("for 47"))
    config = proxy_config(
        server("lobby", ["lobby.test"], [fake.address]),
        server("other", ["other.test"], [fake.address]),
        status_cache=StatusCache(60.0, 100),
    )
    proxy = await start_proxy(nursery, config)
    assert (await ask_status(proxy.port, "lobby.test", protocol=47)).json["description"] == "for 47"
    fake.status_json = status_json("for 765")
    assert (await ask_status(proxy.port, "lobby.test", protocol=765)).json["description"] == "for 765"
    assert fake.connections == 2
    # Each key kept its own answer.
    assert (await ask_status(proxy.port, "lobby.test", protocol=47)).json["description"] == "for 47"
    assert (await ask_status(proxy.port, "lobby.test", protocol=765)).json["description"] == "for 765"
    assert fake.connections == 2
    assert [handshake.protocol_version for handshake in fake.handshakes] == [47, 765]
    # Same protocol, another server: another key.
    assert (await ask_status(proxy.port, "other.test", protocol=47)).json["description"] == "for 765"
    assert fake.connections == 3


async def test_max_entries_bounds_the_cache(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    config = proxy_config(server("lobby", ["lobby.test"], [fake.address]), status_cache=StatusCache(60.0, 2))
    proxy = await start_proxy(nursery, config)
    for protocol in (47, 340, 765):
        await ask_status(proxy.port, "lobby.test", protocol=protocol)
    assert fake.connections == 3
    await ask_status(proxy.port, "lobby.test", protocol=765)
    await ask_status(proxy.port, "lobby.test", protocol=340)
    assert fake.connections == 3  # the two newest are still cached
    await ask_status(proxy.port, "lobby.test", protocol=47)
    assert fake.connections == 4  # the oldest was evicted


async def test_a_down_backend_is_not_cached(nursery: trio.Nursery) -> None:
    port = free_port()
    config = proxy_config(
        server("lobby", ["lobby.test"], [Address("127.0.0.1", port)], motd={"unreachable": UNREACHABLE}),
        status_cache=StatusCache(60.0, 100),
    )
    proxy = await start_proxy(nursery, config)
    assert (await ask_status(proxy.port, "lobby.test")).json["description"] == {"text": UNREACHABLE.text}
    fake = await start_fake_status_server(nursery, port=port)  # the backend comes up
    assert (await ask_status(proxy.port, "lobby.test")).text == fake.status_json


# --- backend down ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [47, 340, 769])
async def test_down_backend_answers_motd_unreachable_with_the_clients_protocol(
    nursery: trio.Nursery, protocol: int
) -> None:
    unreachable = Motd(text="§cDown for maintenance", favicon=DATA_URI, version_name="Maint", max_players=20)
    dead = [Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())]
    motds = {"unreachable": unreachable, "offline": Motd(text="offline"), "online": Motd(text="online")}
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], dead, motd=motds)))
    answer = await ask_status(proxy.port, "lobby.test", protocol=protocol)
    assert answer.json == {
        "version": {"name": "Maint", "protocol": protocol},
        "players": {"max": 20, "online": 0},
        "description": {"text": "§cDown for maintenance"},
        "favicon": DATA_URI,
    }
    assert answer.pong == PING_TOKEN


@pytest.mark.parametrize(
    ("motds", "text"),
    [
        ({"offline": Motd(text="Offline for the night")}, "Offline for the night"),
        ({"online": Motd(text="never shown when down")}, "Server is unreachable"),
        ({}, "Server is unreachable"),
    ],
    ids=["offline", "online-only", "none"],
)
async def test_down_backend_falls_back_to_offline_then_builtin(
    nursery: trio.Nursery, motds: dict[str, Motd], text: str
) -> None:
    dead = Address("127.0.0.1", free_port())
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [dead], motd=motds)))
    status = (await ask_status(proxy.port, "lobby.test", protocol=5)).json
    assert status["description"] == {"text": text}
    assert status["version"]["protocol"] == 5


@pytest.mark.parametrize(
    "reply",
    [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n", encode_packet(0x01, bytes(8)), b"\x05\x00\x03ab"],
    ids=["closes-at-once", "http", "pong-instead", "cut-short"],
)
async def test_backend_that_answers_nonsense_gets_the_unreachable_motd(
    nursery: trio.Nursery, reply: bytes
) -> None:
    async def misbehave(stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(WAIT):
                await stream.receive_some(65536)
                await stream.send_all(reply)
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await nursery.start(partial(trio.serve_tcp, misbehave, 0, host="127.0.0.1"))
    address = Address("127.0.0.1", listeners[0].socket.getsockname()[1])
    config = proxy_config(server("lobby", ["lobby.test"], [address], motd={"unreachable": UNREACHABLE}))
    proxy = await start_proxy(nursery, config)
    answer = await ask_status(proxy.port, "lobby.test", protocol=340)
    assert answer.json["description"] == {"text": UNREACHABLE.text}
    assert answer.json["version"]["protocol"] == 340


async def test_backend_that_never_answers_gets_the_unreachable_motd(nursery: trio.Nursery) -> None:
    silent = await start_silent_server(nursery)
    config = proxy_config(
        server("lobby", ["lobby.test"], [Address("127.0.0.1", silent)], motd={"unreachable": UNREACHABLE}),
        handshake_timeout=1.0,
    )
    proxy = await start_proxy(nursery, config)
    answer = await ask_status(proxy.port, "lobby.test", protocol=340)
    assert answer.json["description"] == {"text": UNREACHABLE.text}
    assert answer.json["version"]["protocol"] == 340


# --- unknown domains -----------------------------------------------------------------------------------

ONLINE, OFFLINE = Motd(text="online entry", max_players=1), Motd(text="offline entry", max_players=2)
UNREACHABLE_DEFAULT = Motd(text="unreachable entry", max_players=3)


@pytest.mark.parametrize(
    ("default_motd", "expected"),
    [
        ({"unreachable": UNREACHABLE_DEFAULT, "offline": OFFLINE, "online": ONLINE}, ("online entry", 1)),
        ({"unreachable": UNREACHABLE_DEFAULT, "offline": OFFLINE}, ("offline entry", 2)),
        ({"unreachable": UNREACHABLE_DEFAULT}, ("unreachable entry", 3)),
        ({}, ("Unknown server: check the address", 0)),
    ],
    ids=["online", "offline", "unreachable", "builtin"],
)
@pytest.mark.parametrize("protocol", [47, 769])
async def test_unknown_domain_gets_the_default_motd_with_the_clients_protocol(
    nursery: trio.Nursery, default_motd: dict[str, Motd], expected: tuple[str, int], protocol: int
) -> None:
    fake = await start_fake_status_server(nursery)
    config = proxy_config(server("lobby", ["lobby.test"], [fake.address]), default_motd=default_motd)
    proxy = await start_proxy(nursery, config)
    answer = await ask_status(proxy.port, "typo.test", protocol=protocol)
    text, max_players = expected
    assert answer.json == {
        "version": {"name": "infrarust", "protocol": protocol},
        "players": {"max": max_players, "online": 0},
        "description": {"text": text},
    }
    assert answer.pong == PING_TOKEN
    assert fake.connections == 0


async def test_unknown_domain_status_is_closed_under_drop(nursery: trio.Nursery) -> None:
    fake = await start_fake_status_server(nursery)
    config = proxy_config(
        server("lobby", ["lobby.test"], [fake.address]), **drop(default_motd={"online": ONLINE})
    )
    proxy = await start_proxy(nursery, config)
    request = Handshake(765, "typo.test", 25565, NextState.STATUS).encode() + encode_status_request()
    assert await send_and_read_all(proxy.port, request + encode_ping(1)) == b""
    # A routed domain still works under drop.
    assert (await ask_status(proxy.port, "lobby.test")).text == fake.status_json
    assert fake.connections == 1


async def test_favicons_from_a_file_base64_or_data_uri_are_sent_as_data_uris(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    icons = {name: png_bytes(64, 64) + name.encode() for name in ("file", "base64", "uri")}
    (tmp_path / "servers").mkdir()
    (tmp_path / "servers" / "icon.png").write_bytes(icons["file"])
    (tmp_path / "servers" / "lobby.toml").write_text(
        'domains = ["lobby.test"]\n'
        f'addresses = ["127.0.0.1:{free_port()}"]\n'
        "[motd.unreachable]\n"
        'text = "file icon"\n'
        'favicon = "icon.png"\n'
    )
    (tmp_path / "servers" / "other.toml").write_text(
        'domains = ["other.test"]\n'
        f'addresses = ["127.0.0.1:{free_port()}"]\n'
        "[motd.offline]\n"
        f'favicon = "{base64.b64encode(icons["base64"]).decode()}"\n'
    )
    uri = "data:image/png;base64," + base64.b64encode(icons["uri"]).decode()
    (tmp_path / "infrarust.toml").write_text(
        f'bind = "127.0.0.1:0"\n[default_motd.unreachable]\nfavicon = "{uri}"\n'
    )
    config = load_config(tmp_path / "infrarust.toml")
    proxy = await start_proxy(nursery, config)
    for host, name in [("lobby.test", "file"), ("other.test", "base64"), ("typo.test", "uri")]:
        favicon = (await ask_status(proxy.port, host)).json["favicon"]
        assert favicon.startswith("data:image/png;base64,"), (host, favicon[:40])
        assert base64.b64decode(favicon.removeprefix("data:image/png;base64,")) == icons[name], host


# --- legacy (pre-1.7) pings ----------------------------------------------------------------------------


async def legacy_setup(nursery: trio.Nursery, **changes: object) -> tuple[infrarust.Proxy, FakeStatusServer]:
    description = {"text": "Hello", "color": "gold", "extra": [{"text": " world", "bold": True}]}
    fake = await start_fake_status_server(nursery, status_json(description, online=7, max_players=50))
    down = server(
        "down",
        ["down.test"],
        [Address("127.0.0.1", free_port())],
        motd={"unreachable": UNREACHABLE},
    )
    config = proxy_config(server("lobby", ["lobby.test"], [fake.address]), down, **changes)
    return await start_proxy(nursery, config), fake


async def test_routed_1_6_ping_shows_the_backends_motd_and_counts(nursery: trio.Nursery) -> None:
    proxy, fake = await legacy_setup(nursery)
    answer = await legacy_ping(proxy.port, LegacyPingKind.V1_6, "Lobby.Test")
    assert decode_legacy_kick_text(answer).startswith("§1\0")
    assert legacy_status(answer) == LegacyStatus(
        motd="§6Hello§l world", online=7, max_players=50, protocol_version=765, version_name="Fake 1.20.4"
    )
    # The backend was asked with a modern status handshake naming the host the 1.6 client typed.
    assert len(fake.handshakes) == 1
    assert fake.handshakes[0].host == "Lobby.Test"
    assert fake.handshakes[0].port == 25565
    assert fake.handshakes[0].next_state is NextState.STATUS
    # And the answer is cached.
    assert legacy_status(await legacy_ping(proxy.port, LegacyPingKind.V1_6, "lobby.test")).online == 7
    assert fake.connections == 1


async def test_1_6_ping_split_across_writes_is_answered(nursery: trio.Nursery) -> None:
    proxy, _ = await legacy_setup(nursery)
    ping = encode_legacy_ping(LegacyPingKind.V1_6, 78, "lobby.test", 25565)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        # FE | 01 | FA and part of the channel name | the rest: each stop looks like a shorter ping.
        for start, end in [(0, 1), (1, 2), (2, 10), (10, len(ping))]:
            await stream.send_all(ping[start:end])
            await trio.sleep(0.05)
        assert legacy_status(await expect_eof(stream)).motd == "§6Hello§l world"


async def test_1_6_ping_for_a_down_backend_gets_motd_unreachable_with_its_protocol(
    nursery: trio.Nursery,
) -> None:
    proxy, _ = await legacy_setup(nursery)
    answer = await legacy_ping(proxy.port, LegacyPingKind.V1_6, "down.test", protocol=74)
    assert legacy_status(answer) == LegacyStatus(
        motd="§cDown for maintenance",
        online=0,
        max_players=20,
        protocol_version=74,
        version_name="Maintenance",
    )


async def test_1_6_ping_for_an_unknown_host_gets_the_default_motd(nursery: trio.Nursery) -> None:
    proxy, fake = await legacy_setup(nursery, default_motd={"online": Motd(text="Who?", max_players=5)})
    answer = await legacy_ping(proxy.port, LegacyPingKind.V1_6, "typo.test")
    assert legacy_status(answer) == LegacyStatus(
        motd="Who?", online=0, max_players=5, protocol_version=78, version_name="infrarust"
    )
    assert fake.connections == 0


@pytest.mark.parametrize(
    ("default_motd", "motd"),
    [({"offline": Motd(text="§eDefault entry", max_players=9)}, "§eDefault entry"), ({}, None)],
    ids=["configured", "builtin"],
)
async def test_1_4_ping_gets_the_default_motd_with_protocol_61(
    nursery: trio.Nursery, default_motd: dict[str, Motd], motd: str | None
) -> None:
    proxy, fake = await legacy_setup(nursery, default_motd=default_motd)
    answer = await legacy_ping(proxy.port, LegacyPingKind.V1_4)
    assert decode_legacy_kick_text(answer).startswith("§1\0")
    assert legacy_status(answer) == LegacyStatus(
        motd=motd or "Unknown server: check the address",
        online=0,
        max_players=9 if motd else 0,
        protocol_version=61,
        version_name="infrarust",
    )
    assert fake.connections == 0


async def test_beta_ping_gets_the_default_motd_in_the_beta_format(nursery: trio.Nursery) -> None:
    proxy, fake = await legacy_setup(
        nursery, default_motd={"online": Motd(text="Old friends", max_players=8)}
    )
    answer = await legacy_ping(proxy.port, LegacyPingKind.BETA)
    assert decode_legacy_kick_text(answer) == "Old friends§0§8"
    assert legacy_status(answer) == LegacyStatus("Old friends", 0, 8, None, None)
    assert fake.connections == 0


async def test_beta_ping_with_the_builtin_text(nursery: trio.Nursery) -> None:
    proxy, _ = await legacy_setup(nursery)
    answer = await legacy_ping(proxy.port, LegacyPingKind.BETA)
    assert decode_legacy_kick_text(answer) == "Unknown server: check the address§0§0"


async def test_beta_ping_strips_whole_colour_codes(nursery: trio.Nursery) -> None:
    proxy, _ = await legacy_setup(nursery, default_motd={"online": Motd(text="§cUnknown §lserver")})
    answer = await legacy_ping(proxy.port, LegacyPingKind.BETA)
    assert decode_legacy_kick_text(answer) == "Unknown server§0§0"


async def test_bare_fe_01_fa_is_answered_like_a_hostless_ping(nursery: trio.Nursery) -> None:
    proxy, _ = await legacy_setup(
        nursery, default_motd={"online": Motd(text="Hostless", max_players=4)}, handshake_timeout=1.0
    )
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(b"\xfe\x01\xfa")
        answer = await expect_eof(stream)
    status = legacy_status(answer)
    assert (status.motd, status.online, status.max_players) == ("Hostless", 0, 4)


@pytest.mark.parametrize(
    "ping",
    [
        encode_legacy_ping(LegacyPingKind.V1_6, 78, "typo.test", 25565),
        encode_legacy_ping(LegacyPingKind.V1_4),
        encode_legacy_ping(LegacyPingKind.BETA),
    ],
    ids=["1.6-unknown-host", "1.4", "beta"],
)
async def test_legacy_pings_without_a_route_are_closed_under_drop(nursery: trio.Nursery, ping: bytes) -> None:
    proxy, fake = await legacy_setup(nursery, **drop())
    assert await send_and_read_all(proxy.port, ping) == b""
    assert fake.connections == 0
    # A routed 1.6 ping is still answered.
    assert legacy_status(await legacy_ping(proxy.port, LegacyPingKind.V1_6, "lobby.test")).online == 7


# --- legacy (pre-1.7) logins ---------------------------------------------------------------------------


async def test_legacy_login_is_routed_by_its_host_and_relayed_raw(nursery: trio.Nursery) -> None:
    backend = await start_recording_backend(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("old", ["old.test"], [backend.address])))
    login = legacy_login_1_6("Notch", "Old.Test", 25565)
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    async with stream:
        await stream.send_all(login)
        assert await backend.wait_for(0, len(login)) == login
        assert await read_exactly(stream, len(login)) == login  # relayed both ways
        await stream.send_all(b"\xcd\x00")  # whatever the client sends next goes through as is
        assert await backend.wait_for(0, len(login) + 2) == login + b"\xcd\x00"
    assert len(backend.received) == 1


@pytest.mark.parametrize("behavior", list(UnknownDomainBehavior))
async def test_legacy_login_for_an_unknown_host(
    nursery: trio.Nursery, behavior: UnknownDomainBehavior
) -> None:
    backend = await start_recording_backend(nursery)
    config = proxy_config(server("old", ["old.test"], [backend.address]), unknown_domain_behavior=behavior)
    proxy = await start_proxy(nursery, config)
    answer = await send_and_read_all(proxy.port, legacy_login_1_6("Notch", "typo.test"))
    if behavior is UnknownDomainBehavior.DROP:
        assert answer == b""
    else:
        assert decode_legacy_kick_text(answer) == UNKNOWN_DOMAIN_MESSAGE
    assert backend.received == []


async def test_legacy_login_for_a_down_backend_gets_its_disconnect_message(nursery: trio.Nursery) -> None:
    dead = Address("127.0.0.1", free_port())
    config = proxy_config(server("old", ["old.test"], [dead], disconnect_message="Back soon"))
    proxy = await start_proxy(nursery, config)
    answer = await send_and_read_all(proxy.port, legacy_login_1_6("Notch", "old.test"))
    assert decode_legacy_kick_text(answer) == "Back soon"


# --- misbehaving status clients ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [encode_packet(0x05, b"chat"), encode_packet(0x00, bytes(100))], ids=["unknown-id", "oversize"]
)
async def test_bad_status_packet_is_closed_quietly(
    nursery: trio.Nursery, bad: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    fake = await start_fake_status_server(nursery)
    proxy = await start_proxy(nursery, proxy_config(server("lobby", ["lobby.test"], [fake.address])))
    handshake = Handshake(765, "lobby.test", 25565, NextState.STATUS).encode()
    assert await send_and_read_all(proxy.port, handshake + bad) == b""
    assert (await ask_status(proxy.port, "lobby.test")).text == fake.status_json  # others unaffected
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text


async def test_a_second_status_request_closes_the_connection(nursery: trio.Nursery) -> None:
    proxy = await start_proxy(nursery, proxy_config())
    stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    first = Handshake(765, "nowhere.test", 25565, NextState.STATUS).encode() + encode_status_request()
    await stream.send_all(first + encode_status_request())
    reader = PacketReader()
    reply = await read_until_eof(stream)
    reader.feed(reply)
    packet = reader.next_packet()
    assert packet is not None and "Unknown server" in parse_status_response(packet)
    assert reader.next_packet() is None and reader.take_leftover() == b""


# --- the answer's source, for clients that ask (ping --expect-backend) -----------------------------------


async def ask_with_request(port: int, host: str, request: bytes) -> str:
    """A status ping whose status request is ``request``; the status text, after checking the pong."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(Handshake(765, host, port, NextState.STATUS).encode() + request)
        reader = PacketReader()
        text = parse_status_response(await next_packet(stream, reader))
        await stream.send_all(encode_ping(PING_TOKEN))
        assert parse_ping(await next_packet(stream, reader)) == PING_TOKEN
    return text


async def ask_source(port: int, host: str) -> str:
    return await ask_with_request(port, host, encode_source_request())


async def test_source_is_told_only_to_clients_that_ask_and_keeps_the_backends_bytes(
    nursery: trio.Nursery,
) -> None:
    mods = [{"modId": f"mod_{i:04d}", "modmarker": "1.0." + str(i)} for i in range(2000)]
    text = (
        '{ "description":{"text":"Modded §bServer ✓"}, "players":{"online":3,"max":100},\n'
        '"version":{"protocol":47,"name":"Forge 1.8.9"},'
        f'"modinfo":{{"type":"FML","modList":{json.dumps(mods)}}} }}'
    )
    fake = await start_fake_status_server(nursery, text)
    proxy = await start_proxy(nursery, proxy_config(server("modded", ["modded.test"], [fake.address])))
    assert await ask_source(proxy.port, "modded.test") == '{"infrarust":{"source":"backend"},' + text[1:]
    assert (await ask_status(proxy.port, "modded.test")).text == text  # vanilla clients: exactly as sent
    assert await ask_source(proxy.port, "modded.test") == mark_source(text, "cache")
    # Any other request body is a plain request (vanilla clients send none).
    other = encode_packet(0x00, b"\x03abc")
    assert await ask_with_request(proxy.port, "modded.test", other) == text
    # What the backend got was always a plain request of the proxy's own.
    assert all(bytes(received).endswith(encode_status_request()) for received in fake.received)


async def test_source_of_shared_cached_unreachable_and_unknown_answers(nursery: trio.Nursery) -> None:
    release = trio.Event()
    fake = await start_fake_status_server(nursery, release=release)
    down = Address("127.0.0.1", free_port())
    config = proxy_config(
        server("lobby", ["lobby.test"], [fake.address]),
        server("down", ["down.test"], [down]),
        status_cache=StatusCache(60.0, 100),
    )
    proxy = await start_proxy(nursery, config)
    sources: list[str] = []

    async def ask() -> None:
        sources.append(json.loads(await ask_source(proxy.port, "lobby.test"))["infrarust"]["source"])

    async with trio.open_nursery() as asking:
        for _ in range(3):
            asking.start_soon(ask)
        with trio.fail_after(WAIT):
            while fake.connections == 0:
                await trio.sleep(0.005)
        await trio.sleep(0.2)  # every ping is now waiting on the one exchange
        release.set()
    assert fake.connections == 1
    assert sources == ["backend"] * 3  # an exchange made for them, not a stored answer
    assert json.loads(await ask_source(proxy.port, "lobby.test"))["infrarust"] == {"source": "cache"}
    unreachable = json.loads(await ask_source(proxy.port, "down.test"))
    assert unreachable["infrarust"] == {"source": "unreachable"}
    assert unreachable["description"] == {"text": BUILTIN_UNREACHABLE_TEXT}
    unknown = json.loads(await ask_source(proxy.port, "typo.test"))
    assert unknown["infrarust"] == {"source": "unknown_domain"}
