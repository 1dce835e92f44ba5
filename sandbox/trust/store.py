"""The trust store: which OpenPGP keys may sign images under which names.

Layout (DESIGN §4, after rkt's ``/etc/rkt/trustedkeys`` and
``/usr/lib/rkt/trustedkeys``)::

    <config>/trustedkeys/root.d/<FINGERPRINT>             trusted for every name
    <config>/trustedkeys/prefix.d/<prefix>/<FINGERPRINT>  trusted for names under <prefix>
    keys/root.d/..., keys/prefix.d/...                    the bundled vendor layer, read-only

A key file holds one OpenPGP certificate (binary or armored) and is named
by its primary key's full fingerprint in upper-case hex. ``<prefix>`` is a
relative path of name components (`names.parse_prefix`). The two layers are
merged entry by entry, an entry being (``root`` or a prefix, fingerprint):
a config file replaces the vendor file of the same entry, and an **empty**
config file masks it (the entry is then absent). Empty vendor files and
files not named by a fingerprint are ignored; symbolic links are never
followed (they are ignored, so a link can only ever remove trust).

The **generation** of the store is a SHA-256 over the effective listing
and the bytes of every effective key file (and the masks). Any add,
remove, mask, or a hand edit of a key file changes it; the verification
cache is keyed by it, so a removed key takes effect at the next launch.

Every write is atomic (temporary file in the same folder, ``fsync``,
``os.replace``) and reported to the audit log via `_audit`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path

from .._resources import data_dir
from ..errors import ArtifactError, NotFound, UsageError
from ..paths import Paths
from . import names

ROOT = "root"
CONFIG = "config"
VENDOR = "vendor"
_MAX_KEY_FILE = 1 << 20


@dataclass(frozen=True, slots=True)
class Entry:
    """One effective trust entry: the key ``fingerprint`` is trusted for
    every name (``scope == "root"``) or for names under the prefix
    ``scope``. ``layer`` is ``"config"`` or ``"vendor"``; ``path`` the key
    file."""

    fingerprint: str
    scope: str
    layer: str
    path: Path

    @property
    def is_root(self) -> bool:
        return self.scope == ROOT

    def covers(self, name: str) -> bool:
        return self.is_root or names.prefix_covers(self.scope, name)

    def read(self) -> bytes:
        return _read_key_file(self.path)

    def as_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "scope": self.scope,
                "layer": self.layer, "path": str(self.path)}


def _read_key_file(path: Path) -> bytes:
    # O_NOFOLLOW: a key file that became a symlink is not read through.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"trust store entry {path} is not a regular file")
        if st.st_size > _MAX_KEY_FILE:
            raise ArtifactError(f"trust store key file {path} is larger than 1 MiB")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(_MAX_KEY_FILE + 1)
    finally:
        os.close(fd)


def _audit(paths: Paths, kind: str, data: dict) -> None:
    """Report a trust store change to the audit log (DESIGN §4, §6).
    Errors from the audit log propagate: a change that cannot be recorded
    must not look like a success."""
    from ..audit import record_event
    record_event(paths, kind, data)


class TrustStore:
    """The merged config + vendor trust store for ``paths``.

    ``vendor`` defaults to the bundled ``keys/`` folder
    (`sandbox._resources.data_dir`); tests may point it elsewhere or pass
    ``None`` for no vendor layer. Nothing is read at construction."""

    def __init__(self, paths: Paths, *, vendor: Path | None | str = "bundled"):
        self.paths = paths
        self.config_dir = paths.trustedkeys
        if vendor == "bundled":
            try:
                vendor = data_dir("keys")
            except FileNotFoundError:
                vendor = None
        self.vendor_dir = Path(vendor) if vendor is not None else None

    # -- reading -----------------------------------------------------------

    def _layers(self) -> list[tuple[str, Path]]:
        out = []
        if self.vendor_dir is not None:
            out.append((VENDOR, self.vendor_dir))
        out.append((CONFIG, self.config_dir))
        return out

    @staticmethod
    def _scope_dir(base: Path, scope: str | tuple[str, ...]) -> Path:
        if scope == ROOT:
            return base / "root.d"
        comps = names.parse_prefix(scope) if isinstance(scope, str) else scope
        return base.joinpath("prefix.d", *comps)

    @staticmethod
    def _key_files(folder: Path) -> Iterator[tuple[str, Path, int]]:
        """(fingerprint, path, size) of the key files directly in ``folder``;
        symlinks and other names skipped."""
        try:
            it = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        with it:
            for e in it:
                if not names.is_fingerprint(e.name):
                    continue
                try:
                    if not e.is_file(follow_symlinks=False):
                        continue
                    size = e.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
                yield e.name, Path(e.path), size

    def _scope_entries(self, scope: str) -> dict[str, Entry]:
        """Effective entries of one scope (root or a prefix), layers merged."""
        merged: dict[str, Entry | None] = {}
        for layer, base in self._layers():
            folder = self._scope_dir(base, scope)
            if not self._dir_without_symlinks(base, folder):
                continue
            for fpr, path, size in self._key_files(folder):
                if size == 0:
                    # an empty file masks the lower layer's entry
                    merged[fpr] = None
                else:
                    merged[fpr] = Entry(fpr, scope, layer, path)
        return {k: v for k, v in merged.items() if v is not None}

    @staticmethod
    def _dir_without_symlinks(base: Path, folder: Path) -> bool:
        """True when ``folder`` exists and no component from ``base`` down is
        a symlink (a linked prefix folder could graft trust elsewhere)."""
        try:
            rel = folder.relative_to(base)
        except ValueError:
            return False
        cur = base
        for part in rel.parts:
            cur = cur / part
            try:
                st = os.lstat(cur)
            except OSError:
                return False
            if not stat.S_ISDIR(st.st_mode):
                return False
        return True

    def entries_for(self, name: str) -> list[Entry]:
        """The entries that apply to image ``name``: root entries, then the
        entries of every prefix that covers it, shortest first. Only the
        folders on the name's own path are read."""
        out = list(self._scope_entries(ROOT).values())
        for comps in names.ancestor_prefixes(name):
            out.extend(self._scope_entries("/".join(comps)).values())
        return out

    def _prefixes(self) -> set[str]:
        """Every prefix that has a folder in either layer."""
        found: set[str] = set()
        for _layer, base in self._layers():
            top = base / "prefix.d"
            if not self._dir_without_symlinks(base, top):
                continue
            for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
                rel = os.path.relpath(dirpath, top)
                if rel != ".":
                    try:
                        names.parse_prefix(rel)
                    except UsageError:
                        dirnames[:] = []  # not a valid prefix: ignore its subtree
                        continue
                    if any(names.is_fingerprint(f) for f in filenames):
                        found.add(rel)
                dirnames[:] = [d for d in dirnames
                               if not os.path.islink(os.path.join(dirpath, d))]
        return found

    def entries(self) -> list[Entry]:
        """Every effective entry, root first, then prefixes in order."""
        out = sorted(self._scope_entries(ROOT).values(), key=lambda e: e.fingerprint)
        for prefix in sorted(self._prefixes()):
            out.extend(sorted(self._scope_entries(prefix).values(), key=lambda e: e.fingerprint))
        return out

    def entries_of(self, fingerprint: str) -> list[Entry]:
        """The effective entries of one key (by primary fingerprint)."""
        fpr = names.normalize_fingerprint(fingerprint)
        return [e for e in self.entries() if e.fingerprint == fpr]

    def generation(self) -> str:
        """SHA-256 (hex) over the effective listing, the key bytes and the
        masks. Changes on every add, remove or edit."""
        h = hashlib.sha256(b"sandbox-trust-generation-v1\0")
        scopes = [ROOT] + sorted(self._prefixes())
        for scope in scopes:
            for layer, base in self._layers():
                folder = self._scope_dir(base, scope)
                if not self._dir_without_symlinks(base, folder):
                    continue
                for fpr, path, size in sorted(self._key_files(folder)):
                    h.update(f"{scope}\0{layer}\0{fpr}\0{size}\0".encode())
                    if size:
                        try:
                            h.update(hashlib.sha256(_read_key_file(path)).digest())
                        except (OSError, ArtifactError):
                            h.update(b"unreadable")
        return h.hexdigest()

    # -- writing (config layer only) ----------------------------------------

    def _write_atomic(self, target: Path, data: bytes) -> None:
        folder = target.parent
        self._ensure_dirs(folder)
        tmp = folder / f".{target.name}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._fsync_dir(folder)

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        try:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _ensure_dirs(self, folder: Path) -> None:
        """Create ``folder`` under the config trust store, refusing to go
        through a symlink at any level."""
        base = self.config_dir
        rel = folder.relative_to(base)  # ValueError if outside: cannot happen
        self.paths.ensure("config")
        cur = base
        for part in (None,) + rel.parts:
            if part is not None:
                cur = cur / part
            try:
                os.mkdir(cur, 0o755)
            except FileExistsError:
                pass
            st = os.lstat(cur)
            if not stat.S_ISDIR(st.st_mode):
                raise ArtifactError(
                    f"trust store folder {cur} is not a directory (or is a symlink)",
                    hint="remove it by hand and try again")

    def add(self, key_blob: bytes, fingerprint: str, scope: str, *,
            details: dict | None = None) -> Path:
        """Trust the key ``fingerprint`` (whose public certificate is
        ``key_blob``, binary) for ``scope``: ``"root"`` or a prefix. Replaces
        an existing file or mask of the same entry. Returns the file written.

        The caller (`sandbox.trust.keys.add_key`) has checked the key;
        ``details`` (user ids, expiry) go into the audit event."""
        fpr = names.normalize_fingerprint(fingerprint)
        if scope != ROOT:
            names.parse_prefix(scope)
        target = self._scope_dir(self.config_dir, scope) / fpr
        before = self.generation()
        existed = target.exists()
        self._write_atomic(target, key_blob)
        _audit(self.paths, "trust.add", {
            "fingerprint": fpr, "scope": scope, "layer": CONFIG,
            "replaced": existed, "generation_before": before,
            "generation": self.generation(),
            "key_sha256": hashlib.sha256(key_blob).hexdigest(), **(details or {})})
        return target

    def refresh(self, key_blob: bytes, fingerprint: str, scopes: list[str], *,
                details: dict | None = None) -> None:
        """Replace the key file of ``fingerprint`` in each of ``scopes`` by
        ``key_blob`` (a merged, newer copy: `sandbox.trust.keys.refresh_key`
        checked it), in the config layer (over a vendor file of the same
        entry), and record one ``trust.refresh`` audit event."""
        fpr = names.normalize_fingerprint(fingerprint)
        before = self.generation()
        for scope in scopes:
            self._write_atomic(self._scope_dir(self.config_dir, scope) / fpr, key_blob)
        _audit(self.paths, "trust.refresh", {
            "fingerprint": fpr, "scopes": list(scopes), "layer": CONFIG,
            "generation_before": before, "generation": self.generation(),
            "key_sha256": hashlib.sha256(key_blob).hexdigest(), **(details or {})})

    def remove(self, fingerprint: str, scope: str | None = None) -> list[Entry]:
        """Stop trusting ``fingerprint`` for ``scope`` (``"root"``, a prefix,
        or ``None`` for every entry of that key). Config files are deleted;
        vendor entries are masked with an empty config file. Returns the
        entries removed; raises `NotFound` when there are none."""
        fpr = names.normalize_fingerprint(fingerprint)
        if scope is not None and scope != ROOT:
            scope = "/".join(names.parse_prefix(scope))
        targets = [e for e in self.entries()
                   if e.fingerprint == fpr and (scope is None or e.scope == scope)]
        if not targets:
            where = "" if scope is None else (" for every name" if scope == ROOT
                                              else f" for prefix {scope}")
            raise NotFound(f"key {fpr} is not in the trust store{where}",
                           hint="see `sandbox trust list`")
        before = self.generation()
        for e in targets:
            cfg = self._scope_dir(self.config_dir, e.scope) / fpr
            vend = (self._scope_dir(self.vendor_dir, e.scope) / fpr
                    if self.vendor_dir is not None else None)
            vendor_has = vend is not None and vend.is_file() and vend.stat().st_size > 0
            if vendor_has:
                self._write_atomic(cfg, b"")  # mask the vendor key
            else:
                try:
                    os.unlink(cfg)
                except FileNotFoundError:
                    pass
                self._fsync_dir(cfg.parent)
        _audit(self.paths, "trust.remove", {
            "fingerprint": fpr,
            "entries": [{"scope": e.scope, "layer": e.layer} for e in targets],
            "generation_before": before, "generation": self.generation()})
        return targets
