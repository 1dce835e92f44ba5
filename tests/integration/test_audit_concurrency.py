"""Many writers at once, and writers killed mid-write (issue 4 acceptance).

Writers are separate processes using the public API, as concurrent
``sandbox run`` supervisors do. No privilege needed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from sandbox.audit import AuditLog
from sandbox.paths import Paths

WRITER = r"""
import sys, time
from sandbox.paths import Paths
from sandbox.audit import record_event, samples
root, sid, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
p = Paths.resolve(root)
while time.time() < start:   # line the writers up
    time.sleep(0.001)
record_event(p, "launch", samples.launch("default", sid))
record_event(p, "exit", samples.exit_(sid, duration_ms=1.0))
"""

LOOPER = r"""
import sys
from sandbox.paths import Paths
from sandbox.audit import record_event, samples
root, run = sys.argv[1], int(sys.argv[2])
p = Paths.resolve(root)
print("ready", flush=True)
i = 0
while True:
    kind = "launch" if i % 2 == 0 else "exit"
    data = samples.launch("strict", f"r{run}") if kind == "launch" else samples.exit_(f"r{run}")
    data["run"], data["i"] = run, i
    record_event(p, kind, data)
    i += 1
"""


def _env():
    env = dict(os.environ)
    env.pop("SANDBOX_ROOT", None)
    return env


def test_fifty_concurrent_writers_give_one_unbroken_chain(tmp_path):
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), f"sb-{i:02d}",
                               repr(start)], env=_env())
             for i in range(50)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    log = AuditLog(Paths.resolve(tmp_path))
    result = log.verify()
    assert result.ok, result.message
    recs = list(log.records())
    assert [r.seq for r in recs] == list(range(1, 101))
    launches = {r.sandbox_id: r.seq for r in recs if r.kind == "launch"}
    exits = {r.sandbox_id: r.seq for r in recs if r.kind == "exit"}
    assert len(launches) == 50 and len(exits) == 50
    assert all(launches[s] < exits[s] for s in launches)
    for a, b in zip(recs, recs[1:]):
        assert b.prev == a.hash
    log.close()


@pytest.mark.slow
def test_writer_killed_at_random_points_never_leaves_a_wrong_log_that_verifies(tmp_path):
    rng = random.Random(4)
    paths = Paths.resolve(tmp_path)
    for run in range(20):
        proc = subprocess.Popen([sys.executable, "-c", LOOPER, str(tmp_path), str(run)],
                                stdout=subprocess.PIPE, env=_env())
        if run % 4 == 0:
            # Sometimes kill during start-up (key and database creation) ...
            time.sleep(rng.uniform(0.0, 0.15))
        else:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.08))  # ... mostly mid-append
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()

        log = AuditLog(paths)
        result = log.verify(sign_head=False)
        # A crash must leave a log that verifies (whole records only) ...
        assert result.ok, f"after kill {run}: {result.message}"
        # ... and what verifies must be exactly what the writers meant.
        recs = list(log.records())
        assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
        seen: dict[int, list[int]] = {}
        for r in recs:
            d = r.data
            assert r.kind == ("launch" if d["i"] % 2 == 0 else "exit")
            assert d["sandbox_id"] == f"r{d['run']}"
            seen.setdefault(d["run"], []).append(d["i"])
        for run_id, ii in seen.items():
            assert ii == list(range(len(ii))), (run_id, ii)
        log.close()
    # Written and killed 20 times: the log still takes records and verifies.
    from sandbox.audit import record_event
    record_event(paths, "exit", {"sandbox_id": "last", "status": 0, "signal": None,
                                 "duration_ms": 0.0})
    log = AuditLog(paths)
    assert log.verify().ok
    log.close()
