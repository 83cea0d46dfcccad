"""``[cluster] redis`` URLs: ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS)."""

from __future__ import annotations

import urllib.parse

from ._addresses import is_host
from ._models import RedisUrl

_EXAMPLE = '"redis://127.0.0.1:6379/0"'
DEFAULT_REDIS_PORT = 6379


def parse_redis_url(text: str) -> RedisUrl:
    """A :class:`RedisUrl` from its text; :class:`ValueError` saying what is wrong (never the password)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a Redis URL like {_EXAMPLE}")
    try:
        parts = urllib.parse.urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        # urllib's messages name only the port text, never the password.
        raise ValueError(f"invalid Redis URL: {exc}; expected one like {_EXAMPLE}") from None
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis URL starts with redis:// or rediss:// (TLS), like {_EXAMPLE}")
    host = parts.hostname or ""
    if not host or not is_host(host):
        raise ValueError(f"the Redis URL has no valid host; expected one like {_EXAMPLE}")
    if port == 0:
        raise ValueError("the Redis URL's port must be from 1 to 65535")
    if parts.query or parts.fragment:
        raise ValueError("the Redis URL takes no ?query or #fragment")
    db_text = parts.path.strip("/")
    if db_text and not db_text.isdigit():
        raise ValueError(f"the Redis URL's path is the database number, like /0; got /{db_text}")
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return RedisUrl(
        host=host,
        port=port if port is not None else DEFAULT_REDIS_PORT,
        db=int(db_text) if db_text else 0,
        tls=parts.scheme == "rediss",
        username=username,
        password=password,
    )
