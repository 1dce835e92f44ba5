"""Safe unpacking of one layer tar into a tree of its own.

This is the security-critical part of the image store: a layer is hostile
input until proven otherwise, and the tree it lands in is later the root file
system of a sandbox. The rules (issue 3, item 3):

1. Every entry name is normalised (a leading ``./`` is dropped) and refused
   when it is absolute, contains ``..``, is empty, or is too long.
2. The entry's parent is reached by walking from the tree's root fd one
   component at a time with ``O_NOFOLLOW | O_DIRECTORY``: a symlink (or a
   file) where a directory is expected is a refusal, so nothing is ever
   written through a link, whether it leads out or not. Missing parents are
   created as 0755 directories.
3. The last component is created with ``*at`` calls relative to that parent
   fd: regular files with ``O_CREAT | O_EXCL | O_NOFOLLOW`` after any old
   entry of that name was unlinked, so an earlier symlink or hardlink of the
   same name is replaced, never written through.
4. Hardlink targets are resolved the same way inside the tree and must
   already exist in this layer; the link is made with ``linkat`` without
   following symlinks.
5. Whiteouts (OCI image spec, "Representing Changes"; docker image spec
   v1.2) become overlayfs whiteouts inside the tree: ``.wh.NAME`` a char
   device 0/0 named NAME, ``.wh..wh..opq`` the ``trusted.overlay.opaque=y``
   xattr on its directory (``user.overlay.opaque`` when not root, for a
   ``userxattr`` overlay mount). A whiteout never touches a file this layer
   itself created: it applies to lower layers only (OCI spec).
6. Device nodes are not created; they are recorded in the report. FIFOs are
   made. setuid/setgid bits on files are cleared (and recorded) unless
   ``allow_setuid``. Of the PAX xattrs only ``user.*`` (outside
   ``user.overlay.*``) are applied, plus ``security.capability`` when
   ``allow_setuid``: a layer may never forge ``trusted.overlay.*``.
7. Limits: entries per layer, bytes per layer, decompression ratio, size of
   any single tar header read. Every refusal raises `ArtifactError` naming
   the entry; the caller removes the partial tree (it lives in a private
   temporary folder and is renamed into place only when complete).

Python's ``tarfile`` parses headers; it never writes (no ``extract()``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field

from ..errors import ArtifactError, HostSupportError

_CHUNK = 1 << 20
_MiB = 1 << 20
_GiB = 1 << 30

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits on what one import may cost. Sizes in bytes.

    ``max_entries`` and ``max_layer_bytes`` apply per layer (uncompressed);
    ``max_image_bytes`` to the sum over the layers of one image;
    ``max_ratio`` is uncompressed/compressed bytes, checked once a layer has
    produced ``ratio_floor`` bytes (small layers compress well legitimately);
    ``max_json_bytes`` bounds any manifest, index or config read into memory;
    ``max_header_bytes`` any single tar header (PAX, GNU long name);
    ``max_depth`` the components of one path (bounds the work per entry).
    """

    max_entries: int = 65_536
    max_layer_bytes: int = 16 * _GiB
    max_image_bytes: int = 32 * _GiB
    max_ratio: int = 100
    ratio_floor: int = 16 * _MiB
    max_json_bytes: int = 4 * _MiB
    max_header_bytes: int = 1 * _MiB
    max_layers: int = 256
    max_archive_members: int = 100_000
    max_depth: int = 128


@dataclass(slots=True)
class UnpackReport:
    """What one layer's unpacking did. ``skipped`` holds ``(path, reason)``
    for devices and ignored entries; ``cleared_setuid`` the files whose
    setuid/setgid bits were removed."""

    entries: int = 0
    bytes: int = 0
    skipped: list = field(default_factory=list)
    cleared_setuid: list = field(default_factory=list)
    whiteouts: int = 0
    opaque: int = 0
    captured: dict = field(default_factory=dict)
    blob_digest: str = ""
    diff_digest: str = ""
    compressed_bytes: int = 0
    compression: str = "none"


# ---------------------------------------------------------------- streams


def _zstd_decompressor():
    try:
        import zstandard  # type: ignore
    except ImportError:
        raise ArtifactError(
            "layer is zstd-compressed, which this installation cannot read",
            hint="install the 'zstandard' package into sandbox's environment") from None
    return zstandard.ZstdDecompressor().decompressobj()


class LayerStream:
    """A forward-only, seekable view of the *uncompressed* bytes of a blob.

    Reads ``raw`` (a binary file), hashes the raw bytes with ``blob_algo``
    (the blob digest) and the uncompressed bytes with sha256 (the diff id),
    detects gzip/bzip2/xz/zstd by magic, and enforces the size, ratio and
    header limits as the bytes flow. ``tarfile`` in ``r:`` mode only seeks
    forward, which this class turns into reads, so each byte is read once.
    """

    def __init__(self, raw, *, limits: Limits, label: str, blob_algo: str = "sha256",
                 expected_size: int | None = None, progress=None,
                 diff_algo: str = "sha256", tee=None):
        self._raw = raw
        self._tee = tee
        self._limits = limits
        self._label = label
        self._expected_size = expected_size
        self._progress = progress
        self.blob_hash = hashlib.new(blob_algo)
        self.diff_hash = hashlib.new(diff_algo)
        self.raw_bytes = 0
        self.pos = 0
        self._buf = b""
        self._off = 0
        self._raw_eof = False
        first = self._read_raw(_CHUNK)
        self.compression, self._dec = self._detect(first)
        self._pending = first  # raw bytes not yet fed to the decompressor
        self._dec_eof = False
        self.total_out = 0

    # -- raw side
    def _read_raw(self, n: int) -> bytes:
        if self._raw_eof:
            return b""
        if self._expected_size is not None:
            n = min(n, self._expected_size + 1 - self.raw_bytes)
            if n <= 0:
                n = 1
        data = self._raw.read(n)
        if not data:
            self._raw_eof = True
            return b""
        self.raw_bytes += len(data)
        if self._expected_size is not None and self.raw_bytes > self._expected_size:
            raise ArtifactError(
                f"{self._label}: blob is larger than its descriptor says "
                f"({self._expected_size} bytes)")
        self.blob_hash.update(data)
        if self._tee is not None:
            self._tee.write(data)
        if self._progress is not None:
            self._progress(len(data))
        return data

    @staticmethod
    def _detect(head: bytes):
        if head[:2] == b"\x1f\x8b":
            return "gzip", zlib.decompressobj(wbits=31)
        if head[:3] == b"BZh":
            import bz2
            return "bzip2", bz2.BZ2Decompressor()
        if head[:6] == b"\xfd7zXZ\x00":
            import lzma
            return "xz", lzma.LZMADecompressor()
        if head[:4] == b"\x28\xb5\x2f\xfd":
            return "zstd", _zstd_decompressor()
        return "none", None

    def _restart(self):
        # Concatenated gzip/bzip2 members form one stream (gzip(1) and pigz
        # both write them); start a fresh decompressor on the leftover.
        if self.compression == "gzip":
            return zlib.decompressobj(wbits=31)
        if self.compression == "bzip2":
            import bz2
            return bz2.BZ2Decompressor()
        if self.compression == "xz":
            import lzma
            return lzma.LZMADecompressor()
        return None

    def _produce(self, n: int) -> bytes:
        """Up to about n uncompressed bytes (b"" at the end)."""
        dec = self._dec
        if dec is None:
            if self._pending:
                data, self._pending = self._pending, b""
                return data
            return self._read_raw(max(n, _CHUNK))
        while not self._dec_eof:
            if self.compression == "gzip":
                if not self._pending:
                    self._pending = self._read_raw(_CHUNK)
                    if not self._pending:
                        raise ArtifactError(f"{self._label}: compressed data is truncated")
                # max_length bounds the output of each call, so a bomb never
                # inflates more than n bytes into memory at once.
                out = dec.decompress(self._pending, n)
                self._pending = dec.unconsumed_tail
                if dec.eof:
                    self._next_member(dec.unused_data + self._pending)
            elif self.compression in ("bzip2", "xz"):
                if dec.needs_input:
                    chunk = self._pending or self._read_raw(_CHUNK)
                    self._pending = b""
                    if not chunk:
                        raise ArtifactError(f"{self._label}: compressed data is truncated")
                else:
                    chunk = b""
                out = dec.decompress(chunk, n)
                if dec.eof:
                    self._next_member(dec.unused_data)
            else:  # zstd: zstandard's decompressobj has no output cap
                chunk = self._pending or self._read_raw(64 * 1024)
                self._pending = b""
                if not chunk:
                    self._dec_eof = True
                    return b""
                out = dec.decompress(chunk)
            if out:
                return out
        return b""

    def _next_member(self, rest: bytes) -> None:
        # Concatenated gzip/bzip2/xz streams form one stream (pigz, pbzip2
        # write them); trailing zero padding ends it.
        if not rest:
            rest = self._read_raw(_CHUNK)
        if rest.strip(b"\x00"):
            self._dec = self._restart()
            self._pending = rest
        else:
            self._pending = b""
            self._drain_raw_tail()
            self._dec_eof = True

    def _drain_raw_tail(self):
        while self._read_raw(_CHUNK):
            pass

    def _more(self, n: int) -> bytes:
        try:
            out = self._produce(n)
        except ArtifactError:
            raise
        except Exception as e:  # zlib.error, lzma.LZMAError, OSError from bz2
            raise ArtifactError(
                f"{self._label}: corrupt {self.compression} data ({e})") from None
        if out:
            self.diff_hash.update(out)
            self.total_out += len(out)
            total = self.total_out
            if total > self._limits.max_layer_bytes:
                raise ArtifactError(
                    f"{self._label}: uncompressed size exceeds the limit of "
                    f"{self._limits.max_layer_bytes} bytes (limit max_layer_bytes)")
            if (self._dec is not None and total > self._limits.ratio_floor
                    and total > self._limits.max_ratio * max(self.raw_bytes, 1)):
                raise ArtifactError(
                    f"{self._label}: decompression ratio exceeds "
                    f"{self._limits.max_ratio}:1 ({total} bytes from {self.raw_bytes}); "
                    "refusing a possible decompression bomb (limit max_ratio)")
        return out

    # -- file protocol used by tarfile
    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            raise ArtifactError(f"{self._label}: unbounded read refused")
        if n > self._limits.max_header_bytes and n > _CHUNK:
            raise ArtifactError(
                f"{self._label}: a tar header of {n} bytes exceeds the limit of "
                f"{self._limits.max_header_bytes}")
        # One buffer with a read offset: tar headers are read 512 bytes at
        # a time, and re-slicing a 1 MiB buffer for each would be quadratic.
        parts = []
        have = 0
        while have < n:
            if self._off >= len(self._buf):
                self._buf = self._more(max(n - have, _CHUNK))
                self._off = 0
                if not self._buf:
                    break
            take = min(n - have, len(self._buf) - self._off)
            if self._off == 0 and take == len(self._buf):
                piece = self._buf
            else:
                piece = self._buf[self._off:self._off + take]
            self._off += take
            parts.append(piece)
            have += take
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self.pos
        elif whence != 0:
            raise OSError(errno.ESPIPE, "layer stream: only absolute seeks")
        if offset < self.pos:
            raise OSError(errno.ESPIPE, "layer stream: backward seek")
        while self.pos < offset:
            if not self.read(min(_CHUNK, offset - self.pos)):
                break
        return self.pos

    def finish(self) -> None:
        """Read to the end of both streams so the digests cover every byte."""
        while self.read(_CHUNK):
            pass
        self._drain_raw_tail()

    def blob_digest(self) -> str:
        return f"{self.blob_hash.name}:{self.blob_hash.hexdigest()}"

    def diff_digest(self) -> str:
        return f"{self.diff_hash.name}:{self.diff_hash.hexdigest()}"


# ---------------------------------------------------------------- names


def normalise_name(name: str, *, label: str, what: str = "entry") -> str:
    """The relative path of a tar entry inside the tree, or "" for the root.

    Refuses absolute names and any ``..`` component (no lexical tricks are
    attempted: such an entry is hostile or broken either way)."""
    if "\x00" in name:
        raise ArtifactError(f"{label}: {what} {name!r} contains a NUL byte")
    if name.startswith("/"):
        raise ArtifactError(f"{label}: {what} {name!r} is an absolute path; "
                            "layers may only name paths inside the image")
    parts = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            raise ArtifactError(f"{label}: {what} {name!r} climbs out with '..'")
        if len(comp.encode("utf-8", "surrogateescape")) > 255:
            raise ArtifactError(f"{label}: {what} {name!r} has a component over 255 bytes")
        parts.append(comp)
    rel = "/".join(parts)
    if len(rel.encode("utf-8", "surrogateescape")) > 4000:
        raise ArtifactError(f"{label}: {what} {name[:80]!r}... is longer than 4000 bytes")
    return rel


# ---------------------------------------------------------------- unpacker


class TreeWriter:
    """Writes entries into one tree, reachable only through ``root_fd``.

    Every method takes a normalised relative path. Nothing here follows a
    symlink: parents are opened with ``O_NOFOLLOW | O_DIRECTORY`` from the
    root fd, and last components are created with ``*at`` calls.
    """

    _CACHE_MAX = 64

    def __init__(self, root: str, *, label: str, whiteouts: bool,
                 allow_setuid: bool, report: UnpackReport):
        self.label = label
        self.whiteouts = whiteouts
        self.allow_setuid = allow_setuid
        self.report = report
        self.is_root = os.geteuid() == 0
        self.xattr_ns = "trusted" if self.is_root else "user"
        self.root_fd = os.open(root, _DIR_FLAGS)
        self._cache: dict[str, int] = {}
        self._created: set[str] = set()     # real entries this layer made
        self._whiteout_paths: set[str] = set()
        # path -> (mode, uid, gid, mtime), applied by finish(); the root is
        # 0755 unless the layer has a "./" entry (the folder was made 0700).
        self._dirs: dict[str, tuple] = {"": (0o755, 0, 0, None)}

    def close(self):
        self._drop_cache()
        os.close(self.root_fd)

    def _drop_cache(self):
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def _refuse(self, path: str, why: str):
        raise ArtifactError(f"{self.label}: entry {path!r}: {why}")

    # -- parents
    def _parent_fd(self, parent: str, entry: str) -> int:
        """fd of directory ``parent`` (relative), creating missing parts."""
        if not parent:
            return self.root_fd
        fd = self._cache.get(parent)
        if fd is not None:
            return fd
        # Start from the deepest cached ancestor (its fd stays the cache's).
        parts = parent.split("/")
        cur, start = self.root_fd, 0
        for i in range(len(parts) - 1, 0, -1):
            fd = self._cache.get("/".join(parts[:i]))
            if fd is not None:
                cur, start = fd, i
                break
        walked = parts[:start]
        opened = []
        try:
            for comp in parts[start:]:
                walked.append(comp)
                here = "/".join(walked)
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=cur)
                except FileNotFoundError:
                    os.mkdir(comp, 0o700, dir_fd=cur)
                    self._dirs.setdefault(here, (0o755, 0, 0, None))
                    self._created.add(here)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=cur)
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        self._refuse(entry, f"its parent {here!r} is a symlink; "
                                     "refusing to write through it")
                    if here in self._whiteout_paths:
                        # ".wh.X" then "X/..." in one layer: X is replaced
                        # by a fresh directory that hides the lower X.
                        os.unlink(comp, dir_fd=cur)
                        self._whiteout_paths.discard(here)
                        os.mkdir(comp, 0o700, dir_fd=cur)
                        self._dirs.setdefault(here, (0o755, 0, 0, None))
                        self._created.add(here)
                        nfd = os.open(comp, _DIR_FLAGS, dir_fd=cur)
                        self._set_opaque(nfd, here)
                    else:
                        self._refuse(entry, f"its parent {here!r} is not a directory")
                opened.append(nfd)
                cur = nfd
        except BaseException:
            for f in opened:
                os.close(f)
            raise
        for f in opened[:-1]:
            os.close(f)
        if len(self._cache) >= self._CACHE_MAX:
            self._drop_cache()
        self._cache[parent] = cur
        return cur

    def _split(self, path: str):
        parent, _, base = path.rpartition("/")
        return parent, base

    def _clear(self, pfd: int, base: str, path: str, *, keep_dir: bool) -> bool:
        """Remove what is at ``base`` so a new entry can take its place.

        Returns True when a directory was kept (``keep_dir``)."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            # Forget fds of the removed tree only; ``pfd`` (a caller's) stays.
            for k in [k for k in self._cache if k == path or k.startswith(path + "/")]:
                os.close(self._cache.pop(k))
            _rmtree_at(pfd, base)
            prefix = path + "/"
            self._dirs = {k: v for k, v in self._dirs.items()
                          if k != path and not k.startswith(prefix)}
            self._created = {k for k in self._created if not k.startswith(prefix)}
            self._whiteout_paths = {k for k in self._whiteout_paths
                                    if not k.startswith(prefix)}
        else:
            os.unlink(base, dir_fd=pfd)
        self._whiteout_paths.discard(path)
        return False

    # -- metadata
    def _file_mode(self, path: str, mode: int) -> int:
        mode &= 0o7777
        if mode & 0o6000 and not self.allow_setuid:
            self.report.cleared_setuid.append(path)
            mode &= ~0o6000
        return mode

    def _set_opaque(self, fd: int, path: str):
        try:
            # The runtime mounts overlayfs inside the sandbox's user
            # namespace with "userxattr", where only user.overlay.* counts;
            # trusted.* is kept for overlays mounted by host root.
            os.setxattr(fd, "user.overlay.opaque", b"y")
            if self.xattr_ns != "user":
                os.setxattr(fd, f"{self.xattr_ns}.overlay.opaque", b"y")
        except OSError as e:
            raise HostSupportError(
                f"cannot mark {path!r} opaque for overlayfs: {e.strerror}",
                hint="the image store needs a file system with extended "
                     "attributes (ext4, xfs, btrfs, tmpfs)") from None
        self.report.opaque += 1

    def _xattrs(self, fd: int, member: tarfile.TarInfo):
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            allowed = (name.startswith("user.") and not name.startswith("user.overlay.")) \
                or (name == "security.capability" and self.allow_setuid)
            if not allowed:
                self.report.skipped.append((member.name, f"xattr {name} not applied"))
                continue
            raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            try:
                os.setxattr(fd, name, raw)
            except OSError:
                self.report.skipped.append((member.name, f"xattr {name} not supported"))

    def _own(self, fd: int, member: tarfile.TarInfo):
        if self.is_root and (member.uid or member.gid):
            os.fchown(fd, member.uid, member.gid)

    # -- entry kinds
    def add_dir(self, path: str, member: tarfile.TarInfo):
        if not path:
            # The root itself: its mode, owner and time (setuid/setgid dropped).
            self._dirs[""] = (member.mode & 0o1777, member.uid, member.gid, member.mtime)
            return
        parent, base = self._split(path)
        pfd = self._parent_fd(parent, path)
        was_whiteout = path in self._whiteout_paths
        if not self._clear(pfd, base, path, keep_dir=True):
            os.mkdir(base, 0o700, dir_fd=pfd)
        mode = member.mode & 0o7777 & ~0o4000  # setuid on a directory means nothing
        self._dirs[path] = (mode, member.uid, member.gid, member.mtime)
        self._created.add(path)
        if member.pax_headers or was_whiteout:
            fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
            try:
                if was_whiteout:
                    # ".wh.X" then "X/": the new X replaces the lower one.
                    self._set_opaque(fd, path)
                self._xattrs(fd, member)
            finally:
                os.close(fd)

    def add_file(self, path: str, member: tarfile.TarInfo, src) -> int:
        """Create a regular file from ``src`` (``read(n)``); returns bytes."""
        if not path:
            self._refuse(path or ".", "the root of the tree must be a directory")
        parent, base = self._split(path)
        pfd = self._parent_fd(parent, path)
        self._clear(pfd, base, path, keep_dir=False)
        fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        written = 0
        try:
            left = member.size
            while left > 0:
                data = src.read(min(_CHUNK, left))
                if not data:
                    self._refuse(path, "file data ends early (truncated layer)")
                left -= len(data)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                written += len(data)
            self._own(fd, member)
            os.fchmod(fd, self._file_mode(path, member.mode))
            if member.pax_headers:
                self._xattrs(fd, member)
            os.utime(fd, ns=(_ns(member.mtime),) * 2)
        finally:
            os.close(fd)
        self._created.add(path)
        return written

    def add_symlink(self, path: str, member: tarfile.TarInfo):
        if not path:
            self._refuse(".", "the root of the tree must be a directory")
        target = member.linkname
        if not target or "\x00" in target or len(target.encode("utf-8", "surrogateescape")) > 4095:
            self._refuse(path, "symlink target is empty or too long")
        parent, base = self._split(path)
        pfd = self._parent_fd(parent, path)
        self._clear(pfd, base, path, keep_dir=False)
        # The link's target is stored, never followed here; the runtime
        # resolves mount targets inside the root on its own terms.
        os.symlink(target, base, dir_fd=pfd)
        if self.is_root and (member.uid or member.gid):
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(base, ns=(_ns(member.mtime),) * 2, dir_fd=pfd,
                 follow_symlinks=False)
        self._created.add(path)

    def add_hardlink(self, path: str, target: str, member: tarfile.TarInfo):
        if not path or not target:
            self._refuse(path or ".", "hardlink to or from the root of the tree")
        if target not in self._created:
            self._refuse(path, f"hardlink target {member.linkname!r} is not a file "
                         "of this layer")
        tparent, tbase = self._split(target)
        tfd = self._parent_fd(tparent, path)
        st = os.stat(tbase, dir_fd=tfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            self._refuse(path, f"hardlink target {member.linkname!r} is a directory")
        # Hold the target's parent open on its own: _parent_fd for the link's
        # parent may evict it from the cache.
        tfd = os.dup(tfd)
        try:
            parent, base = self._split(path)
            pfd = self._parent_fd(parent, path)
            if parent == tparent and base == tbase:
                return
            self._clear(pfd, base, path, keep_dir=False)
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self._created.add(path)

    def add_fifo(self, path: str, member: tarfile.TarInfo):
        parent, base = self._split(path)
        if not path:
            self._refuse(".", "the root of the tree must be a directory")
        pfd = self._parent_fd(parent, path)
        self._clear(pfd, base, path, keep_dir=False)
        os.mkfifo(base, member.mode & 0o777, dir_fd=pfd)
        if self.is_root and (member.uid or member.gid):
            os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        self._created.add(path)

    def add_whiteout(self, path: str, member_name: str):
        """``path`` is the normalised name of the ``.wh.*`` entry itself."""
        parent, base = self._split(path)
        if base == OPAQUE_MARKER:
            pfd = self._parent_fd(parent, member_name)
            self._set_opaque(pfd, parent or "/")
            return
        if base.startswith(".wh..wh."):
            # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
            self.report.skipped.append((member_name, "aufs metadata"))
            return
        name = base[len(WHITEOUT_PREFIX):]
        if not name or name in (".", "..") or "/" in name:
            self._refuse(member_name, "whiteout names no file inside its directory")
        hidden = f"{parent}/{name}" if parent else name
        pfd = self._parent_fd(parent, member_name)
        if hidden in self._created:
            # A whiteout hides lower layers only, never this layer's own
            # entry: a directory of this layer becomes opaque (the lower one
            # is gone, ours stays); a file of ours already hides the lower.
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            except OSError:
                return
            try:
                self._set_opaque(fd, hidden)
            finally:
                os.close(fd)
            return
        self._clear(pfd, name, hidden, keep_dir=False)
        try:
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        except PermissionError:
            raise HostSupportError(
                f"cannot create the overlay whiteout for {member_name!r} "
                "(a 0/0 character device)",
                hint="import images as root, or on Linux 5.8 or later") from None
        self._whiteout_paths.add(hidden)
        self.report.whiteouts += 1

    def finish(self):
        """Apply directory modes, owners and times, deepest first, through
        fds opened without following links."""
        self._drop_cache()
        for path in sorted(self._dirs, key=lambda p: (-p.count("/") - (1 if p else 0), p)):
            mode, uid, gid, mtime = self._dirs[path]
            if path:
                try:
                    fd = self._walk_existing(path)
                except OSError:
                    continue  # replaced by a non-directory later in the layer
            else:
                fd = os.dup(self.root_fd)
            try:
                if self.is_root and (uid or gid):
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                if mtime is not None:
                    os.utime(fd, ns=(_ns(mtime),) * 2)
            finally:
                os.close(fd)

    def _walk_existing(self, path: str) -> int:
        cur = os.dup(self.root_fd)
        try:
            for comp in path.split("/"):
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=cur)
                os.close(cur)
                cur = nfd
        except BaseException:
            os.close(cur)
            raise
        return cur


def _ns(mtime) -> int:
    try:
        return max(0, min(int(mtime * 1_000_000_000), 1 << 62))
    except (OverflowError, ValueError, TypeError):
        return 0


def _rmtree_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a directory under ``dir_fd``) without following links."""
    import shutil

    def onerror(func, path, exc_info):
        raise exc_info[1]
    shutil.rmtree(name, dir_fd=dir_fd, onerror=onerror)


def rmtree(path: str) -> None:
    """Remove a tree (symlink-safe), making read-only directories writable
    first where that is what stands in the way (non-root stores)."""
    import shutil
    if not os.path.lexists(path):
        return

    def onerror(func, p, exc_info):
        exc = exc_info[1]
        if isinstance(exc, FileNotFoundError):
            return
        if isinstance(exc, PermissionError):
            parent = os.path.dirname(p)
            try:
                os.chmod(parent, 0o700)
                func(p)
                return
            except OSError:
                pass
        raise exc
    shutil.rmtree(path, onerror=onerror)


# ---------------------------------------------------------------- driver


def unpack_layer(stream: LayerStream, root: str, *, label: str, limits: Limits,
                 whiteouts: bool = True, allow_setuid: bool = False,
                 prefix: str | None = None, capture: dict | None = None,
                 budget: list | None = None) -> UnpackReport:
    """Unpack the tar read from ``stream`` into the existing empty folder
    ``root``; return an `UnpackReport`.

    ``whiteouts`` turns OCI/docker ``.wh.`` entries into overlayfs
    whiteouts (off for ACI, where such names are plain files). ``prefix``
    (ACI: ``"rootfs"``) keeps only entries below it, with the prefix removed;
    entries named in ``capture`` (name -> max bytes, ACI: ``manifest``) are
    read into ``report.captured`` instead. ``budget`` is a one-element list
    of bytes left for the whole image, shared between its layers.

    Raises `ArtifactError` naming the entry on any refusal; the caller
    removes ``root``. Sources: OCI image spec v1.1 layer.md ("Representing
    Changes", "Whiteouts"); docker image spec v1.2; appc spec ACI layout.
    """
    report = UnpackReport()
    writer = TreeWriter(root, label=label, whiteouts=whiteouts,
                        allow_setuid=allow_setuid, report=report)
    try:
        try:
            tf = tarfile.open(fileobj=stream, mode="r:", errorlevel=2)
        except tarfile.ReadError as e:
            if stream.tell() == 0 or "empty file" in str(e):
                tf = None  # a zero-byte layer is an empty layer
            else:
                raise ArtifactError(f"{label}: not a tar archive ({e})") from None
        except ArtifactError:
            raise
        if tf is not None:
            _unpack_members(tf, stream, writer, report, label=label, limits=limits,
                            prefix=prefix, capture=capture or {}, budget=budget)
        writer.finish()
    except ArtifactError:
        raise
    except HostSupportError:
        raise
    except tarfile.TarError as e:
        raise ArtifactError(f"{label}: broken tar archive ({e})") from None
    except (OSError, UnicodeError, ValueError, EOFError, OverflowError) as e:
        raise ArtifactError(f"{label}: cannot unpack: {e}") from None
    finally:
        writer.close()
    stream.finish()
    report.blob_digest = stream.blob_digest()
    report.diff_digest = stream.diff_digest()
    report.compressed_bytes = stream.raw_bytes
    report.compression = stream.compression
    return report


def _unpack_members(tf, stream, writer, report, *, label, limits, prefix, capture, budget):
    while True:
        try:
            member = tf.next()
        except tarfile.TarError as e:
            raise ArtifactError(f"{label}: broken tar header after "
                                f"{report.entries} entries ({e})") from None
        if member is None:
            break
        tf.members.clear()  # keep memory flat over 100k-entry layers
        report.entries += 1
        name = member.name
        if report.entries > limits.max_entries:
            raise ArtifactError(
                f"{label}: entry {name!r}: more than {limits.max_entries} entries "
                "in one layer (limit max_entries)")
        rel = normalise_name(name, label=label)
        if rel.count("/") >= limits.max_depth:
            raise ArtifactError(f"{label}: entry {name[:200]!r}: more than "
                                f"{limits.max_depth} path components (limit max_depth)")
        if member.isreg() and rel in capture:
            if member.size > capture[rel]:
                raise ArtifactError(f"{label}: entry {name!r} is larger than "
                                    f"{capture[rel]} bytes")
            report.captured[rel] = _read_member(tf, stream, member, label)
            continue
        if prefix is not None:
            if rel == prefix:
                rel = ""
            elif rel.startswith(prefix + "/"):
                rel = rel[len(prefix) + 1:]
            else:
                report.skipped.append((name, f"outside {prefix}/"))
                continue
        if member.isreg():
            if member.size < 0 or member.size > limits.max_layer_bytes:
                raise ArtifactError(f"{label}: entry {name!r}: size {member.size} "
                                    "exceeds the layer limit")
            if budget is not None:
                budget[0] -= member.size
                if budget[0] < 0:
                    raise ArtifactError(
                        f"{label}: entry {name!r}: image exceeds the limit of "
                        f"{limits.max_image_bytes} bytes (limit max_image_bytes)")
            base = rel.rpartition("/")[2]
            if writer.whiteouts and base.startswith(WHITEOUT_PREFIX):
                writer.add_whiteout(rel, name)
                continue
            if member.sparse is not None:
                src = tf.extractfile(member)
            else:
                stream.seek(member.offset_data)
                src = stream
            report.bytes += writer.add_file(rel, member, src)
        elif member.isdir():
            writer.add_dir(rel, member)
        elif member.issym():
            base = rel.rpartition("/")[2]
            if writer.whiteouts and base.startswith(WHITEOUT_PREFIX):
                writer.add_whiteout(rel, name)
                continue
            writer.add_symlink(rel, member)
        elif member.islnk():
            target = normalise_name(member.linkname, label=label, what="hardlink target")
            if prefix is not None:
                if target.startswith(prefix + "/"):
                    target = target[len(prefix) + 1:]
                else:
                    raise ArtifactError(f"{label}: entry {name!r}: hardlink target "
                                        f"{member.linkname!r} is outside {prefix}/")
            base = rel.rpartition("/")[2]
            if writer.whiteouts and base.startswith(WHITEOUT_PREFIX):
                writer.add_whiteout(rel, name)
                continue
            writer.add_hardlink(rel, target, member)
        elif member.ischr() or member.isblk():
            kind = "character" if member.ischr() else "block"
            report.skipped.append(
                (name, f"{kind} device {member.devmajor}:{member.devminor} not created"))
        elif member.isfifo():
            writer.add_fifo(rel, member)
        else:
            report.skipped.append((name, f"unsupported tar type {member.type!r}"))


def _read_member(tf, stream, member, label) -> bytes:
    stream.seek(member.offset_data)
    parts, left = [], member.size
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    data = b"".join(parts)
    if len(data) != member.size:
        raise ArtifactError(f"{label}: entry {member.name!r} is truncated")
    return data
