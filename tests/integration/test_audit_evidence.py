"""Who, what, where, and every launch ends (issue 14, deliverables 3 and 4).

- a launch run through ``sudo -u`` names the caller and ``SUDO_USER``; a
  relative ``--rootfs`` is recorded absolute, with the profile file's digest;
- ten CLI typos leave no refusal record and no failing launch control;
- a SIGKILLed supervisor's launch gets its exit record from ``sandbox gc``,
  which also says what it deferred and removes free id-range lock files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
    pytest.mark.skipif(helpers.SANDBOX is None, reason="the sandbox CLI is not installed"),
]


def _records(root) -> list[dict]:
    r = helpers.run_sandbox(root, "audit", "log", "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def _wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(shutil.which("sudo") is None, reason="sudo is not installed")
def test_sudo_launch_records_the_caller_and_sudo_user_and_absolute_rootfs(busybox_root, sroot):
    # `sudo -u root` from root: SUDO_USER is set by sudo itself; the rootfs
    # is given relative to the working folder.
    rel = os.path.relpath(busybox_root, busybox_root.parent)
    r = subprocess.run(["sudo", "-u", "root", helpers.SANDBOX, "--root", str(sroot), "run",
                        "--rootfs", rel, "--", "true"], cwd=busybox_root.parent,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    [launch] = [x["data"] for x in _records(sroot) if x["kind"] == "launch"]
    caller = launch["caller"]
    assert caller["uid"] == 0 and caller["user"] == "root"
    assert caller["sudo_user"] == os.environ.get("SUDO_USER", "root")
    assert caller["parent_command"][0].endswith("sudo")
    assert isinstance(caller["pid"], int) and caller["cwd"] == str(busybox_root.parent)
    assert launch["root"]["path"] == str(busybox_root)           # absolute, not as typed
    assert launch["profile"]["source"].startswith("/")
    assert launch["profile"]["file_digest"].startswith("sha256:")
    assert launch["supervisor"]["pid"] == caller["pid"]


#: ten typos: unknown options, unknown profile names, missing sources
TYPOS = (
    ("run", "--profle", "default", "--", "true"),
    ("run", "--bogus", "--", "true"),
    ("run", "-p", "defualt", "--", "true"),
    ("run", "-p", "stirct", "--", "true"),
    ("run", "-p", "/no/such/profile.toml", "--", "true"),
    ("run", "-v", "/no/such/folder:/data", "--", "true"),
    ("run", "-v", "/no/such/other:/x:ro", "--", "true"),
    ("run", "--rootfs", "/no/such/rootfs", "--", "true"),
    ("run", "example.com/no/such:1", "--", "true"),
    ("run", "--insecure-options=imag", "--", "true"),
)


def test_ten_cli_typos_leave_no_refusal_and_fail_no_launch_control(sroot):
    assert helpers.run_sandbox(sroot, "run", "--", "true").returncode == 0
    for args in TYPOS:
        r = helpers.run_sandbox(sroot, *args)
        assert r.returncode == 125, (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr
    kinds = [x["kind"] for x in _records(sroot)]
    assert kinds == ["launch", "exit"], kinds
    r = helpers.run_sandbox(sroot, "audit", "report", "--format", "json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert [c["id"] for c in rep["controls"] if c["status"] == "fail"] == []


def test_gc_writes_the_exit_record_of_a_killed_supervisor(sroot, busybox_root):
    r = helpers.run_sandbox(sroot, "run", "--detach", "--rootfs", str(busybox_root), "--",
                            "/bin/sh", "-c", "while :; do sleep 0.1; done")
    assert r.returncode == 0, r.stderr
    sid = re.search(r"[0-9a-f]{12}", r.stdout).group(0)
    rec = json.loads((Path(sroot) / "state" / "sandboxes" / f"{sid}.json").read_text())
    _wait_for(lambda: any(x["kind"] == "launch" for x in _records(sroot)), what="the launch")
    os.kill(rec["supervisor"]["pid"], signal.SIGKILL)
    _wait_for(lambda: not os.path.exists(f"/proc/{rec['supervisor']['pid']}/stat") or
              open(f"/proc/{rec['supervisor']['pid']}/stat").read().rsplit(")", 1)[1].split()[0]
              == "Z", what="the supervisor to die")
    r = helpers.run_sandbox(sroot, "gc", timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"recorded exit (supervisor died) of {sid}" in r.stdout
    exits = [x for x in _records(sroot) if x["kind"] == "exit" and x["data"]["sandbox_id"] == sid]
    assert len(exits) == 1
    d = exits[0]["data"]
    assert d["reason"] == "supervisor died" and d["status"] is None and not d["status_known"]
    # a second gc writes nothing more; the log verifies
    r = helpers.run_sandbox(sroot, "gc", timeout=60)
    assert "recorded exit" not in r.stdout
    assert helpers.run_sandbox(sroot, "audit", "verify").returncode == 0
    # no id-range lock file is left once no sandbox runs
    idmap = Path(sroot) / "run" / "idmap"
    assert not idmap.is_dir() or list(idmap.iterdir()) == []


def test_gc_says_what_it_deferred_and_why(sroot):
    (Path(sroot) / "run" / "0123456789ab").mkdir(parents=True)     # a young leftover
    r = helpers.run_sandbox(sroot, "gc")
    assert r.returncode == 0, r.stderr
    assert re.search(r"deferred: .*0123456789ab: younger than 60 s", r.stdout), r.stdout
    h = helpers.run_sandbox(sroot, "gc", "--help")
    assert "supervisor died" in h.stdout and "idmap" in h.stdout and "deferred" in h.stdout


def test_free_idmap_lock_files_are_removed_held_ones_kept(sroot):
    import fcntl
    from sandbox.runtime.idmap import remove_free_locks
    d = Path(sroot) / "run" / "idmap"
    d.mkdir(parents=True)
    for n in ("100000", "165536"):
        (d / f"{n}.lock").touch()
    fd = os.open(d / "165536.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert remove_free_locks(d) == [str(d / "100000.lock")]
        assert sorted(p.name for p in d.iterdir()) == ["165536.lock"]
    finally:
        os.close(fd)
