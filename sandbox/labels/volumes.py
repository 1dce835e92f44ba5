"""Volume labels: where they are kept, and which mounts they permit.

A volume's label is one `Level`, kept in the extended attribute
``user.sandbox.label`` (canonical level text, ASCII), which works on any
file system with user xattrs (ext4, xfs, btrfs, tmpfs since Linux 6.6) and
needs no SELinux. Where SELinux is active (``/sys/fs/selinux/enforce``
exists) `apply_volume_label` also writes ``security.selinux`` on the volume
and everything below it, so the kernel enforces the same decision.

The decision (`check_volume`), after MLS (Bell-LaPadula) as SELinux MCS
applies it to files, with Podman's ``:z``/``:Z`` options:

==============================  ==========================================
volume label                    allowed
==============================  ==========================================
equal to the sandbox's level    read-write (or read-only if asked)
dominated by the sandbox's      read-only; ``rw`` is refused
``s0`` (no categories)          read-only for every sandbox: the shared
                                level; ``rw`` is refused
not dominated                   refused
none (unlabelled)               refused, unless the profile sets
                                ``label.allow_unlabelled_ro`` (then
                                read-only) or the user asks to relabel
==============================  ==========================================

Relabelling (the launcher writes the new label before mounting):

- ``:Z`` (private): relabel to the sandbox's own level; then the rules
  above apply, so ``rw`` is granted. With an ``auto`` level the volume is
  relabelled at every launch (as with Podman), so a ``:Z`` volume follows
  its sandbox across runs.
- ``:z`` (shared): relabel to ``s0``; the volume is then readable by every
  sandbox and writable by none. Unlike Podman, ``:z`` with ``rw`` is
  refused: a volume every sandbox can write is a channel between sandboxes,
  which is exactly what the category pair exists to prevent.
- Neither relabels a volume whose label is the level of another *running*
  sandbox that this one does not dominate (that would take or declassify a
  live sandbox's data), nor a host system folder (``/``, ``/usr``, ...).
  An administrator who means it uses ``sandbox label set``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from typing import Collection, NamedTuple, Sequence

from ..errors import HostSupportError, SetupError, UsageError
from .model import Context, LabelError, LabelRefused, Level, LevelRange
from .selinux import selinux_active

#: Our label, readable without SELinux.
XATTR = "user.sandbox.label"
#: The SELinux label, written only where SELinux is active.
SELINUX_XATTR = "security.selinux"

#: Host folders never relabelled (as Podman refuses ``/``, ``/usr``, ``/etc``...).
PROTECTED_PATHS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr",
    "/var", "/var/lib", "/var/tmp",
})

#: Host trees nothing below which may be relabelled (the host's own files).
SYSTEM_TREES = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                "/boot", "/dev", "/proc", "/sys")

MODES = ("ro", "rw")
RELABELS = (None, "z", "Z")


class VolumeGrant(NamedTuple):
    """What a volume may be mounted as.

    ``mode``: ``"ro"`` or ``"rw"``; ``label``: the volume's level once
    mounted (None for an unlabelled volume admitted read-only);
    ``relabel_to``: the level to write before mounting, or None.
    """

    mode: str
    label: Level | None
    relabel_to: Level | None = None

    def to_dict(self) -> dict:
        return {"mode": self.mode,
                "label": None if self.label is None else str(self.label),
                "relabel_to": None if self.relabel_to is None else str(self.relabel_to)}


def _sandbox_levels(sandbox_level: Level | LevelRange) -> tuple[Level, bool]:
    """(clearance used for reads, may it write at that level)."""
    if isinstance(sandbox_level, LevelRange):
        return sandbox_level.high, sandbox_level.single
    return sandbox_level, True


def check_volume(sandbox_level: Level | LevelRange, volume_level: Level | None,
                 requested_mode: str = "rw", allow_unlabelled_ro: bool = False,
                 relabel: str | None = None, *, volume: str = "volume",
                 held_by_others: Collection[Level] = ()) -> VolumeGrant:
    """Decide whether a volume labelled ``volume_level`` may be mounted with
    ``requested_mode`` (``"ro"``/``"rw"``) in a sandbox at ``sandbox_level``.

    ``relabel`` is None, ``"z"`` (shared) or ``"Z"`` (private); see the
    module docstring for the rules. ``volume`` names the volume in messages;
    ``held_by_others`` are the levels of the other running sandboxes
    (`labels_in_use`), which relabelling must not take.

    For a sandbox level that is a range, reads use its high level and
    writes need a single-level range. Pure: reads and writes nothing.

    Raises `LabelRefused` (one line: the volume, its label, the sandbox's
    level and the fix) or `UsageError` for an unknown mode or relabel.
    """
    if requested_mode not in MODES:
        raise UsageError(f"{volume}: bad volume mode {requested_mode!r}: expected ro or rw")
    if relabel not in RELABELS:
        raise UsageError(f"{volume}: bad relabel option {relabel!r}: expected z or Z")
    clearance, can_write = _sandbox_levels(sandbox_level)
    shown = "unlabelled" if volume_level is None else f"label {volume_level}"
    head = f"volume {volume} ({shown}) refused in sandbox at {sandbox_level}"

    if relabel is not None:
        if (volume_level is not None and not volume_level.shared
                and volume_level in set(held_by_others)
                and not clearance.dominates(volume_level)):
            raise LabelRefused(f"{head}: its label belongs to a running sandbox; "
                               "relabelling would take its data; use another folder")
        if relabel == "z":
            if requested_mode == "rw":
                raise LabelRefused(f"{head}: :z makes it shared (s0), and shared volumes "
                                   "are read-only; use :Z for a private writable volume or :z,ro")
            target = Level(0)
            if not clearance.dominates(target):
                raise LabelRefused(f"{head}: the sandbox cannot read s0")
        else:
            if not can_write and requested_mode == "rw":
                raise LabelRefused(f"{head}: a sandbox with a level range cannot own a "
                                   "private volume; give it a single level")
            target = clearance if isinstance(sandbox_level, LevelRange) else sandbox_level
            if target.shared and requested_mode == "rw":
                raise LabelRefused(f"{head}: :Z at a level without categories would "
                                   "make it shared, and shared volumes are read-only; "
                                   "give the sandbox a level with categories")
        return VolumeGrant(requested_mode, target,
                           None if volume_level == target else target)

    if volume_level is None:
        if requested_mode == "ro" and allow_unlabelled_ro:
            return VolumeGrant("ro", None, None)
        if requested_mode == "ro":
            fix = ("label it (`sandbox label set PATH LEVEL`), add :z or :Z, or set "
                   "label.allow_unlabelled_ro in the profile")
        else:
            # a level the next launch will also run at: an auto level is
            # drawn anew per launch, so name the run option that fixes it
            fix = (f"label it and run at that level (`sandbox label set PATH {sandbox_level}`, "
                   f"then `sandbox run --security-opt label=level:{sandbox_level}`), "
                   "or add :Z")
        raise LabelRefused(f"{head}: unlabelled volumes are refused; {fix}")

    if requested_mode == "rw":
        if volume_level.shared:
            raise LabelRefused(f"{head} read-write: {volume_level} is the shared level, "
                               "read-only for every sandbox; mount it :ro or relabel with :Z")
        if can_write and clearance == volume_level:
            return VolumeGrant("rw", volume_level, None)
        if clearance.dominates(volume_level):
            raise LabelRefused(f"{head} read-write: writing needs equal levels; run the "
                               f"sandbox at its level (--security-opt label=level:"
                               f"{volume_level}), mount it :ro, or relabel with :Z")
        raise LabelRefused(f"{head}: its level is not dominated by the sandbox's; run the "
                           f"sandbox at its level (--security-opt label=level:{volume_level}),"
                           " or relabel with :Z")

    if clearance.dominates(volume_level):
        return VolumeGrant("ro", volume_level, None)
    raise LabelRefused(f"{head}: its level is not dominated by the sandbox's; run the "
                       f"sandbox at its level (--security-opt label=level:{volume_level}), "
                       "or relabel with :Z")


# -- reading and writing the label ----------------------------------------

def read_volume_label(path: str | os.PathLike) -> Level | None:
    """The volume's level from ``user.sandbox.label`` (following symlinks,
    as a bind mount does); falling back, where SELinux is active, to the
    low level of ``security.selinux``. None when unlabelled or when the
    file system has no xattrs.

    Raises `LabelError` (naming the path) for a malformed label and
    `SetupError` when the path is absent or unreadable.
    """
    p = os.fspath(path)
    try:
        raw = os.getxattr(p, XATTR)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise SetupError(f"volume {p}: no such file or folder", step="read volume label",
                             errno=e.errno) from None
        if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise SetupError(f"volume {p}: cannot read {XATTR}: {e.strerror}",
                             step="read volume label", errno=e.errno) from None
        return _read_selinux_level(p)
    try:
        return Level.parse(raw.decode("ascii").strip())
    except (UnicodeDecodeError, LabelError) as e:
        msg = e.message if isinstance(e, LabelError) else "not ASCII"
        raise LabelError(f"volume {p}: bad {XATTR}: {msg}",
                         hint=f"set it again: sandbox label set {p} LEVEL") from None


def _read_selinux_level(p: str) -> Level | None:
    if not selinux_active():
        return None
    try:
        raw = os.getxattr(p, SELINUX_XATTR)
        return Context.parse(raw.rstrip(b"\0").decode("ascii")).level
    except (OSError, UnicodeDecodeError, LabelError):
        return None


#: Host folders holding people's and services' data: never relabelled, nor
#: anything that contains them; a sub-folder of its own is fine.
SENSITIVE_FOLDERS = ("/root", "/home", "/var/lib", "/var/log", "/var/spool")


def _own_folders(extra: Sequence[str | os.PathLike] = ()) -> list[str]:
    """The product's config, state and runtime folders: as root, as the
    calling user, under ``$SANDBOX_ROOT`` and any given."""
    from ..paths import Paths
    out = ["/etc/sandbox", "/var/lib/sandbox", "/run/sandbox"]
    out += [os.fspath(p) for p in Paths.resolve(None)]
    out += [os.fspath(p) for p in extra]
    return [os.path.normpath(os.path.abspath(p)) for p in out]


def _home_folders() -> list[str]:
    import pwd
    return sorted({os.path.normpath(pw.pw_dir) for pw in pwd.getpwall()
                   if pw.pw_dir.startswith("/")})


def _contains(outer: str, inner: str) -> bool:
    return outer == inner or outer == "/" or inner.startswith(outer + "/")


def build_relabel_refusal(real: str, *, own_folders: Sequence[str | os.PathLike] = (),
                          ident: tuple[int, int] | None = None) -> str | None:
    """Why the folder at ``real`` (a real path, no symlink in it) must not
    be relabelled, as one line, or None.

    Refused: a host system folder (`PROTECTED_PATHS`) or anything below the
    system trees; `SENSITIVE_FOLDERS`, every home folder in the passwd
    database, and anything that contains one of them; the product's own
    config, state and runtime folders, anything inside them and anything
    containing them. ``ident`` (st_dev, st_ino) of the opened folder also
    catches another name (a bind mount) for one of these folders."""
    if real in PROTECTED_PATHS or any(real.startswith(t + "/") for t in SYSTEM_TREES):
        return (f"volume {real}: relabelling a host system folder is refused; "
                "use a folder of its own")
    for own in _own_folders(own_folders):
        if _contains(real, own) or _contains(own, real):
            return (f"volume {real}: relabelling sandbox's own folder {own} (or a folder "
                    "holding it) is refused; use a folder outside it")
    named = [(f, "a host data folder") for f in SENSITIVE_FOLDERS]
    named += [(h, "a user's home folder") for h in _home_folders()]
    for f, what in named:
        if real == f or (ident is not None and _same(f, ident)):
            return (f"volume {real}: relabelling {what} is refused; use a sub-folder of "
                    f"its own, e.g. {os.path.join(real, 'volume')}")
    for f, what in named:
        if _contains(real, f):
            return (f"volume {real}: relabelling a folder that holds {what} ({f}) is "
                    "refused; use a sub-folder of its own that holds only the volume's files")
    return None


def _same(path: str, ident: tuple[int, int]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == ident


def check_relabel_path(path: str | os.PathLike, *,
                       own_folders: Sequence[str | os.PathLike] = ()) -> str:
    """The real path of a volume that may be relabelled; raises
    `LabelRefused` (`build_relabel_refusal`). Path-based: for a decision
    that is also the one acted on, use `apply_volume_label`, which opens
    the volume once and decides on the fd."""
    p = os.fspath(path)
    # an fd's path (/proc/self/fd/N, issue 13 item 9): the kernel's name of
    # that very inode, read once; realpath would look its text up again
    real = os.readlink(p) if p.startswith("/proc/self/fd/") else os.path.realpath(p)
    why = build_relabel_refusal(real, own_folders=own_folders)
    if why is not None:
        raise LabelRefused(why)
    return real


def open_volume(path: str | os.PathLike) -> int:
    """An fd for the volume ``path``, resolved once with no symlink followed
    in any component (`sandbox.safefs.open_nofollow`), readable for
    ``fgetxattr``/``fsetxattr``. Only folders and regular files are opened
    for reading (a device node is never opened). The caller closes it."""
    from ..safefs import open_nofollow
    p = os.fspath(path)
    pfd = open_nofollow(p, os.O_PATH, shown=f"volume {p}")
    try:
        st = os.fstat(pfd)
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise UsageError(f"volume {p}: not a folder or a regular file")
        # Reopen the very inode (the fd's magic link), now readable.
        return os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(pfd)


def apply_volume_label(path: str | os.PathLike, level: Level, *,
                       selinux: bool | None = None,
                       file_context: Context | None = None,
                       own_folders: Sequence[str | os.PathLike] = ()) -> str:
    """Write ``level`` to the volume's ``user.sandbox.label`` and, where
    SELinux is active (or ``selinux`` is True), ``security.selinux`` on it
    and everything below it (``file_context``, default
    ``system_u:object_r:container_file_t``). Returns the real path
    labelled.

    The volume is opened once with no symlink followed (`open_volume`);
    the protected-folder decision (`build_relabel_refusal`) and the write
    (``fsetxattr``) are made on that fd, so a sandbox swapping a folder
    for a symlink in a folder it can write cannot redirect the label.

    Raises `LabelRefused` for a protected host folder, `UsageError` for a
    symlink in the path, `HostSupportError` when the file system has no
    user xattrs, `SetupError` otherwise.
    """
    p = os.fspath(path)
    try:
        fd = open_volume(p)
    except SetupError as e:
        if e.errno == errno.ENOENT:
            raise SetupError(f"volume {p}: no such file or folder", step="label volume",
                             errno=e.errno) from None
        raise
    try:        # one decision and one write, both on that fd
        return apply_volume_label_fd(fd, level, selinux=selinux, file_context=file_context,
                                     own_folders=own_folders)
    finally:
        os.close(fd)


def apply_volume_label_fd(fd: int, level: Level, *, selinux: bool | None = None,
                          file_context: Context | None = None,
                          own_folders: Sequence[str | os.PathLike] = ()) -> str:
    """`apply_volume_label` on the folder or file an fd holds (issue 13
    item 9): the protected-folder check is made on the fd (its real path
    and its device and inode against every protected folder's) and the
    label is written through ``/proc/self/fd/N``, so a name swapped after
    the fd was opened cannot redirect it. Returns the path labelled."""
    p = f"/proc/self/fd/{fd}"
    st = os.fstat(fd)
    real = os.readlink(p)
    why = build_relabel_refusal(real, own_folders=own_folders, ident=(st.st_dev, st.st_ino))
    if why is not None:     # issue 13 item 4: system, data, home and our own folders
        raise LabelRefused(why)
    for prot in sorted(PROTECTED_PATHS) + list(SYSTEM_TREES):
        try:
            pst = os.stat(prot)
        except OSError:
            continue
        if (pst.st_dev, pst.st_ino) == (st.st_dev, st.st_ino):
            raise LabelRefused(f"volume {prot}: relabelling a host system folder is refused; "
                               "use a folder of its own")
    try:
        os.setxattr(p, XATTR, str(level).encode("ascii"))
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise HostSupportError(
                f"volume {real}: its file system keeps no user extended attributes",
                hint="put the volume on ext4, xfs, btrfs or tmpfs (Linux 6.6+)") from None
        raise SetupError(f"volume {real}: cannot write {XATTR}: {e.strerror}",
                         step="label volume", errno=e.errno) from None
    if selinux if selinux is not None else selinux_active():
        from .selinux import build_file_context
        ctx = str(file_context.with_level(level)) if file_context else build_file_context(level)
        raw = ctx.encode("ascii")
        try:        # the fd's own inode: through the magic link, so following it
            os.setxattr(p, SELINUX_XATTR, raw)
        except OSError as e:
            raise SetupError(f"volume {real}: cannot write {SELINUX_XATTR}: {e.strerror}",
                             step="label volume", errno=e.errno) from None
        if stat.S_ISDIR(st.st_mode):
            for name in os.listdir(p):
                _apply_selinux_tree(os.path.join(p, name), raw)
    return real


def _apply_selinux_tree(top: str, ctx: bytes) -> None:
    def one(p: str) -> None:
        try:
            os.setxattr(p, SELINUX_XATTR, ctx, follow_symlinks=False)
        except OSError as e:
            raise SetupError(f"volume {p}: cannot write {SELINUX_XATTR}: {e.strerror}",
                             step="label volume", errno=e.errno) from None
    one(top)
    if os.path.isdir(top):
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            for n in dirnames + filenames:
                one(os.path.join(dirpath, n))


def remove_volume_label(path: str | os.PathLike) -> bool:
    """Remove ``user.sandbox.label``; False when there was none. The volume
    is opened once with no symlink followed (`open_volume`) and the label
    removed from that fd."""
    p = os.fspath(path)
    fd = open_volume(p)
    try:
        os.removexattr(fd, XATTR)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return False
        raise SetupError(f"volume {p}: cannot remove {XATTR}: {e.strerror}",
                         step="label volume", errno=e.errno) from None
    finally:
        os.close(fd)
    return True


def decide_volume(source: str | os.PathLike, sandbox_level: Level | LevelRange,
                  requested_mode: str = "rw", *, allow_unlabelled_ro: bool = False,
                  relabel: str | None = None,
                  held_by_others: Collection[Level] = (),
                  own_folders: Sequence[str | os.PathLike] = ()) -> VolumeGrant:
    """`read_volume_label` then `check_volume`, naming ``source`` in errors.
    Reads only; the caller applies ``grant.relabel_to`` with
    `apply_volume_label` (after `check_relabel_path`)."""
    src = os.fspath(source)
    grant = check_volume(sandbox_level, read_volume_label(src), requested_mode,
                         allow_unlabelled_ro, relabel, volume=src,
                         held_by_others=held_by_others)
    if grant.relabel_to is not None:
        check_relabel_path(src, own_folders=own_folders)
    return grant


# -- mount targets ----------------------------------------------------------

def _split(p: str) -> list[str]:
    return [c for c in p.split("/") if c not in ("", ".")]


def resolve_target_inside(root: str | os.PathLike, target: str, *,
                          max_links: int = 40) -> str:
    """The host-side path of ``target`` (absolute, as seen inside the
    sandbox) under ``root``, resolving symlinks as if ``root`` were ``/``.

    Walks one component at a time with ``lstat``: a symlink's text is
    resolved against ``root`` (an absolute link restarts at ``root``; ``..``
    never climbs above it), the way ``openat2(RESOLVE_IN_ROOT)`` and
    Podman's securejoin do. Missing trailing components are kept as they
    are (the caller creates them); a component that exists but is not a
    folder, with more to follow, is an error.

    Raises `UsageError` for a relative target or a NUL byte, `SetupError`
    for too many symlinks (more than ``max_links``, ELOOP) or ENOTDIR.

    The result is a string; it is safe as long as nobody else changes the
    root file system between this call and the mount, which holds for a
    root file system the payload has not started in yet.
    """
    root_s = os.path.realpath(os.fspath(root))
    if not isinstance(target, str) or not target.startswith("/"):
        raise UsageError(f"mount target {target!r}: must be an absolute path inside the sandbox")
    if "\0" in target:
        raise UsageError(f"mount target {target!r}: contains a NUL byte")
    todo = deque(_split(target))
    done: list[str] = []
    links = 0
    while todo:
        name = todo.popleft()
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root_s, *done, name)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            # Kept lexically; a later ".." may climb back into existing
            # folders, whose components are then checked again.
            done.append(name)
            continue
        except OSError as e:
            raise SetupError(f"mount target {target}: {e.strerror} at /{'/'.join(done + [name])}",
                             step="resolve mount target", errno=e.errno) from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                raise SetupError(f"mount target {target}: too many symlinks inside the root",
                                 step="resolve mount target", errno=errno.ELOOP)
            link = os.readlink(here)
            if link.startswith("/"):
                done = []
            todo.extendleft(reversed(_split(link)))
            continue
        if todo and not stat.S_ISDIR(st.st_mode):
            raise SetupError(f"mount target {target}: /{'/'.join(done + [name])} is not a folder",
                             step="resolve mount target", errno=errno.ENOTDIR)
        done.append(name)
    return os.path.join(root_s, *done) if done else root_s


def resolve_target(root: str | os.PathLike, target: str) -> tuple[str, str]:
    """(host-side path, path inside the sandbox) of a mount target, both
    with symlinks resolved inside ``root`` (see `resolve_target_inside`).
    The inside path is what Landlock rules must name: a rule on a symlink
    would be attached to wherever it points."""
    host = resolve_target_inside(root, target)
    real_root = os.path.realpath(os.fspath(root))
    rel = os.path.relpath(host, real_root)
    return host, "/" if rel == "." else "/" + rel
