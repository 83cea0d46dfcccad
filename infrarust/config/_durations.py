"""Durations as configuration strings: ``"500ms"``, ``"5s"``, ``"2m"``, ``"1h30m"``, ``"1h 30m"``.

A duration is one or more parts, each a non-negative decimal number directly followed by a unit: ``h``,
``m``, ``s`` or ``ms``. The value is the sum of the parts, so their order does not matter and whitespace may
separate them (``"1h 30m"``). Units are lower-case and required: a bare number is an error, because ``10``
could be seconds or milliseconds and the reader of the file should not have to guess.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)", re.ASCII)
_UNIT_SECONDS = {"h": Fraction(3600), "m": Fraction(60), "s": Fraction(1), "ms": Fraction(1, 1000)}
_EXAMPLES = 'a number with a unit (h, m, s, ms), like "500ms", "5s", "2m" or "1h30m"'


def parse_duration(text: str) -> float:
    """Seconds in a duration string such as ``"1h30m"``; :class:`ValueError` if it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string, {_EXAMPLES}")
    position, end = 0, len(text)
    total = Fraction(0)
    parts = 0
    while True:
        while position < end and text[position].isspace():
            position += 1
        if position == end:
            break
        match = _PART.match(text, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}: expected {_EXAMPLES}")
        # Fractions keep the sum exact, so "1h30m" is exactly 5400.0 and "100ms" exactly 0.1.
        total += Fraction(match[1]) * _UNIT_SECONDS[match[2]]
        parts += 1
        position = match.end()
    if parts == 0:
        raise ValueError(f"invalid duration {text!r}: expected {_EXAMPLES}")
    try:
        return float(total)
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too large") from None


def format_duration(seconds: float) -> str:
    """A short duration string for ``seconds``, rounded to the millisecond: ``5400`` gives ``"1h30m"``.

    The result parses back with :func:`parse_duration`. Negative or non-finite values raise ValueError.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration")
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s"), (millis, "ms"))]
    shown = [part for part, value in zip(parts, (hours, minutes, secs, millis), strict=True) if value]
    return "".join(shown) or "0s"
