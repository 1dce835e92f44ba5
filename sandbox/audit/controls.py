"""Controls: data files in the top-level ``audit/controls/`` folder.

Each ``*.toml`` file holds one or more ``[[control]]`` tables::

    [[control]]
    id = "SBX-CAP-01"                  # unique, [A-Z0-9-]+
    title = "No capabilities beyond Docker's default set"
    severity = "high"                  # low | medium | high | critical
    rationale = "..."
    remediation = "..."                # optional
    references = ["CIS-DI 5.4", "NIST 800-190 4.4.3"]
    applies_to = ["launch", "profile"] # subject checks only; default both

    [control.check]                    # a check from sandbox.audit.checks
    name = "subset"
    field = "capabilities"
    allowed = "docker-default"

References name the CIS Docker Benchmark v1.6 section 5 (``CIS-DI 5.N``;
other sections also allowed) or NIST SP 800-190 (``NIST 800-190 4.4.3``).
Every key is checked on load; an error names the file, the control and the
key (`ControlError`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SandboxError

SEVERITIES = ("low", "medium", "high", "critical")
SUBJECTS = ("launch", "profile")
_ID = re.compile(r"^[A-Z][A-Z0-9-]{1,40}$")
_REF = re.compile(r"^(CIS-DI \d+\.\d+|NIST 800-190 \d+(\.\d+){0,3})$")
_KEYS = {"id", "title", "severity", "rationale", "remediation", "references",
         "applies_to", "check"}


class ControlError(SandboxError):
    """A control file is invalid (the user's data: exit status 2)."""

    status = 2


@dataclass(frozen=True, slots=True)
class Control:
    """One control, validated. ``check`` is the check's name, ``params``
    its parameters as written; ``source`` the file it came from."""

    id: str
    title: str
    severity: str
    rationale: str
    references: tuple[str, ...]
    check: str
    params: tuple[tuple[str, object], ...]
    applies_to: tuple[str, ...] = SUBJECTS
    remediation: str = ""
    source: str = ""
    scope: str = "subject"

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)

    def param_dict(self) -> dict:
        return dict(self.params)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "severity": self.severity,
                "rationale": self.rationale, "remediation": self.remediation,
                "references": list(self.references), "applies_to": list(self.applies_to),
                "check": {"name": self.check, **self.param_dict()},
                "source": self.source}


def _err(src, cid, key, msg) -> ControlError:
    where = f"{src}: " + (f"control {cid}: " if cid else "") + (f"{key}: " if key else "")
    return ControlError(where + msg, hint="see audit/controls/README.md for the format")


def parse_control(doc: dict, source: str) -> Control:
    """One ``[[control]]`` table to a `Control`; raises `ControlError`."""
    from .checks import REGISTRY
    cid = doc.get("id") if isinstance(doc.get("id"), str) else None
    unknown = set(doc) - _KEYS
    if unknown:
        raise _err(source, cid, None, f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("id", "title", "severity", "rationale"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise _err(source, cid, key, "a non-empty string is required")
    if not _ID.match(doc["id"]):
        raise _err(source, cid, "id", "use capitals, digits and '-', e.g. SBX-CAP-01")
    if doc["severity"] not in SEVERITIES:
        raise _err(source, cid, "severity", f"one of {', '.join(SEVERITIES)}")
    refs = doc.get("references", [])
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise _err(source, cid, "references", "a non-empty list of strings is required")
    for r in refs:
        if not _REF.match(r):
            raise _err(source, cid, "references",
                       f"{r!r} is not 'CIS-DI 5.N' or 'NIST 800-190 N.N.N'")
    applies = doc.get("applies_to", list(SUBJECTS))
    if not isinstance(applies, list) or not applies or any(a not in SUBJECTS for a in applies):
        raise _err(source, cid, "applies_to", f"a list drawn from {', '.join(SUBJECTS)}")
    chk = doc.get("check")
    if not isinstance(chk, dict) or not isinstance(chk.get("name"), str):
        raise _err(source, cid, "check", "a table with a 'name' is required")
    spec = REGISTRY.get(chk["name"])
    if spec is None:
        raise _err(source, cid, "check.name",
                   f"unknown check {chk['name']!r}; known: {', '.join(sorted(REGISTRY))}")
    params = {k: v for k, v in chk.items() if k != "name"}
    for k, v in params.items():
        if k not in spec.params:
            raise _err(source, cid, f"check.{k}", f"check {spec.name!r} takes no such parameter")
        types = spec.params[k][0]
        if not isinstance(v, types):
            raise _err(source, cid, f"check.{k}", f"wrong type {type(v).__name__}")
    for k, (_, required) in spec.params.items():
        if required and k not in params:
            raise _err(source, cid, f"check.{k}", "required by check " + repr(spec.name))
    rem = doc.get("remediation", "")
    if not isinstance(rem, str):
        raise _err(source, cid, "remediation", "a string is required")
    return Control(id=doc["id"], title=doc["title"].strip(), severity=doc["severity"],
                   rationale=" ".join(doc["rationale"].split()),
                   references=tuple(refs), check=spec.name,
                   params=tuple(sorted(params.items())),
                   applies_to=tuple(applies) if spec.scope == "subject" else (),
                   remediation=" ".join(rem.split()), source=source, scope=spec.scope)


def load_file(path: Path) -> list[Control]:
    """The controls of one TOML file; raises `ControlError`."""
    import tomllib
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise _err(path, None, None, f"cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise _err(path, None, None, f"not valid TOML: {e}") from None
    extra = set(doc) - {"control"}
    if extra:
        raise _err(path, None, None, f"unknown top-level key(s) {', '.join(sorted(extra))}")
    items = doc.get("control", [])
    if not isinstance(items, list) or not items:
        raise _err(path, None, "control", "at least one [[control]] table is required")
    return [parse_control(c, str(path)) for c in items]


def load_controls(*extra: str | Path) -> list[Control]:
    """The bundled controls (``audit/controls/*.toml``) plus those in the
    files or folders ``extra``, sorted by id. A later control with an id
    already seen replaces it (so a site can tighten a bundled control).
    Raises `ControlError`."""
    from .._resources import data_dir
    sources: list[Path] = sorted((data_dir("audit") / "controls").glob("*.toml"))
    for e in extra:
        p = Path(e)
        if p.is_dir():
            sources.extend(sorted(p.glob("*.toml")))
        elif p.is_file():
            sources.append(p)
        else:
            raise ControlError(f"controls {str(p)!r} do not exist",
                               hint="give a .toml file or a folder of them")
    out: dict[str, Control] = {}
    for src in sources:
        seen_here: set[str] = set()
        for c in load_file(src):
            if c.id in seen_here:
                raise _err(src, c.id, "id", "defined twice in this file")
            seen_here.add(c.id)
            out[c.id] = c
    return sorted(out.values(), key=lambda c: c.id)


__all__ = ["Control", "ControlError", "SEVERITIES", "load_controls", "load_file",
           "parse_control"]
