"""The one door to the kernel: thin, errno-preserving ctypes wrappers.

Everything in `sandbox` that needs a system call Python 3.11 does not offer
(unshare, setns, mount, pivot_root, seccomp, Landlock, capabilities' ambient
set, close_range) calls it through here. Each wrapper raises ``OSError`` with
the real errno and the call's name, so the launch step that failed can be
reported exactly. Nothing here decides policy; `child` and `spawn` do.

Syscall numbers are per architecture (see ``_NR``); landlock and close_range
use the generic numbers shared by x86_64 and aarch64.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# <linux/sched.h>
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = {
    "user": CLONE_NEWUSER, "mount": CLONE_NEWNS, "pid": CLONE_NEWPID,
    "net": CLONE_NEWNET, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC,
    "cgroup": CLONE_NEWCGROUP,
}
#: /proc/<pid>/ns/<file> for each namespace, for setns and comparisons.
NAMESPACE_FILES = {"user": "user", "mount": "mnt", "pid": "pid", "net": "net",
                   "uts": "uts", "ipc": "ipc", "cgroup": "cgroup"}

# <linux/mount.h>
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

_NR = {
    "x86_64": {"pivot_root": 155, "close_range": 436, "landlock_create_ruleset": 444,
               "landlock_add_rule": 445, "landlock_restrict_self": 446,
               "open_tree": 428, "move_mount": 429, "mount_setattr": 442, "openat2": 437,
               "execveat": 322},
    "aarch64": {"pivot_root": 41, "close_range": 436, "landlock_create_ruleset": 444,
                "landlock_add_rule": 445, "landlock_restrict_self": 446,
                "open_tree": 428, "move_mount": 429, "mount_setattr": 442, "openat2": 437,
                "execveat": 281},
}[os.uname().machine]

# <linux/mount.h>: the new mount API
OPEN_TREE_CLONE = 1
AT_EMPTY_PATH = 0x1000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x100000

# <linux/openat2.h>: how a path may be resolved
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10          # every path (and link) resolved as if dirfd were /
AT_FDCWD = -100


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s: str | bytes | None):
    if s is None:
        return None
    return s if isinstance(s, bytes) else os.fsencode(s)


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) on an open /proc/<pid>/ns/* file descriptor."""
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags),
                       _b(data)), f"mount {target}")


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2); glibc has no wrapper."""
    _check(_libc.syscall(ctypes.c_long(_NR["pivot_root"]), _b(new_root), _b(put_old)),
           "pivot_root")


def sethostname(name: str) -> None:
    """sethostname(2), in the sandbox's UTS namespace."""
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) with integer arguments."""
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), f"prctl({option})")


def clear_ambient_caps() -> None:
    """Empty the ambient set (PR_CAP_AMBIENT_CLEAR_ALL); python-prctl has no call for it."""
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def close_range(first: int, last: int = 0xFFFFFFFF) -> None:
    """close_range(2): close every fd in [first, last]."""
    if first > last:
        return
    _check(_libc.syscall(ctypes.c_long(_NR["close_range"]), ctypes.c_uint(first),
                         ctypes.c_uint(last), ctypes.c_uint(0)), "close_range")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_set_filter(bpf: bytes) -> None:
    """Load a classic-BPF seccomp program (``struct sock_filter[]`` as bytes,
    8 bytes an instruction) with prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER).

    The caller must already have no_new_privs set, or CAP_SYS_ADMIN.
    """
    if not bpf or len(bpf) % 8:
        raise ValueError("seccomp program must be a non-empty multiple of 8 bytes")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    _check(_libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                       ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           "seccomp")


def landlock_create_ruleset(attr: bytes | None, flags: int = 0) -> int:
    """landlock_create_ruleset(2). With ``attr`` None and flags=1
    (LANDLOCK_CREATE_RULESET_VERSION) returns the ABI version."""
    if attr is None:
        return _check(_libc.syscall(ctypes.c_long(_NR["landlock_create_ruleset"]), None,
                                    ctypes.c_size_t(0), ctypes.c_uint(flags)),
                      "landlock_create_ruleset")
    buf = ctypes.create_string_buffer(attr, len(attr))
    return _check(_libc.syscall(ctypes.c_long(_NR["landlock_create_ruleset"]), buf,
                                ctypes.c_size_t(len(attr)), ctypes.c_uint(flags)),
                  "landlock_create_ruleset")


def landlock_add_rule(ruleset_fd: int, rule_type: int, rule_attr: bytes) -> None:
    """landlock_add_rule(2); ``rule_attr`` is the packed rule struct."""
    buf = ctypes.create_string_buffer(rule_attr, len(rule_attr))
    _check(_libc.syscall(ctypes.c_long(_NR["landlock_add_rule"]), ctypes.c_int(ruleset_fd),
                         ctypes.c_int(rule_type), buf, ctypes.c_uint(0)), "landlock_add_rule")


def landlock_restrict_self(ruleset_fd: int) -> None:
    """landlock_restrict_self(2)."""
    _check(_libc.syscall(ctypes.c_long(_NR["landlock_restrict_self"]), ctypes.c_int(ruleset_fd),
                         ctypes.c_uint(0)), "landlock_restrict_self")


def openat2(path: str, flags: int, resolve: int, *, dirfd: int = AT_FDCWD,
            mode: int = 0) -> int:
    """openat2(2): open ``path`` with the ``RESOLVE_*`` restrictions in
    ``resolve`` (e.g. no symbolic link anywhere in it); an fd."""
    import struct
    how = ctypes.create_string_buffer(struct.pack("QQQ", flags, mode, resolve), 24)
    return _check(_libc.syscall(ctypes.c_long(_NR["openat2"]), ctypes.c_int(dirfd), _b(path),
                                how, ctypes.c_size_t(24)), f"openat2 {path}")


def open_tree(path: str, flags: int = OPEN_TREE_CLONE | os.O_CLOEXEC) -> int:
    """open_tree(2): a detached copy of the mount at ``path`` (an fd)."""
    return _check(_libc.syscall(ctypes.c_long(_NR["open_tree"]), ctypes.c_int(-100),
                                _b(path), ctypes.c_uint(flags)), "open_tree")


def mount_setattr_idmap(fd: int, userns_fd: int, extra: int = 0) -> None:
    """mount_setattr(2) on a detached mount ``fd``: id-map it through the
    user namespace ``userns_fd`` and add the ``MOUNT_ATTR_*`` bits ``extra``."""
    import struct
    attr = ctypes.create_string_buffer(
        struct.pack("QQQQ", MOUNT_ATTR_IDMAP | extra, 0, 0, userns_fd), 32)
    _check(_libc.syscall(ctypes.c_long(_NR["mount_setattr"]), ctypes.c_int(fd), b"",
                         ctypes.c_uint(AT_EMPTY_PATH), attr, ctypes.c_size_t(32)),
           "mount_setattr")


def move_mount(fd: int, target: str) -> None:
    """move_mount(2): attach the detached mount ``fd`` at ``target``."""
    _check(_libc.syscall(ctypes.c_long(_NR["move_mount"]), ctypes.c_int(fd), b"",
                         ctypes.c_int(-100), _b(target),
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), "move_mount")


def execveat(fd: int, argv: list[str], env: dict[str, str]) -> None:
    """execveat(2) of the file open as ``fd`` (O_PATH is enough), with
    AT_EMPTY_PATH: it needs no path, so it works after pivot_root and
    without /proc. Returns only on failure (raises OSError)."""
    def strv(items):
        arr = (ctypes.c_char_p * (len(items) + 1))()
        arr[:-1] = [os.fsencode(x) for x in items]
        arr[-1] = None
        return arr
    _check(_libc.syscall(ctypes.c_long(_NR["execveat"]), ctypes.c_int(fd), b"",
                         strv(argv), strv([f"{k}={v}" for k, v in env.items()]),
                         ctypes.c_int(AT_EMPTY_PATH)), "execveat")


PR_SET_NAME = 15


def set_cmdline(title: str) -> None:
    """Make /proc/self/cmdline read ``title`` and /proc/self/comm its first
    15 bytes, by overwriting the process's own argument area in place.

    The area's bounds come from /proc/self/stat (arg_start, arg_end: fields
    48 and 49, proc(5)), so nothing outside it is touched, whatever the
    length of the original command line. Only for a forked child: the
    interpreter keeps its own copies of argv.
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])   # fields 48, 49 (1-based, after pid/comm)
    raw = title.encode()[: max(0, end - start - 1)]
    if end > start:
        ctypes.memset(start, 0, end - start)
        ctypes.memmove(start, raw, len(raw))
    prctl(PR_SET_NAME, ctypes.cast(ctypes.c_char_p(raw[:15]), ctypes.c_void_p).value or 0)
