"""Fixtures shared by the test modules (helpers to import live in ``helpers.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from helpers import Backend, start_recording_backend


@pytest.fixture
async def backend(nursery: trio.Nursery) -> AsyncIterator[Backend]:
    """A recording, echoing loopback backend."""
    yield await start_recording_backend(nursery)
