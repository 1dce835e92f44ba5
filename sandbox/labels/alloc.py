"""Allocation of a sandbox's MCS level, unique among running sandboxes.

Mechanism (crash-proof: nothing to clean up when a holder dies):

- ``<runtime>/labels/<level>`` is one lock file per level held, named by the
  level's canonical text (``s0:c5,c9``). The sandbox supervisor holds an
  ``flock`` on it for the sandbox's lifetime; when the process dies, the
  kernel drops the lock, and the level is free again.
- ``level = "auto"``: a pseudo-random pair ``s0:cI,cJ`` (``0 <= I < J <=
  1023``) locked ``LOCK_EX | LOCK_NB``. The kernel arbitrates the lock, so
  two holders of one pair are impossible even without the global lock.
- A fixed level (``level = "s0:c3,c7"`` in the profile) is locked
  ``LOCK_SH``: sandboxes with the same fixed level share it *by design* (as
  Podman and rkt allow), because the operator chose to give them the same
  access. A fixed level is never shared with an ``auto`` sandbox: the shared
  lock and the exclusive lock exclude each other in both directions.
- ``<runtime>/labels/.lock`` is held ``LOCK_EX`` for the few milliseconds of
  each allocation, release, listing and sweep. It makes two more things
  safe: an ``auto`` pair is never drawn so that it dominates a running
  fixed level (``s0:c5`` running forbids every pair containing c5, which
  could read its volumes), and lock files of dead holders can be unlinked
  without racing someone who is about to lock them.

The lock file holds one line of JSON ``{"kind", "level", "owner", "pid"}``
written by the holder (for fixed levels: the first holder) and read by
`labels_in_use` for ``sandbox label list --running``.

Uniqueness holds among the sandboxes that share a runtime folder: root's
(``/run/sandbox``) or one user's, or one ``--root``. Sandboxes of different
users may draw the same pair; each can mount only volumes its own user may
open, so a label never grants more than file permissions already do.

The lease's fd is ``O_CLOEXEC``. flock belongs to the open file description:
a forked child that keeps a copy keeps the lock alive, which is harmless
(the runtime closes every fd above 2 before ``execve``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
from pathlib import Path
from typing import NamedTuple

from ..errors import SetupError
from .model import Level, LabelRefused, MAX_CATEGORY

_DIR = "labels"
_LOCK = ".lock"


class LabelInUse(NamedTuple):
    """One level held by at least one running sandbox."""

    level: Level
    kind: str          # "auto" | "fixed"
    owner: str         # the sandbox id given at allocation, or ""
    pid: int           # the holder's pid (for fixed: the first holder)

    def to_dict(self) -> dict:
        return {"level": str(self.level), "kind": self.kind,
                "owner": self.owner, "pid": self.pid}


class LabelLease:
    """A held level. Keep it (and its fd) open for the sandbox's lifetime;
    `release` (or leaving the ``with`` block, or dying) frees it."""

    __slots__ = ("level", "kind", "path", "_fd", "_dir")

    def __init__(self, level: Level, kind: str, path: Path, fd: int, labels_dir: Path):
        self.level = level
        self.kind = kind
        self.path = path
        self._fd = fd
        self._dir = labels_dir

    @property
    def fd(self) -> int | None:
        """The O_CLOEXEC fd holding the flock, or None once released."""
        return self._fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock; unlink the file when nobody else holds it.
        Idempotent."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with _global_lock(self._dir):
                os.close(fd)
                _unlink_if_free(self.path)
        except OSError:
            # The folder vanished (tmp root removed): closing is what matters.
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "LabelLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        state = "held" if self.held else "released"
        return f"<LabelLease {self.level} {self.kind} {state}>"


class _global_lock:
    """``with _global_lock(dir):`` holds ``dir/.lock`` exclusively."""

    def __init__(self, labels_dir: Path):
        self.labels_dir = labels_dir
        self.fd = -1

    def __enter__(self):
        try:
            self.fd = os.open(self.labels_dir / _LOCK,
                              os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise SetupError(f"label folder {self.labels_dir}: {e.strerror}",
                             step="label", errno=e.errno,
                             hint="run as the user who owns it, or pass --root") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing drops the flock


def labels_dir(paths) -> Path:
    """``<runtime>/labels``, created (mode 0700) if missing."""
    paths.ensure("runtime")
    d = Path(paths.runtime) / _DIR
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def _level_file(d: Path, level: Level) -> Path:
    return d / str(level)


def _try_lock(path: Path, how: int) -> int | None:
    """Open ``path`` (creating it) and flock it without blocking; the fd, or
    None when someone else holds a conflicting lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def _unlink_if_free(path: Path) -> bool:
    """Under the global lock: unlink ``path`` when no one holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def _write_record(fd: int, level: Level, kind: str, owner: str) -> None:
    import json
    blob = json.dumps({"kind": kind, "level": str(level), "owner": owner,
                       "pid": os.getpid()}, sort_keys=True).encode() + b"\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, blob, 0)


def _read_record(fd: int) -> dict:
    import json
    try:
        raw = os.pread(fd, 4096, 0)
        rec = json.loads(raw or b"{}")
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _scan(d: Path, *, sweep: bool, removed: list | None = None) -> list[LabelInUse]:
    """Under the global lock: the levels held now; with ``sweep``, unlink
    the files nobody holds (their names appended to ``removed``)."""
    out: list[LabelInUse] = []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in sorted(names):
        if name.startswith("."):
            continue
        try:
            level = Level.parse(name)
        except Exception:
            continue  # not ours; leave it alone
        path = d / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                rec = _read_record(fd)
                kind = rec.get("kind") if rec.get("kind") in ("auto", "fixed") else "fixed"
                pid = rec.get("pid")
                out.append(LabelInUse(level, kind, str(rec.get("owner", "")),
                                      pid if isinstance(pid, int) else 0))
                continue
            if sweep:
                os.unlink(path)
                if removed is not None:
                    removed.append(name)
        finally:
            os.close(fd)
    return out


def labels_in_use(paths) -> tuple[LabelInUse, ...]:
    """The levels held by running sandboxes, sorted by level text.

    Reads ``<runtime>/labels``; does not create anything when it is absent.
    """
    d = Path(paths.runtime) / _DIR
    if not d.is_dir():
        return ()
    with _global_lock(d):
        return tuple(_scan(d, sweep=False))


def gc_labels(paths) -> int:
    """Remove the lock files of levels nobody holds (left by holders that
    died); the number removed. Safe while sandboxes run."""
    d = Path(paths.runtime) / _DIR
    if not d.is_dir():
        return 0
    removed: list[str] = []
    with _global_lock(d):
        _scan(d, sweep=True, removed=removed)
    return len(removed)


def _random_pair(rng: random.Random) -> tuple[int, int]:
    i, j = rng.sample(range(MAX_CATEGORY + 1), 2)
    return (i, j) if i < j else (j, i)


def allocate_level(paths, level: str | Level = "auto", *, owner: str = "",
                   attempts: int = 4096, rng: random.Random | None = None) -> LabelLease:
    """Reserve the sandbox's level and return the held `LabelLease`.

    ``level`` is ``"auto"`` (a fresh category pair, exclusive) or a fixed
    level (text or `Level`, shared with other sandboxes of the same fixed
    level). ``owner`` (the sandbox id) is recorded for listings.

    Raises `LabelError` for a malformed level and `LabelRefused` when a
    fixed level is held by an ``auto`` sandbox, when a fixed level would be
    readable by a running ``auto`` sandbox, or when no pair is free;
    `SetupError` (step ``label``) when the runtime folder is unusable.
    A fixed level must be a single level (a range is a `LabelError`).
    """
    fixed = None
    if not (isinstance(level, str) and level == "auto"):
        fixed = level if isinstance(level, Level) else Level.parse(level)
    try:
        d = labels_dir(paths)
        if fixed is None:
            return _allocate_auto(d, owner, attempts, rng or random.SystemRandom())
        return _allocate_fixed(d, fixed, owner)
    except SetupError:
        raise
    except OSError as e:
        raise SetupError(f"label allocation in {paths.runtime}: {e.strerror}",
                         step="label", errno=e.errno) from None


def _allocate_auto(d: Path, owner: str, attempts: int, rng: random.Random) -> LabelLease:
    with _global_lock(d):
        in_use = _scan(d, sweep=False)
        held = {u.level for u in in_use}
        # A pair dominates a running fixed level of one category it
        # contains (and of two: the same pair, held, so excluded above).
        banned = set()
        for u in in_use:
            if u.level.sensitivity == 0 and len(u.level.categories) == 1:
                banned |= u.level.categories
        for _ in range(attempts):
            i, j = _random_pair(rng)
            if i in banned or j in banned:
                continue
            lvl = Level(0, frozenset((i, j)))
            if lvl in held:
                continue
            path = _level_file(d, lvl)
            fd = _try_lock(path, fcntl.LOCK_EX)
            if fd is None:
                held.add(lvl)
                continue
            _write_record(fd, lvl, "auto", owner)
            return LabelLease(lvl, "auto", path, fd, d)
    raise LabelRefused(f"no free category pair after {attempts} attempts "
                       f"({len(held)} levels held in {d})",
                       hint="stop some sandboxes, or run `sandbox gc`")


def _allocate_fixed(d: Path, lvl: Level, owner: str) -> LabelLease:
    with _global_lock(d):
        in_use = _scan(d, sweep=False)
        if lvl.sensitivity == 0 and len(lvl.categories) == 1:
            for u in in_use:
                if u.kind == "auto" and u.level.dominates(lvl):
                    raise LabelRefused(
                        f"fixed level {lvl} would be readable by a running sandbox "
                        f"at {u.level}{' (' + u.owner + ')' if u.owner else ''}",
                        hint="give the profile a level of three or more categories, "
                             "or wait for that sandbox to exit")
        path = _level_file(d, lvl)
        fd = _try_lock(path, fcntl.LOCK_SH)
        if fd is None:
            raise LabelRefused(
                f"fixed level {lvl} is held by a running sandbox with an auto label",
                hint="choose another level in the profile, or wait for it to exit")
        rec = _read_record(fd)
        if rec.get("kind") != "fixed":
            # First holder (or a stale record left by a dead auto holder).
            _write_record(fd, lvl, "fixed", owner)
        return LabelLease(lvl, "fixed", path, fd, d)
