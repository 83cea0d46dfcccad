"""Command line: ``infrarust [run] [-c CONFIG] ...``, ``check``, ``ping``, and the ban commands.

This module holds the parser and the dispatch only. Each command imports what it needs when it runs, so
``infrarust ping`` and ``infrarust --version`` start without loading the proxy. ``run`` and ``check`` live
in :mod:`infrarust._runcmd`, the ban commands in :mod:`infrarust._bancli`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

BAN_COMMANDS = ("ban", "unban", "bans")
COMMANDS = ("run", "check", "ping", *BAN_COMMANDS, "status")  # fleetwire: status
# What may come before a command without meaning "run"; anything else first is an option of `run`.
TOP_LEVEL_OPTIONS = ("-h", "--help", "-V", "--version")
LOG_LEVELS = ("debug", "info", "warning", "error")
CONFIG_HELP = "configuration file (default: ./infrarust.toml; none there: built-in defaults, no servers)"

MAIN_EPILOG = """\
examples:
  infrarust -c /etc/infrarust/infrarust.toml
      run the proxy (run is the default command)
  infrarust check -c conf/infrarust.toml
      validate a configuration and list its servers
  infrarust ping 127.0.0.1:25565 --host lobby.example.com --expect-backend
      exit 0 only if the backend of lobby.example.com answered through the proxy
  infrarust ban player Griefer --reason "Griefing" --for 168h
      ban a player for a week (a running proxy takes it within its purge_interval)

'infrarust COMMAND --help' tells more about each command.
"""

RUN_EPILOG = """\
examples:
  infrarust run -c /etc/infrarust/infrarust.toml
  infrarust run -c conf/infrarust.toml --bind 127.0.0.1:0 --ready-file /tmp/infrarust.ready
      listen on a free port; the file holds the real HOST:PORT once listening, and goes on exit
  infrarust run --metrics-bind 127.0.0.1:9100
      also serve Prometheus metrics on http://127.0.0.1:9100/metrics

Once listening, one line 'listening on HOST:PORT' goes to stderr. SIGTERM or SIGINT stops the proxy
(sessions end with reason Shutdown, exit 0); SIGHUP reloads the configuration. Under systemd
(Type=notify, NOTIFY_SOCKET set) it sends READY=1 once listening and STOPPING=1 when stopping.
"""

CHECK_EPILOG = """\
examples:
  infrarust check -c /etc/infrarust/infrarust.toml && systemctl reload infrarust

Exit status 0 when the configuration loads (warnings go to stderr), 1 with one
'FILE: KEY: what is wrong' line per problem.
"""

PING_DESCRIPTION = "Send a server-list ping and print the answer as one line of JSON."
PING_EPILOG = """\
examples:
  infrarust ping mc.example.com
  infrarust ping 127.0.0.1:25565 --host lobby.example.com
      ask the proxy on 127.0.0.1:25565 about the route of lobby.example.com
  until infrarust ping 127.0.0.1:25565 --host lobby.example.com --expect-backend; do sleep 1; done
      in CI: wait until the backend behind the proxy answers, not just the proxy

Output: one line of JSON, {"status": {...}, "rtt_ms": 1.234}; with --expect-backend also
"source": "backend" | "cache" | "unreachable" | "unknown_domain".
Exit status: 0 answered; 1 no valid answer (refused, timed out, invalid), or with --expect-backend an
answer made by infrarust itself (unreachable backend, unknown domain); 2 bad usage.
"""


def prog_name() -> str:
    """How the user started us: ``python -m infrarust`` or the ``infrarust`` console script."""
    started = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m infrarust" if started in ("", "__main__.py", "-m", "-c") else started


def version_line() -> str:
    """What ``--version`` prints: ``infrarust X.Y.Z``, from the installed package's metadata."""
    import infrarust

    return f"infrarust {infrarust.__version__}"


class _VersionAction(argparse.Action):
    """``-V`` / ``--version``: reads the version only when asked (package metadata costs an import)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version_line())
        parser.exit()


def _parser(prog: str, description: str, epilog: str | None = None, **kwargs: Any) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The argument parser for every command (loads the ban commands' module, so not used by ``ping``)."""
    from infrarust import _bancli

    prog = prog or prog_name()
    parser = _parser(prog, "Minecraft Java Edition reverse proxy on Trio.", MAIN_EPILOG)
    parser.add_argument("-V", "--version", action=_VersionAction, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run the proxy (the default command)",
        description="Run the proxy until SIGTERM or SIGINT.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(run)
    check = sub.add_parser(
        "check",
        help="validate the configuration and print a summary",
        description="Load the configuration and every server file, print a summary or every problem.",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("-c", "--config", default=None, metavar="CONFIG", help=CONFIG_HELP)
    ping = sub.add_parser(
        "ping",
        help="ask a server (or a proxy) for its server-list status; exit 0 if answered",
        description=PING_DESCRIPTION,
        epilog=PING_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_ping_options(ping)
    _bancli.add_parsers(sub)
    from infrarust import _fleetcli  # fleetwire

    _fleetcli.add_parser(sub)
    return parser


# --- the options of `run`: defined here, applied to the configuration in _runcmd.apply_run_options ------


def add_run_options(run: argparse.ArgumentParser) -> None:
    """Every option of ``run`` (the one place they are defined)."""
    run.add_argument("-c", "--config", default=None, metavar="CONFIG", help=CONFIG_HELP)
    run.add_argument(
        "--bind",
        default=None,
        metavar="HOST:PORT",
        help="listen here instead of the file's bind; port 0 takes a free port",
    )
    run.add_argument(
        "--metrics-bind",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics here (turns [metrics] on, or moves it); keep it private",
    )
    run.add_argument(
        "--ready-file",
        default=None,
        metavar="PATH",
        help="once listening, write the bound HOST:PORT to PATH; the file is removed on exit",
    )
    run.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="least severe messages logged (info)"
    )
    run.add_argument(
        "--log-format",
        default=None,
        choices=("text", "json"),
        help="text: one 'event key=value' line per event; json: one JSON object per line "
        "(default: the file's log_format, else text)",
    )
    # Set by the supervisor of `workers = N` on the processes it starts; not for people.
    run.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)


def add_ping_options(ping: argparse.ArgumentParser) -> None:
    """Every option of ``ping``."""
    ping.add_argument("address", metavar="HOST[:PORT]", help="where to connect (port defaults to 25565)")
    ping.add_argument(
        "--host", default=None, metavar="DOMAIN", help="the domain to put in the handshake (default: HOST)"
    )
    ping.add_argument(
        "--protocol", type=int, default=None, metavar="N", help="protocol version to announce (765: 1.20.4)"
    )
    ping.add_argument("--legacy", action="store_true", help="send a 1.6 legacy ping (0xFE) instead")
    ping.add_argument(
        "--expect-backend",
        action="store_true",
        help="ask the infrarust proxy where its answer came from; exit 1 unless from the routed backend"
        " (or its cached answer)",
    )
    ping.add_argument("--timeout", type=float, default=5.0, metavar="S", help="give up after S seconds (5)")


def build_ping_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``ping`` command's parser alone: what ``infrarust ping ...`` parses with, without the rest."""
    ping = _parser(f"{prog or prog_name()} ping", PING_DESCRIPTION, PING_EPILOG)
    add_ping_options(ping)
    return ping


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``infrarust`` and ``python -m infrarust``); returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0] not in COMMANDS and args[0] not in TOP_LEVEL_OPTIONS):
        args.insert(0, "run")
    if args in (["--version"], ["-V"]):  # without building the whole parser, which loads more
        print(version_line())
        return 0
    if args[0] == "ping":  # the light path: CI loops run it often
        ping_parser = build_ping_parser()
        return _ping(ping_parser, ping_parser.parse_args(args[1:]))
    options = build_parser().parse_args(args)
    if options.command == "check":
        from infrarust import _runcmd

        _setup_logging("warning")
        return _runcmd.check(options.config)
    if options.command in BAN_COMMANDS:
        from infrarust import _bancli

        _setup_logging("warning")
        return _bancli.run(options)
    if options.command == "status":  # fleetwire
        from infrarust import _fleetcli

        _setup_logging("warning")
        return _fleetcli.run_status(options)
    from infrarust import _runcmd

    _setup_logging(options.log_level, options.worker_id, options.log_format or "text")
    return _runcmd.run(options)


def _setup_logging(level: str, worker_id: int | None = None, log_format: str = "text") -> None:
    from infrarust import logs

    logs.configure(level, "json" if log_format == "json" else "text", worker=worker_id)


def _ping(parser: argparse.ArgumentParser, options: argparse.Namespace) -> int:
    if options.legacy and options.expect_backend:
        parser.error("--expect-backend needs the modern ping: a legacy answer has no room to say its source")
    import trio

    from infrarust._answersource import FROM_BACKEND
    from infrarust.ping import PingError, PingResult, legacy_ping, parse_target, ping

    try:
        host, port = parse_target(options.address)
    except ValueError as exc:
        print(f"ping: {options.address}: {exc}", file=sys.stderr)
        return 1
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def ask() -> PingResult:
        kwargs = {} if options.protocol is None else {"protocol": options.protocol}
        with trio.move_on_after(options.timeout):
            if options.legacy:
                return await legacy_ping(host, port, domain=options.host, **kwargs)
            return await ping(host, port, domain=options.host, ask_source=options.expect_backend, **kwargs)
        raise PingError(f"no answer within {options.timeout:g}s")

    try:
        result = trio.run(ask)
    except PingError as exc:
        hint = " (--expect-backend asks an infrarust proxy; a plain server may close)"
        hint = hint if options.expect_backend else ""
        print(f"ping: {shown}: {exc}{hint}", file=sys.stderr)
        return 1
    if not options.expect_backend:
        print(result.to_json())
        return 0
    # No mark: the answer came from a server that is not infrarust, i.e. from a server itself.
    source = result.source or "backend"
    print(result.to_json(source=source))
    if source in FROM_BACKEND:
        return 0
    print(f"ping: {shown}: answered by infrarust itself (source={source}), not by a backend", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
