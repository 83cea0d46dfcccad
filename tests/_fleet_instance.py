"""A fleet instance in its own process, for the tests that kill one with SIGKILL.

    python tests/_fleet_instance.py PORT INSTANCE_ID HEARTBEAT PLAYERS

It joins the fleet on the redis-server at 127.0.0.1:PORT, counts PLAYERS players on server "lobby",
prints "ready" once they are in Redis, and runs until it is killed.
"""

from __future__ import annotations

import sys

import trio

from infrarust.cluster import Fleet
from infrarust.config import Cluster, RedisUrl


async def main(port: int, instance_id: str, heartbeat: float, players: int) -> None:
    settings = Cluster(RedisUrl("127.0.0.1", port), instance_id=instance_id, heartbeat=heartbeat, timeout=1.0)
    fleet = Fleet(settings)
    async with trio.open_nursery() as nursery:
        await nursery.start(fleet.run)
        await fleet.wait_synced()
        for _ in range(players):
            assert await fleet.reserve("lobby", 0)
        await fleet.flush()
        print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
