"""Label attacks end to end at library level: allocate real leases, label
real volumes, decide, and enforce the grant with Landlock in a forked child."""

from __future__ import annotations

import errno
import json
import os

import pytest

from sandbox.labels.alloc import allocate_level, labels_in_use
from sandbox.labels.model import LabelRefused, Level
from sandbox.labels.volumes import (VolumeGrant, apply_volume_label,
                                    decide_volume, read_volume_label)
from sandbox.paths import Paths
from sandbox.runtime import _kernel
from sandbox.runtime._landlock import LandlockRule, apply_landlock, landlock_abi


@pytest.fixture
def paths(tmp_path):
    return Paths.resolve(tmp_path / "root")


@pytest.fixture
def two(paths):
    a = allocate_level(paths, owner="A")
    b = allocate_level(paths, owner="B")
    yield a, b
    a.release()
    b.release()


def test_volume_labelled_for_one_sandbox_is_refused_in_another(tmp_path, two):
    a, b = two
    vol = tmp_path / "vol-a"
    vol.mkdir()
    apply_volume_label(vol, a.level, selinux=False)
    assert decide_volume(vol, a.level, "rw") == VolumeGrant("rw", a.level)
    for mode in ("ro", "rw"):
        with pytest.raises(LabelRefused) as ei:
            decide_volume(vol, b.level, mode)
        msg = str(ei.value)
        assert str(vol) in msg and str(a.level) in msg and str(b.level) in msg
        assert "\n" not in msg


def test_relabel_cannot_steal_a_running_sandboxes_volume(tmp_path, paths, two):
    a, b = two
    vol = tmp_path / "vol-a"
    vol.mkdir()
    apply_volume_label(vol, a.level, selinux=False)
    held = [h.level for h in labels_in_use(paths) if h.level != b.level]
    with pytest.raises(LabelRefused, match="belongs to a running sandbox"):
        decide_volume(vol, b.level, "rw", relabel="Z", held_by_others=held)
    assert read_volume_label(vol) == a.level


def test_shared_volume_mounts_read_only_and_writing_is_refused(tmp_path, two):
    a, _ = two
    vol = tmp_path / "shared"
    vol.mkdir()
    (vol / "f").write_text("shared")
    apply_volume_label(vol, Level(0), selinux=False)
    with pytest.raises(LabelRefused, match="shared level"):
        decide_volume(vol, a.level, "rw")
    grant = decide_volume(vol, a.level, "ro")
    assert grant.mode == "ro"
    if landlock_abi() < 1:
        pytest.skip("Landlock is not available on this host")
    # Enforce the grant even where the mount would be writable.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            _kernel.prctl(_kernel.PR_SET_NO_NEW_PRIVS, 1)
            apply_landlock([LandlockRule(str(vol), "rx" if grant.mode == "ro" else "rwx")])
            try:
                os.close(os.open(vol / "f", os.O_WRONLY))
                out = "written"
            except OSError as e:
                out = errno.errorcode[e.errno]
        except BaseException as e:  # noqa: BLE001
            out = repr(e)
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    out = json.loads(os.read(r, 4096))
    os.close(r)
    os.waitpid(pid, 0)
    assert out == "EACCES"
    assert (vol / "f").read_text() == "shared"


def test_lower_level_volume_mounts_read_only_in_a_dominating_sandbox(tmp_path, paths):
    with allocate_level(paths, "s0:c10,c11,c12") as high:
        vol = tmp_path / "low"
        vol.mkdir()
        apply_volume_label(vol, Level.parse("s0:c10"), selinux=False)
        assert decide_volume(vol, high.level, "ro").mode == "ro"
        with pytest.raises(LabelRefused, match="writing needs equal levels"):
            decide_volume(vol, high.level, "rw")


def test_unlabelled_volume_is_refused_unless_the_profile_allows_read_only(tmp_path, two):
    a, _ = two
    vol = tmp_path / "plain"
    vol.mkdir()
    with pytest.raises(LabelRefused, match="unlabelled"):
        decide_volume(vol, a.level, "ro")
    assert decide_volume(vol, a.level, "ro", allow_unlabelled_ro=True) == VolumeGrant("ro", None)
    with pytest.raises(LabelRefused, match="unlabelled"):
        decide_volume(vol, a.level, "rw", allow_unlabelled_ro=True)


def test_private_relabel_makes_the_volume_unreadable_by_the_other_sandbox(tmp_path, two):
    a, b = two
    vol = tmp_path / "priv"
    vol.mkdir()
    grant = decide_volume(vol, a.level, "rw", relabel="Z")
    assert grant.relabel_to == a.level
    apply_volume_label(vol, grant.relabel_to, selinux=False)
    with pytest.raises(LabelRefused):
        decide_volume(vol, b.level, "ro")


def test_forged_label_xattr_with_garbage_is_refused_not_trusted(tmp_path, two):
    a, _ = two
    vol = tmp_path / "forged"
    vol.mkdir()
    os.setxattr(vol, "user.sandbox.label", b"s0:c0.c1023\nextra")
    from sandbox.labels.model import LabelError
    with pytest.raises(LabelError):
        decide_volume(vol, a.level, "ro")
