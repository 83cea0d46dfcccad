"""infrarust embedded in a program that registers a no-op ``on_pre_connect`` hook and one events subscriber.

``python -m bench.embedded CONFIG`` loads the file like ``infrarust run -c CONFIG`` does (logging at info to
stderr, as the bench runs the command; the collector tuned the same way), serves it with
:func:`infrarust.serve`, registers the hook and a subscriber that reads every event, and prints
``listening on 127.0.0.1:PORT`` once listening. SIGUSR1 takes both away, the next one registers them
again, and so on; each change is acknowledged with a ``hook and subscriber on`` / ``off`` line once it took
effect. The bench measures the CPU per connection of one process both ways: the difference is what one
hook and one subscriber cost per connection, without what separates two processes (where each landed in
memory, on which CPU). SIGTERM ends it.
"""

from __future__ import annotations

import signal
import sys

import trio

from bench._procs import WATCHED_OFF, WATCHED_ON
from infrarust import Proxy, logs, serve, tune_collector
from infrarust.config import load_config
from infrarust.hooks import Decision, PreConnect


async def _no_op(connection: PreConnect) -> Decision:
    return None


async def _subscriber(proxy: Proxy, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    async with proxy.subscribe() as events:
        task_status.started()
        async for _ in events:
            pass


class _Watcher:
    """The hook and the subscriber, registered while it lives."""

    def __init__(self, proxy: Proxy) -> None:
        self._proxy = proxy
        self._hook = proxy.on_pre_connect(_no_op)
        self._scope = trio.CancelScope()
        self._left = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope:
                await _subscriber(self._proxy, task_status)
        finally:
            self._left.set()

    async def stop(self) -> None:
        """Take the hook away and wait until the subscriber has left."""
        self._hook.remove()
        self._scope.cancel()
        await self._left.wait()


async def main(path: str) -> None:
    config = load_config(path)
    tune_collector()  # as infrarust run does, and as the README asks of an embedding program
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(serve, config)
            first = _Watcher(proxy)
            await nursery.start(first.run)
            watcher: _Watcher | None = first
            host, port = proxy.address[:2]
            print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
            async for signum in signals:
                if signum != signal.SIGUSR1:
                    nursery.cancel_scope.cancel()
                    break
                if watcher is None:
                    watcher = _Watcher(proxy)
                    await nursery.start(watcher.run)
                    print(WATCHED_ON, file=sys.stderr, flush=True)
                else:
                    await watcher.stop()
                    watcher = None
                    print(WATCHED_OFF, file=sys.stderr, flush=True)


if __name__ == "__main__":
    logs.configure("info")
    trio.run(main, sys.argv[1])
