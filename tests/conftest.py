"""Fixtures shared by the test modules (helpers to import live in ``helpers.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import trio
from _redis_helpers import RedisServer
from helpers import Backend, start_recording_backend


@pytest.fixture
async def backend(nursery: trio.Nursery) -> AsyncIterator[Backend]:
    """A recording, echoing loopback backend."""
    yield await start_recording_backend(nursery)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a loopback port, stopped by its PID after the test."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
