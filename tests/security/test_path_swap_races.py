"""A sandbox that can write a shared folder V loops
``renameat2(RENAME_EXCHANGE)`` between ``V/dir`` and ``V/link`` (a symlink to
a host folder H) while root runs `sandbox label set V/dir LEVEL` or writes an
audit report into ``V/dir``. The path is resolved once, to an fd, with no
symlink followed: nothing may land on H (issue 13 item 9, the label and
audit-output cases). Bounded: a fixed number of attempts, not a time."""

from __future__ import annotations

import ctypes
import errno
import os
import signal

import pytest

import helpers
from sandbox import safefs
from sandbox.errors import SandboxError
from sandbox.labels.model import Level
from sandbox.labels.volumes import XATTR, apply_volume_label

ATTEMPTS = 300
RENAME_EXCHANGE = 2


def _swapper(v):
    """Fork a process that swaps V/dir and V/link as fast as it can."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("the C library has no renameat2")
    a, b = os.fsencode(v / "dir"), os.fsencode(v / "link")
    pid = os.fork()
    if pid == 0:
        try:
            while True:
                libc.renameat2(-100, a, -100, b, RENAME_EXCHANGE)
        finally:
            os._exit(0)
    return pid


def _stop(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture
def arena(tmp_path):
    v = tmp_path / "V"
    v.mkdir()
    (v / "dir").mkdir()
    host = tmp_path / "H"
    host.mkdir(mode=0o700)
    (v / "link").symlink_to(host)
    return v, host


def _xattr(p):
    try:
        return os.getxattr(p, XATTR, follow_symlinks=False)
    except OSError as e:
        assert e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM)
        return None


def test_label_set_race_never_labels_host_folder(arena):
    v, host = arena
    level = Level.parse("s0:c7,c8")
    won = refused = 0
    pid = _swapper(v)
    try:
        for i in range(ATTEMPTS):
            try:
                real = apply_volume_label(v / "dir", level, selinux=False)
            except SandboxError as e:
                refused += 1
                assert e.message.startswith(f"volume {v}/dir: "), e.message
                continue
            assert real in (f"{v}/dir", f"{v}/link"), real   # the folder itself, by its name now
            assert _xattr(host) is None, f"host folder labelled at attempt {i}"
            won += 1
    finally:
        _stop(pid)
    assert _xattr(host) is None
    # the swapper was live (some lookups met the symlink and were refused)
    assert won + refused == ATTEMPTS and refused > 0


def test_label_set_cli_race_never_labels_host_folder(arena):
    """The same through the real command, fewer times (a process each)."""
    v, host = arena
    pid = _swapper(v)
    try:
        for _ in range(20):
            r = helpers.run_sandbox(v.parent / "sb", "label", "set", str(v / "dir"), "s0:c7,c8")
            assert r.returncode in (0, 1, 2), r
            assert "Traceback" not in r.stderr
            assert str(host) not in r.stdout
    finally:
        _stop(pid)
    assert _xattr(host) is None


def test_audit_output_race_never_writes_into_host_folder(arena):
    v, host = arena
    refused = 0
    pid = _swapper(v)
    try:
        for i in range(ATTEMPTS):
            try:
                safefs.write_output(v / "dir" / "report.json", f"{i}\n")
            except SandboxError as e:
                refused += 1
                assert e.message.startswith(f"{v}/dir/report.json: "), e.message
            assert os.listdir(host) == [], f"wrote into the host folder at attempt {i}"
    finally:
        _stop(pid)
    assert os.listdir(host) == []
    assert refused > 0      # the swapper was live


def test_label_rm_race_never_unlabels_host_folder(arena):
    from sandbox.labels.volumes import remove_volume_label
    v, host = arena
    os.setxattr(host, XATTR, b"s0:c3,c4")
    pid = _swapper(v)
    try:
        for _ in range(ATTEMPTS):
            try:
                remove_volume_label(v / "dir")
            except SandboxError as e:
                assert e.message.startswith(f"volume {v}/dir: "), e.message
    finally:
        _stop(pid)
    assert _xattr(host) == b"s0:c3,c4"
