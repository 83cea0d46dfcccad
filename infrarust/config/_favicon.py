"""Server-list icons: a PNG file, a base64 PNG or a ``data:image/png;base64,...`` URI, kept as a data URI."""

from __future__ import annotations

import base64
import binascii
import struct
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATA_URI_PREFIX = "data:image/png;base64,"
# base64 of the PNG signature: how a pasted base64 PNG is told apart from a file path.
_BASE64_PNG_START = base64.b64encode(PNG_SIGNATURE)[:8].decode()


def load_favicon(value: str, base_dir: Path) -> str:
    """The favicon ``value`` as a data URI; ValueError if it is not a readable PNG.

    A value starting with ``data:`` is a data URI, one starting like a base64 PNG (``iVBORw0KGgo``) is
    base64, anything else is a file path, relative to ``base_dir`` (the folder of the file naming it).
    """
    if value.startswith("data:"):
        if not value.startswith(DATA_URI_PREFIX):
            raise ValueError(f"a favicon data URI must start with {DATA_URI_PREFIX!r}")
        data = _decode_base64(value.removeprefix(DATA_URI_PREFIX))
    elif value.startswith(_BASE64_PNG_START):
        data = _decode_base64(value)
    else:
        path = base_dir / value
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(
                f"cannot read favicon file {str(path)!r}: {exc.strerror or exc}"
                " (a favicon is a PNG file path, a base64 PNG or a data:image/png;base64 URI)"
            ) from None
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("the favicon is not a PNG image (it does not start with the PNG signature)")
    return DATA_URI_PREFIX + base64.b64encode(data).decode("ascii")


def favicon_size(data_uri: str) -> tuple[int, int] | None:
    """Width and height from the PNG header of a favicon data URI; None if the header is unreadable."""
    try:
        data = base64.b64decode(data_uri.removeprefix(DATA_URI_PREFIX)[:64])
    except (binascii.Error, ValueError):
        return None
    # The first chunk of a PNG is IHDR: length (4 bytes), b"IHDR", then width and height as big-endian u32.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _decode_base64(text: str) -> bytes:
    # Long base64 strings are often wrapped over several lines in a TOML multi-line string.
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the favicon is not valid base64") from None
