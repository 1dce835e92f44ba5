"""The real `sandbox audit` command: exit statuses and one-line errors."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from sandbox.audit import record_event, samples
from sandbox.audit import log as audit_log
from sandbox.paths import Paths


def _sandbox(root, *args):
    env = dict(os.environ)
    env.pop("SANDBOX_ROOT", None)
    return subprocess.run([sys.executable, "-m", "sandbox", "--root", str(root), "audit", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_verify_report_and_exit_statuses(tmp_path):
    p = Paths.resolve(tmp_path)
    record_event(p, "launch", samples.launch("default", "sb-1"))
    record_event(p, "exit", samples.exit_("sb-1"))
    record_event(p, "launch", samples.launch("unconfined", "sb-2"))
    record_event(p, "exit", samples.exit_("sb-2"))
    for log in list(audit_log._open.values()):
        log.close()
    audit_log._open.clear()

    r = _sandbox(tmp_path, "verify")
    assert r.returncode == 0 and "4 record(s)" in r.stdout
    r = _sandbox(tmp_path, "report", "--fail-on", "critical", "--format", "junit")
    assert r.returncode == 1 and "<testsuites" in r.stdout and "SBX-PRIV-01" in r.stderr
    r = _sandbox(tmp_path, "report", "--fail-on", "critical", "--since", "2999-01-01")
    assert r.returncode == 0
    r = _sandbox(tmp_path, "controls")
    assert r.returncode == 0 and len(r.stdout.splitlines()) >= 25

    con = sqlite3.connect(p.state / "audit.db")
    con.execute("DROP TRIGGER records_no_delete")
    con.execute("DELETE FROM records WHERE seq = 4")
    con.commit()
    con.close()
    r = _sandbox(tmp_path, "verify")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("sandbox: audit log broken at record 4:")
    assert len(lines) == 2 and "Traceback" not in r.stderr
    r = _sandbox(tmp_path, "report", "--format", "json")
    assert r.returncode == 0 and '"SBX-LOG-01"' in r.stdout


def test_usage_errors_exit_2(tmp_path):
    r = _sandbox(tmp_path, "log", "--since", "soonish")
    assert r.returncode == 2 and "--since" in r.stderr
    r = _sandbox(tmp_path, "report", "--format", "pdf")
    assert r.returncode == 2
