"""infrarust embedded in a program that registers a no-op ``on_pre_connect`` hook and one events subscriber.

``python -m bench.embedded CONFIG`` loads the file like ``infrarust run -c CONFIG`` does (logging at info to
stderr, as the bench runs the command), serves it with :func:`infrarust.serve`, registers the hook and a
subscriber that reads every event, and prints ``listening on 127.0.0.1:PORT`` once listening. The bench
compares its CPU per connection with the plain command's: the difference is what one hook and one
subscriber cost per connection. SIGTERM ends it.
"""

from __future__ import annotations

import signal
import sys

import trio

from infrarust import logs, serve
from infrarust.config import load_config
from infrarust.hooks import Decision, PreConnect


async def _no_op(connection: PreConnect) -> Decision:
    return None


async def main(path: str) -> None:
    config = load_config(path)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(serve, config)
            proxy.on_pre_connect(_no_op)
            ready = trio.Event()

            async def subscriber() -> None:
                async with proxy.subscribe() as events:
                    ready.set()
                    async for _ in events:
                        pass

            nursery.start_soon(subscriber)
            await ready.wait()
            host, port = proxy.address[:2]
            print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    logs.configure("info")
    trio.run(main, sys.argv[1])
