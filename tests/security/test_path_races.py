"""Caller-given paths resolved once, to an fd (issue 13 item 9).

A sandbox that can write a shared folder ``V`` loops
``renameat2(RENAME_EXCHANGE)`` between ``V/dir`` (or ``V/rootfs``) and
``V/link``, a symbolic link to a host folder ``H`` (or to ``/``), while
the operator launches sandboxes naming ``V/dir``. Each caller-given path
is opened once, without following symbolic links past what the caller
typed (openat2 with RESOLVE_NO_SYMLINKS), labels are decided and written
on that fd and the runtime mounts that very fd: a launch either gets the
real ``V/dir`` or is refused (the name was a link when it was opened);
it never gets ``H``.

Each race runs `ATTEMPTS` launches through the library (no interpreter
start per launch, so the suite's budget holds) against a swapping
process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import helpers
from sandbox import Sandbox
from sandbox.errors import SandboxError, UsageError

pytestmark = [pytest.mark.skipif(not helpers.IS_ROOT, reason="needs root (CI runs as root)"),
              pytest.mark.filterwarnings("ignore")]

ATTEMPTS = 200

#: the swapping "sandbox": exchanges the two names for a short moment at
#: random times, so that most launches get past their first look-up and
#: the swap lands in the later windows (labels, relabel, the child's mount)
SWAPPER = r"""
import ctypes, os, random, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.fsencode(x) for x in sys.argv[1:3])
RENAME_EXCHANGE = 2
print("ready", flush=True)
while True:
    libc.renameat2(-100, a, -100, b, RENAME_EXCHANGE)
    for _ in range(random.randrange(50, 2000)):
        pass
    libc.renameat2(-100, a, -100, b, RENAME_EXCHANGE)
    time.sleep(random.uniform(0, 0.004))
"""


@pytest.fixture
def shared():
    """``V`` with ``V/dir`` (a folder) and ``H`` (a host folder, marked)."""
    v = helpers.world_dir("race-v-")
    h = helpers.world_dir("race-h-")
    (v / "dir").mkdir(mode=0o755)
    (v / "dir" / "IN_DIR").write_text("dir\n")
    (h / "IS_HOST").write_text("host\n")
    yield v, h
    subprocess.run(["rm", "-rf", str(v), str(h)])


class Swapper:
    def __init__(self, a, b):
        self.p = subprocess.Popen([sys.executable, "-c", SWAPPER, str(a), str(b)],
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def stop(self):
        self.p.kill()
        self.p.wait()


def _race(box_for, argv, attempts=ATTEMPTS):
    """(launches that ran, refusals, wins) over ``attempts`` launches."""
    ran = refused = won = 0
    for _ in range(attempts):
        try:
            status = box_for().run(argv).status
        except (UsageError, SandboxError):
            refused += 1
            continue
        ran += 1
        if status == 7:
            won += 1
    print(f"[race] {attempts} attempts: {ran} ran, {refused} refused, {won} won")
    return ran, refused, won


def _restore(v, name):
    """After the swapper stopped: ``V/name`` the folder again."""
    if (v / name).is_symlink():
        os.rename(v / name, v / "tmp")
        os.rename(v / "link", v / name)
        os.rename(v / "tmp", v / "link")


def test_volume_source_exchanged_with_a_link_to_a_host_folder_never_mounts_it(shared, tmp_path):
    v, h = shared
    os.symlink(h, v / "link")
    root = tmp_path / "state"
    sw = Swapper(v / "dir", v / "link")
    try:
        ran, refused, won = _race(
            lambda: Sandbox("default", root=root, audit=False, volumes=[f"{v}/dir:/x:ro"]),
            ["/bin/sh", "-c", "test -e /x/IS_HOST && exit 7; test -e /x/IN_DIR"])
    finally:
        sw.stop()
    assert won == 0, f"{won} of {ATTEMPTS} launches mounted the host folder"
    assert ran + refused == ATTEMPTS and ran > 0


def test_rootfs_exchanged_with_a_link_to_host_root_never_becomes_the_root(shared, tmp_path):
    v, _h = shared
    helpers.make_busybox_root(v / "rootfs")
    (v / "rootfs" / "IN_ROOTFS").write_text("x\n")
    os.symlink("/", v / "link")
    root = tmp_path / "state"
    sw = Swapper(v / "rootfs", v / "link")
    try:
        ran, refused, won = _race(
            lambda: Sandbox("default", root=root, audit=False, rootfs=f"{v}/rootfs"),
            ["/bin/sh", "-c", "test -e /IN_ROOTFS || exit 7"])
    finally:
        sw.stop()
    assert won == 0, f"{won} of {ATTEMPTS} launches ran on the host's /"
    assert ran + refused == ATTEMPTS and ran > 0


def test_relabel_of_a_volume_exchanged_with_a_link_never_labels_the_host_folder(shared,
                                                                              tmp_path):
    v, h = shared
    os.symlink(h, v / "link")
    root = tmp_path / "state"
    sw = Swapper(v / "dir", v / "link")
    try:
        ran, refused, _won = _race(
            lambda: Sandbox("default", root=root, audit=False, volumes=[f"{v}/dir:/x:rw,Z"]),
            ["/bin/true"])
    finally:
        sw.stop()
    assert "user.sandbox.label" not in os.listxattr(h), "the host folder was relabelled"
    assert ran + refused == ATTEMPTS and ran > 0
    _restore(v, "dir")
    assert "user.sandbox.label" in os.listxattr(v / "dir")


def test_volume_source_given_through_a_symlink_is_refused(shared, tmp_path):
    v, h = shared
    os.symlink(h, v / "link")
    with pytest.raises(UsageError, match="symbolic link"):
        Sandbox("default", root=tmp_path / "s", audit=False,
                volumes=[f"{v}/link:/x:ro"]).run(["/bin/true"])


@pytest.mark.parametrize("path", ["/", "/usr", "/etc"])
def test_rootfs_that_is_host_root_or_a_system_folder_is_refused(tmp_path, path):
    with pytest.raises(UsageError, match="system folder|host's root"):
        Sandbox("default", root=tmp_path / "s", audit=False, rootfs=path).run(["/bin/true"])


def test_launch_record_names_device_and_inode_of_the_volume_and_root(shared, tmp_path):
    v, _h = shared
    helpers.make_busybox_root(v / "rootfs")
    root = tmp_path / "state"
    r = Sandbox("default", root=root, rootfs=f"{v}/rootfs",
                volumes=[f"{v}/dir:/x:ro"]).run(["/bin/true"])
    assert r.status == 0
    from sandbox.audit import AuditLog
    from sandbox.paths import Paths
    recs = [x for x in AuditLog(Paths.resolve(root)).records() if x.kind == "launch"]
    d = recs[-1].data
    st_v, st_r = os.stat(v / "dir"), os.stat(v / "rootfs")
    assert (d["volumes"][0]["device"], d["volumes"][0]["inode"]) == (st_v.st_dev, st_v.st_ino)
    assert (d["root"]["device"], d["root"]["inode"]) == (st_r.st_dev, st_r.st_ino)
