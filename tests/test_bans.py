"""Persistent bans: the pure matching core, the file, the proxy refusing banned logins, and the commands."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from helpers import (
    Backend,
    ask_status,
    decode_legacy_kick_text,
    handshake,
    legacy_login_1_6,
    login_start,
    proxy_config,
    read_exactly,
    read_until_eof,
    server,
    start_proxy,
)

import infrarust
from infrarust.bans import (
    BanEntry,
    BanFileError,
    BanList,
    ban_file,
    format_time,
    normalize_ip,
    parse_time,
    read_ban_file,
)
from infrarust.config import Ban, ConfigError, ProxyConfig, load_config
from infrarust.protocol import encode_login_disconnect, encode_packet, encode_proxy_v2, encode_string

ROOT = Path(__file__).resolve().parent.parent
STEVE_UUID = uuid.UUID("069a79f4-44e9-4726-a5be-fca90e38aaf5")
# The UUID the helpers' 1.20.4 login start carries.
HELPER_UUID = uuid.UUID(bytes=bytes(range(16)))
T0 = 1_750_000_000.0  # an explicit "now" for the pure tests


def banned(reason: str, until: str | None = None) -> bytes:
    text = f"You are banned from this server: {reason}" + (f" (until {until} UTC)" if until else "")
    return encode_login_disconnect(text)


def login_start_with(name: str, player_uuid: uuid.UUID) -> bytes:
    return encode_packet(0x00, encode_string(name) + player_uuid.bytes)


def write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document))


# Matching, in memory, with an explicit clock.


def test_an_empty_list_matches_nothing() -> None:
    bans = BanList()
    assert not bans
    assert bans.match("203.0.113.7", "Steve", STEVE_UUID, T0) is None
    assert bans.match("not an ip", None, "not a uuid") is None


def test_ip_and_cidr_match() -> None:
    bans = BanList()
    single = bans.ban_ip("203.0.113.7", reason="bots", now=T0)
    network = bans.ban_ip("10.1.2.3/8", reason="range", now=T0)
    assert (single.ip, network.ip) == ("203.0.113.7", "10.0.0.0/8")  # host bits cleared, /32 dropped
    assert bans.match("203.0.113.7", now=T0) == single
    assert bans.match("203.0.113.8", now=T0) is None
    assert bans.match("10.255.0.1", now=T0) == network
    assert bans.match("11.0.0.1", now=T0) is None
    assert bans.match(None, now=T0) is None


def test_ipv6_and_ipv4_mapped_addresses_match() -> None:
    bans = BanList()
    v6 = bans.ban_ip("2001:db8::/32", reason="v6", now=T0)
    v6_single = bans.ban_ip("2001:db8:ffff::1", reason="one", now=T0)
    loopback = bans.ban_ip("127.0.0.1", reason="local", now=T0)
    mapped_network = bans.ban_ip("::ffff:192.0.2.0/120", reason="mapped", now=T0)
    assert mapped_network.ip == "192.0.2.0/24"  # stored as the IPv4 network it means
    assert bans.match("2001:db8::42", now=T0) == v6
    assert bans.match("2001:db8:ffff::1", now=T0) == v6_single  # the exact address is checked first
    assert bans.match("2001:db9::1", now=T0) is None
    assert bans.match("::ffff:127.0.0.1", now=T0) == loopback  # an IPv4 client on a dual-stack socket
    assert bans.match("192.0.2.99", now=T0) == mapped_network
    assert bans.match("::ffff:192.0.2.99", now=T0) == mapped_network
    assert normalize_ip("::ffff:10.0.0.1") == "10.0.0.1"


def test_names_match_in_any_case_and_uuids_in_any_form() -> None:
    bans = BanList()
    by_name = bans.ban_player("Steve", reason="griefing", now=T0)
    by_uuid = bans.ban_player(uuid=str(STEVE_UUID).replace("-", "").upper(), reason="alt", now=T0)
    assert by_uuid.uuid == STEVE_UUID
    assert bans.match(None, "sTEVE", now=T0) == by_name
    assert bans.match(None, "Alex", now=T0) is None
    assert bans.match(None, "Alex", STEVE_UUID, now=T0) == by_uuid
    assert bans.match(None, "Alex", str(STEVE_UUID), now=T0) == by_uuid
    assert bans.match(None, "Alex", uuid.uuid4(), now=T0) is None


def test_a_player_banned_by_name_and_uuid_matches_either() -> None:
    bans = BanList()
    entry = bans.ban_player("Notch", STEVE_UUID, reason="both", now=T0)
    assert bans.match(None, "notch", None, T0) == entry
    assert bans.match(None, "Renamed", STEVE_UUID, T0) == entry
    assert bans.unban_player("NOTCH") == [entry]
    assert bans.match(None, "Renamed", STEVE_UUID, T0) is None


def test_expired_bans_never_match() -> None:
    bans = BanList()
    entry = bans.ban_player("Steve", reason="cool off", duration=60, now=T0 + 0.4)
    assert (entry.created_at, entry.expires_at) == (T0, T0 + 60)  # whole seconds, never ending early
    permanent = bans.ban_ip("203.0.113.7", reason="bots", now=T0)
    assert bans.match(None, "Steve", now=T0 + 59.9) == entry
    assert bans.match(None, "Steve", now=T0 + 60) is None
    assert bans.match("203.0.113.7", now=T0 + 10**9) == permanent
    assert entry.expired(T0 + 60) and not permanent.expired(T0 + 10**9)


def test_the_longest_ban_of_a_target_wins() -> None:
    short = BanEntry(name="Steve", reason="short", created_at=T0, expires_at=T0 + 10)
    forever = BanEntry(name="steve", reason="forever", created_at=T0)
    longer = BanEntry(name="STEVE", reason="long", created_at=T0, expires_at=T0 + 100)
    bans = BanList([short, forever, longer])
    assert bans.match(None, "Steve", now=T0 + 1000) == forever


def test_the_refusal_message_says_why_and_until_when() -> None:
    temporary = BanEntry(name="Steve", reason="griefing", created_at=T0, expires_at=T0 + 3600)
    assert temporary.message() == "You are banned from this server: griefing (until 2025-06-15 16:06:40 UTC)"
    assert BanEntry(ip="1.2.3.4", reason="bots").message() == "You are banned from this server: bots"
    assert BanEntry(ip="1.2.3.4").message() == "You are banned from this server."


def test_banning_again_replaces_and_unbanning_is_exact() -> None:
    bans = BanList()
    bans.ban_ip("10.0.0.0/8", reason="first", now=T0)
    second = bans.ban_ip("10.0.0.0/8", reason="second", duration=5, now=T0)
    assert bans.entries() == (second,)
    assert bans.unban_ip("10.1.2.3") == []  # a wider ban is not lifted by unbanning one address in it
    assert bans.match("10.1.2.3", now=T0) == second
    assert bans.unban_ip("10.0.0.0/8") == [second]
    assert len(bans) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.ban_ip("10.0.0.300", reason=""), "invalid IP or CIDR '10.0.0.300'"),
        (lambda b: b.ban_player("two words", reason=""), "invalid player name 'two words'"),
        (lambda b: b.ban_player("x" * 17, reason=""), "invalid player name"),
        (lambda b: b.ban_player(uuid="not-a-uuid", reason=""), "invalid UUID 'not-a-uuid'"),
        (lambda b: b.ban_player(reason=""), "a player ban needs a name, a UUID, or both"),
        (lambda b: b.ban_ip("1.2.3.4", reason="", duration=0), "duration must be a positive number"),
        (lambda b: b.unban_player(), "an unban needs a name, a UUID, or both"),
    ],
)
def test_bad_arguments_raise_value_error(call: Any, message: str) -> None:
    bans = BanList()
    with pytest.raises(ValueError, match=re.escape(message)):
        call(bans)
    assert len(bans) == 0


def test_times_round_trip_as_utc_iso_8601() -> None:
    assert format_time(T0) == "2025-06-15T15:06:40Z"
    assert parse_time("2025-06-15T15:06:40Z") == T0
    assert parse_time("2025-06-15T17:06:40+02:00") == T0
    with pytest.raises(ValueError, match="no time zone"):
        parse_time("2025-06-15T15:06:40")


# The file.


def test_a_missing_file_is_an_empty_list(tmp_path: Path) -> None:
    bans = BanList.load(tmp_path / "bans.json")
    assert bans.entries() == ()
    assert not (tmp_path / "bans.json").exists()  # nothing is written until something changes


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "bans.json"  # the folder is made on the first save
    bans = BanList.load(path)
    bans.ban_ip("203.0.113.0/24", reason="bots", source="cli:alice", now=T0)
    bans.ban_player("Steve", reason="griefing «»", duration=3600, now=T0)
    bans.ban_player(uuid=STEVE_UUID, reason="", now=T0)
    again = BanList.load(path)
    assert again.entries() == bans.entries()
    document = json.loads(path.read_text("utf-8"))
    assert document == {
        "version": 1,
        "bans": [
            {
                "ip": "203.0.113.0/24",
                "reason": "bots",
                "created_at": "2025-06-15T15:06:40Z",
                "expires_at": None,
                "source": "cli:alice",
            },
            {
                "name": "Steve",
                "reason": "griefing «»",
                "created_at": "2025-06-15T15:06:40Z",
                "expires_at": "2025-06-15T16:06:40Z",
                "source": "api",
            },
            {
                "uuid": str(STEVE_UUID),
                "reason": "",
                "created_at": "2025-06-15T15:06:40Z",
                "expires_at": None,
                "source": "api",
            },
        ],
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["bans.json"]  # no temporary file left


def test_a_failed_save_leaves_the_old_file_and_the_list_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bans.json"
    bans = BanList.load(path)
    bans.ban_ip("203.0.113.7", reason="bots", now=T0)
    before = path.read_bytes()

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(BanFileError, match="cannot write: No space left on device"):
        bans.ban_player("Steve", reason="griefing")
    assert path.read_bytes() == before
    assert [entry.ip for entry in bans.entries()] == ["203.0.113.7"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bans.json"]


def test_a_hand_written_entry_needs_only_its_target(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    write_json(path, {"bans": [{"name": "Griefer"}, {"ip": "198.51.100.0/24", "expires_at": None}]})
    bans = BanList.load(path)
    name, ip = bans.entries()
    assert (name.name, name.reason, name.source, name.expires_at) == ("Griefer", "", "file", None)
    assert ip.ip == "198.51.100.0/24"
    assert bans.match("198.51.100.9", "griefer") is not None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "the file is empty"),
        ('{"version": 1, "bans": [', "invalid JSON at line 1, column 25"),
        ("[]", 'expected an object {"version": 1, "bans": [...]}, got an array'),
        ('{"version": 2, "bans": []}', "version: this infrarust reads version 1 files, got number 2"),
        ('{"bans": {}}', "bans: expected an array of entries, got an object"),
        ('{"banz": []}', "banz: unknown key; valid keys: version, bans"),
        ('{"bans": [{"reason": "x"}]}', "bans[0]: an entry needs one of ip, name, uuid"),
        ('{"bans": [{"ip": "1.2.3.4", "name": "x"}]}', "bans[0]: an entry bans an ip or a player"),
        ('{"bans": [{"ip": "1.2.3.999"}]}', "bans[0].ip: invalid IP or CIDR '1.2.3.999'"),
        ('{"bans": [{"name": "x", "expires": null}]}', "bans[0].expires: unknown key"),
        ('{"bans": [{"uuid": 5}]}', "bans[0].uuid: expected a string, got number 5"),
        (
            '{"bans": [{"name": "x", "expires_at": "2025-01-01"}]}',
            "bans[0].expires_at: '2025-01-01' has no time zone",
        ),
        ('{"bans": [{"name": "x", "created_at": "soon"}]}', "bans[0].created_at: expected a UTC time like"),
        ('{"bans": [{"name": "x"}, 3]}', "bans[1]: expected an object, got number 3"),
    ],
)
def test_a_corrupt_file_is_an_error_naming_file_and_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bans.json"
    path.write_text(content)
    with pytest.raises(BanFileError) as caught:
        BanList.load(path)
    assert any(line.startswith(f"{path}: ") and problem in line for line in str(caught.value).splitlines()), (
        str(caught.value)
    )


def test_every_problem_in_the_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    write_json(path, {"bans": [{"ip": "nope"}, {"name": "ok"}, {"uuid": "nope"}]})
    with pytest.raises(BanFileError) as caught:
        BanList.load(path)
    assert [problem.split(":")[0] for problem in caught.value.problems] == ["bans[0].ip", "bans[2].uuid"]


def test_a_corrupt_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    bans = BanList.load(path)
    bans.ban_ip("203.0.113.7", reason="bots")
    path.write_text('{"bans": [{"name": "half an edit"')
    with pytest.raises(BanFileError, match="invalid JSON"):
        bans.ban_player("Steve", reason="griefing")
    with pytest.raises(BanFileError, match="invalid JSON"):
        bans.refresh()
    assert path.read_text() == '{"bans": [{"name": "half an edit"'
    assert bans.match("203.0.113.7") is not None  # the list in memory stays in force


def test_changes_from_another_writer_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    first, second = BanList.load(path), BanList.load(path)
    first.ban_ip("203.0.113.7", reason="one")
    second.ban_player(
        "Steve", reason="two"
    )  # second never re-read the file: the save must merge, not clobber
    targets = {entry.target for entry in BanList.load(path).entries()}
    assert targets == {"ip 203.0.113.7", "player Steve"}
    assert first.refresh() is True
    assert {entry.target for entry in first.entries()} == targets
    assert first.refresh() is False  # unchanged since


def test_purge_drops_expired_entries_and_saves(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="infrarust.audit")
    path = tmp_path / "bans.json"
    bans = BanList.load(path)
    short = bans.ban_player("Steve", reason="cool off", duration=60, now=T0)
    keep = bans.ban_ip("203.0.113.7", reason="bots", duration=7200, now=T0)
    stat = os.stat(path)
    assert bans.purge(now=T0 + 59) == []
    assert os.stat(path).st_ino == stat.st_ino  # nothing expired: the file is not rewritten
    assert bans.purge(now=T0 + 60) == [short]
    assert bans.entries() == (keep,)
    assert BanList.load(path).entries() == (keep,)
    assert any(r.getMessage().startswith("event=purge name=Steve reason=") for r in caplog.records)


def test_changes_are_audited_as_key_value_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="infrarust.audit")
    bans = BanList.load(tmp_path / "bans.json")
    bans.ban_ip("10.0.0.0/8", reason="spam bots", duration=60, source="cli:alice", now=T0)
    bans.unban_ip("10.0.0.0/8", source="cli:bob")
    lines = [r.getMessage() for r in caplog.records if r.name == "infrarust.audit"]
    assert lines == [
        'event=ban ip=10.0.0.0/8 reason="spam bots" expires=2025-06-15T15:07:40Z source=cli:alice',
        'event=unban ip=10.0.0.0/8 reason="spam bots" expires=2025-06-15T15:07:40Z source=cli:alice'
        " by=cli:bob",
    ]
    caplog.clear()
    quiet = BanList.load(tmp_path / "quiet.json", audit=False)
    quiet.ban_ip("10.0.0.0/8", reason="x")
    assert [r for r in caplog.records if r.name == "infrarust.audit"] == []


def test_the_file_is_relative_to_the_config_folder_like_servers_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    main = tmp_path / "conf" / "infrarust.toml"
    main.write_text('[ban]\nfile = "state/bans.json"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/infrarust.toml")
    assert ban_file(config) == tmp_path.resolve() / "conf" / "state" / "bans.json"
    main.write_text(f'[ban]\nfile = "{tmp_path / "abs.json"}"\n')
    assert ban_file(load_config(main)) == tmp_path / "abs.json"
    # Built in code, with no file to be relative to: the working directory.
    assert ban_file(ProxyConfig(ban=Ban(file="here.json"))) == tmp_path / "here.json"
    main.write_text('[ban]\nfile = ""\n')
    with pytest.raises(
        ConfigError, match=r"infrarust\.toml: ban\.file: expected a file path, got an empty string"
    ):
        load_config(main)


# Through a real proxy on loopback.


def ban_config(tmp_path: Path, *servers: infrarust.ServerConfig, **ban: Any) -> ProxyConfig:
    return proxy_config(*servers, ban=Ban(file=str(tmp_path / "bans.json"), **ban))


async def login(port: int, first: bytes) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(first)
    return stream


async def expect_refused(port: int, first: bytes, expected: bytes) -> None:
    async with await login(port, first) as stream:
        assert await read_until_eof(stream) == expected


async def expect_relayed(port: int, first: bytes) -> None:
    async with await login(port, first) as stream:
        assert await read_exactly(stream, len(first)) == first  # the echoing backend sent it back


async def test_a_banned_name_is_refused_and_never_reaches_the_backend(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="infrarust")
    proxy = await start_proxy(nursery, ban_config(tmp_path, server("s", ["s.test"], [backend.address])))
    proxy.bans.ban_player("Griefer", reason="griefing")
    proxy.bans.ban_player("Old", reason="served", duration=60, now=T0)  # ran out long ago
    await expect_refused(proxy.port, handshake("s.test") + login_start("gRIEFER"), banned("griefing"))
    assert backend.received == []
    await expect_relayed(proxy.port, handshake("s.test") + login_start("Alex"))
    await expect_relayed(proxy.port, handshake("s.test") + login_start("Old"))
    assert len(backend.received) == 2
    refusal = next(r.getMessage() for r in caplog.records if "event=login_refused" in r.getMessage())
    assert refusal.startswith("event=login_refused client=127.0.0.1:")
    assert "player=gRIEFER" in refusal and "name=Griefer reason=griefing expires=never" in refusal


async def test_a_temporary_ban_says_until_when(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path
) -> None:
    proxy = await start_proxy(nursery, ban_config(tmp_path, server("s", ["s.test"], [backend.address])))
    entry = proxy.bans.ban_player("Griefer", reason="griefing", duration=3600)
    assert entry.expires_at is not None
    until = format_time(entry.expires_at).replace("T", " ").removesuffix("Z")
    await expect_refused(proxy.port, handshake("s.test") + login_start("griefer"), banned("griefing", until))
    assert backend.received == []


async def test_a_banned_uuid_is_refused(nursery: trio.Nursery, backend: Backend, tmp_path: Path) -> None:
    proxy = await start_proxy(nursery, ban_config(tmp_path, server("s", ["s.test"], [backend.address])))
    proxy.bans.ban_player(uuid=HELPER_UUID, reason="alt account")
    # 1.20.4 login starts carry the UUID: a new name does not help.
    await expect_refused(proxy.port, handshake("s.test") + login_start("NewName"), banned("alt account"))
    assert backend.received == []
    await expect_relayed(proxy.port, handshake("s.test") + login_start_with("NewName", STEVE_UUID))


async def test_a_banned_ip_is_refused_but_its_server_list_pings_are_answered(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path
) -> None:
    proxy = await start_proxy(nursery, ban_config(tmp_path, server("s", ["s.test"], [backend.address])))
    proxy.bans.ban_ip("127.0.0.1", reason="from loopback")
    await expect_refused(proxy.port, handshake("s.test") + login_start("Alex"), banned("from loopback"))
    legacy = legacy_login_1_6("Alex", "s.test")
    async with await login(proxy.port, legacy) as stream:  # a pre-1.7 login gets the 0xFF kick
        assert (
            decode_legacy_kick_text(await read_until_eof(stream))
            == "You are banned from this server: from loopback"
        )
    assert backend.received == []
    answer = await ask_status(proxy.port, "unknown.test")  # as vanilla servers do
    assert answer.json["description"]
    assert proxy.bans.unban_ip("127.0.0.1") != []
    await expect_relayed(proxy.port, handshake("s.test") + login_start("Alex"))  # unbanned: in again


async def test_the_ip_is_the_one_a_proxy_header_names(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path
) -> None:
    config = attrs.evolve(
        ban_config(tmp_path, server("s", ["s.test"], [backend.address])), receive_proxy_protocol=True
    )
    proxy = await start_proxy(nursery, config)
    proxy.bans.ban_ip("203.0.113.0/24", reason="bots")
    first = handshake("s.test") + login_start("Alex")
    await expect_refused(
        proxy.port, encode_proxy_v2(("203.0.113.9", 40000), ("127.0.0.1", 25565)) + first, banned("bots")
    )
    assert backend.received == []
    async with await login(
        proxy.port, encode_proxy_v2(("198.51.100.1", 40000), ("127.0.0.1", 25565)) + first
    ) as s:
        assert await read_exactly(s, len(first)) == first


async def test_a_hand_edit_is_picked_up_by_its_modification_time(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path
) -> None:
    config = ban_config(tmp_path, server("s", ["s.test"], [backend.address]), purge_interval=0.05)
    proxy = await start_proxy(nursery, config)
    first = handshake("s.test") + login_start("Griefer")
    await expect_relayed(proxy.port, first)
    write_json(tmp_path / "bans.json", {"version": 1, "bans": [{"name": "griefer", "reason": "by hand"}]})
    with trio.fail_after(5):
        while proxy.bans.match(None, "Griefer") is None:
            await trio.sleep(0.02)
    await expect_refused(proxy.port, first, banned("by hand"))
    write_json(tmp_path / "bans.json", {"version": 1, "bans": []})
    with trio.fail_after(5):
        while proxy.bans:
            await trio.sleep(0.02)
    await expect_relayed(proxy.port, first)


async def test_a_bad_hand_edit_keeps_the_bans_in_force(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ban_config(tmp_path, server("s", ["s.test"], [backend.address]), purge_interval=0.05)
    proxy = await start_proxy(nursery, config)
    proxy.bans.ban_player("Griefer", reason="griefing")
    (tmp_path / "bans.json").write_text("{ half an edit")
    with trio.fail_after(5):
        while not any("ban file unreadable" in r.getMessage() for r in caplog.records):
            await trio.sleep(0.02)
    await expect_refused(proxy.port, handshake("s.test") + login_start("Griefer"), banned("griefing"))
    assert (tmp_path / "bans.json").read_text() == "{ half an edit"


async def test_the_purge_task_drops_expired_bans_from_the_file(nursery: trio.Nursery, tmp_path: Path) -> None:
    path = tmp_path / "bans.json"
    setup = BanList.load(path)
    setup.ban_player("Old", reason="done", duration=1, now=T0)
    setup.ban_player("Current", reason="still")
    await start_proxy(nursery, ban_config(tmp_path, purge_interval=0.05))
    with trio.fail_after(5):
        while "Old" in path.read_text():
            await trio.sleep(0.02)
    assert [entry.name for entry in read_ban_file(path)[0]] == ["Current"]


async def test_reload_reads_the_file_at_once_and_keeps_the_list(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path
) -> None:
    config = ban_config(tmp_path, server("s", ["s.test"], [backend.address]), purge_interval=3600.0)
    proxy = await start_proxy(nursery, config)
    bans = proxy.bans
    BanList.load(tmp_path / "bans.json").ban_player("Griefer", reason="from another tool")
    assert proxy.bans.match(None, "Griefer") is None  # an hour before the next look at the file...
    await proxy.reload(config)  # ...or now, on SIGHUP
    assert proxy.bans is bans
    await expect_refused(
        proxy.port, handshake("s.test") + login_start("Griefer"), banned("from another tool")
    )
    # Another [ban] file: another list.
    other = tmp_path / "other.json"
    write_json(other, {"bans": [{"name": "Alex", "reason": "other file"}]})
    await proxy.reload(attrs.evolve(config, ban=Ban(file=str(other))))
    assert proxy.bans is not bans
    assert proxy.bans.match(None, "Griefer") is None and proxy.bans.match(None, "alex") is not None


async def test_reload_with_a_corrupt_file_is_rejected_whole(
    nursery: trio.Nursery, backend: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ban_config(tmp_path, server("s", ["s.test"], [backend.address]), purge_interval=3600.0)
    proxy = await start_proxy(nursery, config)
    proxy.bans.ban_player("Griefer", reason="griefing")
    (tmp_path / "bans.json").write_text("[1, 2")
    new_servers = (server("s", ["s.test"], [backend.address]), server("t", ["t.test"], [backend.address]))
    with pytest.raises(infrarust.ConfigError) as rejected:
        await proxy.reload(attrs.evolve(config, servers=new_servers))
    assert proxy.config.servers == config.servers  # the old configuration stays...
    assert proxy.bans.match(None, "griefer") is not None  # ...and the old list
    assert f"ban.file: {tmp_path / 'bans.json'}: invalid JSON" in str(rejected.value)


async def test_an_invalid_ban_file_stops_an_embedded_proxy(nursery: trio.Nursery, tmp_path: Path) -> None:
    (tmp_path / "bans.json").write_text("nope")
    with pytest.raises(BanFileError, match="invalid JSON"):
        await start_proxy(nursery, ban_config(tmp_path))


# The commands, as operators run them.


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infrarust", *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def cli_config(folder: Path, extra: str = "", backend_port: int = 1) -> Path:
    (folder / "servers").mkdir(exist_ok=True)
    (folder / "servers" / "main.toml").write_text(
        f'domains = ["cli.test"]\naddresses = ["127.0.0.1:{backend_port}"]\n'
    )
    path = folder / "infrarust.toml"
    path.write_text(f'bind = "127.0.0.1:25565"\n[ban]\nfile = "state/bans.json"\n{extra}')
    return path


def test_cli_ban_list_and_unban(tmp_path: Path) -> None:
    config = str(cli_config(tmp_path))
    path = tmp_path / "state" / "bans.json"
    result = run_cli("bans", "-c", config)
    assert (result.returncode, result.stdout) == (0, "")
    assert not path.exists()
    result = run_cli("ban", "ip", "203.0.113.7/24", "-c", config, "--reason", "spam bots", "--for", "1h30m")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"banned ip 203\.0\.113\.0/24 until \S+Z\n", result.stdout)
    assert "SIGHUP" in result.stderr
    assert run_cli("ban", "player", "Griefer", "-c", config, "--source", "alice").returncode == 0
    assert run_cli("ban", "player", str(STEVE_UUID).replace("-", ""), "-c", config).returncode == 0
    entries = json.loads(path.read_text())["bans"]
    assert [(e.get("ip"), e.get("name"), e.get("uuid")) for e in entries] == [
        ("203.0.113.0/24", None, None),
        (None, "Griefer", None),
        (None, None, str(STEVE_UUID)),
    ]
    ip_ban, name_ban, uuid_ban = entries
    assert ip_ban["reason"] == "spam bots"
    assert parse_time(ip_ban["expires_at"]) - parse_time(ip_ban["created_at"]) == 5400
    assert (name_ban["source"], name_ban["expires_at"]) == ("alice", None)
    assert uuid_ban["source"].startswith("cli")
    listed = run_cli("bans", "-c", config)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("ip 203.0.113.0/24  expires=") and 'reason="spam bots"' in lines[0]
    assert lines[1].startswith("player Griefer  expires=never")
    as_json = run_cli("bans", "-c", config, "--json")
    assert json.loads(as_json.stdout) == entries
    result = run_cli("unban", "player", "GRIEFER", "-c", config)
    assert (result.returncode, result.stdout) == (0, "unbanned player Griefer\n")
    assert run_cli("unban", "ip", "203.0.113.0/24", "-c", config).returncode == 0
    assert run_cli("unban", "player", str(STEVE_UUID), "-c", config).returncode == 0
    assert json.loads(path.read_text()) == {"version": 1, "bans": []}


def test_cli_errors_exit_1_without_a_traceback(tmp_path: Path) -> None:
    config = str(cli_config(tmp_path))
    for args, message in [
        (("unban", "player", "Nobody"), "unban: player Nobody is not banned"),
        (("ban", "ip", "10.0.0.300"), "ban: invalid IP or CIDR '10.0.0.300'"),
        (("ban", "player", "two words"), "ban: invalid player name 'two words'"),
        (("ban", "ip", "10.0.0.1", "--for", "5"), "ban: --for: invalid duration '5'"),
    ]:
        result = run_cli(*args, "-c", config)
        assert result.returncode == 1, args
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "bans.json").exists()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "bans.json").write_text('{"bans": [{"ip": "1.2.3.4", "name": "x"}]}')
    for args in (("bans",), ("ban", "ip", "10.0.0.1"), ("check",)):
        result = run_cli(*args, "-c", config)
        assert result.returncode == 1, args
        assert re.search(
            r"infrarust\.toml: ban\.file: \S*bans\.json: bans\[0\]: an entry bans an ip", result.stderr
        )
        assert "Traceback" not in result.stderr
    assert json.loads((tmp_path / "state" / "bans.json").read_text()) == {
        "bans": [{"ip": "1.2.3.4", "name": "x"}]
    }


def test_run_refuses_a_corrupt_ban_file_like_a_config_error(tmp_path: Path) -> None:
    config = cli_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "bans.json").write_text("{")
    result = run_cli("run", "-c", str(config), "--bind", "127.0.0.1:0")
    assert result.returncode == 1
    assert re.search(
        r"infrarust\.toml: ban\.file: \S*state/bans\.json: invalid JSON at line 1", result.stderr
    )
    assert "Traceback" not in result.stderr


async def test_cli_ban_reaches_a_running_proxy_on_sighup(tmp_path: Path, backend: Backend) -> None:
    config = cli_config(tmp_path, 'purge_interval = "1h"\n', backend.port)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "infrarust", "-c", str(config), "--bind", "127.0.0.1:0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = process.stderr
    log = bytearray()

    async def wait_for(pattern: bytes) -> re.Match[bytes]:
        with trio.fail_after(20):
            while not (match := re.search(pattern, log)):
                chunk = await stderr.receive_some()
                assert chunk, log.decode()
                log.extend(chunk)
        return match

    try:
        port = int((await wait_for(rb"listening on 127\.0\.0\.1:(\d+)")).group(1))
        ban = await trio.run_process(
            [
                sys.executable,
                "-m",
                "infrarust",
                "ban",
                "player",
                "Griefer",
                "-c",
                str(config),
                "--reason",
                "x",
            ],
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
        )
        assert ban.returncode == 0
        first = handshake("cli.test") + login_start("Griefer")
        await expect_relayed(port, first)  # the proxy looks at the file only hourly...
        process.send_signal(signal.SIGHUP)  # ...or when told
        await wait_for(rb"configuration reloaded")
        await expect_refused(port, first, banned("x"))
        await wait_for(rb"event=login_refused client=127\.0\.0\.1:\d+ player=Griefer")
        assert re.search(
            rb"infrarust\.audit event=ban name=Griefer reason=x expires=never source=cli\S* via=file", log
        )
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            while chunk := await stderr.receive_some():
                log.extend(chunk)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
