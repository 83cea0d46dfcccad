"""Durations as configuration strings: ``"500ms"``, ``"5s"``, ``"2m"``, ``"1h30m"``, ``"1h 30m"``, ``"1min"``.

A duration is one or more parts, each a non-negative decimal number followed by a unit, optionally with
spaces between them. The value is the sum of the parts, so their order does not matter (``"1h 30m"``).
The units are the ones Infrarust v2 reads (it parses durations with the Rust ``humantime`` crate), so its
files load unchanged: ``ns``, ``us``, ``ms``, ``s``, ``m``, ``h``, ``d``, ``w`` and their longer spellings
(``sec``, ``min``, ``hours``, ``days``...), ``M`` for months of 30.44 days and ``y`` for years of 365.25
days. Units are case-sensitive (``m`` is a minute, ``M`` a month). A bare number is an error, because ``10``
could be seconds or milliseconds and the reader of the file should not have to guess; only ``"0"`` needs no
unit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from types import MappingProxyType
from typing import Final

# Every spelling humantime 2.3 accepts, by the unit it means (its Unit::from_str).
_SPELLINGS: Final = (
    (Fraction(1, 1_000_000_000), ("nanos", "nsec", "ns")),
    (Fraction(1, 1_000_000), ("usec", "us", "µs")),
    (Fraction(1, 1000), ("millis", "msec", "ms")),
    (Fraction(1), ("seconds", "second", "secs", "sec", "s")),
    (Fraction(60), ("minutes", "minute", "min", "mins", "m")),
    (Fraction(3600), ("hours", "hour", "hr", "hrs", "h")),
    (Fraction(86400), ("days", "day", "d")),
    (Fraction(7 * 86400), ("weeks", "week", "wk", "wks", "w")),
    (Fraction(2_630_016), ("months", "month", "M")),  # 30.44 days, as humantime counts them
    (Fraction(31_557_600), ("years", "year", "yr", "yrs", "y")),  # 365.25 days
)
UNIT_SECONDS: Final[Mapping[str, Fraction]] = MappingProxyType(
    {spelling: seconds for seconds, spellings in _SPELLINGS for spelling in spellings}
)
# A number, optional spaces, then the unit: every letter up to the next digit, space or end, so a
# misspelt unit is reported whole ("5secs" is fine, "5sex" names "sex") instead of matching a prefix.
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)[ \t]*([A-Za-zµ]+)", re.ASCII)
_EXAMPLES = 'a number with a unit (ms, s, m, h, d...), like "500ms", "5s", "2m", "1min" or "1h30m"'


def parse_duration(text: str) -> float:
    """Seconds in a duration string such as ``"1h30m"``; :class:`ValueError` if it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string, {_EXAMPLES}")
    if text.strip() == "0":  # the one unit-less duration Infrarust accepts: zero is zero in any unit
        return 0.0
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
        unit = UNIT_SECONDS.get(match[2])
        if unit is None:
            raise ValueError(f"invalid duration {text!r}: unknown unit {match[2]!r}; expected {_EXAMPLES}")
        # Fractions keep the sum exact, so "1h30m" is exactly 5400.0 and "100ms" exactly 0.1.
        total += Fraction(match[1]) * unit
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
