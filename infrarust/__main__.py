"""Command line: ``python -m infrarust [run] [-c CONFIG] ...``, ``check``, ``ping``, and the ban commands.

The ban commands live in :mod:`infrarust._bancli`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import trio

from infrarust import _bancli, logs
from infrarust.bans import check_ban_file
from infrarust.config import ConfigError, load_config, parse_address
from infrarust.config._models import Address, ProxyConfig
from infrarust.metrics import MetricsBindError
from infrarust.ping import PingError, PingResult, legacy_ping, ping
from infrarust.proxy import Proxy
from infrarust.workers import WorkerStartError, notify_ready, supervise, watch_parent

logger = logging.getLogger("infrarust")
COMMANDS = ("run", "check", "ping", *_bancli.COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m infrarust", description="Minecraft reverse proxy on Trio"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the proxy (the default command)")
    run.add_argument("-c", "--config", default=None, help="configuration file (default: ./infrarust.toml)")
    run.add_argument(
        "--bind", default=None, metavar="HOST:PORT", help="listen here instead of the file's bind"
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--log-format",
        default=None,
        choices=logs.LOG_FORMATS,
        help="text: one 'event key=value' line per event (default); json: one JSON object per line",
    )
    # Set by the supervisor of `workers = N` on the processes it starts; not for people.
    run.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    check = sub.add_parser("check", help="validate the configuration and print a summary")
    check.add_argument("-c", "--config", default=None, help="configuration file (default: ./infrarust.toml)")
    ping = sub.add_parser(
        "ping", help="ask a server (or a proxy) for its server-list status; exit 0 if answered"
    )
    ping.add_argument("address", metavar="HOST[:PORT]", help="where to connect (port defaults to 25565)")
    ping.add_argument("--host", default=None, metavar="DOMAIN", help="the domain to put in the handshake")
    ping.add_argument("--protocol", type=int, default=None, help="protocol version to announce")
    ping.add_argument("--legacy", action="store_true", help="send a 1.6 legacy ping (0xFE) instead")
    ping.add_argument("--timeout", type=float, default=5.0, metavar="S", help="give up after S seconds (5)")
    _bancli.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help")):
        args.insert(0, "run")
    options = build_parser().parse_args(args)
    if options.command == "check":
        return _check(options.config)
    if options.command == "ping":
        return _ping(options)
    if options.command in _bancli.COMMANDS:
        _setup_logging("warning")
        return _bancli.run(options)
    return _run(
        options.config,
        options.bind,
        options.log_level,
        options.worker_id,
        options.ready_fd,
        log_format=options.log_format,
    )


def _setup_logging(level: str, worker_id: int | None = None, log_format: logs.LogFormat = "text") -> None:
    logs.configure(level, log_format, worker=worker_id)


def _load(path: str | None) -> ProxyConfig | None:
    try:
        config = load_config(path)
        check_ban_file(config)  # an invalid ban file stops the start like a configuration error
        return config
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _check(path: str | None) -> int:
    _setup_logging("warning")
    config = _load(path)
    if config is None:
        return 1
    source = config.source or "built-in defaults"
    print(f"{source}: ok")
    print(f"bind {config.bind}, {len(config.servers)} server(s)")
    for server in config.servers:
        domains = ", ".join(server.domains) or "-"
        addresses = ", ".join(str(address) for address in server.addresses)
        print(f"  {server.name}: {server.proxy_mode.value} domains=[{domains}] addresses=[{addresses}]")
    return 0


def _run(
    path: str | None,
    bind: str | None,
    level: str,
    worker_id: int | None,
    ready_fd: int | None,
    *,
    log_format: logs.LogFormat | None = None,  # None: the file's log_format (once it has one), else text
) -> int:
    _setup_logging(level, worker_id, log_format or "text")
    config = _load(path)
    if config is None:
        return 1
    if bind is not None:
        try:
            config = attrs.evolve(config, bind=parse_address(bind))
        except ValueError as exc:
            print(f"--bind: {exc}", file=sys.stderr)
            return 1
    if worker_id is not None:
        config = attrs.evolve(config, so_reuseport=True, workers=1)
    elif config.workers > 1 and sys.platform != "linux":
        logger.warning(
            "workers = %d needs Linux's SO_REUSEPORT balancing; running one process", config.workers
        )
    elif config.workers > 1:
        return _exit_code(lambda: trio.run(supervise, config, path, level), config, path)
    return _exit_code(lambda: trio.run(_serve_until_signalled, config, ready_fd, worker_id), config, path)


def _exit_code(run: Callable[[], None], config: ProxyConfig, path: str | None) -> int:
    """Run the proxy; a listener that cannot be opened is an error line and exit 1, not a traceback."""
    try:
        run()
    except (OSError, WorkerStartError, BaseExceptionGroup) as raised:
        exc = _only_error(raised)  # trio's nurseries wrap what a task raises in exception groups
        if isinstance(exc, WorkerStartError):
            print(f"{Path(path or 'infrarust.toml')}: workers: {exc}", file=sys.stderr)
            return 1
        if not isinstance(exc, OSError):
            raise
        where = Path(path or "infrarust.toml")
        key, address = (
            ("metrics.bind", exc.address) if isinstance(exc, MetricsBindError) else ("bind", config.bind)
        )
        print(f"{where}: {key}: cannot listen on {address}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def _only_error(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (else ``exc`` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _ping(options: argparse.Namespace) -> int:
    try:
        address = parse_address(options.address)
    except ValueError as exc:
        print(f"ping: {options.address}: {exc}", file=sys.stderr)
        return 1

    async def ask() -> PingResult | None:
        kwargs = {} if options.protocol is None else {"protocol": options.protocol}
        with trio.move_on_after(options.timeout):
            if options.legacy:
                return await legacy_ping(address.host, address.port, domain=options.host, **kwargs)
            return await ping(address.host, address.port, domain=options.host, **kwargs)
        raise PingError(f"no answer within {options.timeout:g}s")

    try:
        result = trio.run(ask)
    except PingError as exc:
        print(f"ping: {address}: {exc}", file=sys.stderr)
        return 1
    assert result is not None
    print(result.to_json())
    return 0


async def _serve_until_signalled(config: ProxyConfig, ready_fd: int | None, worker_id: int | None) -> None:
    # The receiver is open before the listener, so a signal sent as soon as "listening on" appears is seen.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(Proxy(config, worker=worker_id).run)
            if ready_fd is None:
                logger.info("listening on %s", Address(*proxy.address))
            else:  # a worker: its supervisor prints the one "listening on" line once all workers are up
                nursery.start_soon(watch_parent, nursery.cancel_scope)
                notify_ready(ready_fd)
            # SIGHUP reloads; SIGINT/SIGTERM drain for shutdown_grace, and a second one ends at once.
            await proxy.follow_signals(signals, nursery.cancel_scope)


if __name__ == "__main__":
    sys.exit(main())
