"""Text from a payload, an image or a user cannot drive the operator's
terminal or forge output rows (issue 13 item 8): newlines, OSC sequences
(``ESC ] ... BEL``), C1 controls and bidi overrides are shown escaped."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import helpers
from sandbox.audit import record_event, samples
from sandbox.display import escape
from sandbox.paths import Paths

OSC = "\x1b]0;pwned\x07"
FORGED = "hi\n     7  2026-12-02T00:00:00Z  exit            sb-0001        status=0"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def _cli(root, *args):
    env = dict(os.environ)
    env.pop("SANDBOX_ROOT", None)
    return subprocess.run([sys.executable, "-m", "sandbox", "--root", str(root), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def _clean(text):
    return not any(c in text for c in "\x1b\x07\x9b\r") and "\u202e" not in text


def test_escape_writes_every_control_as_an_escape():
    assert escape("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert escape(OSC) == "\\x1b]0;pwned\\x07"
    assert escape("\x9b31m \x7f \u202eevil \u2066") == "\\x9b31m \\x7f \\u202eevil \\u2066"
    assert escape(os.fsdecode(b"bad\xffname")) == "bad\\xffname"
    assert escape("plain/path with spaces, ü and \\") == "plain/path with spaces, ü and \\"


def test_newline_in_argv_cannot_forge_audit_log_row(tmp_path):
    p = Paths.resolve(tmp_path)
    record_event(p, "launch", samples.launch("default", "sb-0001",
                                             command=["/bin/echo", FORGED, OSC]))
    r = _cli(tmp_path, "audit", "log")
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert len(rows) == 1, rows
    assert rows[0].endswith("-- /bin/echo hi\\n     7  2026-12-02T00:00:00Z  exit            "
                            "sb-0001        status=0 \\x1b]0;pwned\\x07")
    assert _clean(r.stdout)


@needs_root
def test_payload_argv_with_osc_escaped_in_audit_log_after_real_launch(sroot):
    r = helpers.run_sandbox(sroot, "run", "--", "/bin/true", FORGED, OSC)
    assert r.returncode == 0, r.stderr
    r = helpers.run_sandbox(sroot, "audit", "log", "--kind", "launch")
    rows = r.stdout.splitlines()
    assert len(rows) == 1 and _clean(r.stdout), rows
    assert "-- /bin/true hi\\n     7  " in rows[0] and rows[0].endswith("\\x1b]0;pwned\\x07")


@needs_root
def test_osc_in_detached_command_escaped_in_status_and_ps(sroot):
    r = helpers.run_sandbox(sroot, "run", "-d", "--name", "inj", "--", "/bin/sleep", "30",
                            OSC + "\nstate:          exited")
    assert r.returncode == 0, r.stderr
    try:
        st = helpers.run_sandbox(sroot, "status", "inj")
        assert st.returncode == 0, st.stderr
        assert _clean(st.stdout)
        cmd = [line for line in st.stdout.splitlines() if line.startswith("command:")]
        assert cmd == ["command:        /bin/sleep 30 \\x1b]0;pwned\\x07\\nstate:          exited"]
        assert sum(line.startswith("state:") for line in st.stdout.splitlines()) == 1
        ps = helpers.run_sandbox(sroot, "ps")
        assert ps.returncode == 0 and _clean(ps.stdout)
    finally:
        helpers.run_sandbox(sroot, "stop", "inj", timeout=60)
        helpers.run_sandbox(sroot, "rm", "-f", "inj", timeout=60)
        time.sleep(0.1)


def test_error_line_escapes_user_text(tmp_path):
    r = _cli(tmp_path, "profile", "show", f"nope{OSC}\nsandbox: all good")
    assert r.returncode != 0
    assert _clean(r.stderr) and "\\x1b]0;pwned\\x07\\nsandbox: all good" in r.stderr
    assert all(line.startswith("sandbox: ") for line in r.stderr.splitlines())
    assert "sandbox: all good" not in r.stderr.splitlines()


def test_profile_show_escapes_source_path(tmp_path):
    d = tmp_path / f"evil{OSC}\nx"
    d.mkdir()
    prof = d / "p.toml"
    prof.write_text('name = "p"\nextends = "default"\n[process.env]\nX = "a\\u001b]0;t\\u0007"\n')
    r = _cli(tmp_path / "sb", "profile", "show", str(prof))
    assert r.returncode == 0, r.stderr
    assert _clean(r.stdout)
    assert "# resolved from " + str(tmp_path) + "/evil\\x1b]0;pwned\\x07\\nx/p.toml" in r.stdout


def test_report_evidence_escapes_record_text():
    from sandbox.audit._format import evidence_line
    from sandbox.audit.report import Evidence
    e = Evidence("fail", "profile x", f"volume /srv/a{OSC}\nFAIL forged", None, None)
    assert evidence_line(e) == "profile x: volume /srv/a\\x1b]0;pwned\\x07\\nFAIL forged"


def test_dry_run_plan_escapes_argv_and_env(tmp_path):
    r = _cli(tmp_path, "run", "--dry-run", "-e", f"X=a{OSC}", "--", "/bin/echo", FORGED, OSC)
    assert r.returncode == 0, r.stderr
    assert _clean(r.stdout)
    assert "\\x1b]0;pwned\\x07" in r.stdout and "hi\\n     7  2026" in r.stdout
