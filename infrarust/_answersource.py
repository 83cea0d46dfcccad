"""Where a server-list answer came from: the backend, the status cache, or the proxy itself.

Vanilla clients never learn this: only a client that asks gets it. The asking is a status request whose
body is :data:`SOURCE_REQUEST_BODY` (a vanilla request has an empty body). The proxy never forwards the
client's request (it sends the backend one of its own), so no backend sees the odd body; the answer then
carries a top-level ``"infrarust": {"source": ...}`` field, which vanilla clients would ignore anyway.

``python -m infrarust ping --expect-backend`` is the client that asks. This module imports nothing heavy:
the ping command loads it.
"""

from __future__ import annotations

import json
from typing import Final, Literal, get_args

from infrarust.protocol import encode_packet, encode_string, status_object

AnswerSource = Literal["backend", "cache", "unreachable", "unknown_domain", "managed_state"]
"""``backend``: a status exchange made for this answer; ``cache``: the backend's answer from the status
cache (at most ``[status_cache] ttl`` old); ``unreachable``: no backend answered, the proxy's
``[motd.unreachable]`` answered; ``unknown_domain``: no server has the domain, ``[default_motd]`` answered;
``managed_state``: a ``[server_manager]`` server that is not online, its ``[motd.<state>]`` answered."""
ANSWER_SOURCES: Final[tuple[AnswerSource, ...]] = get_args(AnswerSource)
FROM_BACKEND: Final = frozenset[AnswerSource]({"backend", "cache"})

SOURCE_KEY: Final = "infrarust"
SOURCE_REQUEST_BODY: Final = encode_string("infrarust:answer-source")
STATUS_REQUEST_ID: Final = 0x00


def encode_source_request() -> bytes:
    """A framed status request that asks an infrarust proxy to say where its answer comes from."""
    return encode_packet(STATUS_REQUEST_ID, SOURCE_REQUEST_BODY)


def mark_source(status_json: str, source: AnswerSource) -> str:
    """``status_json`` with ``"infrarust": {"source": source}`` as its first field, every other byte kept.

    Kept byte for byte (a backend's Forge mod list, its spacing and escapes) by inserting text after the
    opening brace; only when the text already names the key (an infrarust behind an infrarust) is it parsed
    and written again, so the key appears once. Text that is not a JSON object is returned unchanged.
    """
    field = f'"{SOURCE_KEY}":{{"source":"{source}"}}'
    start = len(status_json) - len(status_json.lstrip())
    if not status_json.startswith("{", start):
        return status_json
    if f'"{SOURCE_KEY}"' not in status_json:
        rest = status_json[start + 1 :]
        separator = "" if rest.lstrip().startswith("}") else ","
        return status_json[: start + 1] + field + separator + rest
    status = status_object(status_json)
    if status is None:
        return status_json
    status.pop(SOURCE_KEY, None)
    return json.dumps({SOURCE_KEY: {"source": source}, **status})


def take_source(status: dict[str, object]) -> AnswerSource | None:
    """Remove the proxy's mark from a parsed status; the source it named, or None when there was none."""
    mark = status.pop(SOURCE_KEY, None)
    source = mark.get("source") if isinstance(mark, dict) else None
    for known in ANSWER_SOURCES:
        if source == known:
            return known
    return None
