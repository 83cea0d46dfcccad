"""The pytest plugin (entry point ``pytest11``): the ``infrarust_proxy`` and ``fake_backend`` fixtures.

pytest loads this module in every run of every project where infrarust is installed, so it imports
nothing optional: only pytest and infrarust itself (whose requirements are trio, attrs, cattrs and
tomlkit). pytest-trio is needed by the tests that use the fixtures, through its ``nursery`` fixture, and
by nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from ._backend import BackendFactory
from ._proxy import ProxyFactory


@pytest.fixture
async def infrarust_proxy(nursery: trio.Nursery, tmp_path: Path) -> ProxyFactory:
    """Start infrarust proxies on free 127.0.0.1 ports: ``proxy = await infrarust_proxy(servers=[...])``
    or ``await infrarust_proxy("infrarust.toml", **settings)``; their state goes under ``tmp_path``, and
    they stop when the test ends. Needs pytest-trio.
    """
    return ProxyFactory(nursery, tmp_path / "infrarust")


@pytest.fixture
async def fake_backend(nursery: trio.Nursery) -> BackendFactory:
    """Start fake Minecraft servers on free 127.0.0.1 ports: ``backend = await fake_backend(status=...,
    behavior=...)``; they stop when the test ends. Needs pytest-trio.
    """
    return BackendFactory(nursery)
