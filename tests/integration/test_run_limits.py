"""Limits for untrusted work (issue 15): ``--timeout``, ``--cpus``,
``--memory``, ``--pids-limit``, ``--ulimit``, read from inside the sandbox
(or from its cgroup), each recorded with origin ``flag``; and the rootless
fallback on cgroup v1 (rlimits instead of cgroups, said at launch)."""

from __future__ import annotations

import json
import os
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

CPUACCT = Path("/sys/fs/cgroup/cpuacct/sandbox")


def records(root, kind) -> list[dict]:
    r = helpers.run_sandbox(root, "audit", "log", "--json")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    return [x["data"] for x in recs if x["kind"] == kind]


def test_timeout_stops_a_sleeper_with_124_and_leaves_nothing(sroot):
    t0 = time.monotonic()
    r = helpers.run_sandbox(sroot, "run", "--timeout", "1s", "--", "sleep", "30")
    took = time.monotonic() - t0
    assert r.returncode == 124, (r.returncode, r.stderr)
    assert took < 3, took
    assert helpers.runtime_leftovers(sroot) == []
    [launch] = records(sroot, "launch")
    assert launch["limits"]["timeout"] == 1.0
    assert launch["limits"]["origins"]["timeout"] == "flag --timeout"
    for d in launch["limits"]["cgroup"]:            # the sandbox's cgroups are gone
        assert not os.path.exists(os.path.dirname(d[0])), d
    [exit_rec] = records(sroot, "exit")
    assert exit_rec["status"] == 124


def test_timeout_kills_a_payload_that_ignores_sigterm(sroot):
    # TERM is ignored: the KILL after the grace ends the whole pid namespace,
    # the background child included
    t0 = time.monotonic()
    r = helpers.run_sandbox(sroot, "run", "--timeout", "500ms", "--", "sh", "-c",
                            "trap '' TERM; sleep 60 & while :; do sleep 1; done")
    assert r.returncode == 124, (r.returncode, r.stderr)
    assert time.monotonic() - t0 < 6
    assert helpers.runtime_leftovers(sroot) == []


def test_a_payload_done_before_its_timeout_keeps_its_status(sroot):
    r = helpers.run_sandbox(sroot, "run", "--timeout", "30s", "--", "sh", "-c", "exit 3")
    assert r.returncode == 3, r.stderr


def test_ulimits_and_memory_are_what_the_payload_sees(sroot):
    r = helpers.run_sandbox(sroot, "run", "--ulimit", "nofile=100:200", "--ulimit", "cpu=7",
                            "--ulimit", "fsize=1M", "--", "sh", "-c",
                            "ulimit -Sn; ulimit -Hn; ulimit -t; ulimit -f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["100", "200", "7", "2048"]      # fsize in 512-byte blocks
    [launch] = records(sroot, "launch")
    assert ["RLIMIT_NOFILE", 100, 200] in launch["limits"]["rlimits"]
    assert launch["limits"]["origins"]["ulimits"] == "flag --ulimit"


def test_memory_limit_refuses_a_large_allocation(sroot):
    prog = "b = bytearray(300 * 1024 * 1024); print('allocated')"
    r = helpers.run_sandbox(sroot, "run", "--memory", "64m", "--", "python3", "-c", prog)
    assert "allocated" not in r.stdout
    assert r.returncode != 0
    [launch] = records(sroot, "launch")
    assert launch["limits"]["memory"] == 64 << 20
    assert launch["limits"]["origins"]["memory"] == "flag --memory"


def test_pids_limit_stops_a_fork_bomb(sroot):
    r = helpers.run_sandbox(sroot, "run", "--pids-limit", "8", "--", "sh", "-c",
                            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 5 & done; wait; "
                            "echo done")
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr \
        or "fork" in r.stderr, r.stderr


def test_cpus_keeps_a_busy_loop_near_its_share(sroot):
    if not (CPUACCT.parent / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 cpuacct controller on this host")
    marker = f"busy-{os.urandom(4).hex()}"
    before = set(os.listdir(CPUACCT)) if CPUACCT.exists() else set()
    p = subprocess.Popen([helpers.SANDBOX, "--root", str(sroot), "run", "--cpus", "0.2",
                          "--hostname", marker, "--", "sh", "-c",
                          "end=$(($(date +%s) + 6)); while [ $(date +%s) -lt $end ]; do :; "
                          "done"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        group = None
        deadline = time.monotonic() + 10
        while group is None and time.monotonic() < deadline:
            for d in set(os.listdir(CPUACCT)) - before if CPUACCT.exists() else ():
                try:
                    pids = (CPUACCT / d / "cgroup.procs").read_text().split()
                except OSError:
                    continue
                if pids and any(_hostname_of(pid) == marker for pid in pids):
                    group = CPUACCT / d
            time.sleep(0.05)
        assert group is not None, "the sandbox's cpuacct group never appeared"
        time.sleep(0.5)
        u0, t0 = int((group / "cpuacct.usage").read_text()), time.monotonic()
        time.sleep(3)
        u1, t1 = int((group / "cpuacct.usage").read_text()), time.monotonic()
        share = (u1 - u0) / 1e9 / (t1 - t0)
        assert 0.08 < share < 0.3, share
    finally:
        p.wait(timeout=30)
    assert p.returncode == 0, p.stderr.read()
    [launch] = records(sroot, "launch")
    assert launch["limits"]["cpus"] == 0.2
    assert launch["limits"]["origins"]["cpus"] == "flag --cpus"


def _hostname_of(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/root/etc/hostname") as f:
            return f.read().strip()
    except OSError:
        return None


@pytest.mark.parametrize("args, what", [
    (["--timeout", "0"], "--timeout"), (["--timeout", "soon"], "--timeout"),
    (["--cpus", "abc"], "--cpus"), (["--cpus", "0"], "--cpus"),
    (["--memory", "lots"], "--memory"), (["--pids-limit", "x"], "--pids-limit"),
    (["--ulimit", "bogus=1"], "--ulimit"), (["--ulimit", "nofile"], "--ulimit"),
    (["--ulimit", "nofile=10:5"], "--ulimit"),
])
def test_bad_limit_values_get_one_line_and_125(sroot, args, what):
    r = helpers.run_sandbox(sroot, "run", *args, "--", "true")
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert what in r.stderr and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert "Traceback" not in r.stderr


def test_limits_are_shown_by_dry_run(sroot):
    r = helpers.run_sandbox(sroot, "run", "--dry-run", "--cpus", "0.5", "--memory", "256m",
                            "--timeout", "2m", "--ulimit", "nproc=50", "--", "true")
    assert r.returncode == 0, r.stderr
    assert "cpu.cfs_quota_us=50000" in r.stdout and "memory.limit_in_bytes=268435456" in r.stdout
    assert "setrlimit RLIMIT_NPROC 50/50" in r.stdout
    assert "after 120s: SIGTERM" in r.stdout


def test_rootless_default_profile_says_what_it_cannot_apply_and_falls_back(nobody_root):
    prog = ("import resource; print(resource.getrlimit(resource.RLIMIT_AS)[0]); "
            "b = bytearray(700 * 1024 * 1024); print('allocated')")
    r = helpers.run_sandbox(nobody_root, "run", "--", "python3", "-c", prog, as_nobody=True)
    assert "allocated" not in r.stdout, r.stdout
    assert "MemoryError" in r.stderr, r.stderr
    assert r.stdout.split()[0] == str(512 << 20)
    [line] = [x for x in r.stderr.splitlines() if "not applied as asked" in x]
    assert f"memory {512 << 20} (cgroup) -> RLIMIT_AS {512 << 20}" in line
    assert "pids 1024 (cgroup) -> RLIMIT_NPROC 1024" in line
    r = helpers.run_sandbox(nobody_root, "audit", "log", "--json", as_nobody=True)
    recs = [json.loads(x)["data"] for x in r.stdout.splitlines()
            if json.loads(x)["kind"] == "launch"]
    assert recs[-1]["limits"]["not_applied"][0][1] == f"RLIMIT_AS {512 << 20}"
