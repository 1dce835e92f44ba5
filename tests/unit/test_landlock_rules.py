"""Landlock rules as plan values, rights per ABI, and host support (pure or
read-only; nothing is restricted here)."""

from __future__ import annotations

import os

import pytest

from sandbox.errors import HostSupportError, UsageError
from sandbox.runtime import _landlock as ll
from sandbox.runtime._landlock import (ACCESS_FS, FILE_RIGHTS, LandlockRule,
                                       build_landlock_rules, handled_access_fs)


def test_rules_for_a_read_only_root():
    rules = build_landlock_rules(True, [("/data", "ro"), ("/work", "rw")], ["/tmp"])
    assert [str(r) for r in rules] == [
        "rx /", "rw /proc", "dev /dev", "ro /sys", "rw /tmp", "rx /data", "rwx /work"]
    assert all(r.excludes == () for r in rules)


def test_writable_root_excludes_read_only_volumes_but_not_sys():
    # /sys is a read-only mount; a rule of its own would cut "/" out of the
    # create rights and nothing could be created in the root
    rules = build_landlock_rules(False, [("/data/ro", "ro"), ("/work", "rw")], ["/tmp"])
    root = rules[0]
    assert (root.path, root.access) == ("/", "rwx")
    assert root.excludes == ("/data/ro",)
    assert "/sys" not in {r.path for r in rules}


def test_nested_read_only_volume_inside_writable_volume_is_excluded():
    rules = build_landlock_rules(True, [("/w", "rw"), ("/w/in", "ro")])
    by = {r.path: r for r in rules}
    assert by["/w"].excludes == ("/w/in",)
    assert by["/"].excludes == ()


def test_no_exec_volumes():
    rules = build_landlock_rules(True, [("/d", "ro"), ("/e", "rw")], exec_volumes=False)
    assert [r.access for r in rules[-2:]] == ["ro", "rw"]


def test_optional_kernel_file_systems():
    rules = build_landlock_rules(True, proc=False, dev=False, sys=False)
    assert [str(r) for r in rules] == ["rx /"]


@pytest.mark.parametrize("kwargs", [
    {"volumes": [("data", "ro")]},
    {"volumes": [("/d", "rx")]},
    {"tmpfs": ["tmp"]},
    {"volumes": [("/tmp", "rw")], "tmpfs": ["/tmp"]},
    {"volumes": [("/proc", "ro")]},
])
def test_bad_rules_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        build_landlock_rules(True, **kwargs)


def test_rule_values_are_frozen_and_printable():
    r = LandlockRule("/", "rwx", ("/d",))
    with pytest.raises(Exception):
        r.path = "/x"
    assert r.to_dict() == {"path": "/", "access": "rwx", "excludes": ["/d"]}
    with pytest.raises(UsageError):
        LandlockRule("/", "rwz")


def test_handled_rights_per_abi():
    assert handled_access_fs(0) == 0
    v1 = handled_access_fs(1)
    assert v1 == (1 << 13) - 1
    assert handled_access_fs(2) == v1 | ACCESS_FS["REFER"]
    assert handled_access_fs(3) == handled_access_fs(2) | ACCESS_FS["TRUNCATE"]
    assert handled_access_fs(4) == handled_access_fs(3)
    assert handled_access_fs(5) == handled_access_fs(4) | ACCESS_FS["IOCTL_DEV"]
    assert handled_access_fs(7) == handled_access_fs(5)


def test_access_keywords():
    A = ACCESS_FS
    assert ll.ACCESS["ro"] == A["READ_FILE"] | A["READ_DIR"]
    assert not ll.ACCESS["rw"] & A["EXECUTE"]
    assert ll.ACCESS["rwx"] & A["TRUNCATE"] and ll.ACCESS["rwx"] & A["REFER"]
    for k in ll.ACCESS:     # device nodes are never created
        assert not ll.ACCESS[k] & (A["MAKE_CHAR"] | A["MAKE_BLOCK"])
    assert ll.ACCESS["dev"] & A["IOCTL_DEV"]
    assert FILE_RIGHTS & A["READ_DIR"] == 0


def test_expand_splits_a_rule_around_its_excludes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ro").mkdir()
    (tmp_path / "a" / "sib").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "f").write_text("")
    os.symlink("/etc", tmp_path / "link")
    top = str(tmp_path)
    rules = [LandlockRule(top, "rwx", (f"{top}/a/ro",)), LandlockRule(f"{top}/a/ro", "rx")]
    got = dict(ll._expand(rules, handled_access_fs(7)))
    common = ll.ACCESS["rx"]
    assert got[top] == common and got[f"{top}/a"] == common
    assert got[f"{top}/a/sib"] == got[f"{top}/b"] == got[f"{top}/f"] == ll.ACCESS["rwx"]
    assert got[f"{top}/a/ro"] == ll.ACCESS["rx"]
    assert f"{top}/link" not in got


def test_landlock_abi_on_this_host():
    abi = ll.landlock_abi()
    assert abi >= 0
    if os.path.exists("/sys/kernel/security/lsm") and "landlock" in open(
            "/sys/kernel/security/lsm").read():
        assert abi >= 1


def test_missing_landlock_message_says_how_to_enable(monkeypatch):
    import errno
    monkeypatch.setattr(ll, "_abi_cache", (0, errno.EOPNOTSUPP))
    abi, err = ll.landlock_support()
    assert abi == 0 and isinstance(err, HostSupportError)
    assert "lsm=" in err.hint and "optional" in err.hint
    with pytest.raises(HostSupportError):
        ll.require_landlock(optional=False)
    assert ll.require_landlock(optional=True) == 0
    monkeypatch.setattr(ll, "_abi_cache", (0, errno.ENOSYS))
    assert "CONFIG_SECURITY_LANDLOCK" in ll.landlock_support()[1].message
    with pytest.raises(HostSupportError):
        ll.apply_landlock([LandlockRule("/", "ro")])


def test_supported_landlock_has_no_error(monkeypatch):
    monkeypatch.setattr(ll, "_abi_cache", (7, 0))
    assert ll.landlock_support() == (7, None)
    assert ll.require_landlock(optional=False) == 7
