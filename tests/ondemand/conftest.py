"""One private dockerd for every test of this folder, started once and stopped by its PID at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from e2e.harness import node_executable

from ._daemon import Containers, DockerDaemon


@pytest.fixture(scope="session")
def docker_daemon() -> Iterator[DockerDaemon]:
    """A dockerd of our own (never the machine's: one test restarts it), with the empty image imported."""
    daemon = DockerDaemon()
    try:
        daemon.start()
        daemon.import_empty_image()
        yield daemon
    finally:
        daemon.stop()
        daemon.cleanup()


@pytest.fixture
async def containers(docker_daemon: DockerDaemon) -> AsyncIterator[Containers]:
    """Creates containers for one test and force-removes them afterwards."""
    made = Containers(docker_daemon)
    try:
        yield made
    finally:
        await made.remove_all()


@pytest.fixture(scope="session")
def node() -> str:
    return node_executable()
