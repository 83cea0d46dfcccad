"""Text components as the protocol carries them: a JSON string before 1.20.3, network NBT from 1.20.3.

The proxy writes components it made itself (messages, titles, disconnect reasons). A caller's text is a
component when it is a JSON object or array, and otherwise plain text, in which legacy ``§`` colour
codes keep working (the client renders them inside ``text``).
"""

from __future__ import annotations

import json
import struct

from ._errors import ProtocolError

Component = dict[str, object] | list[object] | str
"""A text component as JSON data: an object, an array of components, or a plain string."""

NBT_TEXT_PROTOCOL = 765
"""1.20.3: play and configuration text components (chat, titles, disconnect) become NBT."""

_TAG_END = 0
_TAG_BYTE = 1
_TAG_INT = 3
_TAG_LONG = 4
_TAG_DOUBLE = 6
_TAG_STRING = 8
_TAG_LIST = 9
_TAG_COMPOUND = 10
_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)


def text_component(text: str) -> Component:
    """``text`` as a component: itself when it is a JSON object or array, else ``{"text": text}``."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except ValueError:
            value = None
        if isinstance(value, dict | list):
            return value
    return {"text": text}


def component_json(component: Component) -> str:
    """The JSON text of a component, compact, as the protocol carries it before 1.20.3."""
    return json.dumps(component, ensure_ascii=False, separators=(",", ":"))


def component_nbt(component: Component) -> bytes:
    """The network NBT of a component (a nameless root tag), as 1.20.3+ carries it."""
    if isinstance(component, str):
        return bytes((_TAG_STRING,)) + _nbt_string(component)
    if isinstance(component, list):
        # An array component is its first element with the rest appended as "extra".
        if not component:
            return component_nbt("")
        first = component[0] if isinstance(component[0], dict) else {"text": _plain(component[0])}
        extra = list(first.get("extra", [])) if isinstance(first.get("extra"), list) else []
        component = {**first, "extra": extra + list(component[1:])}
    tag, payload = _nbt_value(component)
    return bytes((tag,)) + payload


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _nbt_string(text: str) -> bytes:
    # Java's modified UTF-8: NUL as two bytes, characters beyond the BMP as two 3-byte surrogates.
    out = bytearray()
    units = text.encode("utf-16-be", "surrogatepass")
    for index in range(0, len(units), 2):
        unit = (units[index] << 8) | units[index + 1]
        if 0 < unit < 0x80:
            out.append(unit)
        elif unit < 0x800:
            out += bytes((0xC0 | (unit >> 6), 0x80 | (unit & 0x3F)))
        else:
            out += bytes((0xE0 | (unit >> 12), 0x80 | ((unit >> 6) & 0x3F), 0x80 | (unit & 0x3F)))
    if len(out) > 0xFFFF:
        raise ProtocolError(f"NBT string of {len(out)} bytes exceeds 65535")
    return struct.pack(">H", len(out)) + bytes(out)


def _nbt_value(value: object) -> tuple[int, bytes]:
    if isinstance(value, bool):
        return _TAG_BYTE, bytes((int(value),))
    if isinstance(value, int):
        if value in _INT32:
            return _TAG_INT, struct.pack(">i", value)
        if value in _INT64:
            return _TAG_LONG, struct.pack(">q", value)
        return _TAG_STRING, _nbt_string(str(value))
    if isinstance(value, float):
        return _TAG_DOUBLE, struct.pack(">d", value)
    if isinstance(value, str):
        return _TAG_STRING, _nbt_string(value)
    if isinstance(value, dict):
        out = bytearray()
        for key, item in value.items():
            if item is None:
                continue
            tag, payload = _nbt_value(item)
            out += bytes((tag,)) + _nbt_string(str(key)) + payload
        out.append(_TAG_END)
        return _TAG_COMPOUND, bytes(out)
    if isinstance(value, list | tuple):
        items = [_nbt_value(item) for item in value if item is not None]
        tags = {tag for tag, _ in items}
        if len(tags) > 1:
            # NBT lists hold one type; in a component a mixed list is a list of components.
            items = [_nbt_value(item if isinstance(item, dict) else {"text": _plain(item)}) for item in value]
            tags = {_TAG_COMPOUND}
        element = tags.pop() if tags else _TAG_END
        return _TAG_LIST, bytes((element,)) + struct.pack(">i", len(items)) + b"".join(p for _, p in items)
    raise ProtocolError(f"cannot write {type(value).__name__} into a text component")
