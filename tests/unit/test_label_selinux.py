"""SELinux path: what would be written (pure) and detection (this host has
no SELinux)."""

from __future__ import annotations

import os

import pytest

from sandbox.errors import HostSupportError
from sandbox.labels.model import Context, LabelError, Level, LevelRange
from sandbox.labels.selinux import (apply_exec_context, build_exec_context,
                                    build_file_context,
                                    build_mount_context_option,
                                    build_selinux_plan, selinux_active,
                                    selinux_enforcing)

LVL = Level.parse("s0:c1,c2")


def test_exec_context():
    ctx = build_exec_context("system_u", "system_r", "sandbox_t", LVL)
    assert str(ctx) == "system_u:system_r:sandbox_t:s0:c1,c2"
    assert Context.parse(str(ctx)) == ctx


def test_exec_context_with_a_range():
    ctx = build_exec_context("system_u", "system_r", "spc_t", LevelRange.parse("s0-s0:c0.c1023"))
    assert str(ctx) == "system_u:system_r:spc_t:s0-s0:c0.c1023"


def test_exec_context_refuses_a_bad_type():
    with pytest.raises(LabelError, match="bad type"):
        build_exec_context("system_u", "system_r", "x;rm -rf", LVL)


def test_file_and_mount_context():
    assert build_file_context(LVL) == "system_u:object_r:container_file_t:s0:c1,c2"
    # quoted: the commas of the level must not split the mount options
    assert build_mount_context_option(LVL) == \
        'context="system_u:object_r:container_file_t:s0:c1,c2"'
    assert build_mount_context_option(Level.parse("s0:c0.c5"), type_="sandbox_file_t") == \
        'context="system_u:object_r:sandbox_file_t:s0:c0.c5"'


def test_plan_when_active():
    p = build_selinux_plan("system_u", "system_r", "container_t", LVL, active=True)
    assert p.active
    assert p.exec_context == "system_u:system_r:container_t:s0:c1,c2"
    assert p.mount_option == 'context="system_u:object_r:container_file_t:s0:c1,c2"'
    assert p.to_dict()["exec_context"] == p.exec_context


def test_plan_when_inactive_applies_nothing():
    p = build_selinux_plan("system_u", "system_r", "container_t", LVL, active=False)
    assert (p.active, p.exec_context, p.mount_option) == (False, None, None)


def test_detection_follows_the_enforce_file(tmp_path):
    assert not selinux_active(str(tmp_path))
    assert selinux_enforcing(str(tmp_path)) is None
    (tmp_path / "enforce").write_text("1")
    assert selinux_active(str(tmp_path))
    assert selinux_enforcing(str(tmp_path)) is True
    (tmp_path / "enforce").write_text("0")
    assert selinux_enforcing(str(tmp_path)) is False


def test_this_host_detection_matches_selinuxfs():
    assert selinux_active() == os.path.exists("/sys/fs/selinux/enforce")


@pytest.mark.skipif(os.path.exists("/sys/fs/selinux/enforce"), reason="SELinux is active")
def test_exec_label_without_selinux_is_a_host_support_error():
    with pytest.raises(HostSupportError) as ei:
        apply_exec_context("system_u:system_r:container_t:s0:c1,c2")
    assert "selinux" in str(ei.value).lower()


def test_exec_label_is_written_as_is(tmp_path):
    attr = tmp_path / "exec"
    attr.write_text("")
    apply_exec_context("system_u:system_r:container_t:s0:c1,c2", attr=str(attr))
    assert attr.read_text() == "system_u:system_r:container_t:s0:c1,c2"
