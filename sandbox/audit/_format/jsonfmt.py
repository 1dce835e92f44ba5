"""JSON: `Report.to_dict`, indented, keys sorted."""

from __future__ import annotations

import json

from . import ReportFormat


class JsonFormat(ReportFormat):
    name = "json"
    suffix = ".json"

    def render(self, report) -> str:
        return json.dumps(report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
