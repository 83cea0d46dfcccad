"""Rate limits, IP filters, max_players and PROXY protocol headers, in and out."""

from __future__ import annotations

import json

import attrs
import pytest
import trio
from helpers import (
    Backend,
    handshake,
    login_start,
    proxy_config,
    read_exactly,
    read_until_eof,
    server,
    start_proxy,
)

import infrarust
from infrarust.admission import (
    FILTERED_MESSAGE,
    FULL_MESSAGE,
    RATE_LIMITED_MESSAGE,
    IpFilterRule,
    RateLimiter,
    parse_ip,
)
from infrarust.config._models import IpFilter, RateLimit
from infrarust.protocol import (
    NextState,
    PacketReader,
    encode_packet,
    encode_proxy_v2,
    parse_proxy_header,
    read_string,
)


def test_rate_limiter_is_a_sliding_window_per_ip() -> None:
    limiter = RateLimiter(limit=2, window=10.0)
    assert limiter.allow("a", 0.0) and limiter.allow("a", 1.0)
    assert not limiter.allow("a", 2.0)
    assert limiter.allow("b", 2.0)  # another IP has its own budget
    assert not limiter.allow("a", 9.9)
    assert limiter.allow("a", 10.5)  # the event at 0.0 left the window
    assert not limiter.allow("a", 10.6)


def test_rate_limiter_forgets_quiet_ips_and_zero_disables() -> None:
    limiter = RateLimiter(limit=1, window=1.0)
    for index in range(100):
        limiter.allow(f"10.0.0.{index}", 0.0)
    assert len(limiter) == 100
    limiter.allow("10.1.0.0", 5.0)  # the first call past a window purges
    assert len(limiter) == 1
    unlimited = RateLimiter(limit=0, window=1.0)
    assert all(unlimited.allow("a", 0.0) for _ in range(1000))


def test_ip_filter_whitelist_wins_over_blacklist() -> None:
    both = IpFilterRule(IpFilter(whitelist=("10.0.0.0/8",), blacklist=("10.1.0.0/16",)))
    assert both.allows(parse_ip("10.1.2.3"))
    assert not both.allows(parse_ip("192.0.2.1"))
    black = IpFilterRule(IpFilter(blacklist=("192.0.2.0/24", "2001:db8::/32")))
    assert not black.allows(parse_ip("192.0.2.7"))
    assert not black.allows(parse_ip("::ffff:192.0.2.7"))  # a dual-stack listener's view of IPv4
    assert not black.allows(parse_ip("2001:db8::1"))
    assert black.allows(parse_ip("198.51.100.1"))
    assert not IpFilterRule(IpFilter())


def disconnect_text(reply: bytes) -> str:
    reader = PacketReader()
    reader.feed(reply)
    packet = reader.next_packet()
    assert packet is not None and packet.packet_id == 0
    text: str = json.loads(read_string(packet.body, 0)[0])["text"]
    return text


async def login(proxy: infrarust.Proxy, name: str, host: str = "s.test") -> trio.SocketStream:
    client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await client.send_all(handshake(host) + login_start(name))
    return client


async def test_login_budget_per_ip_refuses_with_a_message(nursery: trio.Nursery, backend: Backend) -> None:
    config = proxy_config(
        server("s", ["s.test"], [backend.address]), rate_limit=RateLimit(max_connections=2, status_max=0)
    )
    proxy = await start_proxy(nursery, config)
    kept = [await login(proxy, "a"), await login(proxy, "b")]
    await backend.wait_for(1, 1)
    third = await login(proxy, "c")
    assert disconnect_text(await read_until_eof(third)) == RATE_LIMITED_MESSAGE
    assert len(backend.received) == 2
    # Status has its own budget (0 = unlimited here): the server list still answers.
    status = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await status.send_all(handshake("s.test", NextState.STATUS) + encode_packet(1, bytes(8)))
    assert await read_until_eof(status) == encode_packet(1, bytes(8))
    for stream in kept:
        await stream.aclose()


async def test_status_budget_closes_excess_pings(nursery: trio.Nursery, backend: Backend) -> None:
    config = proxy_config(
        server("s", ["s.test"], [backend.address]), rate_limit=RateLimit(max_connections=0, status_max=1)
    )
    proxy = await start_proxy(nursery, config)
    replies = []
    for _ in range(2):
        status = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        await status.send_all(handshake("s.test", NextState.STATUS) + encode_packet(1, bytes(8)))
        replies.append(await read_until_eof(status))
    assert replies == [encode_packet(1, bytes(8)), b""]


@pytest.mark.parametrize(
    "ip_filter",
    [IpFilter(whitelist=("10.0.0.0/8",)), IpFilter(blacklist=("127.0.0.0/8",))],
    ids=["not-whitelisted", "blacklisted"],
)
async def test_ip_filter_refuses_logins_and_hides_status(
    nursery: trio.Nursery, backend: Backend, ip_filter: IpFilter
) -> None:
    proxy = await start_proxy(
        nursery, proxy_config(server("s", ["s.test"], [backend.address], ip_filter=ip_filter))
    )
    client = await login(proxy, "Steve")
    assert disconnect_text(await read_until_eof(client)) == FILTERED_MESSAGE
    status = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await status.send_all(handshake("s.test", NextState.STATUS) + encode_packet(0, b""))
    assert await read_until_eof(status) == b""
    assert backend.received == []


async def test_whitelisted_client_gets_in(nursery: trio.Nursery, backend: Backend) -> None:
    allowed = IpFilter(whitelist=("127.0.0.0/8",), blacklist=("127.0.0.1/32",))
    proxy = await start_proxy(
        nursery, proxy_config(server("s", ["s.test"], [backend.address], ip_filter=allowed))
    )
    client = await login(proxy, "Steve")
    await backend.wait_for(0, 1)
    await client.aclose()


async def test_max_players_refuses_a_full_server(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(
        nursery, proxy_config(server("s", ["s.test"], [backend.address], max_players=1))
    )
    first = await login(proxy, "one")
    await backend.wait_for(0, 1)
    second = await login(proxy, "two")
    assert disconnect_text(await read_until_eof(second)) == FULL_MESSAGE
    await first.aclose()
    with trio.fail_after(5):
        while proxy.sessions:
            await trio.sleep(0.01)
    third = await login(proxy, "three")  # a place is free again
    await backend.wait_for(1, 1)
    await third.aclose()


async def test_proxy_protocol_in_names_the_client_and_is_not_forwarded(
    nursery: trio.Nursery, backend: Backend
) -> None:
    config = proxy_config(server("s", ["s.test"], [backend.address]), receive_proxy_protocol=True)
    proxy = await start_proxy(nursery, config)
    for header in [
        b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 25565\r\n",
        encode_proxy_v2(("2001:db8::7", 40000), ("::1", 25565)),
    ]:
        client = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        first = handshake("s.test") + login_start("Behind")
        await client.send_all(header + first)  # header and handshake in one write
        assert await read_exactly(client, len(first)) == first
        with trio.fail_after(5):
            while not proxy.sessions:
                await trio.sleep(0.01)
        assert proxy.sessions[0].client_address in ("203.0.113.9:51234", "[2001:db8::7]:40000")
        await client.aclose()
        with trio.fail_after(5):
            while proxy.sessions:
                await trio.sleep(0.01)
    assert [bytes(data) for data in backend.received] == [handshake("s.test") + login_start("Behind")] * 2


async def test_proxy_protocol_in_is_required_from_trusted_peers_only(
    nursery: trio.Nursery, backend: Backend
) -> None:
    trusted = proxy_config(
        server("s", ["s.test"], [backend.address]),
        receive_proxy_protocol=True,
        proxy_protocol_trusted=("127.0.0.0/8",),
    )
    proxy = await start_proxy(nursery, trusted)
    client = await login(proxy, "NoHeader")  # a trusted peer must send the header
    assert await read_until_eof(client) == b""
    untrusted = attrs.evolve(trusted, proxy_protocol_trusted=("10.0.0.0/8",))
    proxy = await start_proxy(nursery, untrusted)
    direct = await login(proxy, "Direct")  # an untrusted peer is a plain client; its bytes are its own
    await backend.wait_for(0, 1)
    spoof = await trio.open_tcp_stream("127.0.0.1", proxy.port)
    await spoof.send_all(b"PROXY TCP4 1.2.3.4 127.0.0.1 1 25565\r\n" + handshake("s.test"))
    assert await read_until_eof(spoof) == b""  # not honoured: it is a bad handshake
    assert len(backend.received) == 1
    await direct.aclose()


async def test_proxy_protocol_out_precedes_the_handshake(nursery: trio.Nursery, backend: Backend) -> None:
    proxy = await start_proxy(
        nursery, proxy_config(server("s", ["s.test"], [backend.address], send_proxy_protocol=True))
    )
    client = await login(proxy, "Steve")
    first = handshake("s.test") + login_start("Steve")
    data = await backend.wait_for(0, 28 + len(first))
    parsed = parse_proxy_header(data)
    assert parsed is not None
    header, consumed = parsed
    assert header.source is not None and header.source[0] == "127.0.0.1"
    assert header.destination == ("127.0.0.1", proxy.port)
    assert data[consumed:] == first
    await client.aclose()
