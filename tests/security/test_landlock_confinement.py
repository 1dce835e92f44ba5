"""Landlock from inside: what the mounts alone would allow is denied.

Each test applies Landlock in a forked child (it is irreversible for the
process), runs its probes there and sends the errno of each back through a
pipe. The child sets no_new_privs first, as the runtime does.
"""

from __future__ import annotations

import errno
import json
import os
import socket

import pytest

from sandbox.runtime import _kernel
from sandbox.runtime._landlock import (LandlockRule, apply_landlock,
                                       build_landlock_rules, landlock_abi)

ABI = landlock_abi()
pytestmark = pytest.mark.skipif(ABI < 1, reason="Landlock is not available on this host")

OK = 0


def in_child(rules, probes):
    """Apply ``rules`` in a forked child, run each probe (a callable), and
    return {name: 0 or errno name}."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            _kernel.prctl(_kernel.PR_SET_NO_NEW_PRIVS, 1)
            apply_landlock(rules)
            out = {}
            for name, fn in probes.items():
                try:
                    fn()
                    out[name] = OK
                except OSError as e:
                    out[name] = errno.errorcode.get(e.errno, str(e.errno))
            data = json.dumps(out).encode()
        except BaseException as e:  # noqa: BLE001 - report anything
            data = json.dumps({"__error__": repr(e)}).encode()
        os.write(w, data)
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    res = json.loads(b"".join(chunks) or b"{}")
    assert "__error__" not in res, res["__error__"]
    return res


@pytest.fixture
def tree(tmp_path):
    a, b, c = tmp_path / "A", tmp_path / "B", tmp_path / "C"
    for d in (a, b, c):
        d.mkdir()
    (a / "f").write_text("in A")
    (b / "f").write_text("in B")
    (c / "secret").write_text("outside")
    return a, b, c


def _write_new(path):
    def probe():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
    return probe


def _open(path, flags):
    def probe():
        os.close(os.open(path, flags))
    return probe


def test_write_into_read_only_grant_is_denied_even_through_a_new_fd(tree):
    a, b, _ = tree
    rules = [LandlockRule(str(a), "ro"), LandlockRule(str(b), "rw")]

    def reopen_read_fd_for_writing():
        fd = os.open(a / "f", os.O_RDONLY)
        try:
            os.close(os.open(f"/proc/self/fd/{fd}", os.O_WRONLY))
        finally:
            os.close(fd)

    res = in_child(rules, {
        "read": _open(a / "f", os.O_RDONLY),
        "create": _write_new(a / "new"),
        "open_wronly": _open(a / "f", os.O_WRONLY),
        "open_rdwr": _open(a / "f", os.O_RDWR),
        "open_append": _open(a / "f", os.O_WRONLY | os.O_APPEND),
        "open_trunc": _open(a / "f", os.O_WRONLY | os.O_TRUNC),
        "reopen_proc_fd": reopen_read_fd_for_writing,
        "mkdir": lambda: os.mkdir(a / "d"),
        "unlink": lambda: os.unlink(a / "f"),
        "symlink": lambda: os.symlink("/etc/passwd", a / "l"),
        "mkfifo": lambda: os.mkfifo(a / "p"),
    })
    assert res.pop("read") == OK
    assert res.pop("reopen_proc_fd") in ("EACCES", "ENOENT")  # /proc not granted here
    assert res == {k: "EACCES" for k in res}, res
    assert (a / "f").read_text() == "in A"


def test_path_outside_every_grant_cannot_be_read(tree):
    a, b, c = tree
    rules = [LandlockRule(str(a), "ro"), LandlockRule(str(b), "rw")]
    res = in_child(rules, {
        "read_secret": _open(c / "secret", os.O_RDONLY),
        "list_c": lambda: os.listdir(c),
        "read_host_passwd": _open("/etc/passwd", os.O_RDONLY),
        "write_c": _write_new(c / "x"),
    })
    assert res == {k: "EACCES" for k in res}, res


def test_symlink_in_a_grant_pointing_outside_cannot_be_followed(tree):
    a, _, c = tree
    os.symlink(c / "secret", a / "escape")
    res = in_child([LandlockRule(str(a), "ro")], {
        "follow": _open(a / "escape", os.O_RDONLY),
    })
    assert res == {"follow": "EACCES"}


def test_read_write_grant_is_writable(tree):
    a, b, _ = tree
    rules = [LandlockRule(str(a), "ro"), LandlockRule(str(b), "rw")]

    def write_and_truncate():
        with open(b / "new", "w") as f:
            f.write("hello")
        os.truncate(b / "new", 2)
        os.mkdir(b / "d")
        os.rename(b / "new", b / "d" / "moved")
        os.unlink(b / "d" / "moved")
        os.rmdir(b / "d")

    res = in_child(rules, {"rw": write_and_truncate})
    assert res == {"rw": OK}


@pytest.mark.skipif(ABI < 3, reason="LANDLOCK_ACCESS_FS_TRUNCATE needs ABI 3")
def test_truncate_of_a_file_in_a_read_only_grant_is_refused(tree):
    a, b, _ = tree
    res = in_child([LandlockRule(str(a), "ro"), LandlockRule(str(b), "rw")], {
        "truncate_a": lambda: os.truncate(a / "f", 0),
        "truncate_b": lambda: os.truncate(b / "f", 0),
    })
    assert res == {"truncate_a": "EACCES", "truncate_b": OK}
    assert (a / "f").read_text() == "in A"


@pytest.mark.skipif(ABI < 2, reason="LANDLOCK_ACCESS_FS_REFER needs ABI 2")
def test_rename_out_of_a_read_only_grant_into_a_writable_one_is_refused(tree):
    a, b, _ = tree
    res = in_child([LandlockRule(str(a), "ro"), LandlockRule(str(b), "rw")], {
        "rename_a_to_b": lambda: os.rename(a / "f", b / "stolen"),
        "link_a_to_b": lambda: os.link(a / "f", b / "linked"),
    })
    assert set(res.values()) <= {"EACCES", "EXDEV"} and OK not in res.values(), res
    assert (a / "f").exists()


def test_read_only_volume_under_a_writable_root_is_not_writable(tmp_path):
    """The rule for a writable parent is split around a read-only volume
    (Landlock rights only add up down the tree)."""
    root = tmp_path
    (root / "vol").mkdir()
    (root / "vol" / "f").write_text("ro data")
    (root / "other").mkdir()
    top = str(root)
    rules = [LandlockRule(top, "rwx", (f"{top}/vol",)), LandlockRule(f"{top}/vol", "rx")]
    res = in_child(rules, {
        "write_vol": _open(root / "vol" / "f", os.O_WRONLY),
        "create_in_vol": _write_new(root / "vol" / "new"),
        "read_vol": _open(root / "vol" / "f", os.O_RDONLY),
        "write_other": _write_new(root / "other" / "new"),
    })
    assert res == {"write_vol": "EACCES", "create_in_vol": "EACCES",
                   "read_vol": OK, "write_other": OK}


def test_built_rules_confine_a_fake_root(tmp_path):
    """build_landlock_rules' output, applied with the paths re-rooted to a
    temporary folder (no pivot_root here): ro volume, rw volume, tmpfs."""
    base = tmp_path
    for d in ("data", "work", "tmp", "usr"):
        (base / d).mkdir()
    (base / "data" / "f").write_text("x")
    planned = build_landlock_rules(True, [("/data", "ro"), ("/work", "rw")], ["/tmp"],
                                   proc=False, dev=False, sys=False)
    rules = [LandlockRule(str(base) + (r.path if r.path != "/" else ""), r.access,
                          tuple(str(base) + e for e in r.excludes)) for r in planned]
    res = in_child(rules, {
        "write_data": _open(base / "data" / "f", os.O_WRONLY),
        "write_usr": _write_new(base / "usr" / "x"),
        "write_work": _write_new(base / "work" / "x"),
        "write_tmp": _write_new(base / "tmp" / "x"),
        "read_data": _open(base / "data" / "f", os.O_RDONLY),
        "read_host": _open("/etc/hostname", os.O_RDONLY),
    })
    assert res == {"write_data": "EACCES", "write_usr": "EACCES", "write_work": OK,
                   "write_tmp": OK, "read_data": OK, "read_host": "EACCES"}


def test_missing_granted_path_is_skipped_not_widened(tree):
    a, _, c = tree
    res = in_child([LandlockRule(str(a), "ro"), LandlockRule(str(c / "absent"), "rw")], {
        "write_c": _write_new(c / "x"),
        "read_a": _open(a / "f", os.O_RDONLY),
    })
    assert res == {"write_c": "EACCES", "read_a": OK}


@pytest.mark.skipif(ABI < 6, reason="Landlock scoping needs ABI 6")
def test_abstract_unix_socket_of_the_host_cannot_be_reached(tree):
    a, _, _ = tree
    name = f"\0sandbox-test-{os.getpid()}"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(name)
    srv.listen(1)
    try:
        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(name)
            finally:
                s.close()
        res = in_child([LandlockRule(str(a), "ro")], {"connect": connect})
    finally:
        srv.close()
    assert res == {"connect": "EPERM"}


@pytest.mark.skipif(ABI < 6, reason="Landlock scoping needs ABI 6")
def test_signal_to_a_process_outside_the_sandbox_is_refused(tree):
    a, _, _ = tree
    parent = os.getpid()
    res = in_child([LandlockRule(str(a), "ro")], {
        "kill_parent": lambda: os.kill(parent, 0),
        "kill_self": lambda: os.kill(os.getpid(), 0),
    })
    assert res == {"kill_parent": "EPERM", "kill_self": OK}
