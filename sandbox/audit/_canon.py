"""Canonical JSON and timestamps for audit records (cheap: json, built-in SHA-256, time).

Canonical form: keys sorted, no insignificant whitespace, UTF-8 (non-ASCII
kept as is), no NaN or infinity. The same value always gives the same bytes,
so a record's hash can be recomputed from its parsed content and compared.
"""

from __future__ import annotations

import json
import os
import time

from .._hash import sha256

#: ``prev`` of the first record: 64 zeros (no record before it).
GENESIS = "0" * 64


def _default(obj):
    # Convenience for callers: paths and sets are common in launch data.
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(f"audit data cannot hold a {type(obj).__name__} value: {obj!r}")


def canonical(value) -> bytes:
    """``value`` as canonical JSON bytes. Raises ``TypeError``/``ValueError``
    for values JSON cannot carry exactly (objects, NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False,
                      default=_default).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return sha256(data).hexdigest()


def utc_now() -> str:
    """Now as ISO 8601 UTC with microseconds: ``2026-11-29T08:18:09.123456Z``."""
    t = time.time()
    secs = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + \
        ".%06dZ" % int((t - secs) * 1_000_000)
