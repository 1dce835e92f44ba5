"""Detached sandboxes and their lifecycle (issue 6): run --detach, ps,
status, logs, stop, rm, gc, enter, the Python handle, and crash cleanup
with the supervisor SIGKILLed at 20 points of launch and run."""

from __future__ import annotations

import glob
import json
import os
import random
import re
import signal
import time
from pathlib import Path

import pytest

from helpers import run_sandbox

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")
pytestmark = needs_root

LOOP = "while :; do sleep 0.1; done"


def _start(sroot, root, script, *extra, env=None):
    r = run_sandbox(sroot, "run", "--detach", "--profile", "default",
                    "--rootfs", str(root), *extra, "--", "/bin/sh", "-c", script, env=env)
    return r


def _json(sroot, *args):
    r = run_sandbox(sroot, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _record(sroot, sid) -> dict:
    return json.loads((Path(sroot) / "state" / "sandboxes" / f"{sid}.json").read_text())


def _wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _cgroups(sid):
    return glob.glob(f"/sys/fs/cgroup/*/sandbox/{sid}") + glob.glob(f"/sys/fs/cgroup/sandbox/{sid}")


def _label_files(sroot):
    d = Path(sroot) / "run" / "labels"
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []


def _held_locks(sroot) -> list[str]:
    from sandbox.runtime.state import lock_held
    out = []
    for p in glob.glob(f"{sroot}/run/**/*", recursive=True):
        if os.path.isfile(p) and not os.path.islink(p) and lock_held(Path(p)):
            out.append(p)
    return out


def _mounts(text):
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]


# -- detach, ps, status, logs, stop ---------------------------------------------------

def test_detached_ps_status_logs_stop(sroot, busybox_root):
    t0 = time.monotonic()
    r = _start(sroot, busybox_root,
               "echo hello-out; echo hello-err >&2; trap 'echo got-term; exit 7' TERM; " + LOOP,
               "--name", "web")
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", sid), r.stdout
    assert time.monotonic() - t0 < 5

    items = _json(sroot, "ps")
    assert [i["id"] for i in items] == [sid]
    i = items[0]
    assert (i["name"], i["profile"], i["root"], i["state"], i["network"]) == \
        ("web", "default", str(busybox_root), "running", "none")
    assert i["started"] and re.match(r"system_u:system_r:sandbox_t:s0:c\d+,c\d+$", i["label"])
    table = run_sandbox(sroot, "ps").stdout
    assert sid in table and "web" in table and "running" in table

    st = _json(sroot, "status", "web")
    assert st["id"] == sid and st["state"] == "running" and st["payload_alive"]
    assert st["pid"] and st["pid1"] and st["status"] is None
    eff = st["effective"]
    assert eff["Seccomp"] == 2 and eff["NoNewPrivs"] == 1 and eff["CapEff"] == "00000000a80425fb"
    # the supervisor is a daemon: own session, no terminal, not our child
    stat = open(f"/proc/{st['supervisor_pid']}/stat").read().rsplit(")", 1)[1].split()
    assert stat[4] == "0"                           # tty_nr: no controlling terminal
    assert int(stat[3]) != os.getpgrp()
    assert _json(sroot, "status", sid[:5])["id"] == sid      # unique prefix

    _wait_for(lambda: "hello-err" in run_sandbox(sroot, "logs", "web").stdout, what="logs")
    out = run_sandbox(sroot, "logs", sid).stdout
    assert "hello-out" in out and "hello-err" in out

    label = i["label"].split(":", 3)[3]
    assert label in _label_files(sroot)
    assert _cgroups(sid)
    t1 = time.monotonic()
    r = run_sandbox(sroot, "stop", "--time", "5", "web")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t1 < 5
    st = _json(sroot, "status", sid)
    assert (st["state"], st["status"]) == ("exited", 7)
    assert "got-term" in run_sandbox(sroot, "logs", sid).stdout
    assert _json(sroot, "ps") == []
    assert [(i["id"], i["state"], i["status"]) for i in _json(sroot, "ps", "--all")] == \
        [(sid, "exited", 7)]
    assert "exited (7)" in run_sandbox(sroot, "ps", "--all").stdout
    # torn down: runtime folder, cgroups, label reservation
    assert not (Path(sroot) / "run" / sid).exists()
    assert _cgroups(sid) == [] and label not in _label_files(sroot)
    # the audit records still happen
    kinds = [json.loads(line)["kind"] for line in
             run_sandbox(sroot, "audit", "log", "--sandbox", sid, "--json").stdout.splitlines()]
    assert kinds == ["launch", "exit"]
    # rm removes the record and the logs
    assert run_sandbox(sroot, "rm", "web").returncode == 0
    assert _json(sroot, "ps", "--all") == []
    assert not (Path(sroot) / "run" / "sandboxes" / sid).exists()


def test_stop_escalates_to_sigkill(sroot, busybox_root):
    sid = _start(sroot, busybox_root, "trap '' TERM; echo up; " + LOOP).stdout.strip()
    _wait_for(lambda: "up" in run_sandbox(sroot, "logs", sid).stdout, what="payload up")
    t = time.monotonic()
    r = run_sandbox(sroot, "stop", "-t", "1", sid)
    took = time.monotonic() - t
    assert r.returncode == 0, r.stderr
    assert 1.0 <= took < 4.0, took
    assert (_record(sroot, sid)["state"], _record(sroot, sid)["status"]) == ("exited", 137)
    assert _cgroups(sid) == []


def test_setup_errors_come_back_to_the_caller(sroot, busybox_root):
    r = run_sandbox(sroot, "run", "-d", "--rootfs", str(busybox_root), "--", "/no/such")
    assert r.returncode == 127, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    [i] = _json(sroot, "ps", "--all")
    assert (i["state"], i["status"]) == ("refused", 127)
    assert run_sandbox(sroot, "run", "-d", "--dry-run", "--", "true").returncode == 125


def test_log_is_rotated_and_capped(sroot, busybox_root):
    script = "i=0; while [ $i -lt 56 ]; do dd if=/dev/zero bs=65536 count=1 2>/dev/null " \
             "| tr '\\0' x; i=$((i+1)); done; echo; echo the-end"
    sid = _start(sroot, busybox_root, script).stdout.strip()
    from sandbox import lifecycle
    assert lifecycle.get(sid, sroot).wait(30) == 0
    d = Path(sroot) / "run" / "sandboxes" / sid
    sizes = {p.name: p.stat().st_size for p in d.glob("payload.log*")}
    assert set(sizes) == {"payload.log", "payload.log.1", "payload.log.2"}, sizes
    assert all(s <= 1 << 20 for s in sizes.values())
    assert sizes["payload.log.1"] == sizes["payload.log.2"] == 1 << 20
    out = run_sandbox(sroot, "logs", sid).stdout
    assert out.endswith("the-end\n") and len(out) <= 3 << 20


def test_logs_follow(sroot, busybox_root):
    sid = _start(sroot, busybox_root,
                 "for i in 1 2 3; do echo line-$i; sleep 0.2; done").stdout.strip()
    r = run_sandbox(sroot, "logs", "--follow", sid, timeout=15)
    assert r.returncode == 0
    assert r.stdout.splitlines() == ["line-1", "line-2", "line-3"]


# -- the Python API ----------------------------------------------------------------

def test_python_handle(sroot, busybox_root):
    from sandbox import Sandbox, lifecycle
    box = Sandbox("default", rootfs=busybox_root, root=sroot, name="api")
    h = box.start(["/bin/sh", "-c", "echo api-out; " + LOOP])
    assert re.fullmatch(r"[0-9a-f]{12}", h.id)
    s = h.status()
    assert s["state"] == "running" and s["name"] == "api"
    assert [i["id"] for i in lifecycle.list(sroot)] == [h.id]
    assert lifecycle.get("api", sroot).id == h.id
    assert h.wait(0.2) is None
    _wait_for(lambda: b"api-out" in h.logs(), what="logs")
    assert h.stop(grace=5) == 143
    assert h.wait(1) == 143
    assert h.status()["state"] == "exited"
    # a second live sandbox may not take the name of a live one
    h2 = box.start(["/bin/sh", "-c", LOOP])
    from sandbox.errors import UsageError
    with pytest.raises(UsageError):
        box.start(["/bin/sh", "-c", LOOP])
    h2.stop(grace=2)


# -- errors ------------------------------------------------------------------------

def _one_line_error(r, status):
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_errors(sroot, busybox_root):
    sid = _start(sroot, busybox_root, "exit 3").stdout.strip()
    from sandbox import lifecycle
    assert lifecycle.get(sid, sroot).wait(10) == 3
    # a second record sharing the first digit: an ambiguous prefix
    rec = _record(sroot, sid)
    twin = sid[0] + ("0" if sid[1] != "0" else "1") + sid[2:]
    rec["id"], rec["name"] = twin, None
    (Path(sroot) / "state" / "sandboxes" / f"{twin}.json").write_text(json.dumps(rec))
    assert "ambiguous" in _one_line_error(run_sandbox(sroot, "status", sid[0]), 1)
    assert "no sandbox" in _one_line_error(run_sandbox(sroot, "status", "nosuchname"), 1)
    _one_line_error(run_sandbox(sroot, "stop", "ffffffffffff"), 1)
    assert "not running" in _one_line_error(run_sandbox(sroot, "stop", sid), 1)
    _one_line_error(run_sandbox(sroot, "enter", sid, "--", "true"), 1)
    _one_line_error(run_sandbox(sroot, "logs", "nope"), 1)
    assert run_sandbox(sroot, "ps", "--bogus").returncode == 2
    assert run_sandbox(sroot, "stop", "--time", "-1", sid).returncode == 2
    live = _start(sroot, busybox_root, LOOP).stdout.strip()
    assert "stop it first" in _one_line_error(run_sandbox(sroot, "rm", live), 1)
    assert run_sandbox(sroot, "rm", "--force", live).returncode == 0
    assert run_sandbox(sroot, "rm", sid, twin).returncode == 0
    assert _json(sroot, "ps", "--all") == []


# -- enter ---------------------------------------------------------------------------

PAYLOAD = """echo marker-$$ > /tmp/marker
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] && continue
    case "$(cat $d/comm 2>/dev/null)" in sandbox*|python*)
      [ -f /tmp/pre.$p ] && continue
      { readlink $d/exe; echo "rc=$?"; ls $d/fd; echo "rc=$?"; cat $d/environ; echo "rc=$?"; } \
        > /tmp/pre.tmp 2>&1
      mv /tmp/pre.tmp /tmp/pre.$p;;
    esac
  done
  if [ -f /tmp/enter.pid ]; then
    p=$(cat /tmp/enter.pid)
    { readlink /proc/$p/exe; echo "rc=$?"; readlink /proc/$p/fd/1; echo "rc=$?"
      cat /proc/$p/fd/1; echo "rc=$?"; } \
      > /tmp/post 2>&1
    rm /tmp/enter.pid
  fi
  sleep 0.02
done"""

ENTERED = """cat /tmp/marker
echo "comm2=$(cat /proc/2/comm)"
grep -E '^(Cap(Eff|Prm|Inh|Bnd|Amb)|Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status | sed 's/^/self-/'
grep -E '^(Cap(Eff|Prm|Inh|Bnd|Amb)|Seccomp|Seccomp_filters|NoNewPrivs):' /proc/2/status | sed 's/^/payload-/'
echo "fds=$(ls /proc/self/fd | tr '\\n' ' ')"
echo "uid=$(id -u) host=$(hostname)"
echo $$ > /tmp/enter.pid
i=0; while [ -f /tmp/enter.pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
echo PRE; cat /tmp/pre.*
echo POST; cat /tmp/post
exit 5"""


def test_enter(sroot, busybox_root):
    sid = _start(sroot, busybox_root, PAYLOAD, "--hostname", "inner").stdout.strip()
    _wait_for(lambda: _json(sroot, "status", sid)["payload_alive"], what="payload")
    # SANDBOX_TEST_ENTER_PAUSE holds the entering process, fully confined but
    # still the host's program, just before execve: the payload probes it then
    r = run_sandbox(sroot, "enter", sid, "--", "/bin/sh", "-c", ENTERED, timeout=30,
                    env={"SANDBOX_TEST_ENTER_PAUSE": "0.5"})
    assert r.returncode == 5, r.stderr
    out = r.stdout
    lines = out.splitlines()
    assert lines[0] == "marker-2"                  # same root, /tmp; the payload is PID 2
    assert "comm2=sh" in lines
    # run and enter confine with the same executor and the same steps
    for key in ("CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb", "Seccomp",
                "Seccomp_filters", "NoNewPrivs"):
        mine = [x.split(":", 1)[1].strip() for x in lines if x.startswith(f"self-{key}:")]
        theirs = [x.split(":", 1)[1].strip() for x in lines if x.startswith(f"payload-{key}:")]
        assert mine and mine == theirs, (key, mine, theirs)
    assert "self-Seccomp:\t2" in out and "self-NoNewPrivs:\t1" in out
    assert "self-CapEff:\t00000000a80425fb" in out
    fds = next(x for x in lines if x.startswith("fds=")).split("=", 1)[1].split()
    assert fds == ["0", "1", "2", "3"], fds          # 3: ls's own directory fd
    assert "uid=0 host=inner" in lines
    pre = out[out.index("PRE\n"):out.index("POST\n")]
    post = out[out.index("POST\n"):]
    # before execve: the entering process's exe, fd folder and environ are closed
    assert pre.count("Permission denied") >= 2 and pre.count("rc=1") == 3, out
    assert "/usr/bin" not in pre and "python" not in pre.lower(), out
    # after execve it is a sandbox process in a Landlock domain of its own:
    # its exe link and its fds (the caller's stdio) stay out of the payload's reach
    assert post.count("rc=1") == 3 and "Permission denied" in post, out
    assert _json(sroot, "status", sid)["state"] == "running"
    assert run_sandbox(sroot, "enter", sid, "--", "/no/such").returncode == 127
    assert run_sandbox(sroot, "stop", "-t", "2", sid).returncode == 0


def test_enter_default_shell_reads_stdin(sroot, busybox_root):
    sid = _start(sroot, busybox_root, LOOP).stdout.strip()
    r = run_sandbox(sroot, "enter", sid, input="echo via-stdin; exit 4\n")
    assert r.returncode == 4 and "via-stdin" in r.stdout, r.stderr
    run_sandbox(sroot, "stop", "-t", "1", sid)


# -- crash cleanup ---------------------------------------------------------------------

#: every SANDBOX_TEST_CRASH_AT point, in the order the supervisor reaches them
CRASH_POINTS = ("daemon", "state-created", "recorded", "cgroup-created", "base-created",
                "forked", "unshared", "maps-written", "go-sent", "pid1-known", "exec-done",
                "started", "reported", "running", "logged", "reaped", "teardown",
                "base-removed", "exit-recorded")


def test_supervisor_killed_anywhere_gc_cleans_up(sroot, busybox_root):
    ids = []
    for point in CRASH_POINTS:
        r = _start(sroot, busybox_root, "echo out; sleep 0.3", env={"SANDBOX_TEST_CRASH_AT": point})
        m = re.search(r"[0-9a-f]{12}", r.stdout + r.stderr)
        assert m, (point, r.stdout, r.stderr)
        sid = m.group(0)
        assert r.returncode in (0, 125), (point, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr
        ids.append((point, sid))
    # and killed from outside at random moments of the run
    rng = random.Random(6)
    for n in range(3):
        sid = _start(sroot, busybox_root, "echo out; " + LOOP).stdout.strip()
        time.sleep(rng.uniform(0, 0.3))
        os.kill(_record(sroot, sid)["supervisor"]["pid"], signal.SIGKILL)
        ids.append((f"outside-{n}", sid))
    assert len({p for p, _ in ids}) >= 20

    from sandbox.lifecycle import _paths
    from sandbox.runtime import state
    paths = _paths(sroot)

    def settled():
        for _, sid in ids:
            rec = state.load(paths, sid)
            if rec is not None and state.supervisor_alive(paths, rec):
                return False
        return True
    _wait_for(settled, what="every supervisor gone")
    before = {i["id"]: i["state"] for i in _json(sroot, "ps", "--all")}
    # every crash really happened where asked: no record says it ended well
    assert {p: before.get(sid) for p, sid in ids} == \
        {p: (None if p == "daemon" else "dead") for p, sid in ids}
    assert [i["id"] for i in _json(sroot, "ps")] == [sid for p, sid in ids if p != "daemon"]

    r = run_sandbox(sroot, "gc", timeout=60)
    assert r.returncode == 0, r.stderr
    after = {i["id"]: i for i in _json(sroot, "ps", "--all")}
    for point, sid in ids:
        assert not (Path(sroot) / "run" / sid).exists(), point
        assert _cgroups(sid) == [], point
        assert _mounts(sid) == [], point
        if sid in after:                # consistent: ended, never running
            assert after[sid]["state"] in ("exited", "refused"), (point, after[sid])
        else:
            assert point in ("daemon",), point   # killed before its first record
    assert _label_files(sroot) == []
    assert _held_locks(sroot) == []
    assert _mounts(str(sroot)) == []
    assert _json(sroot, "ps") == []

    r = run_sandbox(sroot, "gc", "--grace", "0")
    assert r.returncode == 0, r.stderr
    assert _json(sroot, "ps", "--all") == []
    assert list((Path(sroot) / "run" / "sandboxes").iterdir()) == []
    assert sorted(p.name for p in (Path(sroot) / "run").iterdir()) in (
        ["idmap", "labels", "sandboxes"], ["labels", "sandboxes"])


def test_foreground_supervisor_killed_leaves_no_process_and_gc_sweeps(sroot, busybox_root,
                                                                       monkeypatch):
    """A SIGKILLed foreground `sandbox run` takes its sandbox with it (the
    parent-death signal survives the id change), and gc removes the runtime
    folder and cgroups it left, though no record names them."""
    import subprocess
    import helpers
    proc = subprocess.Popen(
        [helpers.SANDBOX, "--root", str(sroot), "run", "--rootfs", str(busybox_root), "--",
         "/bin/sh", "-c", "echo ready; " + LOOP], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        sid = next(p.name for p in (Path(sroot) / "run").iterdir()
                   if re.fullmatch(r"[0-9a-f]{12}", p.name))
        procs = [int(x) for d in _cgroups(sid) for x in open(f"{d}/cgroup.procs").read().split()]
        assert procs
        proc.kill()
        proc.wait()
        _wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and
                                  open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
                                  != "Z" for p in procs), what="the sandbox's processes to die")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (Path(sroot) / "run" / sid).exists() and _cgroups(sid)
    from sandbox import lifecycle
    monkeypatch.setattr(lifecycle, "ORPHAN_AGE", -1)
    rep = lifecycle.gc(sroot)
    assert not (Path(sroot) / "run" / sid).exists()
    assert _cgroups(sid) == [], rep
    assert _label_files(sroot) == []


def test_rootless_detach_enter_stop(nobody_root, busybox_root):
    def sb(*args, **kw):
        return run_sandbox(nobody_root / "sb", *args, as_nobody=True, home=nobody_root, **kw)
    r = sb("run", "-d", "--rootfs", str(busybox_root), "--", "/bin/sh", "-c",
           "echo rootless; " + LOOP)
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    r = sb("enter", sid, "--", "/bin/sh", "-c", "cat /proc/2/comm; grep Seccomp: /proc/self/status")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["sh", "Seccomp:", "2"]
    _wait_for(lambda: "rootless" in sb("logs", sid).stdout, what="logs")
    assert sb("stop", "-t", "2", sid).returncode == 0
    assert json.loads(sb("status", sid, "--json").stdout)["status"] == 143
    assert sb("gc", "--grace", "0").returncode == 0
    assert json.loads(sb("ps", "--all", "--json").stdout) == []
