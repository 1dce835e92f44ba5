"""The label part of the launch plan (no privileges)."""

from __future__ import annotations

import json

import pytest

from sandbox.errors import HostSupportError, UsageError
from sandbox.labels.model import LabelRefused, Level
from sandbox.labels.plan import (VolumeRequest, apply_relabels,
                                 build_label_plan)
from sandbox.labels.volumes import apply_volume_label, read_volume_label
from sandbox.profile import model as pm

ME = Level.parse("s0:c1,c2")


def profile(**kw):
    base = dict(
        name="t", description="", source="test", namespaces=pm.Namespaces(),
        user=pm.UserSpec(), capabilities=frozenset(), seccomp=pm.SeccompSpec(),
        filesystem=pm.FilesystemSpec(read_only_root=True, tmpfs=(pm.Tmpfs("/tmp"),)),
        label=pm.LabelSpec(), network=pm.NetworkSpec(), limits=pm.LimitsSpec(),
        process=pm.ProcessSpec(), landlock=pm.LandlockSpec())
    base.update(kw)
    return pm.Profile(**base)


def test_plan_with_volumes(tmp_path):
    own, low = tmp_path / "own", tmp_path / "low"
    own.mkdir(); low.mkdir()
    apply_volume_label(own, ME, selinux=False)
    apply_volume_label(low, Level.parse("s0:c1"), selinux=False)
    plan = build_label_plan(profile(), ME, [
        VolumeRequest(str(own), "/work", "rw"),
        VolumeRequest(str(low), "/ref", "ro"),
    ], landlock_abi=7, selinux_active=False)
    assert str(plan.context) == "system_u:system_r:sandbox_t:s0:c1,c2"
    assert [v.grant.mode for v in plan.volumes] == ["rw", "ro"]
    assert [str(r) for r in plan.landlock] == [
        "rx /", "rw /proc", "dev /dev", "ro /sys", "rw /tmp", "rwx /work", "rx /ref"]
    d = plan.to_dict()
    json.dumps(d)
    assert d["landlock"]["abi"] == 7 and d["selinux"]["active"] is False
    assert d["volumes"][1] == {"source": str(low), "target": "/ref", "requested": "ro",
                               "relabel": None, "mode": "ro", "label": "s0:c1",
                               "relabel_to": None}


def test_refusal_happens_before_anything_is_written(tmp_path):
    priv, other = tmp_path / "priv", tmp_path / "other"
    priv.mkdir(); other.mkdir()
    with pytest.raises(LabelRefused):
        build_label_plan(profile(), ME, [
            VolumeRequest(str(priv), "/p", "rw", "Z"),      # would be relabelled
            VolumeRequest(str(other), "/o", "ro"),           # unlabelled: refused
        ], landlock_abi=7, selinux_active=False)
    assert read_volume_label(priv) is None


def test_apply_relabels(tmp_path):
    priv = tmp_path / "priv"
    priv.mkdir()
    plan = build_label_plan(profile(), ME, [VolumeRequest(str(priv), "/p", "rw", "Z")],
                            landlock_abi=7, selinux_active=False)
    assert apply_relabels(plan) == (str(priv),)
    assert read_volume_label(priv) == ME


def test_missing_landlock_is_refused_unless_optional():
    with pytest.raises(HostSupportError, match="Landlock"):
        build_label_plan(profile(), ME, landlock_abi=0, selinux_active=False)
    plan = build_label_plan(profile(optional=frozenset({"landlock"})), ME,
                            landlock_abi=0, selinux_active=False)
    assert plan.landlock is None and plan.landlock_missing
    assert plan.to_dict()["landlock_missing"] is True


def test_landlock_disabled_by_profile():
    plan = build_label_plan(profile(landlock=pm.LandlockSpec(enabled=False)), ME,
                            landlock_abi=7, selinux_active=False)
    assert plan.landlock is None and not plan.landlock_missing


def test_selinux_plan_when_active():
    p = profile(label=pm.LabelSpec(type="container_t"))
    plan = build_label_plan(p, ME, landlock_abi=7, selinux_active=True)
    assert plan.selinux.exec_context == "system_u:system_r:container_t:s0:c1,c2"
    assert plan.selinux.mount_option == \
        'context="system_u:object_r:container_file_t:s0:c1,c2"'


@pytest.mark.parametrize("kw", [dict(mode="rx"), dict(relabel="x"), dict(target="rel")])
def test_bad_volume_requests(kw):
    base = dict(source="/s", target="/t")
    base.update(kw)
    with pytest.raises(UsageError):
        VolumeRequest(**base)


def test_targets_are_resolved_inside_the_root_for_landlock(tmp_path):
    import os
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    os.symlink("/etc", rootfs / "conf")          # hostile image: /conf -> /etc
    vol = tmp_path / "v"
    vol.mkdir()
    apply_volume_label(vol, Level.parse("s0:c1"), selinux=False)
    p = profile(filesystem=pm.FilesystemSpec(read_only_root=False))
    plan = build_label_plan(p, ME, [VolumeRequest(str(vol), "/conf", "ro")],
                            rootfs=rootfs, landlock_abi=7, selinux_active=False)
    [v] = plan.volumes
    assert v.target == "/etc"
    assert v.host_target == os.path.join(os.path.realpath(rootfs), "etc")
    # the writable root's rule is split around the real mount point
    assert plan.landlock[0].excludes == ("/etc",)
