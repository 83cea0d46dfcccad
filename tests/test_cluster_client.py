"""The Trio Redis client against a real redis-server: commands, pipelines, errors, AUTH and SELECT,
pub/sub, and deadlines against a frozen (SIGSTOPped) and a stopped server."""

from __future__ import annotations

import functools

import pytest
import trio
from _redis_helpers import RedisServer

from infrarust.cluster import (
    RedisClient,
    RedisReplyError,
    RedisSubscription,
    RedisUnavailable,
)
from infrarust.config import RedisUrl

DEADLINE = 0.2
# What a call may take beyond its deadline on a loaded two-core machine (the deadline itself is exact).
SLACK = 0.1


async def test_commands_and_one_round_trip_pipelines(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url(), DEADLINE)
    assert await client.execute("SET", "greeting", "héllo") == b"OK"
    assert await client.execute("GET", "greeting") == "héllo".encode()
    assert await client.execute("GET", "missing") is None
    replies = await client.pipeline([["INCR", "n"], ["INCR", "n"], ["INCRBY", "n", 40], ["GET", "n"]])
    assert replies == [1, 2, 42, b"42"]
    assert await client.execute("HSET", "h", "a", 1, "b", b"\x00\xff") == 2
    assert await client.execute("HGETALL", "h") == [b"a", b"1", b"b", b"\x00\xff"]
    client.close()


async def test_an_error_reply_keeps_the_connection_usable(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url(), DEADLINE)
    await client.execute("SET", "text", "abc")
    with pytest.raises(RedisReplyError, match="not an integer"):
        await client.pipeline([["INCR", "text"], ["SET", "after", "1"]])
    # The pipeline's other reply was read, so the connection is in step: the next answers are ours.
    assert await client.execute("GET", "after") == b"1"
    with pytest.raises(RedisReplyError, match="unknown command"):
        await client.execute("NO-SUCH-COMMAND")
    assert await client.execute("PING") == b"PONG"


async def test_concurrent_callers_get_their_own_replies(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url(), 2.0)
    results: dict[int, object] = {}

    async def one(number: int) -> None:
        results[number] = await client.execute("ECHO", f"caller {number}")

    async with trio.open_nursery() as nursery:
        for number in range(50):
            nursery.start_soon(one, number)
    assert results == {number: f"caller {number}".encode() for number in range(50)}


async def test_password_and_database_from_the_url() -> None:
    server = RedisServer(password="s3cret/+@")
    try:
        server.start()
        with pytest.raises(RedisReplyError, match=r"WRONGPASS|invalid password"):
            await RedisClient(server.url(password="wrong"), DEADLINE).execute("PING")
        with pytest.raises(RedisReplyError, match="NOAUTH"):
            await RedisClient(RedisUrl("127.0.0.1", server.port), DEADLINE).execute("PING")
        in_db3 = RedisClient(server.url(db=3), DEADLINE)
        await in_db3.execute("SET", "where", "db3")
        in_db0 = RedisClient(server.url(db=0), DEADLINE)
        assert await in_db0.execute("GET", "where") is None
        assert await in_db3.execute("GET", "where") == b"db3"
    finally:
        server.cleanup()


async def test_tls_with_rediss(monkeypatch: pytest.MonkeyPatch) -> None:
    server = RedisServer(tls=True, password="over-tls")
    try:
        server.start()
        url = server.url()
        assert url.tls and str(url).startswith("rediss://")
        # Certificates are verified against the system's CAs, which OpenSSL lets SSL_CERT_FILE replace.
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
        client = RedisClient(url, 2.0)
        assert await client.execute("SET", "secure", "yes") == b"OK"
        assert await client.execute("GET", "secure") == b"yes"
        subscription = RedisSubscription(url, 2.0)
        await subscription.subscribe("news")
        await client.execute("PUBLISH", "news", "over tls")
        with trio.fail_after(2):
            assert await subscription.next_message() == (b"news", b"over tls")
        subscription.close()
        client.close()
        # A certificate nobody vouches for is refused, as a connection failure.
        monkeypatch.delenv("SSL_CERT_FILE")
        with pytest.raises(RedisUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await RedisClient(url, 2.0).execute("PING")
        # A plain client against the TLS port gets no answer it can use.
        with pytest.raises(RedisUnavailable):
            await RedisClient(RedisUrl("127.0.0.1", server.port, password="over-tls"), 0.5).execute("PING")
    finally:
        server.cleanup()


async def test_pub_sub(redis_server: RedisServer) -> None:
    subscription = RedisSubscription(redis_server.url(), DEADLINE)
    await subscription.subscribe("news", "other")
    client = RedisClient(redis_server.url(), DEADLINE)
    assert await client.execute("PUBLISH", "news", "first") == 1
    await client.execute("PUBLISH", "other", b"\x00second")
    with trio.fail_after(2):
        assert await subscription.next_message() == (b"news", b"first")
        assert await subscription.next_message() == (b"other", b"\x00second")
    subscription.close()


async def test_every_call_to_a_frozen_redis_times_out_within_its_deadline(redis_server: RedisServer) -> None:
    client = RedisClient(redis_server.url(), DEADLINE)
    assert await client.execute("PING") == b"PONG"  # an open connection, then the server freezes
    redis_server.freeze()
    try:
        took = []
        for command in (["PING"], ["GET", "a"], ["SET", "a", "1"], ["INCR", "b"]):
            start = trio.current_time()
            with pytest.raises(RedisUnavailable, match=rf"no answer within {DEADLINE:g}s"):
                await client.execute(*command)
            took.append(trio.current_time() - start)
        # New connections too: the kernel accepts them for the frozen process, nobody answers.
        start = trio.current_time()
        with pytest.raises(RedisUnavailable):
            await RedisSubscription(redis_server.url(), DEADLINE).subscribe("news")
        took.append(trio.current_time() - start)
        assert all(DEADLINE <= seconds < DEADLINE + SLACK for seconds in took), took
    finally:
        redis_server.thaw()
    assert await client.execute("PING") == b"PONG"  # a fresh connection after the broken one


async def test_a_stopped_redis_fails_fast_and_a_restarted_one_is_reconnected(
    redis_server: RedisServer,
) -> None:
    client = RedisClient(redis_server.url(), DEADLINE)
    await client.execute("SET", "kept", "no")
    redis_server.stop()
    start = trio.current_time()
    with pytest.raises(RedisUnavailable):
        await client.execute("GET", "kept")
    assert trio.current_time() - start < DEADLINE
    redis_server.start()
    assert await client.execute("GET", "kept") is None  # restarted empty: no persistence


async def test_concurrent_callers_share_one_round_trip(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    """Fifty calls at once are all written before the first reply comes (not one round trip each): a
    relay in front of the real server holds the replies back and counts the commands that arrive."""
    written = bytearray()
    gate = trio.Event()

    async def relay(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", redis_server.port)

        async def upstream() -> None:
            while data := await client.receive_some(65536):
                written.extend(data)
                await server.send_all(data)

        async def downstream() -> None:
            while data := await server.receive_some(65536):
                await gate.wait()
                await client.send_all(data)

        async with client, server, trio.open_nursery() as inner:
            inner.start_soon(upstream)
            inner.start_soon(downstream)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, relay, 0, host="127.0.0.1"))
    client = RedisClient(RedisUrl("127.0.0.1", listeners[0].socket.getsockname()[1]), 2.0)
    replies: dict[int, bytes] = {}

    async def echo(number: int) -> None:
        replies[number] = await client.execute("ECHO", f"reply {number}")

    async with trio.open_nursery() as callers:
        for number in range(50):
            callers.start_soon(echo, number)
        with trio.fail_after(2):
            while written.count(b"ECHO") < 50:
                await trio.sleep(0.01)
        assert not replies
        gate.set()
    assert replies == {number: f"reply {number}".encode() for number in range(50)}
