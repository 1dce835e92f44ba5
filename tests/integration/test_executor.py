"""The compiled executor performs the plan's confinement steps (issue 10),
checked from inside: CapEff/CapPrm/CapInh/CapAmb/CapBnd, NoNewPrivs,
Seccomp, filter count and the Landlock domain are the plan's; its trace
equals the steps ``--dry-run --json`` lists; every failure names its step
with the launch's exit codes; `run` refuses without it.

The executor runs here on the host, as root, in throw-away processes
(`run` and `enter` use it inside sandboxes: tests/integration/
test_lifecycle.py compares the two from inside)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from sandbox import Sandbox
from sandbox.runtime.steps import CONFINEMENT_KINDS, Execve
from sandbox.runtime.wire import build_wire, executor_path

pytestmark = [pytest.mark.filterwarnings("ignore"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")]

#: prints the status lines and whether writes outside the Landlock rules fail
PROBE = ("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' "
         "/proc/self/status; (echo x > /var/tmp/.sbx-exec-probe) 2>/dev/null && echo "
         "write-var-tmp:allowed || echo write-var-tmp:denied; "
         "rm -f /var/tmp/.sbx-exec-probe; (echo x > /tmp/.sbx-exec-probe-$$) 2>/dev/null "
         "&& echo write-tmp:allowed || echo write-tmp:denied; rm -f /tmp/.sbx-exec-probe-$$")


def _steps(tmp_path, argv, profile="default"):
    plan = Sandbox(profile, root=tmp_path / "r").plan(argv)
    return plan, tuple(s for s in plan.steps if s.kind in CONFINEMENT_KINDS)


def _run_executor(steps, *, trace=False, sync=False):
    """Run sandbox-exec with ``steps``; (returncode, stdout, error lines, trace)."""
    plan_r, plan_w = os.pipe()
    err_r, err_w = os.pipe()
    tr_r, tr_w = os.pipe()
    res_r, res_w = os.pipe()
    args = [executor_path(), "--plan-fd", str(plan_r), "--error-fd", str(err_w)]
    if trace:
        args += ["--trace", str(tr_w)]
    if sync:
        args += ["--sync", str(res_r)]
    os.write(plan_w, build_wire(steps))
    os.close(plan_w)
    p = subprocess.Popen(args, pass_fds=(plan_r, err_w, tr_w, res_r), stdout=subprocess.PIPE,
                         cwd="/")
    for fd in (plan_r, err_w, tr_w, res_r):
        os.close(fd)
    state = None
    if sync:
        assert os.read(err_r, 2) == b"S\n"
        with open(f"/proc/{p.pid}/status") as f:
            state = f.read()
        os.write(res_w, b"X")
    os.close(res_w)
    out, _ = p.communicate(timeout=30)
    err = _drain(err_r)
    tr = _drain(tr_r)
    return p.returncode, out.decode(), err, tr, state


def _drain(fd):
    chunks = []
    while True:
        c = os.read(fd, 65536)
        if not c:
            os.close(fd)
            return b"".join(chunks).decode()
        chunks.append(c)


def _status(text):
    return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)


@pytest.mark.parametrize("profile", ["default", "strict"])
def test_executor_applies_exactly_the_plans_confinement(tmp_path, profile):
    from sandbox.capabilities import CAPABILITIES
    plan, steps = _steps(tmp_path, ["/bin/sh", "-c", PROBE], profile)
    rc, out, err, _, _ = _run_executor(steps)
    assert rc == 0, err
    mine = _status(out)
    keep = f"{sum(1 << CAPABILITIES[c] for c in plan.capabilities):016x}"
    assert mine["CapBnd"].strip() == keep
    assert mine["CapEff"].strip() == mine["CapPrm"].strip() == (keep if plan.uid == 0
                                                                else "0" * 16)
    assert mine["NoNewPrivs"].strip() == ("1" if plan.no_new_privs else "0")
    assert mine["Seccomp"].strip() == "2" and mine["Seccomp_filters"].strip() == "1"
    assert mine["CapAmb"].strip() == mine["CapInh"].strip() == "0000000000000000"
    if plan.landlock_abi:
        assert mine["write-var-tmp"] == "denied" and mine["write-tmp"] == "allowed"


def test_trace_equals_the_dry_run_json_steps(tmp_path):
    plan, steps = _steps(tmp_path, ["/bin/true"])
    rc, _, err, tr, _ = _run_executor(steps, trace=True)
    assert rc == 0, err
    listed = [s for s in plan.to_dict()["steps"] if s["kind"] in CONFINEMENT_KINDS]
    performed = [ln.split(" ", 1) for ln in tr.splitlines()]
    assert [p[0] for p in performed] == [s["kind"] for s in listed]
    args = {p[0]: p[1] if len(p) > 1 else "" for p in performed}
    by = {s["kind"]: s for s in listed}
    from sandbox.capabilities import CAPABILITIES
    assert args["chdir"] == by["chdir"]["workdir"]
    assert int(args["capabilities"], 16) == sum(1 << CAPABILITIES[c]
                                               for c in by["capabilities"]["keep"])
    assert args["ids"] == f"{by['ids']['uid']} {by['ids']['gid']} {int(by['ids']['setgroups'])}"
    assert args["landlock"] == f"{by['landlock']['abi']} {len(by['landlock']['rules'])}"
    assert int(args["seccomp"]) == by["seccomp"]["instructions"]
    assert args["execve"] == by["execve"]["argv"][0]


def test_readback_handshake_stops_confined_before_execve(tmp_path):
    plan, steps = _steps(tmp_path, ["/bin/true"])
    rc, _, err, _, state = _run_executor(steps, sync=True)
    assert rc == 0, err
    st = _status(state)
    assert st["NoNewPrivs"].strip() == "1" and st["Seccomp"].strip() == "2"
    assert st["Name"].strip() == "sandbox-exec"         # not exec'd yet when read


def _error(err):
    lines = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_workdir_fails_at_the_chdir_step(tmp_path):
    _, steps = _steps(tmp_path, ["/bin/true"])
    steps = tuple(s._replace(workdir="/nonexistent-sbx") if s.kind == "chdir" else s
                  for s in steps)
    rc, _, err, _, _ = _run_executor(steps)
    e = _error(err)
    assert rc == 125 and e["step"] == "chdir" and e["status"] == 125
    assert e["errno"] == 2 and "/nonexistent-sbx" in e["message"]


def test_missing_command_is_127_and_not_executable_is_126(tmp_path):
    _, steps = _steps(tmp_path, ["/bin/true"])
    for argv, status in ((("no-such-command-sbx",), 127), (("/etc/hostname",), 126)):
        s = tuple(Execve(argv, x.env) if x.kind == "execve" else x for x in steps)
        rc, _, err, _, _ = _run_executor(s)
        e = _error(err)
        assert rc == status and e["step"] == "execve" and e["status"] == status, err


def test_seccomp_cannot_load_without_no_new_privs_as_non_root(tmp_path):
    # uid 1000 without no_new_privs: the kernel refuses the filter; the
    # executor names the step and never execs unconfined
    plan, steps = _steps(tmp_path, ["/bin/true"])
    steps = tuple(s._replace(uid=1000, gid=1000) if s.kind == "ids" else s for s in steps
                  if s.kind not in ("no_new_privs", "landlock"))
    rc, _, err, _, _ = _run_executor(steps)
    e = _error(err)
    assert rc == 125 and e["step"] == "seccomp" and e["errno"] == 13


def test_run_refuses_when_the_executor_is_missing_and_leaves_nothing(tmp_path, monkeypatch):
    # run's payload is confined by the executor: without it, no launch
    from sandbox.errors import SetupError
    from sandbox.runtime import spawn
    monkeypatch.setattr(spawn, "executor_path", lambda: str(tmp_path / "no-executor"))
    box = Sandbox("default", root=tmp_path / "r")
    with pytest.raises(SetupError) as ei:
        box.run(["/bin/true"])
    assert ei.value.step == "start executor" and "no-executor" in str(ei.value)
    run_dir = tmp_path / "r" / "run"
    assert not run_dir.exists() or [p.name for p in run_dir.iterdir()
                                    if p.name not in ("labels", "idmap", "locks")] == []


def test_run_payload_is_confined_by_the_executor(tmp_path):
    # the process that reports "S" (stopped before execve) is sandbox-exec
    seen = {}
    from sandbox.runtime import spawn
    real = spawn.read_effective

    def spy(pid):
        with open(f"/proc/{pid}/comm") as f:
            seen["comm"] = f.read().strip()
        return real(pid)
    import unittest.mock
    with unittest.mock.patch.object(spawn, "read_effective", spy):
        res = Sandbox("default", root=tmp_path / "r").run(["/bin/true"])
    assert res.status == 0 and seen["comm"] == "sandbox-exec"


def test_a_launch_performs_exactly_the_dry_run_json_steps(tmp_path, monkeypatch, busybox_root):
    # the executor's trace of a real `sandbox run` against `--dry-run --json`
    import helpers
    trace = tmp_path / "trace"
    args = ["run", "--profile", "default", "--rootfs", str(busybox_root)]
    dry = helpers.run_sandbox(tmp_path / "sb", *args, "--dry-run", "--json", "--",
                              "/bin/echo", "hi")
    assert dry.returncode == 0, dry.stderr
    listed = [s for s in json.loads(dry.stdout)["steps"] if s["kind"] in CONFINEMENT_KINDS]
    r = helpers.run_sandbox(tmp_path / "sb", *args, "--", "/bin/echo", "hi",
                            env={"SANDBOX_TEST_EXECUTOR_TRACE": str(trace)})
    assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
    performed = [ln.split(" ", 1) for ln in trace.read_text().splitlines()]
    assert [p[0] for p in performed] == [s["kind"] for s in listed]
    by = {s["kind"]: s for s in listed}
    args_ = {p[0]: p[1] if len(p) > 1 else "" for p in performed}
    assert args_["chdir"] == by["chdir"]["workdir"]
    assert args_["ids"].split()[:2] == [str(by["ids"]["uid"]), str(by["ids"]["gid"])]
    assert int(args_["seccomp"]) == by["seccomp"]["instructions"]
    assert args_["landlock"] == f"{by['landlock']['abi']} {len(by['landlock']['rules'])}"
    assert args_["execve"] == "/bin/echo"


def test_plan_memfd_is_sealed_against_writes():
    import fcntl
    from sandbox.runtime.spawn import open_executor_for
    exe, mfd = open_executor_for((Execve(("/bin/true",), ()),))
    try:
        with pytest.raises(PermissionError):
            os.write(mfd, b"x")
        seals = fcntl.fcntl(mfd, fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
    finally:
        os.close(exe)
        os.close(mfd)


# -- the OCI steps (sandbox-oci): exact capability sets, groups, umask, -----
#    seccomp before the drop when no_new_privs is off

OCI_PROBE = ("grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Groups|Umask|Uid):' "
             "/proc/self/status")
OCI_SETS = (("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"),     # bounding
            ("CAP_NET_BIND_SERVICE", "CAP_CHOWN"),                 # effective (CHOWN not permitted)
            ("CAP_NET_BIND_SERVICE", "CAP_KILL"),                  # permitted
            ("CAP_NET_BIND_SERVICE",),                             # inheritable
            ("CAP_NET_BIND_SERVICE", "CAP_KILL"))                  # ambient (KILL not inheritable)


def _oci_steps(tmp_path, argv, **over):
    plan = Sandbox("default", root=tmp_path / "r").plan(argv)._replace(
        uid=1000, gid=1000, idmap=None, no_new_privs=False, landlock_abi=0, umask=0o027,
        additional_gids=(10, 20), capability_sets=OCI_SETS, **over)
    return plan, tuple(s for s in plan.steps if s.kind in CONFINEMENT_KINDS)


def _mask(*names):
    from sandbox.capabilities import CAPABILITIES
    return f"{sum(1 << CAPABILITIES[c] for c in names):016x}"


def test_oci_sets_applied_exactly_and_ambient_never_beyond_inheritable(tmp_path):
    plan, steps = _oci_steps(tmp_path, ["/bin/sh", "-c", OCI_PROBE])
    assert [s.kind for s in steps][:8] == ["setsid", "umask", "chdir", "seccomp_early",
                                           "capability_sets", "groups", "ids", "execve"]
    rc, out, err, _, _ = _run_executor(steps)
    assert rc == 0, err
    mine = _status(out)
    assert mine["Uid"].split()[:3] == ["1000"] * 3
    assert mine["CapBnd"].strip() == _mask("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    # execve of a non-root uid: permitted and effective are what ambient gives
    assert mine["CapAmb"].strip() == _mask("CAP_NET_BIND_SERVICE")
    assert mine["CapInh"].strip() == _mask("CAP_NET_BIND_SERVICE")
    assert mine["CapPrm"].strip() == mine["CapEff"].strip() == _mask("CAP_NET_BIND_SERVICE")
    assert mine["Groups"].split() == ["10", "20"]
    assert mine["Umask"].strip() == "0027"
    # loaded before the drop, while CAP_SYS_ADMIN allowed it without no_new_privs
    assert mine["NoNewPrivs"].strip() == "0" and mine["Seccomp"].strip() == "2"


def test_oci_sets_before_execve_hold_permitted_for_a_non_root_uid(tmp_path):
    # the read-back stop sees the sets as applied (before execve recomputes them)
    plan, steps = _oci_steps(tmp_path, ["/bin/true"])
    rc, _, err, _, state = _run_executor(steps, sync=True)
    assert rc == 0, err
    st = _status(state)
    assert st["CapPrm"].strip() == _mask("CAP_NET_BIND_SERVICE", "CAP_KILL")
    assert st["CapEff"].strip() == _mask("CAP_NET_BIND_SERVICE")      # within permitted
    assert st["CapAmb"].strip() == _mask("CAP_NET_BIND_SERVICE")


def test_oci_trace_equals_the_dry_run_json_steps(tmp_path):
    plan, steps = _oci_steps(tmp_path, ["/bin/true"], controlling_tty=False)
    rc, _, err, tr, _ = _run_executor(steps, trace=True)
    assert rc == 0, err
    listed = [s for s in plan.to_dict()["steps"] if s["kind"] in CONFINEMENT_KINDS]
    performed = [ln.split(" ", 1) for ln in tr.splitlines()]
    assert [p[0] for p in performed] == [s["kind"] for s in listed]
    args = {p[0]: p[1] if len(p) > 1 else "" for p in performed}
    by = {s["kind"]: s for s in listed}
    assert int(args["umask"], 8) == by["umask"]["mask"]
    assert args["groups"] == "2 10,20"
    assert [int(x, 16) for x in args["capability_sets"].split()] == [
        int(_mask(*by["capability_sets"][n]), 16)
        for n in ("bounding", "effective", "permitted", "inheritable", "ambient")]
    assert int(args["seccomp_early"]) == by["seccomp_early"]["instructions"]


def test_oci_controlling_tty_without_a_terminal_fails_at_its_step(tmp_path):
    # fd 0 is not a terminal: TIOCSCTTY fails and nothing is exec'd
    plan, steps = _oci_steps(tmp_path, ["/bin/true"], controlling_tty=True)
    assert [s.kind for s in steps][:2] == ["setsid", "controlling_tty"]
    rc, out, err, _, _ = _run_executor(steps)
    e = _error(err)
    assert rc == 125 and e["step"] == "controlling_tty" and e["errno"] == 25   # ENOTTY
