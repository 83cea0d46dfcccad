"""Shared processes for the e2e tests: one Minecraft server per version and one proxy for the module.

They are synchronous, module-scoped fixtures (pytest-trio fixtures live for one test only), so the
12 cells of the matrix share four Node servers and a single proxy process.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import VERSIONS, MinecraftServer, Proxy, node_executable, write_config

STARTUP_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def node() -> str:
    return node_executable()


@pytest.fixture(scope="module")
def minecraft_servers(node: str) -> Iterator[dict[str, MinecraftServer]]:
    """``version -> server``, all listening; stopped (by PID) when the module is done."""
    servers: dict[str, MinecraftServer] = {}
    try:
        for version in VERSIONS:  # start them all, then wait: they boot in parallel
            servers[version] = MinecraftServer(node, version)
        for server in servers.values():
            server.wait_listening(STARTUP_TIMEOUT)
        yield servers
    finally:
        for server in servers.values():
            server.stop()
            server.kill()


@pytest.fixture(scope="module")
def proxy(
    minecraft_servers: dict[str, MinecraftServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    """The proxy CLI routing ``<mode>-<version>.e2e.test`` to the matching server in that mode.

    On teardown it must stop on SIGTERM with exit code 0 and must not have logged a traceback.
    """
    config = write_config(
        tmp_path_factory.mktemp("proxy"),
        {version: server.port for version, server in minecraft_servers.items()},
    )
    started = Proxy(config)
    try:
        started.wait_listening(STARTUP_TIMEOUT)
        yield started
        code = started.stop()
        assert code == 0, f"the proxy did not exit 0 on SIGTERM\n{started.describe()}"
        tracebacks = [line for line in started.stderr.snapshot() if line.startswith("Traceback")]
        assert not tracebacks, f"the proxy logged a traceback\n{started.describe(200)}"
    finally:
        started.kill()
