"""Health checks: a real status ping (handshake + status request) to each address of a balanced server.

A backend that accepts TCP but never answers (a frozen process: the kernel still completes the handshake)
fails the check by its ``timeout``, so it is taken out like one that refuses connections. The time from the
connect to the status answer is what ``lowest_latency`` compares.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NoReturn

import trio

from infrarust.backend import backend_handshake, close, open_connection
from infrarust.balance import Balancer, Balancers, CheckResult
from infrarust.config import Address, LoadBalance, ServerConfig
from infrarust.protocol import (
    Handshake,
    NextState,
    PacketReader,
    ProtocolError,
    encode_proxy_v2,
    encode_status_request,
    parse_status_response,
)

logger = logging.getLogger("infrarust.health")

# The protocol number a check announces (1.20.4); a server answers a status request for any number.
CHECK_PROTOCOL = 765
MAX_STATUS_SIZE = 1 << 21
READ_SIZE = 65536
# The checker looks for due checks and new servers (after a reload) at least this often.
MAX_SLEEP = 0.5


def is_monitored(server: ServerConfig) -> bool:
    """Only servers with a choice of addresses and a ``load_balance`` other than ``failover`` are checked:
    with one address there is nothing to pick, and ``failover`` keeps today's plain try-in-order."""
    return len(server.addresses) > 1 and server.load_balance is not LoadBalance.FAILOVER


async def check_address(server: ServerConfig, address: Address) -> CheckResult:
    """One status ping of ``address`` as ``server`` shows it, all within ``[health_check] timeout``."""
    timeout = server.health_check.timeout
    start = trio.current_time()
    with trio.move_on_after(timeout):
        try:
            stream = await open_connection(address)
        except OSError as exc:
            return CheckResult(False, error=f"connect failed: {exc.strerror or exc}")
        try:
            host = next((domain for domain in server.domains if "*" not in domain and "?" not in domain), "")
            handshake = Handshake(CHECK_PROTOCOL, host or address.host, address.port, NextState.STATUS)
            request = backend_handshake(handshake, server, address).encode() + encode_status_request()
            if server.send_proxy_protocol:
                # The backend insists on a header: describe the check's own connection.
                local = stream.socket.getsockname()
                peer = stream.socket.getpeername()
                request = encode_proxy_v2((local[0], local[1]), (peer[0], peer[1])) + request
            await stream.send_all(request)
            reader = PacketReader(max_packet_size=MAX_STATUS_SIZE)
            while (packet := reader.next_packet()) is None:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    return CheckResult(False, error="closed before answering")
                reader.feed(data)
            status_json = parse_status_response(packet)
        except (OSError, trio.BrokenResourceError) as exc:
            return CheckResult(False, error=f"connection failed: {exc}")
        except ProtocolError as exc:
            return CheckResult(False, error=f"bad status answer: {exc}")
        finally:
            close(stream)
        return CheckResult(True, latency=trio.current_time() - start, status_json=status_json)
    return CheckResult(False, error=f"no status answer within {timeout:g}s")


async def run_health_checks(
    balancers: Balancers,
    *,
    on_check: Callable[[Balancer, Address, CheckResult], object] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Check every address of every monitored server each ``[health_check] interval``, forever.

    The first round starts at once; each address is then checked ``interval`` seconds after its previous
    check started, and never twice at the same time. Servers added by a reload are picked up within
    :data:`MAX_SLEEP`. Reports through ``task_status`` once the first round is under way. ``on_check`` sees
    every result (metrics).
    """
    due: dict[tuple[int, Address], float] = {}
    running: set[tuple[int, Address]] = set()

    async def check(balancer: Balancer, address: Address, key: tuple[int, Address]) -> None:
        try:
            server = balancer.server
            result = await check_address(server, address)
            balancer.record_check(address, result)
            if on_check is not None:
                on_check(balancer, address, result)
        finally:
            running.discard(key)

    async with trio.open_nursery() as nursery:
        started = False
        while True:
            now = trio.current_time()
            wake = now + MAX_SLEEP
            live: set[tuple[int, Address]] = set()
            for balancer in balancers:
                if not is_monitored(balancer.server):
                    balancer.monitored = False
                    continue
                balancer.monitored = True
                for address in balancer.addresses():
                    key = (id(balancer), address)
                    live.add(key)
                    when = due.get(key, now)
                    if when <= now and key not in running:
                        running.add(key)
                        when = due[key] = now + balancer.server.health_check.interval
                        nursery.start_soon(check, balancer, address, key)
                    wake = min(wake, when)
            for key in [key for key in due if key not in live]:
                del due[key]  # a server or address that left the configuration
            if not started:
                task_status.started()
                started = True
            await trio.sleep_until(wake)
