"""The plan is the program (issue 10): one ordered tuple of step values,
walked by describe(), to_dict(), digest() and the child. No privilege."""

from __future__ import annotations

import json

import pytest

from sandbox import Sandbox
from sandbox.runtime.plan import SeccompPlan
from sandbox.runtime.steps import (PLAN_VERSION, STEP_KINDS,
                                   build_confinement)

pytestmark = pytest.mark.filterwarnings("ignore")


def _plan(tmp_path, profile="default", **kw):
    return Sandbox(profile, root=tmp_path / "r", **kw).plan(["/bin/true", "-x"])


def _kinds(plan):
    return [s.kind for s in plan.steps]


def test_security_steps_order_caps_ids_nnp_landlock_seccomp_execve(tmp_path):
    kinds = _kinds(_plan(tmp_path))
    tail = kinds[kinds.index("capabilities"):]
    assert tail == ["capabilities", "ids", "no_new_privs", "landlock", "seccomp", "execve"]
    assert kinds.index("setsid") < kinds.index("chdir") < kinds.index("capabilities")
    assert kinds.index("pivot_root") < kinds.index("hostname") < kinds.index("close_fds")
    assert kinds.index("unshare") < kinds.index("idmap") < kinds.index("base") \
        < kinds.index("mount") < kinds.index("pivot_root")


def test_each_confinement_step_carries_the_plans_arguments(tmp_path):
    plan = _plan(tmp_path)
    by = {s.kind: s for s in plan.steps}
    assert by["chdir"].workdir == plan.workdir
    assert by["capabilities"].keep == plan.capabilities
    assert (by["ids"].uid, by["ids"].gid) == (plan.uid, plan.gid)
    assert by["ids"].setgroups == (plan.idmap is None or not plan.idmap.deny_setgroups)
    assert by["landlock"].abi == plan.landlock_abi and by["landlock"].rules == plan.landlock
    assert by["seccomp"].filter.bpf == plan.seccomp.bpf
    assert by["execve"].argv == ("/bin/true", "-x") and by["execve"].env == plan.env
    assert [s for s in plan.steps if s.kind == "rlimit"] and all(
        (s.resource, s.soft, s.hard) in plan.rlimits for s in plan.steps if s.kind == "rlimit")
    mounts = [s for s in plan.steps if s.kind == "mount"]
    assert [(m.op, m.target, m.source, m.options) for m in mounts] == \
        [(m.op, m.target, m.source, m.options) for m in plan.mounts]


def test_steps_are_pure_and_frozen(tmp_path):
    plan = _plan(tmp_path)
    assert plan.steps == plan.steps
    s = plan.steps[0]
    with pytest.raises(AttributeError):
        s.kind = "x"
    assert {x.kind for x in plan.steps} <= set(STEP_KINDS)


def test_optional_steps_absent_when_the_plan_lacks_them(tmp_path):
    plan = _plan(tmp_path)._replace(no_new_privs=False, landlock_abi=0, seccomp=None)
    kinds = _kinds(plan)
    for absent in ("no_new_privs", "landlock", "seccomp", "exec_label"):
        assert absent not in kinds
    assert kinds[-3:] == ["capabilities", "ids", "execve"]


def test_exec_label_step_only_with_an_exec_label_and_before_seccomp(tmp_path):
    plan = _plan(tmp_path)
    assert plan.label and "exec_label" not in _kinds(plan)      # SELinux inactive here
    assert not any("label" in ln.split(". ", 1)[-1][:6] for ln in plan.describe())
    labelled = plan._replace(exec_label="system_u:system_r:container_t:s0:c1,c2")
    kinds = _kinds(labelled)
    assert kinds.index("landlock") < kinds.index("exec_label") < kinds.index("seccomp")


def test_describe_numbers_exactly_the_steps(tmp_path):
    plan = _plan(tmp_path)
    numbered = [ln for ln in plan.describe() if ln[:4].strip().rstrip(".").isdigit()]
    assert len(numbered) == len(plan.steps)
    for ln, s in zip(numbered, plan.steps):
        assert ln.split(". ", 1)[1] == s.describe()
    assert numbered[-1].endswith("execve /bin/true -x")


def test_json_lists_the_steps_and_plan_version(tmp_path):
    plan = _plan(tmp_path)
    d = json.loads(json.dumps(plan.to_dict()))
    assert d["plan_version"] == PLAN_VERSION
    assert [s["kind"] for s in d["steps"]] == _kinds(plan)
    assert d["steps"][-1] == {"kind": "execve", "argv": ["/bin/true", "-x"],
                              "env": dict(plan.env)}
    assert d["capabilities"] == list(plan.capabilities)


def test_digest_covers_the_steps_not_the_sandbox_id(tmp_path):
    a = Sandbox("default", root=tmp_path / "r").plan(["/bin/true"], sandbox_id="a" * 12)
    b = Sandbox("default", root=tmp_path / "r").plan(["/bin/true"], sandbox_id="b" * 12)
    assert a.digest() == b.digest()
    assert a._replace(capabilities=()).digest() != a.digest()
    assert a._replace(no_new_privs=False).digest() != a.digest()
    assert a._replace(exec_label="u:r:t:s0").digest() != a.digest()


def test_digest_changes_with_plan_version(tmp_path, monkeypatch):
    plan = _plan(tmp_path)
    before = plan.digest()
    from sandbox.runtime import plan as plan_mod
    monkeypatch.setattr(plan_mod, "PLAN_VERSION", PLAN_VERSION + 1)
    assert plan.digest() != before


# -- the executor performs them: tests/unit/test_executor_reader.py (its dry
# mode lists the order without root), tests/integration/test_executor.py

def test_enter_builds_the_same_confinement_steps_as_run(tmp_path):
    from sandbox.lifecycle._enter import build_enter_steps
    from sandbox.runtime.supervise import confinement
    plan = _plan(tmp_path)
    conf = json.loads(json.dumps(confinement(plan)))
    mine = build_enter_steps(conf, ["/bin/true", "-x"])
    run = build_confinement(plan)
    assert [s.kind for s in mine] == [s.kind for s in run]
    for a, b in zip(mine, run):
        if a.kind == "seccomp":
            assert a.filter.bpf == b.filter.bpf
        elif a.kind == "landlock":
            assert [tuple(r) for r in a.rules] == [tuple(r) for r in b.rules]
        else:
            assert a == b, a.kind


def test_seccomp_step_repr_has_no_bytes():
    sp = SeccompPlan(b"\0" * 16, "sha256:x", "f.json", "errno", ("X",), 2)
    from sandbox.runtime.steps import Seccomp
    assert "\\x00" not in repr(Seccomp(sp)) and "sha256:x" in repr(Seccomp(sp))


# -- the OCI fields (sandbox-oci) -----------------------------------------------

OCI_KINDS = {"oom_score_adj", "join_namespace", "sysctl", "root_propagation",
             "controlling_tty", "umask", "seccomp_early", "capability_sets", "groups"}
OCI_DEFAULTS = dict(sysctls=(), join_namespaces=(), additional_gids=(), umask=None,
                    oom_score_adj=None, root_propagation="", controlling_tty=False,
                    capability_sets=())


def test_plans_without_oci_fields_have_no_oci_steps_and_the_same_digest(tmp_path):
    for profile in ("default", "strict", "unconfined"):
        plan = _plan(tmp_path / profile, profile)
        assert not {s.kind for s in plan.steps} & OCI_KINDS
        again = plan._replace(**OCI_DEFAULTS)
        assert again.steps == plan.steps and again.digest() == plan.digest()
        assert again.describe() == plan.describe()
    # no_new_privs off with a filter, outside OCI: seccomp stays last (fails
    # closed for a non-root uid) rather than moving before the drop
    plan = _plan(tmp_path / "nnp")._replace(no_new_privs=False)
    assert _kinds(plan)[-2:] == ["seccomp", "execve"] and "seccomp_early" not in _kinds(plan)


def test_oci_fields_become_steps_in_their_places(tmp_path):
    sets = (("CAP_KILL",), ("CAP_KILL",), ("CAP_KILL",), (), ())
    plan = _plan(tmp_path)._replace(
        no_new_privs=False, landlock_abi=0, sysctls=(("net.ipv4.ip_forward", "1"),),
        join_namespaces=(("ipc", "/proc/1/ns/ipc"), ("user", "/proc/1/ns/user")),
        additional_gids=(5,), umask=0o22, oom_score_adj=-100, root_propagation="rslave",
        controlling_tty=True, capability_sets=sets)
    kinds = _kinds(plan)
    assert kinds.index("oom_score_adj") < kinds.index("join_namespace") < kinds.index("unshare")
    joins = [s for s in plan.steps if s.kind == "join_namespace"]
    assert [j.namespace for j in joins] == ["user", "ipc"]          # user first
    assert kinds.index("network") < kinds.index("sysctl") < kinds.index("base")
    assert kinds.index("pivot_root") < kinds.index("root_propagation") < kinds.index("hostname")
    tail = kinds[kinds.index("setsid"):]
    assert tail == ["setsid", "controlling_tty", "umask", "chdir", "seccomp_early",
                    "capability_sets", "groups", "ids", "execve"]
    text = "\n".join(plan.describe())
    for want in ("oom_score_adj -100", "setns user /proc/1/ns/user", "sysctl net.ipv4.ip_forward=1",
                 "root propagation rslave", "controlling terminal: fd 0 (TIOCSCTTY)",
                 "umask 0022", "before the capability drop", "capabilities bounding: CAP_KILL",
                 "ambient: none", "supplementary groups 5"):
        assert want in text, want
    d = json.loads(json.dumps(plan.to_dict()))
    assert [s["kind"] for s in d["steps"]] == kinds
    assert plan.digest() != _plan(tmp_path).digest()
