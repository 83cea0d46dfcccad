"""Waiting for a condition that other tasks make true, without polling, and always bounded."""

from __future__ import annotations

from collections.abc import Callable

import trio


class Changes:
    """Wakes the tasks waiting in :meth:`wait_until` each time :meth:`notify` says something changed."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        """Something changed: waiters check their condition again."""
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Return once ``condition()`` is true; ``trio.TooSlowError`` naming ``what`` after ``timeout``."""
        with trio.move_on_after(timeout):
            while not condition():
                await self._event.wait()
            return
        raise trio.TooSlowError(f"{what}: still not the case after {timeout:g}s")
