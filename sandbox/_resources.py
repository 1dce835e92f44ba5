"""The one accessor for the data folders that ship with the package.

``profiles/``, ``keys/`` and ``audit/`` live at the top of the repository. A
wheel carries them as ``sandbox/_data/<name>`` (pyproject's force-include);
an editable install or a plain checkout reads them from the repository. Both
go through `data_dir`, so code never guesses.
"""

from __future__ import annotations

from pathlib import Path

_KINDS = ("profiles", "keys", "audit")
_HERE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """Path of the bundled ``profiles``, ``keys`` or ``audit`` folder.

    Raises ``ValueError`` for another name and ``FileNotFoundError`` when the
    installation is broken (neither location exists).
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown data folder {kind!r}; expected one of {_KINDS}")
    for candidate in (_HERE / "_data" / kind, _HERE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"bundled folder {kind!r} is missing from this installation of sandbox; "
        "reinstall the package")
