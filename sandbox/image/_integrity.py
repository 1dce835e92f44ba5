"""On-disk integrity of stored images (issue 12): what runs is what was verified.

The store unpacks each verified layer once; the launch then mounts those
trees. Between the two, anything that can write the store could change
what runs while the signature still verifies (it covers the manifest or the
archive, not the unpacked files). Like rkt's check of the rendered tree
before every run, the launch refuses a layer that changed since import,
unless ``--insecure-options=ondisk`` (recorded).

The mechanism, chosen for a per-launch cost that stays small as images grow:

1. **Seal at import.** After a layer is unpacked and its digests checked,
   every entry of its tree is recorded in ``layers/<key>/seal.json``: path,
   type and mode, owner, size, inode, ctime, and the SHA-256 of each regular
   file (a symlink's target). The seal's own SHA-256 and a *tree digest*
   (SHA-256 over path, mode, owner, size, inode and ctime of every entry,
   in the file system's directory order) go into the store's SQLite index. Kept blobs (manifest,
   config, archive, signatures) are sealed by size, inode and ctime.
2. **Fast check at launch** (`check_record`): one ``lstat`` per entry, the
   tree digest computed again and compared; no file is read. The inode
   change time moves on every write, ``chmod``, ``chown``, link-count or
   xattr change and cannot be set back by ``utime``, so an edited,
   re-permissioned, replaced (new inode), added or removed entry changes
   the digest. Only on a mismatch is the seal read, to name the layer and
   the path. Cost: one ``lstat`` per file (about 1-2 µs each in the page
   cache), no hashing of content.
3. **Full check** (`image verify --full`, `check_record(full=True)`):
   every regular file re-hashed against the seal and every blob against
   its digest: catches changes made with the clock set back, or by a
   writer who restores ctime by other means.

What it cannot catch: a root attacker on the host. Root can change the
store's index and seals along with the files, change the clock, write the
block device, or swap a file between this check and the mount; the store
is private to its owner (0700) precisely because its integrity rests on
who can write it. Use fs-verity or dm-verity for a defence against root.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from ..errors import ArtifactError

SEAL_VERSION = 1
SEAL_FILE = "seal.json"


def _walk(root: str):
    """(relpath, stat_result) for the root ("/") and every entry below it,
    sorted by path within each folder; never follows a symlink."""
    out = [("/", os.lstat(root))]
    stack = [("", root)]
    while stack:
        rel, path = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise ArtifactError(f"cannot read {path}: {e.strerror}") from None
        subdirs = []
        for e in entries:
            st = e.stat(follow_symlinks=False)
            r = f"{rel}/{e.name}"
            out.append((r, st))
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((r, e.path))
        stack.extend(reversed(subdirs))
    return out


def tree_digest(root: str) -> str:
    """The fast digest of a tree (see the module docstring, step 2), in the
    file system's own directory order (no sorting: cheaper, and stable for
    an unchanged folder; a different order only sends the check to the
    exact comparison with the seal, which then decides)."""
    h = hashlib.sha256()
    upd = h.update
    st = os.lstat(root)
    upd(b"/\0%o\0%d\0%d\0%d\0%d\0%d\n" % (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                           st.st_ino, st.st_ctime_ns))
    stack = [root]
    n = len(root)
    isdir = stat.S_ISDIR
    while stack:
        path = stack.pop()
        with os.scandir(path) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                upd(b"%s\0%o\0%d\0%d\0%d\0%d\0%d\n" % (
                    os.fsencode(e.path[n:]), st.st_mode, st.st_uid, st.st_gid, st.st_size,
                    st.st_ino, st.st_ctime_ns))
                if isdir(st.st_mode):
                    stack.append(e.path)
    return "sha256:" + h.hexdigest()


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_seal(layer_dir: str) -> dict:
    """Seal ``layer_dir/root``: write ``layer_dir/seal.json`` and return
    ``{"seal": sha256 of that file, "tree": tree digest}`` for the index."""
    root = os.path.join(layer_dir, "root")
    entries = []
    for rel, st in _walk(root):
        full = root + rel if rel != "/" else root
        if stat.S_ISREG(st.st_mode):
            extra = _file_sha256(full)
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(full)
        else:
            extra = None
        entries.append([rel, st.st_mode, st.st_uid, st.st_gid, st.st_size,
                        st.st_ino, st.st_ctime_ns, extra])
    data = json.dumps({"version": SEAL_VERSION, "entries": entries},
                      separators=(",", ":")).encode("utf-8", "surrogateescape")
    with open(os.path.join(layer_dir, SEAL_FILE), "xb") as f:
        f.write(data)
    return {"seal": "sha256:" + hashlib.sha256(data).hexdigest(),
            "tree": tree_digest(root)}


def blob_seal(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_ino, st.st_ctime_ns


def _refuse(what: str, detail: str) -> ArtifactError:
    return ArtifactError(
        f"{what}: {detail} since it was verified; refusing to run it",
        hint="remove the image and import it again, or run it anyway with "
             "--insecure-options=ondisk (recorded)")


def _load_seal(layer_dir: str, digest: str, what: str) -> list:
    try:
        data = Path(layer_dir, SEAL_FILE).read_bytes()
    except OSError:
        raise _refuse(what, f"its seal {SEAL_FILE} is missing") from None
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise _refuse(what, f"its seal {SEAL_FILE} was changed")
    return json.loads(data)["entries"]


def _explain(root: str, sealed: list, what: str, *, full: bool) -> ArtifactError | None:
    """The first difference between a tree and its seal, as an error."""
    now = {rel: st for rel, st in _walk(root)}
    want = {e[0]: e for e in sealed}
    for rel in sorted(set(now) | set(want)):
        st, e = now.get(rel), want.get(rel)
        if e is None:
            return _refuse(what, f"{rel} was added")
        if st is None:
            return _refuse(what, f"{rel} was removed")
        _rel, mode, uid, gid, size, ino, ctime, extra = e
        if stat.S_IFMT(st.st_mode) != stat.S_IFMT(mode):
            return _refuse(what, f"{rel} changed type")
        if st.st_mode != mode:
            return _refuse(what, f"{rel} changed mode from {mode & 0o7777:o} to "
                                 f"{st.st_mode & 0o7777:o}")
        if (st.st_uid, st.st_gid) != (uid, gid):
            return _refuse(what, f"{rel} changed owner")
        full_path = root + rel if rel != "/" else root
        if stat.S_ISREG(mode) and (st.st_size != size or
                                  (full and _file_sha256(full_path) != extra)):
            return _refuse(what, f"{rel} changed content")
        if stat.S_ISLNK(mode) and os.readlink(full_path) != extra:
            return _refuse(what, f"{rel} changed link target")
    # Only then the entries whose inode or change time moved (a folder's
    # moves when an entry is added or removed: named above, more usefully).
    if not full:
        for rel in sorted(want):
            st, e = now[rel], want[rel]
            if (st.st_ino, st.st_ctime_ns) != (e[5], e[6]):
                return _refuse(what, f"{rel} was modified (inode or change time differs)")
    return None


def check_record(record, *, full: bool = False) -> None:
    """Refuse (`ArtifactError`, one line naming the layer and the path) when
    a layer tree or a kept blob of ``record`` differs from its seal. Fast
    (stat only) unless ``full``."""
    who = record.name or record.digest
    if len(record.layer_seals) != len(record.layer_dirs):
        raise _refuse(f"image {who}", "its layers carry no integrity seal (imported "
                      "by an older version)")
    for (key, seal, tree), root in zip(record.layer_seals, record.layer_dirs):
        what = f"image {who}: layer {key}"
        if not seal or not tree:
            raise _refuse(what, "the layer has no integrity seal (imported by an older version)")
        if not full and tree_digest(root) == tree:
            continue
        sealed = _load_seal(os.path.dirname(root), seal, what)
        err = _explain(root, sealed, what, full=full)
        if err is not None:
            raise err
        # No entry differs from the seal: only the directory order moved.
    for digest, path, size, ino, ctime in record.blob_seals:
        what = f"image {who}: blob {digest}"
        try:
            now = blob_seal(path)
        except OSError:
            raise _refuse(what, "the blob was removed") from None
        if now != (size, ino, ctime):
            raise _refuse(what, "the blob was modified")
        if full:
            algo = digest.partition(":")[0]
            h = hashlib.new(algo)
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if f"{algo}:{h.hexdigest()}" != digest:
                raise _refuse(what, "the blob's content no longer matches its digest")
