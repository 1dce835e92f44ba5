"""Landlock: confine the payload to its root file system and its volumes.

Source followed: landlock(7), the kernel's ``Documentation/userspace-api/
landlock.rst`` and ``include/uapi/linux/landlock.h``.

Two halves, as everywhere in the runtime (describe, then do):

- `build_landlock_rules` (parent, pure): from the read-only-root flag, the
  volume grants, the tmpfs mounts and the kernel file systems, the ordered
  tuple of `LandlockRule` values shown in the launch plan.
- `apply_landlock` (child, DESIGN §2 step 9: after ``pivot_root``, the fd
  clean-up, the capability drop and ``no_new_privs``; before the SELinux
  exec label, which stays writable because ``/proc`` is ``rw``, and before
  seccomp): creates a ruleset at the best ABI the kernel offers, adds one
  path-beneath rule per path, restricts the calling thread. Irreversible,
  inherited across fork and execve.

Access keywords (``LandlockRule.access``) and the Landlock rights they give
(file rights only on a rule whose path is not a folder):

=======  ==================================================================
ro       READ_FILE, READ_DIR
rx       ro + EXECUTE
rw       ro + WRITE_FILE, TRUNCATE (v3), MAKE_{REG,DIR,SYM,FIFO,SOCK},
         REMOVE_{FILE,DIR}, REFER (v2)
rwx      rw + EXECUTE
dev      rw + IOCTL_DEV (v5): for /dev, so terminals keep their ioctls
=======  ==================================================================

The ruleset *handles* every file-system right of its ABI (v1 basic, v2
REFER, v3 TRUNCATE, v5 IOCTL_DEV), so anything not granted by a rule is
denied, including MAKE_CHAR/MAKE_BLOCK everywhere. Network rights (v4) are
not handled: the network namespace is the network boundary. From ABI 6 the
ruleset also scopes abstract UNIX sockets and signals to the sandbox, which
matters with ``network.mode = "host"``, where the host's abstract sockets
are otherwise reachable.

Landlock rights add up down the tree: a rule on ``/`` grants its rights to
every path below, and a nested rule can only add. So when a rule grants a
write right that a rule nested below it does not (a read-only volume under
a writable root), the outer rule carries ``excludes``: at apply time it is
split into one rule per sibling on the way down to each excluded path, and
the folders on that way get only the rights both rules share. The cost:
new entries cannot be created in those folders (for example ``/`` itself
when a read-only volume is at ``/data`` under a writable root).
"""

from __future__ import annotations

from .._values import checked

import errno
import os
import struct
from typing import Iterable, NamedTuple, Sequence

from ..errors import HostSupportError, SetupError, UsageError

# <linux/landlock.h>
ACCESS_FS = {
    "EXECUTE": 1 << 0,
    "WRITE_FILE": 1 << 1,
    "READ_FILE": 1 << 2,
    "READ_DIR": 1 << 3,
    "REMOVE_DIR": 1 << 4,
    "REMOVE_FILE": 1 << 5,
    "MAKE_CHAR": 1 << 6,
    "MAKE_DIR": 1 << 7,
    "MAKE_REG": 1 << 8,
    "MAKE_SOCK": 1 << 9,
    "MAKE_FIFO": 1 << 10,
    "MAKE_BLOCK": 1 << 11,
    "MAKE_SYM": 1 << 12,
    "REFER": 1 << 13,        # ABI 2
    "TRUNCATE": 1 << 14,     # ABI 3
    "IOCTL_DEV": 1 << 15,    # ABI 5
}
_A = ACCESS_FS
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0   # ABI 6
LANDLOCK_SCOPE_SIGNAL = 1 << 1                 # ABI 6

#: Rights that apply to a file (not a folder); a rule on a file may hold only these.
FILE_RIGHTS = (_A["EXECUTE"] | _A["WRITE_FILE"] | _A["READ_FILE"] | _A["TRUNCATE"]
               | _A["IOCTL_DEV"])

_V1 = (1 << 13) - 1


def handled_access_fs(abi: int) -> int:
    """Every file-system right the given ABI knows (0 for ABI 0)."""
    if abi <= 0:
        return 0
    mask = _V1
    if abi >= 2:
        mask |= _A["REFER"]
    if abi >= 3:
        mask |= _A["TRUNCATE"]
    if abi >= 5:
        mask |= _A["IOCTL_DEV"]
    return mask


_READ = _A["READ_FILE"] | _A["READ_DIR"]
_WRITE = (_A["WRITE_FILE"] | _A["TRUNCATE"] | _A["MAKE_REG"] | _A["MAKE_DIR"]
          | _A["MAKE_SYM"] | _A["MAKE_FIFO"] | _A["MAKE_SOCK"] | _A["REMOVE_FILE"]
          | _A["REMOVE_DIR"] | _A["REFER"])
#: Access keyword -> rights (before masking by ABI).
ACCESS = {
    "ro": _READ,
    "rx": _READ | _A["EXECUTE"],
    "rw": _READ | _WRITE,
    "rwx": _READ | _WRITE | _A["EXECUTE"],
    "dev": _READ | _WRITE | _A["IOCTL_DEV"],
}
_WRITE_LIKE = _WRITE | _A["IOCTL_DEV"] | _A["MAKE_CHAR"] | _A["MAKE_BLOCK"]


def rights_names(mask: int) -> tuple[str, ...]:
    """The names of the rights in ``mask``, in bit order."""
    return tuple(n for n, b in ACCESS_FS.items() if mask & b)


class _LandlockRuleFields(NamedTuple):
    path: str
    access: str
    excludes: tuple[str, ...] = ()


@checked
class LandlockRule(_LandlockRuleFields):
    """One path-beneath rule: ``path`` as seen inside the sandbox (after
    ``pivot_root``), an ``access`` keyword (see `ACCESS`), and the nested
    paths its write rights must not reach (``excludes``, filled in by
    `build_landlock_rules`). Checked when made (also by ``_replace``)."""

    __slots__ = ()

    def __new__(cls, path: str, access: str, excludes: tuple[str, ...] = ()):
        if access not in ACCESS:
            raise UsageError(f"landlock rule {path}: bad access {access!r}: "
                             f"expected one of {', '.join(ACCESS)}")
        if not path.startswith("/"):
            raise UsageError(f"landlock rule {path!r}: path must be absolute")
        return super().__new__(cls, path, access, excludes)

    @property
    def rights(self) -> int:
        return ACCESS[self.access]

    def to_dict(self) -> dict:
        d = {"path": self.path, "access": self.access}
        if self.excludes:
            d["excludes"] = list(self.excludes)
        return d

    def __str__(self) -> str:
        ex = f" except {','.join(self.excludes)}" if self.excludes else ""
        return f"{self.access} {self.path}{ex}"


def _norm(p: str) -> str:
    if not isinstance(p, str) or not p.startswith("/"):
        raise UsageError(f"landlock path {p!r}: must be absolute inside the sandbox")
    return os.path.normpath(p) if p != "/" else "/"


def _under(child: str, parent: str) -> bool:
    return child != parent and (parent == "/" or child.startswith(parent + "/"))


def build_landlock_rules(read_only_root: bool,
                         volumes: Iterable[tuple[str, str]] = (),
                         tmpfs: Iterable[str] = (), *,
                         proc: bool = True, dev: bool = True, sys: bool = True,
                         exec_volumes: bool = True,
                         extra: Iterable[LandlockRule] = ()) -> tuple[LandlockRule, ...]:
    """The Landlock rules for a sandbox, in a fixed order: ``/``, ``/proc``,
    ``/dev``, ``/sys``, tmpfs mounts, volumes, ``extra``.

    ``volumes``: (target inside the sandbox, ``"ro"``/``"rw"``) — the
    granted mode of each volume (`VolumeGrant.mode`); ``tmpfs``: targets of
    tmpfs mounts (writable). The root gets ``rx`` (``rwx`` when
    ``read_only_root`` is False); ``/proc`` ``rw``; ``/dev`` ``dev``;
    ``/sys`` ``ro`` (no rule under a writable root: its mount is read-only); volumes ``rx``/``rwx`` (``ro``/``rw`` with
    ``exec_volumes`` False). Pure. Raises `UsageError` for a relative path
    or a path given twice.
    """
    rules: list[LandlockRule] = [LandlockRule("/", "rx" if read_only_root else "rwx")]
    if proc:
        rules.append(LandlockRule("/proc", "rw"))
    if dev:
        rules.append(LandlockRule("/dev", "dev"))
    if sys and read_only_root:
        # Under a writable root /sys gets no rule of its own: it is mounted
        # read-only anyway, and a read-only rule nested under "/" would cut
        # the root itself out of the create rights (see the split below).
        rules.append(LandlockRule("/sys", "ro"))
    for t in tmpfs:
        rules.append(LandlockRule(_norm(t), "rw"))
    for target, mode in volumes:
        if mode not in ("ro", "rw"):
            raise UsageError(f"volume {target}: bad mode {mode!r}: expected ro or rw")
        acc = {"ro": "rx", "rw": "rwx"}[mode] if exec_volumes else mode
        rules.append(LandlockRule(_norm(target), acc))
    rules.extend(LandlockRule(_norm(r.path), r.access) for r in extra)

    seen: set[str] = set()
    for r in rules:
        if r.path in seen:
            raise UsageError(f"landlock: {r.path} given twice (a volume or tmpfs on a "
                             "path that already has a rule)")
        seen.add(r.path)

    out = []
    for r in rules:
        # A nested rule that lacks a write right this rule grants must be cut out.
        excl = tuple(sorted(
            n.path for n in rules
            if _under(n.path, r.path) and (r.rights & _WRITE_LIKE) & ~n.rights))
        out.append(LandlockRule(r.path, r.access, excl) if excl else r)
    return tuple(out)


# -- host support -----------------------------------------------------------

_abi_cache: tuple[int, int] | None = None   # (abi, errno)


def _probe() -> tuple[int, int]:
    global _abi_cache
    if _abi_cache is None:
        from . import _kernel
        try:
            _abi_cache = (_kernel.landlock_create_ruleset(None, LANDLOCK_CREATE_RULESET_VERSION), 0)
        except OSError as e:
            _abi_cache = (0, e.errno or 0)
    return _abi_cache


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (1..7 on Linux 6.18), or
    0 when Landlock is missing or disabled."""
    return _probe()[0]


def _lsm_list() -> str | None:
    try:
        with open("/sys/kernel/security/lsm") as f:
            return f.read().strip()
    except OSError:
        return None


def landlock_support() -> tuple[int, HostSupportError | None]:
    """(ABI, None) when Landlock works; (0, the `HostSupportError` to raise
    or to record) when it does not. The error says how to enable it."""
    abi, err = _probe()
    if abi > 0:
        return abi, None
    if err == errno.ENOSYS:
        msg = "Landlock is not available: the kernel was built without CONFIG_SECURITY_LANDLOCK"
        hint = ("use a kernel with CONFIG_SECURITY_LANDLOCK=y, or add \"landlock\" to "
                "the profile's optional list")
    else:
        lsm = _lsm_list()
        now = f" (now: {lsm})" if lsm else ""
        msg = f"Landlock is built in but not enabled{now}"
        hint = ("boot with lsm=landlock,lockdown,yama,integrity,apparmor,bpf (the "
                "current list plus landlock), or add \"landlock\" to the profile's optional list")
    return 0, HostSupportError(msg, hint=hint)


def require_landlock(optional: bool) -> int:
    """The ABI, or 0 when it is missing and ``optional``; otherwise raises
    the `HostSupportError` of `landlock_support`."""
    abi, error = landlock_support()
    if error is not None and not optional:
        raise error
    return abi


# -- apply (child side) -----------------------------------------------------

def _expand(rules: Sequence[LandlockRule], handled: int) -> list[tuple[str, int]]:
    """(path, rights) pairs to add, splitting rules that have excludes."""
    rights = {r.path: r.rights & handled for r in rules}
    out: list[tuple[str, int]] = []
    for r in rules:
        mask = rights[r.path]
        if not r.excludes:
            out.append((r.path, mask))
            continue
        common = mask
        for e in r.excludes:
            common &= rights.get(e, 0)
        _split(r.path, mask, common, tuple(r.excludes), out)
    return out


def _split(folder: str, mask: int, common: int, excludes: tuple[str, ...],
           out: list[tuple[str, int]]) -> None:
    if common:
        out.append((folder, common))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        child = os.path.join(folder, entry.name)
        if child in excludes:
            continue
        below = tuple(e for e in excludes if _under(e, child))
        if below:
            _split(child, mask, common, below, out)
        elif not entry.is_symlink():
            # A symlink needs no rule: access through it is checked on its target.
            out.append((child, mask))


def apply_landlock(rules: Sequence[LandlockRule], *, abi: int | None = None,
                   scope: bool = True) -> "LandlockResult":
    """Restrict the calling thread (and its future children) to ``rules``.

    Paths are as seen now (inside the sandbox, after ``pivot_root``). Each
    path is opened ``O_PATH | O_CLOEXEC``; a missing path is skipped (its
    access stays denied) and reported in the result. ``no_new_privs`` must
    already be set (or CAP_SYS_ADMIN held). ``abi`` defaults to the
    kernel's; ``scope`` adds ABI 6 scoping (abstract UNIX sockets, signals).

    Raises `HostSupportError` when the kernel has no Landlock and
    `SetupError` (step ``landlock``) for any failing call. Irreversible:
    call it in the child only, and in tests in a forked child. It restricts
    the calling thread only (the child is single-threaded by design).
    """
    from . import _kernel
    if abi is None:
        abi = landlock_abi()
    if abi <= 0:
        raise landlock_support()[1] or HostSupportError("Landlock is not available")
    handled = handled_access_fs(abi)
    scoped = (LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL) \
        if scope and abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled, 0, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled, 0)
    else:
        attr = struct.pack("=Q", handled)
    try:
        ruleset = _kernel.landlock_create_ruleset(attr, 0)
    except OSError as e:
        raise SetupError(f"landlock: create ruleset (ABI {abi}): {e.strerror}",
                         step="landlock", errno=e.errno) from None
    applied: list[tuple[str, int]] = []
    skipped: list[str] = []
    try:
        for path, mask in _expand(rules, handled):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                skipped.append(path)
                continue
            except OSError as e:
                raise SetupError(f"landlock: open {path}: {e.strerror}", step="landlock",
                                 errno=e.errno) from None
            try:
                if not _is_dir(fd):
                    mask &= FILE_RIGHTS
                if not mask:
                    continue
                _kernel.landlock_add_rule(ruleset, LANDLOCK_RULE_PATH_BENEATH,
                                          struct.pack("=Qi", mask, fd))
                applied.append((path, mask))
            except OSError as e:
                raise SetupError(f"landlock: add rule {path} ({'|'.join(rights_names(mask))}): "
                                 f"{e.strerror}", step="landlock", errno=e.errno) from None
            finally:
                os.close(fd)
        try:
            _kernel.landlock_restrict_self(ruleset)
        except OSError as e:
            hint = ("set no_new_privs before Landlock" if e.errno == errno.EPERM else None)
            raise SetupError(f"landlock: restrict self: {e.strerror}", step="landlock",
                             errno=e.errno, hint=hint) from None
    finally:
        os.close(ruleset)
    return LandlockResult(abi, tuple(applied), tuple(skipped))


def _is_dir(fd: int) -> bool:
    import stat
    return stat.S_ISDIR(os.fstat(fd).st_mode)


class LandlockResult(NamedTuple):
    """What `apply_landlock` did: the ABI used, the (path, rights) rules
    added, and the paths skipped because they did not exist."""

    abi: int
    applied: tuple[tuple[str, int], ...]
    skipped: tuple[str, ...]
