"""Balancing and the fleet in the pipeline's corners: the server list of a balanced server (one healthy
backend's answer, counts summed with ``status_aggregate``), and a fleet reservation given back on a refusal
that comes after it (no backend answered) so ``max_players`` never leaks a slot."""

from __future__ import annotations

import trio
from _redis_helpers import RedisServer
from helpers import (
    ask_status,
    free_port,
    proxy_config,
    server,
    start_fake_status_server,
    start_proxy,
    status_json,
)
from test_fleet_proxy import cluster, login

from infrarust.config import Address, HealthCheck, LoadBalance

CHECKS = HealthCheck(interval=0.2, timeout=1.0, unhealthy_after=1, healthy_after=1)


async def test_status_aggregate_sums_the_healthy_backends(nursery: trio.Nursery) -> None:
    first = await start_fake_status_server(nursery, status_json("first", online=3, max_players=10))
    second = await start_fake_status_server(nursery, status_json("second", online=4, max_players=20))
    dead = free_port()
    lobby = server(
        "lobby",
        ["lobby.test"],
        [first.address, second.address, Address("127.0.0.1", dead)],
        load_balance=LoadBalance.ROUND_ROBIN,
        status_aggregate=True,
        health_check=CHECKS,
    )
    proxy = await start_proxy(nursery, proxy_config(lobby))
    balancer = proxy.scaling.balancers.for_server(lobby)
    with trio.fail_after(5):  # both live backends answered a check, the dead one is out
        while not (balancer.snapshot()[1].last_status and not balancer.is_up(lobby.addresses[2])):
            await trio.sleep(0.02)
    answer = (await ask_status(proxy.port, "lobby.test")).json
    # One healthy backend answers (round robin's turn), the counts are summed over both healthy ones.
    assert answer["description"] in ("first", "second")
    assert answer["players"]["online"] == 7 and answer["players"]["max"] == 30
    assert (
        f'infrarust_backend_up{{address="{lobby.addresses[2]}",server="lobby"}} 0.0' in proxy.metrics.render()
    )


async def test_a_refusal_after_the_reservation_gives_the_slot_back(
    nursery: trio.Nursery, redis_server: RedisServer
) -> None:
    dead = free_port()
    lobby = server("lobby", ["lobby.test"], [Address("127.0.0.1", dead)], max_players=1)
    proxy = await start_proxy(nursery, proxy_config(lobby, cluster=cluster(redis_server, "a")))
    fleet = proxy.scaling.fleet
    assert fleet is not None
    for name in ("One", "Two", "Three"):  # each would be "full" if a slot leaked
        attempt = await login(proxy.port, name)
        assert not attempt.admitted and attempt.text is not None
        assert "full" not in attempt.text
    assert fleet.player_count("lobby") == 0
    metrics = proxy.metrics.render()
    assert "infrarust_cluster_degraded 0.0" in metrics
