"""Volume labels: the decision table, xattr storage (no privileges)."""

from __future__ import annotations

import os

import pytest

from sandbox.errors import HostSupportError, SetupError, UsageError
from sandbox.labels.model import LabelError, LabelRefused, Level, LevelRange
from sandbox.labels.volumes import (XATTR, VolumeGrant, apply_volume_label,
                                    check_relabel_path, check_volume,
                                    decide_volume, read_volume_label,
                                    remove_volume_label)

L = Level.parse
ME = L("s0:c1,c2")

# (volume label, mode, allow_unlabelled_ro, relabel) -> grant or refusal fragment
TABLE = [
    # equal levels: read-write and read-only
    ("s0:c1,c2", "rw", False, None, VolumeGrant("rw", ME)),
    ("s0:c1,c2", "ro", False, None, VolumeGrant("ro", ME)),
    # dominated: read-only only
    ("s0:c1", "ro", False, None, VolumeGrant("ro", L("s0:c1"))),
    ("s0:c1", "rw", False, None, "writing needs equal levels"),
    # shared s0: read-only for all, never writable
    ("s0", "ro", False, None, VolumeGrant("ro", L("s0"))),
    ("s0", "rw", False, None, "shared level"),
    # another sandbox's pair: refused both ways
    ("s0:c3,c4", "ro", False, None, "not dominated"),
    ("s0:c3,c4", "rw", False, None, "not dominated"),
    ("s0:c1,c3", "ro", False, None, "not dominated"),
    ("s1", "ro", False, None, "not dominated"),
    # unlabelled
    (None, "ro", False, None, "unlabelled volumes are refused"),
    (None, "rw", False, None, "unlabelled volumes are refused"),
    (None, "ro", True, None, VolumeGrant("ro", None)),
    (None, "rw", True, None, "unlabelled volumes are refused"),
    # :Z private: relabel to the sandbox's level, rw
    (None, "rw", False, "Z", VolumeGrant("rw", ME, ME)),
    (None, "ro", False, "Z", VolumeGrant("ro", ME, ME)),
    ("s0:c3,c4", "rw", False, "Z", VolumeGrant("rw", ME, ME)),
    ("s0:c1,c2", "rw", False, "Z", VolumeGrant("rw", ME, None)),
    ("s0", "rw", False, "Z", VolumeGrant("rw", ME, ME)),
    # :z shared: relabel to s0, read-only
    (None, "ro", False, "z", VolumeGrant("ro", L("s0"), L("s0"))),
    ("s0", "ro", False, "z", VolumeGrant("ro", L("s0"), None)),
    (None, "rw", False, "z", "shared volumes are read-only"),
]


@pytest.mark.parametrize("vol, mode, allow, relabel, want", TABLE)
def test_volume_decision_table(vol, mode, allow, relabel, want):
    vlevel = None if vol is None else L(vol)
    if isinstance(want, VolumeGrant):
        assert check_volume(ME, vlevel, mode, allow, relabel, volume="/v") == want
    else:
        with pytest.raises(LabelRefused) as ei:
            check_volume(ME, vlevel, mode, allow, relabel, volume="/v")
        msg = str(ei.value)
        assert want in msg
        assert "\n" not in msg                        # one line
        assert "/v" in msg and str(ME) in msg          # names volume and sandbox
        assert ("unlabelled" in msg) if vol is None else (f"label {vol}" in msg)
        assert ei.value.kind == "label"


def test_refusal_ends_with_a_fix():
    with pytest.raises(LabelRefused) as ei:
        check_volume(ME, None, "rw", volume="/srv/data")
    assert "sandbox label set PATH s0:c1,c2" in str(ei.value)


def test_relabel_refuses_to_take_a_running_sandboxes_volume():
    other = L("s0:c3,c4")
    for relabel, mode in (("Z", "rw"), ("z", "ro")):
        with pytest.raises(LabelRefused, match="belongs to a running sandbox"):
            check_volume(ME, other, mode, relabel=relabel, held_by_others=[other])


def test_relabel_of_a_dominated_running_level_is_allowed():
    low = L("s0:c1")
    assert check_volume(ME, low, "rw", relabel="Z", held_by_others=[low]).relabel_to == ME


def test_range_sandbox_reads_by_high_and_cannot_write():
    r = LevelRange.parse("s0-s0:c0.c1023")
    assert check_volume(r, L("s0:c7,c9"), "ro").mode == "ro"
    with pytest.raises(LabelRefused):
        check_volume(r, L("s0:c0.c1023"), "rw")
    with pytest.raises(LabelRefused, match="level range"):
        check_volume(r, None, "rw", relabel="Z")


def test_sandbox_at_s0_cannot_make_a_private_writable_volume():
    with pytest.raises(LabelRefused, match="without categories"):
        check_volume(L("s0"), None, "rw", relabel="Z")


@pytest.mark.parametrize("mode, relabel", [("rx", None), ("rw", "q")])
def test_bad_mode_or_relabel_is_a_usage_error(mode, relabel):
    with pytest.raises(UsageError):
        check_volume(ME, ME, mode, relabel=relabel)


# -- xattr storage ------------------------------------------------------------

def test_set_then_read_label(tmp_path):
    v = tmp_path / "vol"
    v.mkdir()
    assert read_volume_label(v) is None
    apply_volume_label(v, L("s0:c5,c9"), selinux=False)
    assert os.getxattr(v, XATTR) == b"s0:c5,c9"
    assert read_volume_label(v) == L("s0:c5,c9")
    assert remove_volume_label(v) is True
    assert read_volume_label(v) is None
    assert remove_volume_label(v) is False


def test_label_is_stored_in_canonical_form(tmp_path):
    apply_volume_label(tmp_path, L("s0:c3,c2,c1"), selinux=False)
    assert os.getxattr(tmp_path, XATTR) == b"s0:c1.c3"


def test_malformed_xattr_is_a_label_error_naming_the_path(tmp_path):
    os.setxattr(tmp_path, XATTR, b"s0:c99999")
    with pytest.raises(LabelError) as ei:
        read_volume_label(tmp_path)
    assert str(tmp_path) in ei.value.message and "c99999" in ei.value.message


def test_non_ascii_xattr_is_a_label_error(tmp_path):
    os.setxattr(tmp_path, XATTR, b"\xff\xfe")
    with pytest.raises(LabelError, match="not ASCII"):
        read_volume_label(tmp_path)


def test_missing_volume_is_a_setup_error(tmp_path):
    with pytest.raises(SetupError, match="no such file"):
        read_volume_label(tmp_path / "absent")
    with pytest.raises(SetupError, match="no such file"):
        apply_volume_label(tmp_path / "absent", ME, selinux=False)


@pytest.mark.parametrize("path", ["/", "/etc", "/usr", "/home", "/etc/../usr"])
def test_relabelling_host_system_folders_is_refused(path):
    with pytest.raises(LabelRefused, match="host system folder"):
        check_relabel_path(path)
    with pytest.raises(LabelRefused):
        apply_volume_label(path, ME, selinux=False)


def test_decide_volume_reads_the_label_and_names_the_source(tmp_path):
    apply_volume_label(tmp_path, L("s0:c3,c4"), selinux=False)
    with pytest.raises(LabelRefused) as ei:
        decide_volume(tmp_path, ME, "ro")
    assert str(tmp_path) in str(ei.value)
    assert decide_volume(tmp_path, L("s0:c3,c4"), "rw") == VolumeGrant("rw", L("s0:c3,c4"))


def test_user_xattrs_unsupported_is_a_host_support_error(tmp_path, monkeypatch):
    import errno

    def nosup(*a, **k):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")
    monkeypatch.setattr(os, "setxattr", nosup)
    with pytest.raises(HostSupportError, match="no user extended attributes"):
        apply_volume_label(tmp_path, ME, selinux=False)


def test_selinux_labels_the_whole_tree_when_active(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    os.symlink("/etc/passwd", tmp_path / "d" / "l")
    calls = []
    real = os.setxattr

    def record(p, name, value, *a, **k):
        if name == "security.selinux":
            calls.append((os.fspath(p), value, k.get("follow_symlinks", True)))
            return
        return real(p, name, value, *a, **k)
    monkeypatch.setattr(os, "setxattr", record)
    apply_volume_label(tmp_path, ME, selinux=True)
    ctx = b"system_u:object_r:container_file_t:s0:c1,c2"
    # the top through the volume's one fd (/proc/self/fd/N), everything
    # below it by name under that fd, never through a name swapped later
    fdp = calls[0][0]
    assert fdp.startswith("/proc/self/fd/")
    assert {c[0][len(fdp):] for c in calls} == {"", "/d", "/d/f", "/d/l"}
    assert all(v == ctx for _, v, _ in calls)
    # the symlink itself is labelled, never its host target
    assert all(f is False for p, _, f in calls if p != fdp)
