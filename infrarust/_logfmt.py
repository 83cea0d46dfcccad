"""Log line helpers: values for ``key=value`` fields."""

from __future__ import annotations


def quote(value: str) -> str:
    """A log field value: bare when it is one plain word, else quoted with escapes."""
    if value and all(ch.isprintable() and ch not in ' "=' for ch in value):
        return value
    return '"' + value.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
