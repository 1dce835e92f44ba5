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


def evidence_line(e) -> str:
    seq = f"seq {e.seq}: " if e.seq is not None and e.subject.startswith("record") else ""
    subj = "" if seq else f"{e.subject}: "
    sid = f" [{e.sandbox_id}]" if e.sandbox_id else ""
    from ...display import escape    # messages quote record text (argv, paths, names)
    return escape(f"{seq}{subj}{e.message}{sid}")
