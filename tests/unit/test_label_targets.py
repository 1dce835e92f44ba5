"""Mount targets are resolved inside the root file system; symlink attacks
from a hostile image are named after the attack (no privileges)."""

from __future__ import annotations

import os

import pytest

from sandbox.errors import SetupError, UsageError
from sandbox.labels.volumes import resolve_target_inside


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "data").mkdir()
    (r / "usr" / "lib").mkdir(parents=True)
    return r


def inside(root, p):
    return os.path.join(os.path.realpath(root), p.lstrip("/"))


def test_plain_target(root):
    assert resolve_target_inside(root, "/data") == inside(root, "/data")
    assert resolve_target_inside(root, "/") == os.path.realpath(root)


def test_volume_target_symlink_to_host_etc_is_resolved_inside_root(root):
    os.symlink("/etc", root / "data" / "conf")
    assert resolve_target_inside(root, "/data/conf") == inside(root, "/etc")


def test_volume_target_relative_symlink_climbing_out_stops_at_root(root):
    os.symlink("../../../../../../etc", root / "data" / "up")
    assert resolve_target_inside(root, "/data/up") == inside(root, "/etc")


def test_volume_target_dotdot_cannot_climb_above_root(root):
    assert resolve_target_inside(root, "/../../../etc") == inside(root, "/etc")
    assert resolve_target_inside(root, "/data/../../..") == os.path.realpath(root)


def test_volume_target_symlinked_parent_to_host_root_stays_inside(root):
    os.symlink("/", root / "hostroot")
    assert resolve_target_inside(root, "/hostroot/etc/shadow") == inside(root, "/etc/shadow")


def test_volume_target_chain_of_symlinks_is_followed_inside(root):
    os.symlink("/b", root / "a")
    os.symlink("usr/../c", root / "b")
    os.symlink("/usr/lib", root / "c")
    assert resolve_target_inside(root, "/a/x") == inside(root, "/usr/lib/x")


def test_volume_target_symlink_loop_is_refused(root):
    os.symlink("/loop2", root / "loop1")
    os.symlink("/loop1", root / "loop2")
    with pytest.raises(SetupError, match="too many symlinks"):
        resolve_target_inside(root, "/loop1/x")


def test_volume_target_missing_then_dotdot_into_symlink_is_still_resolved(root):
    # "/nope/../evil" must not skip the check of "evil" because "nope" is missing
    os.symlink("/etc", root / "evil")
    assert resolve_target_inside(root, "/nope/../evil") == inside(root, "/etc")


def test_volume_target_missing_components_are_kept(root):
    assert resolve_target_inside(root, "/data/new/dir") == inside(root, "/data/new/dir")


def test_volume_target_through_a_file_is_refused(root):
    (root / "etc" / "passwd").write_text("")
    with pytest.raises(SetupError, match="not a folder"):
        resolve_target_inside(root, "/etc/passwd/x")


def test_volume_target_final_symlink_to_host_file_is_resolved_inside(root):
    os.symlink("/etc/passwd", root / "data" / "pw")
    assert resolve_target_inside(root, "/data/pw") == inside(root, "/etc/passwd")


@pytest.mark.parametrize("bad", ["data", "", "relative/x", "/a\0b"])
def test_volume_target_must_be_absolute_and_clean(root, bad):
    with pytest.raises(UsageError):
        resolve_target_inside(root, bad)


def test_result_never_leaves_root_for_a_maze_of_links(root):
    os.symlink("../..", root / "data" / "m1")
    os.symlink("/data/m1/../../..", root / "usr" / "m2")
    os.symlink("/proc/self/root", root / "data" / "magic")
    for t in ["/data/m1/etc", "/usr/m2/etc", "/data/magic/etc", "/data/m1/data/m1/usr/m2"]:
        got = resolve_target_inside(root, t)
        real_root = os.path.realpath(root)
        assert got == real_root or got.startswith(real_root + os.sep), (t, got)


def test_resolve_target_gives_host_and_inside_paths(root):
    from sandbox.labels.volumes import resolve_target
    os.symlink("/usr/lib", root / "data" / "l")
    assert resolve_target(root, "/data/l/x") == (inside(root, "/usr/lib/x"), "/usr/lib/x")
    assert resolve_target(root, "/..") == (os.path.realpath(root), "/")
