"""Plan building without privilege: host view vs a root folder, mount step
order, digest stability (DESIGN §2 step 6)."""

from __future__ import annotations

import os

import pytest

from sandbox import Sandbox

pytestmark = pytest.mark.filterwarnings("ignore")


def _plan(tmp_path, profile="default", rootfs=None, sid=None, **kw):
    return Sandbox(profile, rootfs=rootfs, root=tmp_path / "r", **kw) \
        .plan(["/bin/true"], sandbox_id=sid)


@pytest.fixture
def rootdir(tmp_path):
    d = tmp_path / "rootfs"
    (d / "bin").mkdir(parents=True)
    return d


def _ops(plan):
    return [m.op for m in plan.mounts]


def _index(plan, op, target=None):
    return [i for i, m in enumerate(plan.mounts) if m.op == op
            and (target is None or m.target == target)]


@pytest.mark.parametrize("kind", ["host", "dir"])
def test_mount_order_proc_masks_readonly_remount_last(tmp_path, rootdir, kind):
    plan = _plan(tmp_path, rootfs=None if kind == "host" else rootdir)
    proc = _index(plan, "proc")
    masks = _index(plan, "mask")
    ros = _index(plan, "readonly")
    last = plan.mounts[-1]
    assert len(proc) == 1 and masks and ros
    assert proc[0] < min(masks)
    assert max(masks) < min(ros)
    assert (last.op, last.target) == ("remount-ro", "/")
    assert _index(plan, "sysfs")[0] < min(masks)      # /sys/firmware is masked after sysfs


def test_host_view_binds_system_folders_read_only_and_no_secrets(tmp_path):
    plan = _plan(tmp_path)
    assert plan.root_kind == "host"
    assert plan.mounts[0].op == "root"
    binds = {m.target: m for m in plan.mounts if m.op == "bind"}
    assert binds["/usr"].options == "ro"
    targets = {m.target for m in plan.mounts}
    for secret in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh"):
        assert secret not in targets
    assert not any(m.op == "overlay" for m in plan.mounts)


def test_rootfs_plan_uses_overlay_of_the_folder(tmp_path, rootdir):
    plan = _plan(tmp_path, rootfs=rootdir)
    assert plan.root_kind == "dir"
    assert plan.mounts[0].op == "overlay" and plan.mounts[0].source == os.path.realpath(rootdir)
    assert not any(m.op == "bind" and m.target == "/usr" for m in plan.mounts)


def test_plan_digest_is_stable_across_sandbox_ids(tmp_path):
    a = _plan(tmp_path, sid="aaaaaaaaaaaa")
    b = _plan(tmp_path, sid="bbbbbbbbbbbb")
    assert a.sandbox_id != b.sandbox_id and a.base != b.base
    assert a.digest() == b.digest()


def test_plan_digest_changes_with_profile_and_argv(tmp_path):
    a = _plan(tmp_path)
    b = _plan(tmp_path, profile="strict")
    c = Sandbox("default", root=tmp_path / "r").plan(["/bin/false"])
    assert len({a.digest(), b.digest(), c.digest()}) == 3


def test_namespaces_all_new_by_default(tmp_path):
    plan = _plan(tmp_path)
    assert set(plan.namespaces) == {"user", "mount", "pid", "net", "uts", "ipc", "cgroup"}
    assert plan.shared_namespaces == ()
    assert plan.namespaces[0] == "user"


def test_plan_describe_is_numbered_and_ends_with_execve(tmp_path):
    lines = [ln for ln in _plan(tmp_path).describe() if ln[:4].strip()]
    nums = [int(ln.split(".")[0]) for ln in lines if ln.split(".")[0].strip().isdigit()]
    assert nums == list(range(1, len(nums) + 1))
    assert lines[-1].strip().endswith("execve /bin/true") or \
        any(ln.strip().endswith("execve /bin/true") for ln in lines)


def test_plan_seccomp_compiled_in_parent_and_caps_sorted(tmp_path):
    plan = _plan(tmp_path)
    assert plan.seccomp is not None and plan.seccomp.instructions > 10
    assert list(plan.capabilities) == sorted(plan.capabilities)
    assert plan.no_new_privs


def test_volume_binds_come_before_masks(tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    plan = _plan(tmp_path, volumes=[f"{vol}:/data:rw,Z"])
    v = [i for i, m in enumerate(plan.mounts) if m.target == "/data"]
    assert len(v) == 1 and v[0] < min(_index(plan, "mask"))
    m = plan.mounts[v[0]]
    assert (m.op, m.source, m.options.split(",")[0]) == ("bind", str(vol), "rw")
    assert m.why.startswith("volume")
