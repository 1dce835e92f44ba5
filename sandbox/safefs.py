"""Caller-given paths, resolved once, to an fd, never through a symlink.

A path a user types may lie in a folder that a sandbox can write. A sandbox
that loops ``renameat2(RENAME_EXCHANGE)`` between ``V/dir`` and ``V/link``
(a symlink to a host folder) wins against any code that looks the path up
twice, or follows a symlink in it, while root acts on it. So:

- `open_nofollow` walks the typed path one component at a time from ``/``
  (or the working folder) with ``O_NOFOLLOW``: a symlink anywhere in it is
  refused (one line naming the component), never followed. Everything is
  then decided and done on the fd it returns (``fstat``, ``fgetxattr``,
  ``fsetxattr``), so what was checked is what is changed.
- `write_output` writes a report or an export: only to a regular file or a
  new path (a device, fifo, socket, folder or symlink as the final
  component is refused), through a temporary file created with
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` under an unpredictable name in the target's
  folder, opened by that folder's fd, then renamed over the target through
  the same fd. Renaming, not truncating in place, also means a hard link to
  some other file (``/etc/shadow``) planted at the target name is replaced,
  never written through.

Errors are `UsageError` (the user typed a path we will not act on) or
`SetupError`, each one line naming the path.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat

from .errors import SetupError, UsageError

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _symlink_refusal(shown: str, at: str) -> UsageError:
    return UsageError(f"{shown}: {at} is a symlink; refusing to follow it: "
                      "give the path with no symlink in it")


def _walk_parent(path: str, *, shown: str) -> tuple[int, str]:
    """(fd of the folder holding the last component, opened with no symlink
    followed; the last component). The caller closes the fd."""
    if not path or "\0" in path:
        raise UsageError(f"{shown!r}: not a usable path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    start = "/" if path.startswith("/") else "."
    if not parts:
        return os.open(start, _DIR), "."
    fd = os.open(start, _DIR)
    done = "" if start == "/" else "."
    try:
        for name in parts[:-1]:
            here = f"{done}/{name}"
            try:
                nfd = os.open(name, _DIR, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    try:
                        if stat.S_ISLNK(os.lstat(name, dir_fd=fd).st_mode):
                            raise _symlink_refusal(shown, here) from None
                    except OSError:
                        pass
                raise SetupError(f"{shown}: {here}: {e.strerror}", step="open path",
                                 errno=e.errno) from None
            os.close(fd)
            fd = nfd
            done = here
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]


def open_nofollow(path: str | os.PathLike, flags: int = os.O_RDONLY, *,
                  shown: str | None = None) -> int:
    """Open ``path`` with ``flags`` following no symlink in any component
    (the last included), resolving it once. ``..`` climbs the folder
    actually opened. Returns the fd (``O_CLOEXEC``); the caller closes it.

    Raises `UsageError` when a component is a symlink, `SetupError` for
    any other failure (no such path, permission), naming the path."""
    p = os.fspath(path)
    shown = p if shown is None else shown
    dfd, last = _walk_parent(p, shown=shown)
    try:
        return os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            try:
                if stat.S_ISLNK(os.lstat(last, dir_fd=dfd).st_mode):
                    raise _symlink_refusal(shown, shown) from None
            except OSError:
                pass
        if e.errno == errno.ENOENT:
            raise SetupError(f"{shown}: no such file or folder", step="open path",
                             errno=e.errno) from None
        raise SetupError(f"{shown}: {e.strerror}", step="open path", errno=e.errno) from None
    finally:
        os.close(dfd)


def fd_path(fd: int) -> str:
    """The kernel's name for what ``fd`` refers to (for messages and
    protected-folder checks; the fd, not this name, is what is acted on)."""
    return os.readlink(f"/proc/self/fd/{fd}")


def write_output(path: str | os.PathLike, data: str | bytes) -> str:
    """Write ``data`` to ``path`` as a whole (see the module docstring).

    Steps: 1. open the folder by fd, no symlink followed; 2. refuse a final
    component that exists and is not a regular file; 3. create the temporary
    file with ``O_EXCL|O_NOFOLLOW`` under a random name through the folder's
    fd (a planted name makes it fail, never write elsewhere); 4. write and
    fsync it; 5. rename it over the target through the same fd. On any
    failure the temporary file is removed. Returns the path as given."""
    p = os.fspath(path)
    body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    dfd, name = _walk_parent(p, shown=p)
    try:
        if name in (".", ".."):
            raise UsageError(f"{p}: is a folder; give a file name to write to")
        mode = 0o666 & ~_umask()
        try:
            st = os.lstat(name, dir_fd=dfd)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                raise UsageError(f"{p}: is {_kind(st.st_mode)}; refusing to replace it: "
                                 "write to a regular file or a new path")
            mode = stat.S_IMODE(st.st_mode)
        for _ in range(16):
            tmp = f".{name[:200]}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=dfd)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise SetupError(f"{p}: cannot create a file in its folder: {e.strerror}",
                                 step="write output", errno=e.errno) from None
        else:  # pragma: no cover - 16 collisions of 64 random bits
            raise SetupError(f"{p}: cannot create a temporary file", step="write output")
        try:
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError as e:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise SetupError(f"{p}: cannot write: {e.strerror}", step="write output",
                             errno=e.errno) from None
    finally:
        os.close(dfd)
    return p


def _umask() -> int:
    # os.umask has no read-only form; set and restore (single-threaded CLI).
    m = os.umask(0o022)
    os.umask(m)
    return m
