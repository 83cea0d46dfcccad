"""The ``run`` and ``check`` commands: load the configuration, serve until a signal, say what went wrong.

Separate from :mod:`infrarust.__main__` because it imports the whole proxy, which ``ping`` does not need.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from infrarust import logs
from infrarust._readiness import Readiness, ReadyFileError
from infrarust.bans import check_ban_file
from infrarust.collector import tune_collector
from infrarust.config import (
    DEFAULT_CONFIG_FILE,
    Address,
    ConfigError,
    ProxyConfig,
    load_config,
    parse_address,
)
from infrarust.config import Metrics as MetricsConfig
from infrarust.metrics import MetricsBindError
from infrarust.proxy import Proxy
from infrarust.workers import WorkerStartError, notify_ready, supervise, watch_parent

logger = logging.getLogger("infrarust")
log = logs.get_logger(__name__)

NO_CONFIG_WARNING = (
    "no configuration file (%s not found): running on built-in defaults with 0 servers, so every player"
    " will be told the address is unknown; pass -c CONFIG"
)
DEFAULTS = "built-in defaults"


def load(path: str | None) -> ProxyConfig | None:
    """The configuration, or None after printing its problems (one ``FILE: KEY: what`` line each)."""
    try:
        config = load_config(path)
        check_ban_file(config)  # an invalid ban file stops the start like a configuration error
        return config
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def check(path: str | None) -> int:
    """``infrarust check``: 0 and a summary when the configuration loads, else 1."""
    config = load(path)
    if config is None:
        return 1
    source = config.source or DEFAULTS
    print(f"{source}: ok")
    print(f"bind {config.bind}, {len(config.servers)} server(s)")
    for server in config.servers:
        domains = ", ".join(server.domains) or "-"
        addresses = ", ".join(str(address) for address in server.addresses)
        print(f"  {server.name}: {server.proxy_mode.value} domains=[{domains}] addresses=[{addresses}]")
    return 0


# --- options of `run` that change the configuration: the one place they are applied ---------------------


class OptionError(Exception):
    """A command-line value that cannot be used (the message starts with the option's name)."""


def apply_run_options(config: ProxyConfig, options: argparse.Namespace) -> tuple[ProxyConfig, dict[str, str]]:
    """The configuration with ``run``'s command-line options laid over it, and which keys they set.

    The second value maps a configuration key (``bind``, ``metrics.bind``) to the option that set it, so
    an error about that key names the option rather than a file that did not say it.
    """
    overridden: dict[str, str] = {}
    if options.bind is not None:
        config = attrs.evolve(config, bind=_address("--bind", options.bind))
        overridden["bind"] = "--bind"
    if options.metrics_bind is not None:
        bind = _address("--metrics-bind", options.metrics_bind)
        config = attrs.evolve(config, metrics=attrs.evolve(config.metrics or MetricsConfig(), bind=bind))
        overridden["metrics.bind"] = "--metrics-bind"
    return config, overridden


def _address(option: str, text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise OptionError(f"{option}: {exc}") from None


def run(options: argparse.Namespace) -> int:
    """``infrarust run``: serve until SIGINT / SIGTERM; 0 then, 1 on a start-up error (one line, no
    traceback)."""
    config = load(options.config)
    if config is None:
        return 1
    worker_id: int | None = options.worker_id
    if options.log_format is None and config.log_format.value != "text":  # the file asks for JSON
        logs.configure(options.log_level, "json", worker=worker_id)
    if config.source is None and worker_id is None:
        logger.warning(NO_CONFIG_WARNING, DEFAULT_CONFIG_FILE)
    file_config = config
    try:
        config, overridden = apply_run_options(config, options)
    except OptionError as exc:
        print(exc, file=sys.stderr)
        return 1
    if worker_id is not None:
        config = attrs.evolve(config, so_reuseport=True, workers=1)
        return _exit_code(
            lambda: trio.run(_serve, config, None, worker_id, options.ready_fd, file_config),
            config,
            overridden,
        )
    readiness = Readiness(Path(options.ready_file) if options.ready_file is not None else None)
    try:
        if config.workers > 1 and sys.platform != "linux":
            logger.warning(
                "workers = %d needs Linux's SO_REUSEPORT balancing; running one process", config.workers
            )
        elif config.workers > 1:
            # Each worker loads the same file; what the command line changed goes to them too.
            worker_args = [] if options.metrics_bind is None else ["--metrics-bind", options.metrics_bind]
            if options.log_format is not None:
                worker_args += ["--log-format", options.log_format]
            return _exit_code(
                lambda: trio.run(
                    functools.partial(
                        supervise,
                        config,
                        options.config,
                        options.log_level,
                        worker_args=worker_args,
                        on_ready=readiness.ready,
                        on_stopping=readiness.stopping,
                    )
                ),
                config,
                overridden,
            )
        return _exit_code(
            lambda: trio.run(_serve, config, readiness, None, None, file_config), config, overridden
        )
    finally:
        readiness.close()


def _exit_code(run: Callable[[], None], config: ProxyConfig, overridden: dict[str, str]) -> int:
    """Run the proxy; an address that cannot be listened on (or a ready file that cannot be written) is an
    error line and exit 1, not a traceback."""
    try:
        run()
    except (OSError, WorkerStartError, ReadyFileError, BaseExceptionGroup) as raised:
        exc = _only_error(raised)  # trio's nurseries wrap what a task raises in exception groups
        if isinstance(exc, WorkerStartError):
            print(f"{_where(config, 'workers', overridden)}: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, ReadyFileError):
            print(exc, file=sys.stderr)
            return 1
        if not isinstance(exc, OSError):
            raise
        key, address = (
            ("metrics.bind", exc.address) if isinstance(exc, MetricsBindError) else ("bind", config.bind)
        )
        reason = exc.strerror or exc
        print(f"{_where(config, key, overridden)}: cannot listen on {address}: {reason}", file=sys.stderr)
        return 1
    return 0


def _where(config: ProxyConfig, key: str, overridden: dict[str, str]) -> str:
    """What set ``key``: a command-line option, else ``FILE: key`` (``built-in defaults: key``)."""
    if key in overridden:
        return overridden[key]
    return f"{config.source or DEFAULTS}: {key}"


def _only_error(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (else ``exc`` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def _serve(
    config: ProxyConfig,
    readiness: Readiness | None,
    worker_id: int | None,
    ready_fd: int | None,
    file_config: ProxyConfig | None = None,
) -> None:
    """Serve until SIGINT / SIGTERM, reload on SIGHUP. A worker (``ready_fd``) tells its supervisor it
    listens; a single process logs ``listening on`` and announces readiness."""
    tune_collector()
    # The receiver is open before the listener, so a signal sent as soon as "listening on" appears is seen.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(Proxy(config, worker=worker_id, file_config=file_config).run)
            address = Address(*proxy.address)
            if ready_fd is not None:  # a worker: its supervisor announces once all workers are up
                nursery.start_soon(watch_parent, nursery.cancel_scope)
                notify_ready(ready_fd)
            else:
                log.info(f"listening on {address}", address=address)
                if readiness is not None:
                    await readiness.ready(str(address))
            # SIGHUP reloads; SIGINT/SIGTERM drain for shutdown_grace, and a second one ends at once.
            await proxy.follow_signals(
                signals, nursery.cancel_scope, on_stopping=readiness.stopping if readiness else None
            )
