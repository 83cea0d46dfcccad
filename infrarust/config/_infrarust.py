"""What infrarust does with the keys of Infrarust v2 files that it does not load as settings of its own.

Infrarust v2's users bring their ``infrarust.toml`` and ``servers/*.toml``. Where a feature exists here,
its keys load as they are (see the models). The tables below say what happens to the others:

- :data:`NOT_BUILT`: keys of features infrarust does not have. Each is refused with a message naming the
  feature as not built: running without a feature the file asks for would surprise its author more than
  an error does. When a feature lands, its model gains the key and its entry leaves this table (a test
  checks that no key is in both).
- :data:`IGNORED`: keys that mean nothing here but are harmless; they are checked, then ignored with a
  warning that says why.
- :data:`MOTD_STATES_UNUSED`: MOTD states Infrarust knows that nothing here shows yet; a MOTD for one of
  them loads with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from ._models import ProxyConfig, ServerConfig

# The features, named once so that every key of one feature says the same thing.
_PLUGINS = "plugins"
_COMMANDS = "the proxy's own commands (/infrarust)"
_LOAD_BALANCING = (
    "Infrarust's load-balancing keys (infrarust has `load_balance` and `[health_check]` instead)"
)

# Key -> the feature it belongs to, per file kind: ProxyConfig for infrarust.toml, ServerConfig for a
# server file. Remove an entry when its feature is built (its model then has the key).
NOT_BUILT: Final[Mapping[type, Mapping[str, str]]] = MappingProxyType(
    {
        ProxyConfig: MappingProxyType(
            {
                "web": "the web admin API and UI",
                "telemetry": "OpenTelemetry export",
                "plugins": _PLUGINS,
                "plugins_dir": _PLUGINS,
                "announce_proxy_commands": _COMMANDS,
            }
        ),
        ServerConfig: MappingProxyType(
            {
                "limbo_handlers": "limbo handlers (plugins)",
                "network": "server switching (networks)",
                "balance": _LOAD_BALANCING,
                "slow_start": _LOAD_BALANCING,
                "slow_start_aggression": _LOAD_BALANCING,
                "active_health": _LOAD_BALANCING,
            }
        ),
    }
)

# Key -> (the type its value must have, as a model field of that type would be checked; why it is ignored).
IGNORED: Final[Mapping[type, Mapping[str, tuple[type, str]]]] = MappingProxyType(
    {
        ProxyConfig: MappingProxyType(
            {
                "worker_threads": (
                    int,
                    "worker_threads is ignored: infrarust runs one event loop per process;"
                    " set `workers` to run several processes",
                ),
            }
        ),
        ServerConfig: MappingProxyType({}),
    }
)

# The states a server file may give a [motd.<state>], as Infrarust v2 names them.
MOTD_STATES: Final = ("online", "offline", "unreachable", "sleeping", "starting", "crashed", "stopping")
# State -> why no answer ever uses its MOTD. Remove an entry when something shows the state.
# ondemand: sleeping, starting, stopping, crashed: shown by [server_manager] servers (infrarust.manager).
MOTD_STATES_UNUSED: Final[Mapping[str, str]] = MappingProxyType({})


def not_built_message(cls: type, key: str, value: object) -> str:
    """The error for ``key`` of a feature that is not built (``NOT_BUILT[cls]`` must have it)."""
    feature = NOT_BUILT[cls][key]
    written = f"[{key}]" if isinstance(value, dict) else f"`{key}`"
    return f"{feature} is not built in infrarust; remove {written} to load this file"
