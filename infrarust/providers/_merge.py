"""Merging the servers of several route providers into the one tuple the router is built from."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from infrarust._logfmt import quote
from infrarust.config import ServerConfig

logger = logging.getLogger(__name__)

# (provider name, its servers); providers earlier in the sequence win conflicts.
ProviderServers = tuple[str, Sequence[ServerConfig]]


def describe_source(provider: str, server: ServerConfig) -> str:
    """Where a server comes from, for conflict messages: ``files:lobby (servers/lobby.toml)``."""
    text = f"{provider}:{server.name}"
    return f"{text} ({server.source})" if server.source is not None else text


def merge_servers(providers: Sequence[ProviderServers]) -> tuple[ServerConfig, ...]:
    """One tuple of servers from every provider, in priority order (files first, then code, then Docker).

    Within one provider nothing changes: its own rules (the later file wins a domain) stay the router's.
    Across providers, an exact domain claimed by two is kept by the earlier provider and taken away from
    the later one, and a server name already used is dropped; each conflict is logged once per merge with
    both sources. A server left without any domain by this is dropped too (it could never be reached).
    Wildcard patterns are kept: the earlier provider's servers come first, so they match first.
    """
    merged: list[ServerConfig] = []
    domain_owner: dict[str, tuple[str, ServerConfig]] = {}
    name_owner: dict[str, tuple[str, ServerConfig]] = {}
    for provider, servers in providers:
        claimed_here: dict[str, tuple[str, ServerConfig]] = {}
        names_here: dict[str, tuple[str, ServerConfig]] = {}
        for server in servers:
            earlier = name_owner.get(server.name)
            if earlier is not None:
                logger.warning(
                    "route conflict name=%s kept=%s dropped=%s",
                    server.name,
                    quote(describe_source(*earlier)),
                    quote(describe_source(provider, server)),
                )
                continue
            names_here[server.name] = (provider, server)
            kept_domains: list[str] = []
            for domain in server.domains:
                owner = domain_owner.get(domain)
                if owner is None:
                    kept_domains.append(domain)
                    claimed_here.setdefault(domain, (provider, server))
                    continue
                logger.warning(
                    "route conflict domain=%s kept=%s dropped=%s",
                    domain,
                    quote(describe_source(*owner)),
                    quote(describe_source(provider, server)),
                )
            if len(kept_domains) == len(server.domains):
                merged.append(server)
            elif kept_domains:
                merged.append(attrs.evolve(server, domains=tuple(kept_domains)))
            else:
                logger.warning(
                    "route dropped server=%s source=%s reason=%s",
                    server.name,
                    quote(describe_source(provider, server)),
                    quote("every domain it claims belongs to an earlier provider"),
                )
        # A provider's own duplicates are its business, so its claims count only for later providers.
        domain_owner.update(claimed_here)
        name_owner.update(names_here)
    return tuple(merged)
