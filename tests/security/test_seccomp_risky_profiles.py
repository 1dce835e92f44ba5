"""Seccomp profiles that silently break or open things (issue 13, item 5).

A user profile that allows io_uring, answers clone3 with EPERM, or denies
exit, exit_group, rt_sigreturn or execve: `sandbox profile validate` and the
launch warn with one line each; a profile derived from ``strict`` is
refused; audit control SBX-SECCOMP-04 fails a profile that allows io_uring.
Each bad profile is the bundled default.json with one rule put first.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import run_sandbox  # noqa: E402

from sandbox.capabilities import DOCKER_DEFAULT  # noqa: E402
from sandbox.seccomp import build_findings, compile_filter  # noqa: E402

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_JSON = REPO / "profiles" / "seccomp" / "default.json"

IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
BAD = {
    "io_uring": ({"names": list(IO_URING), "action": "SCMP_ACT_ALLOW"},
                 "allows io_uring_setup, io_uring_enter, io_uring_register: io_uring operations "
                 "are not seen by seccomp; deny them (Docker's profile answers ENOSYS)"),
    "clone3_eperm": ({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                     "answers clone3 with errno:EPERM: glibc falls back to clone only on "
                     "ENOSYS, so threads fail; give clone3 errnoRet 38 (ENOSYS)"),
    "deny_exit": ({"names": ["exit"], "action": "SCMP_ACT_ERRNO"},
                  "denies exit (errno:EPERM): the payload cannot exit and dies with no "
                  "message; allow exit"),
    "deny_exit_group": ({"names": ["exit_group"], "action": "SCMP_ACT_KILL_PROCESS"},
                        "denies exit_group (kill_process): the payload cannot exit and dies "
                        "with no message; allow exit_group"),
    "deny_rt_sigreturn": ({"names": ["rt_sigreturn"], "action": "SCMP_ACT_ERRNO"},
                          "denies rt_sigreturn (errno:EPERM): the payload cannot return from a "
                          "signal handler and dies with no message; allow rt_sigreturn"),
    "deny_execve": ({"names": ["execve"], "action": "SCMP_ACT_ERRNO"},
                    "denies execve (errno:EPERM): the payload cannot start and dies with no "
                    "message; allow execve"),
}


def _write(tmp_path: Path, kind: str, parent: str = "default") -> tuple[Path, Path]:
    rule, _ = BAD[kind]
    doc = json.loads(DEFAULT_JSON.read_text())
    doc["syscalls"].insert(0, rule)
    js = tmp_path / f"{kind}.json"
    js.write_text(json.dumps(doc))
    prof = tmp_path / f"{parent}-{kind}.toml"
    prof.write_text(f'name = "{parent}-{kind}"\nextends = "{parent}"\n'
                    f'[seccomp]\nprofile = "{js}"\n')
    os.chmod(tmp_path, 0o755)
    return prof, js


def _warning(js: Path, kind: str) -> str:
    return f"sandbox: warning: seccomp profile {js} {BAD[kind][1]}"


@pytest.mark.parametrize("kind", sorted(BAD))
def test_profile_validate_warns_on_risky_seccomp_profile(tmp_path, kind):
    prof, js = _write(tmp_path, kind)
    r = run_sandbox(tmp_path / "root", "profile", "validate", str(prof))
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [_warning(js, kind)]
    assert f"valid profile 'default-{kind}'" in r.stdout


@pytest.mark.parametrize("kind", sorted(BAD))
def test_profile_validate_refuses_risky_seccomp_profile_derived_from_strict(tmp_path, kind):
    prof, js = _write(tmp_path, kind, parent="strict")
    r = run_sandbox(tmp_path / "root", "profile", "validate", str(prof))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"sandbox: {prof}: seccomp.profile: seccomp profile {js} {BAD[kind][1]}",
        "sandbox: profiles derived from strict refuse this; fix the seccomp JSON"]


def test_bundled_profiles_have_no_risky_seccomp_answers():
    for name in ("default", "strict"):
        cf = compile_filter(str(REPO / "profiles" / "seccomp" / f"{name}.json"),
                            capabilities=DOCKER_DEFAULT)
        assert build_findings(cf.bpf) == ()


# What `true` then does: the warning is the only word unless execve fails.
LAUNCH = {"io_uring": (0, 1), "clone3_eperm": (0, 1), "deny_exit": (0, 1),
          "deny_rt_sigreturn": (0, 1),
          "deny_exit_group": (128 + 31, 1),      # killed by SIGSYS when it ends
          "deny_execve": (126, 3)}               # plus the runtime's two-line error


@needs_root
@pytest.mark.parametrize("kind", sorted(BAD))
def test_launch_with_risky_seccomp_profile_warns_in_one_line(tmp_path, kind):
    prof, js = _write(tmp_path, kind)
    r = run_sandbox(tmp_path / "root", "run", "--profile", str(prof), "--", "true")
    status, nlines = LAUNCH[kind]
    assert r.returncode == status, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == _warning(js, kind) and len(lines) == nlines, lines


@needs_root
@pytest.mark.parametrize("kind", sorted(BAD))
def test_launch_with_risky_seccomp_profile_derived_from_strict_is_refused(tmp_path, kind):
    prof, js = _write(tmp_path, kind, parent="strict")
    r = run_sandbox(tmp_path / "root", "run", "--profile", str(prof), "--", "true")
    assert r.returncode == 125
    assert r.stderr.splitlines()[0] == \
        f"sandbox: {prof}: seccomp.profile: seccomp profile {js} {BAD[kind][1]}"


@needs_root
def test_launch_with_io_uring_allowed_fails_audit_control(tmp_path):
    prof, _ = _write(tmp_path, "io_uring")
    root = tmp_path / "root"
    assert run_sandbox(root, "run", "--profile", str(prof), "--", "true").returncode == 0
    assert run_sandbox(root, "run", "--profile", "default", "--", "true").returncode == 0
    r = run_sandbox(root, "audit", "report", "--format", "json")
    rep = json.loads(r.stdout)
    res = next(c for c in rep["controls"] if c["id"] == "SBX-SECCOMP-04")
    assert res["status"] == "fail", res
    failing = [e for e in res["evidence"] if e["status"] == "fail"]
    assert len(failing) == 1 and "seccomp.io_uring_allowed = true" in json.dumps(failing[0])


def test_profile_with_io_uring_allowed_fails_audit_control(tmp_path):
    prof, _ = _write(tmp_path, "io_uring")
    r = run_sandbox(tmp_path / "root", "audit", "report", "--no-records", "--profile",
                    str(prof), "--profile", "default", "--format", "json")
    rep = json.loads(r.stdout)
    res = next(c for c in rep["controls"] if c["id"] == "SBX-SECCOMP-04")
    assert res["checked"] == 2 and res["status"] == "fail", res       # default passes
    assert [(e["status"], e["message"]) for e in res["evidence"]] == [
        ("fail", "seccomp.io_uring_allowed = true (expected false)")], res
