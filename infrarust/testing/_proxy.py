"""Proxies for tests: configurations built from a few arguments, started in a nursery on a free port."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import attrs
import trio

import infrarust
from infrarust.config import Address, Ban, ProxyConfig, RateLimit, ServerConfig

from ._backend import FakeBackend

Target = FakeBackend | Address | tuple[str, int] | int
"""Where a test server points: a fake backend, an address, ``(host, port)``, or a port on 127.0.0.1."""

NO_RATE_LIMIT = RateLimit(max_connections=0, status_max=0)
"""The ``rate_limit`` of test proxies built without a file: tests connect many times from 127.0.0.1, and
the per-IP budgets would make them fail for the wrong reason."""
_FIELDS = frozenset(field.name for field in attrs.fields(ProxyConfig))


def server(target: Target, *domains: str, name: str | None = None, **fields: Any) -> ServerConfig:
    """A :class:`~infrarust.ServerConfig` routing ``domains`` to ``target``.

    ``name`` defaults to the first domain made a valid server id (``lobby.example.com`` becomes
    ``lobby-example-com``); ``fields`` are any other ``ServerConfig`` fields
    (``proxy_mode=infrarust.ProxyMode.ZERO_COPY``, ``disconnect_message="..."``, ...).
    """
    if not domains:
        raise ValueError("server() needs at least one domain to route to the target")
    if name is None:
        name = re.sub(r"[^a-z0-9_-]+", "-", domains[0].lower()).strip("-") or "server"
    base = ServerConfig(name=name, addresses=(_address(target),), domains=tuple(domains))
    return attrs.evolve(base, **fields) if fields else base


def testing_config(
    config: str | os.PathLike[str] | ProxyConfig | None, state_dir: Path, settings: dict[str, Any]
) -> ProxyConfig:
    """The configuration a test proxy runs with.

    ``config`` is a file to load, a :class:`ProxyConfig`, or None for the defaults without per-IP rate
    limits. ``settings`` replace fields (``servers`` accepts any iterable). Unless given there, ``bind``
    becomes ``127.0.0.1:0``, the ban file moves into ``state_dir`` (a relative one is taken from there) and
    a metrics endpoint binds ``127.0.0.1:0``.
    """
    unknown = sorted(set(settings) - _FIELDS)
    if unknown:
        raise TypeError(f"not ProxyConfig fields: {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})")
    if config is None:
        base = ProxyConfig(rate_limit=NO_RATE_LIMIT)
    elif isinstance(config, ProxyConfig):
        base = config
    else:
        base = infrarust.load_config(config)
    changes = dict(settings)
    if "servers" in changes:
        changes["servers"] = tuple(changes["servers"])
    changes.setdefault("bind", Address("127.0.0.1", 0))
    ban: Ban = changes.get("ban", attrs.evolve(base.ban, file="bans.json"))
    changes["ban"] = attrs.evolve(ban, file=str(state_dir / ban.file))  # an absolute file stays as given
    metrics = changes.get("metrics", base.metrics)
    if "metrics" not in settings and metrics is not None:
        changes["metrics"] = attrs.evolve(metrics, bind=Address("127.0.0.1", 0))
    return attrs.evolve(base, **changes)


class ProxyFactory:
    """Starts infrarust proxies in a nursery: ``proxy = await factory(servers=[...], **settings)``.

    This is what the ``infrarust_proxy`` fixture gives a test; each proxy keeps its state (the ban file) in
    its own folder under ``state_dir`` and stops with the nursery.
    """

    def __init__(self, nursery: trio.Nursery, state_dir: Path) -> None:
        self._nursery = nursery
        self._state_dir = state_dir
        self._started = 0

    async def __call__(
        self, config: str | os.PathLike[str] | ProxyConfig | None = None, /, **settings: Any
    ) -> infrarust.Proxy:
        """Start a proxy on a free 127.0.0.1 port and return it once it listens (``proxy.port``).

        ``config``: a configuration file, a :class:`~infrarust.ProxyConfig`, or None for the defaults
        without per-IP rate limits; ``settings`` are ProxyConfig fields to replace, e.g.
        ``servers=[infrarust.testing.server(backend, "mc.example.com")]``.
        """
        self._started += 1
        state = self._state_dir / f"proxy-{self._started}"
        await trio.Path(state).mkdir(parents=True, exist_ok=True)
        proxy_config = testing_config(config, state, settings)
        proxy: infrarust.Proxy = await self._nursery.start(infrarust.serve, proxy_config)
        return proxy


def _address(target: Target) -> Address:
    if isinstance(target, FakeBackend):
        if not target.port:
            raise ValueError("the FakeBackend is not running yet: start it with the fake_backend fixture")
        return target.address
    if isinstance(target, Address):
        return target
    if isinstance(target, int):
        return Address("127.0.0.1", target)
    host, port = target
    return Address(host, port)
