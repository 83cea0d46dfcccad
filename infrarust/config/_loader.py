"""Reading ``infrarust.toml`` and its ``servers/*.toml`` into one :class:`ProxyConfig`.

Loading never stops at the first problem: every file is read and checked, every problem is collected, and
one :class:`ConfigError` lists them all. Warnings (things that load but may surprise) are logged on the
``infrarust.config`` logger, one line each, naming file and key like errors do.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

import attrs
import tomlkit
from cattrs.errors import BaseValidationError
from tomlkit.exceptions import ParseError, TOMLKitError

from ._errors import ConfigError, ConfigProblem
from ._favicon import favicon_size
from ._infrarust import IGNORED, MOTD_STATES_UNUSED, NOT_BUILT, not_built_message
from ._models import Motd, ProxyConfig, ProxyMode, ServerConfig
from ._structure import SERVER_NAME, make_converter, problems_from

logger = logging.getLogger("infrarust.config")

DEFAULT_CONFIG_FILE: Final = "infrarust.toml"

# Keys the specification defines but the proxy does not act on yet. Setting one to anything but its default
# logs "<key> is accepted but not enforced yet". Remove a key from here when its feature lands.
NOT_YET_ENFORCED: Final[Mapping[type, tuple[str, ...]]] = MappingProxyType(
    {
        ProxyConfig: (),
        ServerConfig: (),
    }
)

_NOT_ID = re.compile(r"[^a-z0-9_-]+", re.ASCII)
_FORWARDING_MODE_NAMES = frozenset(mode.value for mode in ProxyMode if mode.is_forwarding)
_C = TypeVar("_C")
# What each key means when a file leaves it out (name and addresses are required, so any value will do).
_DEFAULTS: Final[Mapping[type, object]] = MappingProxyType(
    {ProxyConfig: ProxyConfig(), ServerConfig: ServerConfig(name="-", addresses=())}
)


def load_config(path: str | os.PathLike[str] | None = None) -> ProxyConfig:
    """Load a configuration file and the server files in its ``servers_dir``.

    ``None`` means ``infrarust.toml`` in the working directory, and built-in defaults (``ProxyConfig()``)
    if there is no such file. An explicit path must exist. Raises :class:`ConfigError` with every problem
    found; logs warnings on the ``infrarust.config`` logger.
    """
    if path is None:
        if not os.path.lexists(DEFAULT_CONFIG_FILE):
            return ProxyConfig()
        path = DEFAULT_CONFIG_FILE
    load = _Load()
    config = load.run(Path(path))
    for warning in load.warnings:
        logger.warning("%s", warning)
    if load.problems:
        raise ConfigError(load.problems)
    assert config is not None
    return config


def server_id_from_file_name(stem: str) -> str | None:
    """A clean server id (``[a-z0-9_-]+``) from a file name without ``.toml``: lower-cased, every run of
    other characters made one ``-`` (``1.6.4`` gives ``1-6-4``, ``My Server`` gives ``my-server``); None
    when nothing is left."""
    derived = _NOT_ID.sub("-", stem.lower()).strip("-")
    return derived or None


class _Load:
    """One load: the problems and warnings found so far, across all files."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        self.derived_ids: dict[Path, str] = {}  # server files whose id was made from the file name

    def error(self, file: Path | str, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(str(file), key or "-", message))

    def warn(self, file: Path | str, key: str, message: str) -> None:
        self.warnings.append(ConfigProblem(str(file), key or "-", message))

    def run(self, path: Path) -> ProxyConfig | None:
        raw = self._read(path)
        if raw is None:
            return None
        raw = self._set_aside(raw, ProxyConfig, path)
        config = self._structure(raw, ProxyConfig, path, path.parent)
        if config is not None:
            self._check_proxy(path, config)
        # Server files are checked even when the main file has errors, so one run reports everything.
        servers_dir = config.servers_dir if config is not None else raw.get("servers_dir", "servers")
        if not isinstance(servers_dir, (str, Path)) or not str(servers_dir):
            return None  # only when the main file failed: its servers_dir problem is already recorded
        resolved_dir = (path.parent / servers_dir).resolve()
        servers = self._load_servers(path, resolved_dir)
        if config is None:
            return None
        # Like servers_dir, the ban file is relative to this file's folder.
        ban = attrs.evolve(config.ban, file=str((path.parent / config.ban.file).resolve()))
        forwarding = config.forwarding
        if forwarding.secret_file is not None:
            secret_file = str((path.parent / forwarding.secret_file).resolve())
            forwarding = attrs.evolve(forwarding, secret_file=secret_file)
        return attrs.evolve(
            config,
            servers_dir=resolved_dir,
            servers=tuple(servers),
            ban=ban,
            forwarding=forwarding,
            source=path.resolve(),
        )

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The file's TOML as plain Python data, or None after recording why it cannot be had."""
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            self.error(path, "-", "file not found")
            return None
        except IsADirectoryError:
            self.error(path, "-", "is a folder, expected a TOML file")
            return None
        except OSError as exc:
            self.error(path, "-", f"cannot read: {exc.strerror or exc}")
            return None
        except UnicodeDecodeError as exc:
            self.error(path, "-", f"not UTF-8 text (byte {exc.start})")
            return None
        try:
            document = tomlkit.parse(text)
        except ParseError as exc:
            message = str(exc).removesuffix(f" at line {exc.line} col {exc.col}").rstrip(".")
            # tomlkit counts columns from 0; editors count from 1.
            self.error(path, "-", f"invalid TOML at line {exc.line}, column {exc.col + 1}: {message}")
            return None
        except TOMLKitError as exc:
            self.error(path, "-", f"invalid TOML: {exc}")
            return None
        return document.unwrap()

    def _set_aside(self, raw: dict[str, Any], cls: type, path: Path) -> dict[str, Any]:
        """``raw`` without the Infrarust keys that are not settings here: a key of a feature not built is
        an error naming the feature; an ignored key is checked, then dropped with a warning."""
        kept = dict(raw)
        for key in NOT_BUILT[cls].keys() & raw.keys():
            self.error(path, key, not_built_message(cls, key, kept.pop(key)))
        for key in IGNORED[cls].keys() & raw.keys():
            expected, why = IGNORED[cls][key]
            try:
                make_converter(path.parent.resolve()).structure(kept.pop(key), expected)
            except ValueError as exc:
                self.error(path, key, str(exc))
            else:
                self.warn(path, key, why)
        return kept

    def _structure(self, raw: dict[str, Any], cls: type[_C], path: Path, base_dir: Path) -> _C | None:
        try:
            return make_converter(base_dir.resolve()).structure(raw, cls)
        except (BaseValidationError, ValueError) as exc:
            for key, message in problems_from(exc):
                self.error(path, key, message)
            return None

    def _load_servers(self, config_path: Path, servers_dir: Path) -> list[ServerConfig]:
        files = self._server_files(config_path, servers_dir)
        servers: list[ServerConfig] = []
        for file in files:
            server = self._load_server(file)
            if server is not None:
                servers.append(server)
        self._check_names(servers)
        self._check_domains(servers)
        return servers

    def _server_files(self, config_path: Path, servers_dir: Path) -> list[Path]:
        """The server files in ``servers_dir``, sorted by name: that order decides which file wins a domain
        both claim. Hidden files (editor and sync leftovers) are skipped. A folder that exists but cannot be
        listed is an error: "no servers" would hide the problem until every player is refused."""
        where = repr(str(servers_dir))
        try:
            with os.scandir(servers_dir) as entries:
                files = [
                    Path(entry.path)
                    for entry in entries
                    if entry.name.endswith(".toml") and not entry.name.startswith(".") and entry.is_file()
                ]
        except FileNotFoundError:
            self.warn(config_path, "servers_dir", f"folder {where} does not exist; no servers loaded")
            return []
        except NotADirectoryError:
            self.error(config_path, "servers_dir", f"{where} is not a folder")
            return []
        except OSError as exc:
            self.error(config_path, "servers_dir", f"cannot read folder {where}: {exc.strerror or exc}")
            return []
        return sorted(files, key=lambda file: file.name)

    def _load_server(self, path: Path) -> ServerConfig | None:
        raw = self._read(path)
        if raw is None:
            return None
        before = len(self.problems)
        data = self._set_aside(raw, ServerConfig, path)
        data["name"] = self._server_id(path, data.pop("id", None), data.get("name"))
        self._check_server_raw(path, data)
        server = self._structure(data, ServerConfig, path, path.parent)
        if server is None or len(self.problems) > before:
            return None
        server = attrs.evolve(server, source=path)
        self._check_server(path, server)
        return server

    def _server_id(self, path: Path, id_: object, name: object) -> object:
        """The server's id: ``name``, else ``id`` (Infrarust's key; ``name`` wins, as there), else one made
        from the file name. Infrarust takes any file name as an id; here an id is ``[a-z0-9_-]+`` (it shows
        in logs and metric labels), so ``1.6.4.toml`` becomes ``1-6-4``. Messages keep naming the file."""
        if name is not None:
            if id_ is not None and id_ != name:
                self.warn(path, "id", f"both `name` and `id` are set; the server's id is the name {name!r}")
            return name  # checked by the converter
        if id_ is not None:
            if isinstance(id_, str) and SERVER_NAME.fullmatch(id_):
                return id_
            self.error(path, "id", f"invalid server id {id_!r}: use lower-case letters, digits, '_' and '-'")
            return "-"  # stands in so the other keys are still checked
        derived = server_id_from_file_name(path.stem)
        if derived is None:
            self.error(
                path,
                "name",
                f"no server id can be made from the file name {path.name!r}; set `name` in the file",
            )
            return "-"
        self.derived_ids[path] = derived
        return derived

    def _check_server_raw(self, path: Path, data: Mapping[str, Any]) -> None:
        """Rules across keys, checked on the raw data so they are reported even beside type errors."""
        mode = data.get("proxy_mode", ProxyMode.PASSTHROUGH.value)
        domains = data.get("domains", [])
        if mode in _FORWARDING_MODE_NAMES and isinstance(domains, list) and not domains:
            self.error(
                path,
                "domains",
                f"proxy_mode {mode!r} needs at least one domain: players are routed by the domain they"
                ' connect to, like domains = ["play.example.com"]',
            )

    def _check_names(self, servers: list[ServerConfig]) -> None:
        seen: dict[str, ServerConfig] = {}
        for server in servers:
            first = seen.setdefault(server.name, server)
            if first is not server:
                made = server.source in self.derived_ids
                self.error(
                    server.source or "-",
                    "name",
                    f"server {'id' if made else 'name'} {server.name!r}"
                    f"{' (made from the file name)' if made else ''} is already used by {first.source}"
                    f"{'; set `name` in one of them' if made else ''}",
                )

    def _check_domains(self, servers: list[ServerConfig]) -> None:
        claimed: dict[str, ServerConfig] = {}
        for server in servers:
            for domain in dict.fromkeys(server.domains):
                if "*" in domain or "?" in domain:
                    continue
                earlier = claimed.get(domain)
                if earlier is not None and earlier is not server:
                    self.warn(
                        server.source or "-",
                        "domains",
                        f"domain {domain!r} is also claimed by {earlier.source};"
                        " this file wins (later by file name)",
                    )
                claimed[domain] = server

    def _check_server(self, path: Path, server: ServerConfig) -> None:
        if server.proxy_mode is ProxyMode.ZERO_COPY and sys.platform != "linux":
            self.warn(
                path,
                "proxy_mode",
                "proxy_mode = zero_copy is only supported on Linux; this server uses the copy path",
            )
        self._check_not_enforced(path, server)
        self._check_motds(path, "motd", server.motd)

    def _check_proxy(self, path: Path, config: ProxyConfig) -> None:
        self._check_not_enforced(path, config)
        self._check_motds(path, "default_motd", config.default_motd)

    def _check_not_enforced(self, path: Path, obj: ProxyConfig | ServerConfig) -> None:
        defaults = _DEFAULTS[type(obj)]
        for key in NOT_YET_ENFORCED.get(type(obj), ()):
            if getattr(obj, key) != getattr(defaults, key):
                self.warn(path, key, f"{key} is accepted but not enforced yet")

    def _check_motds(self, path: Path, table: str, motds: Mapping[str, Motd]) -> None:
        for state, motd in motds.items():
            unused = MOTD_STATES_UNUSED.get(state)
            if unused is not None:
                self.warn(
                    path, f"{table}.{state}", f"no answer uses the {state!r} state ({unused}); it is ignored"
                )
            if motd.favicon is None:
                continue
            size = favicon_size(motd.favicon)
            if size is None:
                self.warn(
                    path, f"{table}.{state}.favicon", "the PNG header is unreadable; clients may not show it"
                )
            elif size != (64, 64):
                self.warn(
                    path,
                    f"{table}.{state}.favicon",
                    f"the favicon is {size[0]}x{size[1]}; Minecraft clients expect 64x64",
                )
