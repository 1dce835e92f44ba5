"""``--since WHEN``: an ISO 8601 date or time, or an age like ``30m``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def to_record_time(dt: datetime) -> str:
    """A datetime as the audit records spell time (UTC, microseconds, ``Z``)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime | None:
    """An ISO 8601 string (``Z`` allowed) as an aware datetime; None if not one."""
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_when(value: str, *, now: datetime | None = None) -> str:
    """``WHEN`` as a record-time string for comparison with ``Record.time``.

    Accepts an age (``90s``, ``30m``, ``24h``, ``7d``, ``2w``: that long
    before ``now``) or an ISO 8601 date or time (``2026-11-01``,
    ``2026-11-01T10:00:00Z``; no zone means UTC). Raises `UsageError`.
    """
    m = _AGE.match(value or "")
    if m:
        now = now or datetime.now(timezone.utc)
        return to_record_time(now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)]))
    dt = parse_time(value)
    if dt is None:
        from ..errors import UsageError
        raise UsageError(f"--since {value!r} is not a time",
                         hint="give an age such as 24h or 7d, or an ISO 8601 date such as 2026-11-01")
    return to_record_time(dt)
