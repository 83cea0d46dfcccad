"""Plain TOML data -> frozen models, through one cattrs converter, with every problem located by key.

The converter runs in cattrs' detailed-validation mode, so one pass collects every bad value and unknown key
into a tree of exceptions; :func:`problems_from` flattens that tree into ``(dotted key, message)`` pairs.
Hooks are strict: TOML has types, and a string where a number belongs is a mistake worth reporting, not
something to coerce.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from ._addresses import is_host, normalize_cidr, normalize_domain, parse_address
from ._durations import parse_duration
from ._errors import ConfigError, ConfigProblem
from ._favicon import load_favicon
from ._infrarust import MOTD_STATES
from ._models import (
    Address,
    Auth,
    Ban,
    Cluster,
    Docker,
    DomainRewrite,
    Forwarding,
    ForwardingMode,
    HealthCheck,
    IpFilter,
    Keepalive,
    LoadBalance,
    LogFormat,
    ManagerType,
    Metrics,
    Motd,
    Permissions,
    ProxyConfig,
    ProxyMode,
    RateLimit,
    RedisUrl,
    RewriteKind,
    ServerConfig,
    ServerManager,
    StatusCache,
    Timeouts,
    UnknownDomainBehavior,
    ZeroCopy,
)
from ._redis_url import parse_redis_url

T = TypeVar("T")

SERVER_NAME = re.compile(r"[a-z0-9_-]+", re.ASCII)
PIPE_SIZE_MIN = 4096
PIPE_SIZE_MAX = 1024 * 1024
# Fields filled in by the loader, never read from a file: naming them in a file is an unknown key.
_LOADER_FIELDS = ("servers", "source")
_SUPPORTED_MODES = ", ".join(mode.value for mode in ProxyMode)
# Infrarust v2's "full" mode (encryption on both legs) is an intercepted mode too.
_INTERCEPTED_ONLY_IN_INFRARUST = frozenset({"full"})


def _describe(value: object) -> str:
    """A TOML reader's name for a value, for "expected X, got Y" messages."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{type(value).__name__} {value}"


def _string(value: object, _: object = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_describe(value)}")
    return value


def _boolean(value: object, _: object = None) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_describe(value)}")
    return value


def count(value: object, _: object = None) -> int:
    """A whole number, not negative: every integer in the configuration counts something."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {_describe(value)}")
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")
    return value


def _workers(value: object, _: object = None) -> int:
    workers = count(value)
    if workers < 1:
        raise ValueError(f"at least 1 worker process is needed, got {workers}")
    return workers


def _pipe_size(value: object, _: object = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not PIPE_SIZE_MIN <= value <= PIPE_SIZE_MAX:
        raise ValueError(
            f"expected a number of bytes from {PIPE_SIZE_MIN} to {PIPE_SIZE_MAX} (1 MiB),"
            f" got {_describe(value)}; the kernel rounds it up to a power-of-two number of pages"
        )
    return value


def _duration(value: object, _: object = None) -> float:
    """Every float in the models is a duration in seconds, written as a string with a unit."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f'durations are strings with a unit, like "{value}s" or "{value}ms"; got {value}')
    if not isinstance(value, str):
        raise ValueError(f'expected a duration like "5s", got {_describe(value)}')
    return parse_duration(value)


def _positive_duration(value: object, _: object = None) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, got {value!r}")
    return seconds


def _path(value: object, _: object = None) -> Path:
    text = _string(value)
    if not text:
        raise ValueError("expected a folder path, got an empty string")
    return Path(text)


def _file_path(value: object, _: object = None) -> str:
    text = _string(value)
    if not text:
        raise ValueError("expected a file path, got an empty string")
    return text


def _address(value: object, _: object = None) -> Address:
    return parse_address(_string(value))


def _backend_address(value: object, _: object = None) -> Address:
    if isinstance(value, dict) and "address" in value:  # Infrarust v2's { address = ..., weight = N }
        raise ValueError(
            "weighted addresses are Infrarust's load balancing, which is not built in infrarust; write the"
            ' address as a "host:port" string (addresses are tried in order)'
        )
    address = _address(value)
    if address.port == 0:
        raise ValueError(f"invalid address {value!r}: a backend port must be from 1 to 65535")
    return address


def _domain(value: object, _: object = None) -> str:
    return normalize_domain(_string(value))


def _cidr(value: object, _: object = None) -> str:
    return normalize_cidr(_string(value))


def _server_name(value: object, _: object = None) -> str:
    name = _string(value)
    if not SERVER_NAME.fullmatch(name):
        raise ValueError(f"invalid server name {name!r}: use lower-case letters, digits, '_' and '-'")
    return name


def _proxy_mode(value: object, _: object = None) -> ProxyMode:
    text = _string(value)
    try:
        mode = ProxyMode(text)
    except ValueError:
        if text in _INTERCEPTED_ONLY_IN_INFRARUST:
            raise ValueError(_intercepted_not_built(text)) from None
        raise ValueError(f"unknown proxy_mode {text!r}; valid values: {_SUPPORTED_MODES}") from None
    return mode


def _intercepted_not_built(mode: str) -> str:
    return (
        f"`{mode}` is not supported: it encrypts both legs; use client_only, offline, passthrough,"
        " zero_copy or server_only"
    )


def _forwarding_mode(value: object, _: object = None) -> ForwardingMode:
    text = _string(value)
    try:
        return ForwardingMode(text)
    except ValueError:
        valid = ", ".join(mode.value for mode in ForwardingMode)
        raise ValueError(f"unknown forwarding mode {text!r}; valid values: {valid}") from None


def _admin(value: object) -> str:
    text = _string(value).strip()
    if not text:
        raise ValueError("expected a player name or UUID, got an empty string")
    return text


def _log_format(value: object, _: object = None) -> LogFormat:
    text = _string(value)
    try:
        return LogFormat(text)
    except ValueError:
        valid = ", ".join(f"{log_format.value!r}" for log_format in LogFormat)
        raise ValueError(f"unknown log_format {text!r}; valid values: {valid}") from None


def _unknown_domain_behavior(value: object, _: object = None) -> UnknownDomainBehavior:
    text = _string(value)
    try:
        return UnknownDomainBehavior(text)
    except ValueError:
        valid = ", ".join(behavior.value for behavior in UnknownDomainBehavior)
        raise ValueError(f"unknown unknown_domain_behavior {text!r}; valid values: {valid}") from None


# Infrarust v2's other managers drive web panels; they are refused by name rather than as unknown values.
_NOT_BUILT_MANAGERS = ("pterodactyl", "crafty")
# The keys that belong to one manager type only.
_MANAGER_KEYS: dict[ManagerType, tuple[str, ...]] = {
    ManagerType.LOCAL: ("command", "args", "working_dir", "ready_pattern"),
    ManagerType.DOCKER: ("container",),
}
_MANAGER_REQUIRED = {
    ManagerType.LOCAL: ("command", '"java"'),
    ManagerType.DOCKER: ("container", '"mc-survival"'),
}


def _manager_type(value: object, _: object = None) -> ManagerType:
    text = _string(value)
    if text in _NOT_BUILT_MANAGERS:
        raise ValueError(f'type = "{text}" is not supported yet: only "local" and "docker" are built')
    try:
        return ManagerType(text)
    except ValueError:
        valid = ", ".join(kind.value for kind in ManagerType)
        raise ValueError(f"unknown server_manager type {text!r}; valid values: {valid}") from None


def _non_empty(value: object, _: object = None) -> str:
    text = _string(value)
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _regex(value: object, _: object = None) -> str:
    text = _non_empty(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return text


def _docker_endpoint(value: object, _: object = None) -> str:
    text = _string(value)
    if text.startswith("unix://"):
        if not text.removeprefix("unix://").startswith("/"):
            raise ValueError(
                f"expected an absolute socket path like unix:///var/run/docker.sock, got {text!r}"
            )
        return text
    for scheme in ("tcp://", "http://"):
        if text.startswith(scheme):
            parse_address(text.removeprefix(scheme).rstrip("/"))
            return text
    raise ValueError(f"expected unix:///path/to/docker.sock or tcp://host:port, got {text!r}")


def _located(key: str, message: str) -> ClassValidationError:
    """A problem reported at ``server_manager.<key>`` rather than at the table as a whole."""
    exc = ValueError(message)
    exc.add_note(AttributeValidationNote(key, key, object))
    return ClassValidationError("invalid server_manager", [exc], ServerManager)


def _check_manager(raw: dict[str, Any], manager: ServerManager) -> ServerManager:
    """Rules across the keys of one ``[server_manager]``: which keys its type needs and which it ignores."""
    for kind, keys in _MANAGER_KEYS.items():
        if kind is manager.type:
            continue
        for key in keys:
            if key in raw:
                raise _located(key, f'{key} does not apply to type = "{manager.type.value}"')
    required, example = _MANAGER_REQUIRED[manager.type]
    if required not in raw:
        raise _located(
            required, f'type = "{manager.type.value}" needs {required}, like {required} = {example}'
        )
    return manager


_REWRITE_HELP = 'expected "none", "from_backend" or { explicit = "host" }'


def _domain_rewrite(value: object, _: object = None) -> DomainRewrite:
    if value == "none":
        return DomainRewrite(RewriteKind.NONE)
    if value == "from_backend":
        return DomainRewrite(RewriteKind.FROM_BACKEND)
    if isinstance(value, dict):
        if set(value) != {"explicit"}:
            raise ValueError(f"{_REWRITE_HELP}, got a table with keys {', '.join(sorted(value)) or '(none)'}")
        host = value["explicit"]
        if not isinstance(host, str) or not is_host(host):
            raise ValueError(
                f"{_REWRITE_HELP}: explicit must be a host name or IP address, got {_describe(host)}"
            )
        return DomainRewrite(RewriteKind.EXPLICIT, host)
    raise ValueError(f"{_REWRITE_HELP}, got {_describe(value)}")


def _load_balance(value: object, _: object = None) -> LoadBalance:
    text = _string(value)
    try:
        return LoadBalance(text)
    except ValueError:
        valid = ", ".join(strategy.value for strategy in LoadBalance)
        raise ValueError(f"unknown load_balance {text!r}; valid values: {valid}") from None


def _redis_url(value: object, _: object = None) -> RedisUrl:
    return parse_redis_url(_string(value))


def _at_least_one(value: object, _: object = None) -> int:
    number = count(value)
    if number < 1:
        raise ValueError(f"must be at least 1, got {number}")
    return number


_INSTANCE_ID = re.compile(r"[A-Za-z0-9_.:-]*", re.ASCII)


def _instance_id(value: object, _: object = None) -> str:
    text = _string(value)
    if len(text) > 100 or not _INSTANCE_ID.fullmatch(text):
        raise ValueError(
            f"invalid instance_id {text!r}: up to 100 letters, digits and '_', '.', ':', '-'"
            " (empty: host name and pid)"
        )
    return text


def _each(item: Callable[[object], T]) -> Callable[[object, object], tuple[T, ...]]:
    """A hook for a TOML array whose elements ``item`` checks; every bad element is reported by index."""

    def structure(value: object, _: object = None) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ValueError(f"expected an array, got {_describe(value)}")
        results: list[T] = []
        errors: list[Exception] = []
        for index, element in enumerate(value):
            try:
                results.append(item(element))
            except Exception as exc:
                exc.add_note(IterableValidationNote(f"element {index}", index, object))
                errors.append(exc)
        if errors:
            raise IterableValidationError("invalid array elements", errors, tuple)
        return tuple(results)

    return structure


_backend_addresses = _each(_backend_address)


def _addresses(value: object, _: object = None) -> tuple[Address, ...]:
    addresses = _backend_addresses(value, None)
    if not addresses:
        raise ValueError('a server needs at least one backend address, like ["127.0.0.1:25566"]')
    return addresses


def _table(structure: Callable[[Any, Any], T]) -> Callable[[object, object], T]:
    """Make a generated attrs hook report "expected a table" instead of failing inside cattrs."""

    def hook(value: object, type_: object = None) -> T:
        if not isinstance(value, dict):
            raise ValueError(f"expected a table, got {_describe(value)}")
        return structure(value, type_)

    return hook


# Inner tables first: a class's hook looks up its fields' hooks when it is generated.
_TABLES: tuple[type, ...] = (
    Motd,
    Timeouts,
    IpFilter,
    RateLimit,
    StatusCache,
    Keepalive,
    Ban,
    ZeroCopy,
    Metrics,
    HealthCheck,
    Cluster,
    Docker,
    Auth,
    Forwarding,
    Permissions,
    ServerManager,
    ServerConfig,
    ProxyConfig,
)


@functools.lru_cache(maxsize=8)
def make_converter(base_dir: Path) -> cattrs.Converter:
    """The converter for files in ``base_dir`` (relative favicon paths are read from there)."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _string)
    converter.register_structure_hook(bool, _boolean)
    converter.register_structure_hook(int, count)
    converter.register_structure_hook(float, _duration)
    converter.register_structure_hook(Path, _path)
    converter.register_structure_hook(Address, _address)
    converter.register_structure_hook(ProxyMode, _proxy_mode)
    converter.register_structure_hook(ForwardingMode, _forwarding_mode)
    converter.register_structure_hook(UnknownDomainBehavior, _unknown_domain_behavior)
    converter.register_structure_hook(LogFormat, _log_format)
    converter.register_structure_hook(DomainRewrite, _domain_rewrite)
    converter.register_structure_hook(LoadBalance, _load_balance)
    converter.register_structure_hook(RedisUrl, _redis_url)
    converter.register_structure_hook(ManagerType, _manager_type)

    def favicon(value: object, _: object = None) -> str:
        return load_favicon(_string(value), base_dir)

    def motd_table(value: object, _: object = None) -> dict[str, Motd]:
        if not isinstance(value, dict):
            raise ValueError(f"expected a table of states (like [motd.online]), got {_describe(value)}")
        motds: dict[str, Motd] = {}
        errors: list[Exception] = []
        for state, table in value.items():
            try:
                if state not in MOTD_STATES:
                    close = difflib.get_close_matches(state, MOTD_STATES, n=1)
                    valid = ", ".join(MOTD_STATES)
                    hint = f"did you mean {close[0]!r}?" if close else f"valid states: {valid}"
                    raise ValueError(f"unknown state {state!r}; {hint}")
                motds[state] = converter.structure(table, Motd)
            except Exception as exc:
                exc.add_note(IterableValidationNote(f"state {state}", state, Motd))
                errors.append(exc)
        if errors:
            raise IterableValidationError("invalid motd states", errors, dict)
        return motds

    overrides: dict[type, dict[str, Any]] = {
        Motd: {"favicon": override(struct_hook=favicon)},
        IpFilter: {
            "whitelist": override(struct_hook=_each(_cidr)),
            "blacklist": override(struct_hook=_each(_cidr)),
        },
        ZeroCopy: {"pipe_size": override(struct_hook=_pipe_size)},
        Ban: {"file": override(struct_hook=_file_path)},
        Forwarding: {"secret_file": override(struct_hook=_file_path)},
        Permissions: {"admins": override(struct_hook=_each(_admin))},
        HealthCheck: {
            "interval": override(struct_hook=_positive_duration),
            "timeout": override(struct_hook=_positive_duration),
            "unhealthy_after": override(struct_hook=_at_least_one),
            "healthy_after": override(struct_hook=_at_least_one),
        },
        Cluster: {
            "instance_id": override(struct_hook=_instance_id),
            "timeout": override(struct_hook=_positive_duration),
            "heartbeat": override(struct_hook=_positive_duration),
        },
        Docker: {"endpoint": override(struct_hook=_docker_endpoint)},
        ServerManager: {
            "command": override(struct_hook=_non_empty),
            "container": override(struct_hook=_non_empty),
            "ready_pattern": override(struct_hook=_regex),
        },
        ServerConfig: {
            "name": override(struct_hook=_server_name),
            "addresses": override(struct_hook=_addresses),
            "domains": override(struct_hook=_each(_domain)),
            "motd": override(struct_hook=motd_table),
            "source": override(omit=True),
        },
        ProxyConfig: {
            "workers": override(struct_hook=_workers),
            "hook_timeout": override(struct_hook=_positive_duration),
            "proxy_protocol_trusted": override(struct_hook=_each(_cidr)),
            "default_motd": override(struct_hook=motd_table),
            "servers": override(omit=True),
            "source": override(omit=True),
        },
    }
    for cls in _TABLES:
        generated: Callable[[Any, Any], Any] = make_dict_structure_fn(
            cls, converter, **overrides.get(cls, {})
        )
        if cls is ServerManager:
            generated = _with_manager_rules(generated)
        converter.register_structure_hook(cls, _table(generated))
    return converter


def _with_manager_rules(
    generated: Callable[[Any, Any], ServerManager],
) -> Callable[[Any, Any], ServerManager]:
    def structure(value: dict[str, Any], type_: object) -> ServerManager:
        return _check_manager(value, generated(value, type_))

    return structure


def structure_server(data: dict[str, Any], *, where: str, base_dir: Path | None = None) -> ServerConfig:
    """One server from plain data, checked exactly like a ``servers/*.toml`` file.

    Route providers (Docker labels, code) build their servers with it so every rule applies to them too.
    ``where`` names the origin in the :class:`ConfigError` raised for bad data.
    """
    try:
        return make_converter((base_dir or Path.cwd()).resolve()).structure(data, ServerConfig)
    except (BaseValidationError, ValueError) as exc:
        raise ConfigError(
            ConfigProblem(where, key or "-", message) for key, message in problems_from(exc)
        ) from None


def known_keys(cls: type) -> list[str]:
    """The keys a file may use for ``cls``."""
    return [field.name for field in attrs.fields(cls) if field.name not in _LOADER_FIELDS]


def problems_from(exc: BaseException, key: str = "") -> Iterator[tuple[str, str]]:
    """Flatten a cattrs error tree into ``(dotted key, message)`` pairs, in file order."""
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = known_keys(exc.cl)
        for extra in sorted(exc.extra_fields):
            close = difflib.get_close_matches(extra, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(allowed)}"
            yield _join(key, extra), f"unknown key{hint}"
    elif isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            yield from problems_from(sub, _join(key, _position(sub)))
    elif isinstance(exc, KeyError):
        yield key, "required key is missing"
    elif isinstance(exc, ValueError):
        yield key, str(exc)
    else:
        yield key, f"invalid value: {exc}"


def _position(exc: BaseException) -> str | int | None:
    """Where in its parent ``exc`` happened: the note its parent's hook attached."""
    for note in reversed(getattr(exc, "__notes__", ())):
        if isinstance(note, AttributeValidationNote):
            return note.name
        if isinstance(note, IterableValidationNote):
            return note.index
    return None


def _join(key: str, part: str | int | None) -> str:
    if part is None:
        return key
    if isinstance(part, int):
        return f"{key}[{part}]"
    return f"{key}.{part}" if key else part
