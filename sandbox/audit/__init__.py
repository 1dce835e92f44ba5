"""The tamper-evident audit log and compliance reports (DESIGN §6).

Stable API, used by the launch runtime, trust and image code::

    from sandbox.audit import record_event
    seq = record_event(paths, "launch", {...})     # -> int, the sequence number
    prepare(paths)      # optional: open the log early (overlap with child setup)

and for tools: `AuditLog` (append, read, sign, verify), `verify_log`,
`VerifyResult`, `load_controls`, `evaluate` and `Report`, `render`.

Importing this package is cheap: it loads the writer (`json`, built-in SHA-256
and BLAKE2b, ``os``) and nothing else; `sqlite3` is imported on the first write,
`cryptography` only when a key is made or a signature is made or checked,
and the report machinery only when asked for.
"""

from __future__ import annotations

from .log import HOT_KINDS, KINDS, AuditLog, Record, prepare, record_event

__all__ = ["AuditLog", "HOT_KINDS", "KINDS", "Record", "prepare", "record_event",
           "VerifyResult", "verify_log", "Control", "load_controls",
           "Report", "ControlResult", "Evidence", "evaluate", "render",
           "parse_when", "canonical"]

_LAZY = {
    "VerifyResult": "verify", "verify_log": "verify",
    "Control": "controls", "load_controls": "controls",
    "Report": "report", "ControlResult": "report", "Evidence": "report",
    "evaluate": "report",
    "render": "_format",
    "parse_when": "_when",
    "canonical": "_canon",
}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'sandbox.audit' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f".{mod}", __name__), name)
