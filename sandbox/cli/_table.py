"""Tables for the listing commands that fit the terminal (80 columns when
the output is not a terminal and ``COLUMNS`` is not set).

Nothing is cut off: a column too wide for the terminal is narrowed and its
cells wrap onto more lines, within the column. Which columns give way, and
how far, each listing says with `Col`; ``--json`` always has the full values
on one line each.
"""

from __future__ import annotations

import shutil
import textwrap
from typing import NamedTuple, Sequence


class Col(NamedTuple):
    """A column: its header, and how it gives way when the table is too wide.

    ``shrink`` 0 never narrows (ids, fingerprints, sizes); columns with a
    higher ``shrink`` are narrowed first, each down to ``min``.
    """

    header: str
    shrink: int = 0
    min: int = 12


def terminal_width(default: int = 80) -> int:
    return shutil.get_terminal_size((default, 24)).columns


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=True) or [""]


def fit_widths(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int,
               sep: int = 2) -> list[int]:
    """Column widths: the natural ones, narrowed (most willing column first,
    then the widest) until the table fits ``width`` or no column can give."""
    widths = [max([len(c.header)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    floor = [max(len(c.header), min(c.min, w)) for c, w in zip(cols, widths)]
    excess = sum(widths) + sep * (len(cols) - 1) - width
    for level in sorted({c.shrink for c in cols if c.shrink}, reverse=True):
        while excess > 0:
            give = [i for i, c in enumerate(cols) if c.shrink == level and widths[i] > floor[i]]
            if not give:
                break
            i = max(give, key=lambda j: widths[j])
            widths[i] -= 1
            excess -= 1
    return widths


def natural_width(cols: Sequence[Col], rows: Sequence[Sequence[str]], sep: int = 2) -> int:
    return sum(max([len(c.header)] + [len(r[i]) for r in rows])
               for i, c in enumerate(cols)) + sep * (len(cols) - 1)


def format_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], *,
                 width: int | None = None, sep: int = 2,
                 notes: Sequence[str] | None = None) -> list[str]:
    """The header and the rows as lines no wider than ``width`` where the
    columns can give way; a cell longer than its column wraps within it.
    ``notes``, one per row, go on their own lines under it, indented."""
    width = terminal_width() if width is None else width
    # every cell may hold untrusted text (names, paths, labels): control
    # characters escaped before measuring (issue 13 item 8)
    from ..display import escape
    rows = [[escape(str(v)) for v in row] for row in rows]
    if notes is not None:
        notes = [escape(n) for n in notes]
    widths = fit_widths(cols, rows, width, sep)
    out = []
    for n, row in enumerate([[c.header for c in cols], *rows]):
        cells = [_wrap(str(v), w) for v, w in zip(row, widths)]
        for k in range(max(len(c) for c in cells)):
            parts = [(c[k] if k < len(c) else "").ljust(w) for c, w in zip(cells, widths)]
            out.append((" " * sep).join(parts).rstrip())
        if notes is not None and n > 0 and notes[n - 1]:
            out += ["    " + line for line in _wrap(notes[n - 1], max(width - 4, 20))]
    return out
