"""User and group names resolved in the sandbox's own root (issue 15).

``--user app``, ``--user app:staff``, an image's ``USER nobody`` and
``--rootfs`` roots name users as the root's ``/etc/passwd`` and
``/etc/group`` say, not as the host's do. Those files belong to whoever
made the root: they are opened with ``openat2(RESOLVE_IN_ROOT |
RESOLVE_NO_MAGICLINKS)`` under the root's folder (every symbolic link,
absolute or not, resolves inside that folder, never out of it), read with
a size cap, and parsed as data. For an image the topmost layer holding the
file wins (a whiteout hides it), as the overlay will show it.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import UsageError

#: larger files are refused (a root's passwd file is data from its maker)
MAX_DB = 4 << 20


def split_user(spec: str) -> tuple[str, str | None]:
    """``USER[:GROUP]`` -> its two parts, checked for shape only."""
    user, sep, group = spec.partition(":")
    if not user or (sep and not group) or any(c in spec for c in "\0\n/") or len(spec) > 256:
        raise UsageError(f"bad --user {spec!r}", hint="give USER[:GROUP], as names or numbers")
    return user, (group if sep else None)


def read_db(roots, name: str) -> str | None:
    """``etc/NAME`` of the first root (top first) holding it: a folder
    path or an fd; None when no root has one (or a whiteout hides it)."""
    from ..runtime import kernel as k
    for root in roots:
        own = isinstance(root, str)
        dfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if own else root
        try:
            try:
                fd = k.openat2(f"etc/{name}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK,
                               k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS, dirfd=dfd)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue
                raise UsageError(f"cannot read /etc/{name} of the sandbox's root: "
                                 f"{e.strerror}") from None
        finally:
            if own:
                os.close(dfd)
        try:
            st = os.fstat(fd)
            if stat.S_ISCHR(st.st_mode):        # an overlay whiteout: deleted above
                return None
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_DB:
                raise UsageError(f"/etc/{name} of the sandbox's root is not a regular file "
                                 f"of at most {MAX_DB >> 20} MiB")
            data = os.read(fd, MAX_DB + 1)
        finally:
            os.close(fd)
        return data.decode("utf-8", "replace")
    return None


def _lookup(text: str | None, name: str) -> list[str] | None:
    for line in (text or "").splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[0] == name:
            return f
    return None


def _id(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 2**32 - 1 else None


def resolve_user(spec: str, roots, what: str = "--user") -> tuple[int, int]:
    """``USER[:GROUP]`` (names or numbers) to ``(uid, gid)`` from the
    ``roots``' passwd and group files. A user without a group takes the
    passwd entry's group (or its own number as gid, as before, for a
    number without an entry). `UsageError` naming the unknown name."""
    user, group = split_user(spec)
    passwd = None
    uid = _id(user)
    gid = None
    if uid is None or group is None:
        passwd = read_db(roots, "passwd")
        entry = _lookup(passwd, user) if uid is None else None
        if uid is None:
            if entry is None or _id(entry[2]) is None:
                raise UsageError(f"{what} {spec!r}: no user {user!r} in the sandbox's "
                                 "/etc/passwd", hint="give a numeric UID, or a name that root "
                                 "file system defines")
            uid, gid = _id(entry[2]), _id(entry[3])
        else:
            entry = next((f for f in (line.split(":") for line in (passwd or "").splitlines())
                          if len(f) >= 4 and _id(f[2]) == uid), None)
            gid = _id(entry[3]) if entry is not None else uid
    if group is not None:
        gid = _id(group)
        if gid is None:
            entry = _lookup(read_db(roots, "group"), group)
            if entry is None or len(entry) < 3 or _id(entry[2]) is None:
                raise UsageError(f"{what} {spec!r}: no group {group!r} in the sandbox's "
                                 "/etc/group", hint="give a numeric GID, or a group that root "
                                 "file system defines")
            gid = _id(entry[2])
    return uid, gid if gid is not None else uid
