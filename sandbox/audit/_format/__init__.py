"""Report formats: small classes behind one interface (after pip-audit's
``_format/``). Each takes a `sandbox.audit.report.Report` and returns text.

=========  =====================================================  ============
name       what                                                   class
=========  =====================================================  ============
table      terminal table, one line per control                   TableFormat
markdown   summary, table, then evidence per failed control       MarkdownFormat
html       one self-contained page (inline CSS, no external URL)  HtmlFormat
json       `Report.to_dict`                                       JsonFormat
sarif      SARIF 2.1.0 (OASIS), one rule per control              SarifFormat
junit      JUnit XML: a testcase per control, failure/skipped     JUnitFormat
=========  =====================================================  ============
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod

FORMATS = {
    "table": ("table", "TableFormat"),
    "markdown": ("markdown", "MarkdownFormat"),
    "html": ("html", "HtmlFormat"),
    "json": ("jsonfmt", "JsonFormat"),
    "sarif": ("sarif", "SarifFormat"),
    "junit": ("junit", "JUnitFormat"),
}


class ReportFormat(ABC):
    """One output format. ``name`` as given to ``--format``; ``suffix`` a
    file name suffix for it."""

    name: str = ""
    suffix: str = ".txt"

    @abstractmethod
    def render(self, report) -> str:
        """The whole report as text (ends with a newline)."""


def get_format(name: str) -> ReportFormat:
    """The format called ``name``; `UsageError` for an unknown one."""
    spec = FORMATS.get(name)
    if spec is None:
        from ...errors import UsageError
        raise UsageError(f"unknown report format {name!r}",
                         hint=f"use one of {', '.join(FORMATS)}")
    mod = importlib.import_module(f".{spec[0]}", __name__)
    return getattr(mod, spec[1])()


def render(report, fmt: str = "table") -> str:
    """``report`` rendered in format ``fmt`` (a name from `FORMATS`)."""
    return get_format(fmt).render(report)


STATUS_LABEL = {"pass": "PASS", "fail": "FAIL", "not-applicable": "N/A"}


def human_time(t: str | None) -> str:
    """``2026-11-29T08:18:09.123456Z`` as ``2026-11-29 08:18:09 UTC``."""
    if not t:
        return "-"
    return t[:10] + " " + t[11:19] + " UTC" if len(t) >= 19 and t[10] == "T" else t


def evidence_line(e) -> str:
    """One evidence item on one line: time, record, sandbox, caller,
    command, image, then the finding (issue 14)."""
    seq = f"seq {e.seq}: " if e.seq is not None and e.subject.startswith("record") else ""
    subj = "" if seq else f"{e.subject}: "
    when = f"{human_time(e.time)} " if getattr(e, "time", None) else ""
    sid = f" [{e.sandbox_id}]" if e.sandbox_id else ""
    ctx = []
    if getattr(e, "caller", None):
        ctx.append(f"by {e.caller}")
    if getattr(e, "command", None):
        ctx.append(f"ran {e.command!r}")
    if getattr(e, "image", None):
        ctx.append(f"on {e.image}")
    more = f" ({'; '.join(ctx)})" if ctx else ""
    from ...display import escape    # messages quote record text (argv, paths, names)
    return escape(f"{when}{seq}{subj}{e.message}{sid}{more}")


def scope_lines(report) -> list[tuple[str, str]]:
    """The scope block every format shows first: ``(label, value)`` pairs."""
    sc = report.scope or {}
    win = sc.get("window") or {}
    rec = sc.get("records") or {}
    ver = sc.get("verification")
    first, last = rec.get("first"), rec.get("last")
    return [
        ("Host", str(sc.get("host") or "-")),
        ("Time window", f"{human_time(win.get('from'))} to {human_time(win.get('to'))}"
         + (f" (since {human_time(win.get('since'))})" if win.get("since") else "")),
        ("Records", (f"seq {first} to {last} ({rec.get('count', 0)} record(s))"
                     if first is not None else "none in the window")
         + f"; log head seq {rec.get('log_head', report.head)}"),
        ("Audit key", str(sc.get("key") or "-")),
        ("Log verification", (("PASS: " if ver["ok"] else "FAIL: ") + ver["result"])
         if ver else "not verified"),
    ] + ([("Profiles judged", ", ".join(report.profiles))] if report.profiles else [])


def template_env():
    """Jinja2 with autoescape on for every template (issue 14): a control
    title, sandbox name or argv holding markup renders as text. Imported
    only here, by the formats that render templates."""
    import jinja2
    from ..._resources import data_dir
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("audit") / "templates")),
        autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["htime"] = human_time
    env.filters["evidence"] = evidence_line
    env.filters["status"] = lambda st: STATUS_LABEL[st]
    return env
