"""Untrusted text made safe to show on a terminal.

Every string that came from a payload, an image or a user (argv, env,
names, paths, labels, key user ids) passes through `escape` before it is
written to a human-readable output. Otherwise a newline inside a payload's
argument forges a complete-looking extra row of ``audit log``, and an
``ESC ] ... BEL`` (OSC) sequence retitles the operator's window, rewrites
the screen or, on some terminals, writes the clipboard.

Escaped: the C0 controls (newline and tab too: one record is one line),
DEL, the C1 controls (U+0080-U+009F; U+009B is a one-byte CSI), the
Unicode line and paragraph separators and the bidirectional overrides and
isolates (which reorder what the reader sees, "Trojan Source"), and the
lone surrogates Python makes of undecodable bytes (shown as the byte,
``\\xff``). Everything else, backslashes included, is left as it is.
Machine outputs (``--json``) need none of this: JSON escapes controls.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in [*range(0x00, 0x20), *range(0x7F, 0xA0)]:
        table[cp] = _NAMED.get(chr(cp), f"\\x{cp:02x}")
    for cp in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F),
               *range(0x2066, 0x206A)):
        table[cp] = f"\\u{cp:04x}"
    for cp in range(0xDC80, 0xDD00):     # surrogateescape: the undecodable byte
        table[cp] = f"\\x{cp - 0xDC00:02x}"
    return table


_TABLE = _build_table()


def escape(text: object) -> str:
    """``text`` as a string with every control character written as an
    escape (``\\n``, ``\\x1b``, ``\\u202e``); see the module docstring."""
    return str(text).translate(_TABLE)
