"""For modules that still build ``key=value`` text by hand; new code logs with :mod:`infrarust.logs`."""

from __future__ import annotations

from infrarust.logs import quote as quote
