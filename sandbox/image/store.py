"""The local image store: verified blobs, unpacked layers, an SQLite index.

Layout under ``<state>/images/`` (DESIGN §7)::

    index.db                      SQLite: images, names, layers, signatures
    lock                          flock: imports shared, rm/gc exclusive
    blobs/sha256/<hex>            manifests, configs, kept archives, signatures
    layers/<algo>-<hex>/root/     one unpacked layer, read-only by convention
    layers/<algo>-<hex>/meta.json what unpacking it skipped or changed
    tmp/import-*/                 private workspaces of running imports

Import, in order (python-tuf's "verify before you keep"):

1. Read the archive's manifest/index/config (bounded sizes) and check each
   of their digests against the descriptor that names it.
2. Unpack each layer not already in the store into the workspace, hashing
   the raw and the uncompressed bytes as they stream past.
3. Compare those digests with the manifest's layer digest and the config's
   ``diff_ids`` (ACI: compute the sha512 image id); any mismatch or refusal
   removes the workspace and raises `ArtifactError`.
4. Move blobs into ``blobs/`` (``os.replace`` of a complete temporary file
   in the same folder) and layer folders into ``layers/`` (``rename`` of a
   whole directory).
5. Insert the index rows in one SQLite transaction. Only now can `resolve`
   see the image; a kill before this leaves only unreferenced files, which
   `gc` removes and nothing else reads.

Layers are kept as separate trees for overlayfs: whiteouts are char devices
0/0 and opaque directories carry ``trusted.overlay.opaque=y`` (``user.*``
when the store belongs to a non-root user; see `ImageRecord.overlay_xattr`).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import ArtifactError, CheckFailed, NotFound, UsageError

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images(
    digest TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    platform TEXT NOT NULL,
    manifest_blob TEXT,
    config_blob TEXT,
    archive_blob TEXT,
    config TEXT NOT NULL,
    size INTEGER NOT NULL,
    imported_at TEXT NOT NULL,
    allow_setuid INTEGER NOT NULL,
    xattr_ns TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers(
    image TEXT NOT NULL REFERENCES images(digest) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    layer TEXT NOT NULL,
    PRIMARY KEY(image, idx)
);
CREATE TABLE IF NOT EXISTS layers(
    key TEXT PRIMARY KEY,
    blob_digest TEXT,
    diff_id TEXT,
    size INTEGER NOT NULL,
    entries INTEGER NOT NULL,
    meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS names(
    name TEXT PRIMARY KEY,
    image TEXT NOT NULL REFERENCES images(digest) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS name_signatures(
    name TEXT NOT NULL,
    image TEXT NOT NULL REFERENCES images(digest) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    blob TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY(name, idx)
);
CREATE TABLE IF NOT EXISTS blob_seals(
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signatures(
    image TEXT NOT NULL REFERENCES images(digest) ON DELETE CASCADE,
    blob TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY(image, blob)
);
"""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")
_HEX_RE = re.compile(r"^(sha256:|sha512-|sha512:)?([0-9a-f]{12,128})$")


@dataclass(frozen=True)
class ImageRecord:
    """One stored image, as the runtime and the trust check need it.

    - ``name``: the reference it was resolved by (``None`` when resolved by
      digest and the image has several or no names); ``names`` all of them.
    - ``digest``: ``sha256:<hex>`` of the manifest (OCI), of the config
      (docker-archive, Docker's image id), or ``sha512-<hex>`` (ACI image
      id, appc spec).
    - ``format``: ``"oci"``, ``"docker-archive"`` or ``"aci"``.
    - ``layer_dirs``: absolute paths of the unpacked layer trees, lowest
      first (overlayfs ``lowerdir`` wants them in the reverse order).
    - ``config``: Entrypoint, Cmd (lists or None), Env (``K=V`` list),
      WorkingDir, User (strings), Labels, StopSignal, ExposedPorts, Volumes;
      ACI adds Isolators. Normalised from the OCI config or the ACI app.
    - ``manifest``: the manifest bytes simple-signing signatures cover
      (None for docker-archive and ACI); ``archive_path``: the stored copy of
      the archive OpenPGP signatures cover (ACI always; others when imported
      from a file with signatures).
    - ``signatures``: raw signature bytes given at import.
    - ``overlay_xattr``: ``"trusted"`` or ``"user"``: which namespace the
      opaque markers use (mount with ``userxattr`` for ``"user"``).
    - ``skipped``: ``(entry, reason)`` for device nodes and ignored entries;
      ``cleared_setuid``: files whose setuid/setgid bits were removed.
    """

    name: str | None
    names: tuple
    digest: str
    format: str
    platform: str
    layer_dirs: tuple
    config: dict
    signatures: tuple
    manifest: bytes | None
    manifest_digest: str | None
    config_digest: str | None
    archive_path: str | None
    archive_digest: str | None
    size: int
    imported_at: str
    allow_setuid: bool
    overlay_xattr: str
    skipped: tuple = ()
    cleared_setuid: tuple = ()
    config_blob: str | None = None  # sha256 of the configuration document (ACI: manifest)
    layer_seals: tuple = ()     # (key, seal digest, tree digest) per layer
    blob_seals: tuple = ()      # (digest, path, size, ino, ctime_ns) per kept blob

    def to_json(self) -> dict:
        """A JSON-ready view (signatures as digests, manifest parsed)."""
        import hashlib
        d = asdict(self)
        d["signatures"] = [f"sha256:{hashlib.sha256(s).hexdigest()}" for s in self.signatures]
        d["manifest"] = json.loads(self.manifest) if self.manifest else None
        d["layer_dirs"] = list(self.layer_dirs)
        d["names"] = list(self.names)
        d["skipped"] = [list(s) for s in self.skipped]
        d["cleared_setuid"] = list(self.cleared_setuid)
        d["layer_seals"] = [list(x) for x in self.layer_seals]
        d["blob_seals"] = [list(x) for x in self.blob_seals]
        return d


@dataclass
class GcReport:
    """What `ImageStore.gc` removed (counts and bytes of layers/blobs)."""

    layers: int = 0
    blobs: int = 0
    temporary: int = 0
    removed: list = field(default_factory=list)


def normalise_ref(ref: str) -> str:
    """A stored name, normalised the way Docker and containers/image do
    (``reference.ParseNormalizedNamed`` then ``TagNameOnly``): ``busybox``
    -> ``docker.io/library/busybox:latest``, ``example.com/app`` ->
    ``example.com/app:latest``, ``name@sha256:...`` kept with its digest.
    Upper case in the repository path, ``..``, empty components and other
    invalid references are refused with `UsageError`."""
    from ..trust.reference import parse_docker_reference
    if not isinstance(ref, str) or not _NAME_RE.match(ref) or ".." in ref or "//" in ref:
        raise UsageError(f"{ref!r} is not a valid image name",
                         hint="use letters, digits and . _ - / : such as example.com/app:1.0")
    try:
        r = parse_docker_reference(ref)
    except ValueError as e:
        raise UsageError(f"{ref!r} is not a valid image name ({e})",
                         hint="repositories are lower case: such as example.com/app:1.0") from None
    if r.digest is not None:
        return f"{r.repository}@{r.digest}"
    return f"{r.repository}:{r.tag or 'latest'}"


def _syncfs(path: Path) -> None:
    import ctypes
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ImageStore:
    """The image store of one `Paths` (``paths.state / "images"``).

    Thread-unsafe; cheap to construct (no file system work until used).
    ``limits`` bounds what an import may cost (see `Limits`).
    """

    def __init__(self, paths, *, limits=None):
        self.paths = paths
        self._limits = limits
        self.root = Path(paths.state) / "images"
        self.blobs = self.root / "blobs"
        self.layers = self.root / "layers"
        self.tmp = self.root / "tmp"

    @property
    def limits(self):
        # The unpacker (tarfile, zlib) loads only when an import needs it:
        # `resolve` is on the launch path.
        if self._limits is None:
            from ._unpack import Limits
            self._limits = Limits()
        return self._limits

    # ------------------------------------------------------------ plumbing

    def _ensure(self) -> None:
        self.paths.ensure("state")
        for d in (self.root, self.blobs / "sha256", self.layers, self.tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _db(self) -> sqlite3.Connection:
        self._ensure()
        db = sqlite3.connect(self.root / "index.db", timeout=60, isolation_level=None)
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return db

    @contextmanager
    def _lock(self, exclusive: bool):
        import fcntl
        self._ensure()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _blob_path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.blobs / algo / hexpart

    def _put_blob(self, data: bytes) -> str:
        import hashlib
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        final = self._blob_path(digest)
        # A stored copy is kept only when it still has its digest: one
        # changed on disk must not be blessed by the seal of this commit.
        if _has_digest(final, digest):
            return digest
        tmp = final.parent / f".tmp-{os.urandom(8).hex()}"
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o400)
        os.replace(tmp, final)
        return digest

    def _adopt_blob_file(self, tmp: Path, digest: str) -> None:
        final = self._blob_path(digest)
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _has_digest(final, digest):
            tmp.unlink()
            return
        os.chmod(tmp, 0o400)
        os.replace(tmp, final)

    def _forget_blob_seal(self, digest: str) -> None:
        db = self._db()
        try:
            db.execute("DELETE FROM blob_seals WHERE digest = ?", (digest,))
        finally:
            db.close()

    def _seal_blobs(self, db, digests) -> None:
        from ._integrity import blob_seal
        for d in digests:
            if d:
                db.execute("INSERT OR REPLACE INTO blob_seals VALUES (?,?,?,?)",
                           (d, *blob_seal(str(self._blob_path(d)))))

    def check_on_disk(self, record: "ImageRecord", *, full: bool = False) -> None:
        """Issue 12: refuse (`ArtifactError` naming the layer and the path)
        when what the launch would mount is not what was verified. Stat-only
        unless ``full`` (then every file and blob is hashed again). See
        `sandbox.image._integrity`."""
        from ._integrity import check_record
        check_record(record, full=full)

    # ------------------------------------------------------------ import

    def import_image(self, source: str | os.PathLike, *, name: str | None = None,
                     signatures: Iterable[bytes] = (), select: str | None = None,
                     allow_setuid: bool = False,
                     progress: Callable[[int, int], None] | None = None,
                     insecure_options: Iterable[str] = (),
                     source_label: str | None = None) -> ImageRecord:
        """Import an OCI layout (folder or tar), docker-archive or ACI file.

        ``name`` overrides the name the archive carries (``RepoTags``, the
        ``io.containerd.image.name`` or a full ``ref.name`` annotation, the
        ACI ``name:version``); ``select`` picks one image from a layout or
        archive holding several (by ref name or tag). ``signatures`` are
        verified for the image's name before anything is kept (issue 12:
        an unsigned, untrusted or badly signed image is refused here, as at
        every launch, unless ``insecure_options`` holds ``"image"``, which
        is recorded) and kept bound to that name only: another name of the
        same content never uses them, and a later import under the same
        name replaces them. ``allow_setuid`` keeps setuid
        and setgid bits (and ``security.capability``): unsafe, recorded.
        ``progress(done_bytes, total_bytes)`` is called as bytes are read.

        Returns the `ImageRecord`. Raises `ArtifactError` (malformed or
        unsafe content, digest mismatch), `UsageError` (bad name, missing
        file), `HostSupportError` (cannot create whiteouts or xattrs).
        """
        from . import _formats
        from ._unpack import rmtree
        source = Path(source)
        if name is not None:
            name = normalise_ref(name)
        sigs = [bytes(s) for s in signatures]
        insecure = tuple(insecure_options)
        with self._lock(exclusive=False):
            ws = Path(os.path.realpath(self.tmp / f"import-{os.urandom(8).hex()}"))
            ws.mkdir(mode=0o700)
            closer = None
            try:
                # Issue 13 item 9: a file is opened once and copied into the
                # private workspace while hashed; everything after (format
                # detection, the index, every layer, the signed archive)
                # reads that copy, so a file swapped under its name between
                # two reads cannot pair one archive's signature with
                # another's layers.
                private, private_digest = _private_copy(source, ws)
                from . import _pull
                if private is None and _pull.is_skopeo_dir(source):
                    # skopeo's dir: layout, with its signature-N files (issue 12)
                    plan = _pull.plan_skopeo_dir(source, limits=self.limits,
                                                 label=source_label or str(source))
                    sigs = sigs + _pull.read_dir_signatures(source)
                else:
                    plan, closer = _formats.open_source(
                        private or source, limits=self.limits, select=select, workdir=ws,
                        label=str(source))
                done = [0]

                def tick(n):
                    done[0] += n
                    if progress is not None:
                        progress(done[0], plan.total_bytes)
                keep_archive = plan.archive is not None and (plan.format == "aci" or sigs)
                if keep_archive and plan.format != "aci" and private is not None:
                    # OpenPGP signatures over a docker/OCI tar cover the file
                    # as given: the private copy is that file.
                    plan.archive_blob_file = private
                    plan.archive_digest = private_digest
                staged = self._stage_layers(plan, ws, allow_setuid=allow_setuid,
                                            tick=tick, keep_archive=keep_archive)
                if closer:
                    closer()
                    closer = None
                rec = self._admit_and_commit(plan, staged, ws, name=name, sigs=sigs,
                                             allow_setuid=allow_setuid, insecure=insecure,
                                             source=source_label or str(source))
            finally:
                if closer:
                    closer()
                rmtree(str(ws))
        # DESIGN §6: image import is an audit event (after the commit: only
        # what the store really holds is recorded)
        from ..audit import record_event
        record_event(self.paths, "image.import", {
            "ref": rec.name, "digest": rec.digest, "format": rec.format,
            "source": source_label or str(source), "layers": len(rec.layer_dirs),
            "signatures": len(rec.signatures), "allow_setuid": rec.allow_setuid,
            "skipped": [str(x) for x in rec.skipped][:100],
            "cleared_setuid": [str(x) for x in rec.cleared_setuid][:100]})
        return rec

    def _stage_layers(self, plan, ws: Path, *, allow_setuid, tick, keep_archive):
        """Unpack and check every layer into ``ws``; returns a list of
        ``(key, staged_dir or None, meta)`` lowest first."""
        from . import _formats
        from ._unpack import LayerStream, unpack_layer
        staged = []
        budget = [self.limits.max_image_bytes]
        suffix = ".suid" if allow_setuid else ""
        for i, layer in enumerate(plan.layers):
            if layer.key is not None and (self.layers / (layer.key + suffix)).is_dir():
                meta = self._layer_meta(layer.key + suffix)
                if meta is not None:
                    budget[0] -= meta.get("size", 0)
                    tick(layer.size or 0)
                    staged.append((layer.key + suffix, None, meta))
                    continue
            ldir = ws / f"layer-{i}"
            (ldir / "root").mkdir(parents=True, mode=0o700)
            tee = None
            if keep_archive and plan.format == "aci":
                tee = open(ws / "archive.blob", "xb")
            try:
                with layer.open() as raw:
                    stream = LayerStream(raw, limits=self.limits, label=layer.label,
                                         blob_algo=layer.blob_algo, diff_algo=layer.diff_algo,
                                         expected_size=layer.size if layer.digest else None,
                                         progress=tick, tee=tee)
                    report = unpack_layer(
                        stream, str(ldir / "root"), label=layer.label, limits=self.limits,
                        whiteouts=layer.whiteouts, allow_setuid=allow_setuid,
                        prefix=layer.prefix, capture=layer.capture, budget=budget)
            finally:
                if tee is not None:
                    tee.close()
            # Step 3: the digests the archive promised, or refuse.
            if layer.digest is not None and report.blob_digest != layer.digest:
                raise ArtifactError(f"{layer.label}: content digest {report.blob_digest} "
                                    f"does not match the manifest's {layer.digest}")
            if layer.size is not None and layer.digest is not None \
                    and report.compressed_bytes != layer.size:
                raise ArtifactError(f"{layer.label}: {report.compressed_bytes} bytes, "
                                    f"the manifest says {layer.size}")
            if layer.diff_id is not None and report.diff_digest != layer.diff_id:
                raise ArtifactError(f"{layer.label}: uncompressed digest {report.diff_digest} "
                                    f"does not match the config's diff_id {layer.diff_id}")
            key = layer.key
            if plan.format == "aci":
                man_bytes = report.captured.get("manifest")
                if man_bytes is None:
                    raise ArtifactError(f"{layer.label}: no 'manifest' entry; not an ACI")
                man = _formats.load_json(man_bytes, what=f"{layer.label}: manifest")
                cfg, aci_name, platform = _formats.normalise_aci_manifest(man)
                plan.digest = "sha512-" + report.diff_digest.split(":", 1)[1]
                plan.config = cfg
                plan.config_bytes = man_bytes
                plan.platform = platform
                plan.names = [aci_name]
                key = plan.digest
                if keep_archive:
                    plan.archive_blob_file = ws / "archive.blob"
                    plan.archive_digest = report.blob_digest
            meta = {
                "key": key + suffix, "blob_digest": report.blob_digest,
                "diff_id": report.diff_digest, "size": report.bytes,
                "entries": report.entries, "compression": report.compression,
                "skipped": report.skipped, "cleared_setuid": report.cleared_setuid,
                "whiteouts": report.whiteouts, "opaque": report.opaque,
                "xattr_ns": "trusted" if os.geteuid() == 0 else "user",
                "allow_setuid": allow_setuid,
            }
            # Issue 12: seal the verified tree (see _integrity) before it is kept.
            from ._integrity import build_seal
            meta.update(build_seal(str(ldir)))
            (ldir / "meta.json").write_text(json.dumps(meta, sort_keys=True))
            staged.append((key + suffix, ldir, meta))
        if keep_archive and plan.format != "aci" and \
                getattr(plan, "archive_blob_file", None) is None:
            # OpenPGP signatures over a docker/OCI tar cover the file as given.
            import hashlib
            h = hashlib.sha256()
            dst = ws / "archive.blob"
            with open(plan.archive, "rb") as f, open(dst, "xb") as out:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            plan.archive_blob_file = dst
            plan.archive_digest = f"sha256:{h.hexdigest()}"
        return staged

    def _layer_meta(self, key: str) -> dict | None:
        try:
            return json.loads((self.layers / key / "meta.json").read_text())
        except (OSError, ValueError):
            return None

    def _import_name(self, plan, name):
        if name:
            return name
        for n in plan.names:
            try:
                return normalise_ref(n)
            except UsageError:
                continue
        return None

    def _admit_and_commit(self, plan, staged, ws, *, name, sigs, allow_setuid,
                          insecure=(), source=None) -> ImageRecord:
        """Verify the staged image for the name it will be stored under
        (issue 12: at import as at every launch), then commit it. With
        ``"image"`` in ``insecure`` the check is skipped and the import is
        recorded as insecure."""
        who = self._import_name(plan, name)
        if "image" in insecure:
            from ..audit import record_event
            record_event(self.paths, "insecure-option", {
                "option": "image", "stage": "import", "ref": who,
                "digest": plan.digest, "source": source, "signatures": len(sigs)})
        else:
            self._verify_staged(plan, who, sigs)
        return self._commit(plan, staged, ws, name=who, sigs=sigs,
                            allow_setuid=allow_setuid)

    def _verify_staged(self, plan, who, sigs):
        from ..errors import VerificationError
        if not who:
            raise VerificationError(
                f"image {plan.digest} has no name to verify its signatures against",
                reason="unsigned",
                hint="import it with --name REF (signatures are bound to a name), or "
                     "with --insecure-options=image (recorded)")
        if not sigs:
            raise VerificationError(
                f"image {who} is not signed; refusing to import it",
                reason="unsigned",
                hint="give its signature with --signature SIG, or import it with "
                     "--insecure-options=image (recorded)")
        from ..trust import verify_any
        archive = getattr(plan, "archive_blob_file", None)
        v = verify_any(self.paths, who, manifest=plan.manifest,
                       archive_path=Path(archive) if archive else None,
                       archive_digest=getattr(plan, "archive_digest", None) if archive else None,
                       signatures=list(sigs))
        if plan.format == "aci":
            _check_aci_name(plan.config or {}, who)
        return v

    def _commit(self, plan, staged, ws, *, name, sigs, allow_setuid) -> ImageRecord:
        self._ensure()
        # Step 4: make the verified content visible under its final names.
        for key, ldir, _meta in staged:
            if ldir is None:
                continue
            dest = self.layers / key
            try:
                os.rename(ldir, dest)
            except OSError as e:
                if not dest.is_dir():
                    raise ArtifactError(f"cannot store layer {key}: {e.strerror}") from None
                # Another import stored the same verified layer first.
        manifest_blob = self._put_blob(plan.manifest) if plan.manifest else None
        config_blob = self._put_blob(plan.config_bytes) if plan.config_bytes else None
        archive_blob = None
        if getattr(plan, "archive_blob_file", None) is not None:
            archive_blob = plan.archive_digest
            self._adopt_blob_file(plan.archive_blob_file, archive_blob)
        sig_blobs = [self._put_blob(s) for s in sigs]
        # The layer files were written without fsync (one per file would
        # halve throughput); one syncfs makes them durable before the index
        # row that points at them, so a power cut cannot leave a row over
        # half-written layers.
        _syncfs(self.root)
        names = [name] if name else []
        size = sum(m.get("size", 0) for _, _, m in staged)
        xattr_ns = "trusted" if os.geteuid() == 0 else "user"
        # Step 5: one transaction; before it commits no reader sees the image.
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT digest FROM images WHERE digest = ?",
                             (plan.digest,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO images VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (plan.digest, plan.format, plan.platform, manifest_blob, config_blob,
                     archive_blob, json.dumps(plan.config, sort_keys=True), size, _now(),
                     int(allow_setuid), xattr_ns))
                for idx, (key, _, meta) in enumerate(staged):
                    db.execute("INSERT INTO image_layers VALUES (?,?,?)",
                               (plan.digest, idx, key))
            else:
                old = [r[0] for r in db.execute(
                    "SELECT layer FROM image_layers WHERE image = ? ORDER BY idx",
                    (plan.digest,))]
                if old != [k for k, _, _ in staged]:
                    # Same image imported with another setuid choice: the
                    # newer import's layers replace the older.
                    db.execute("DELETE FROM image_layers WHERE image = ?", (plan.digest,))
                    for idx, (key, _, _m) in enumerate(staged):
                        db.execute("INSERT INTO image_layers VALUES (?,?,?)",
                                   (plan.digest, idx, key))
                    db.execute("UPDATE images SET allow_setuid = ? WHERE digest = ?",
                               (int(allow_setuid), plan.digest))
                if archive_blob:
                    db.execute("UPDATE images SET archive_blob = ? WHERE digest = ?",
                               (archive_blob, plan.digest))
            for key, _, meta in staged:
                db.execute("INSERT OR IGNORE INTO layers VALUES (?,?,?,?,?,?)",
                           (key, meta.get("blob_digest"), meta.get("diff_id"),
                            meta.get("size", 0), meta.get("entries", 0),
                            json.dumps(meta, sort_keys=True)))
            for n in names:
                db.execute("INSERT OR REPLACE INTO names VALUES (?,?)", (n, plan.digest))
                # Issue 12: signatures belong to (name, image), replaced as a
                # whole by each import under that name: the decision for a
                # name never depends on what other imports left behind.
                db.execute("DELETE FROM name_signatures WHERE name = ?", (n,))
                for idx, b in enumerate(sig_blobs):
                    db.execute("INSERT INTO name_signatures VALUES (?,?,?,?,?)",
                               (n, plan.digest, idx, b, _now()))
            self._seal_blobs(db, [manifest_blob, config_blob, archive_blob, *sig_blobs])
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
        return self.resolve(names[0] if names else plan.digest)

    # ------------------------------------------------------------ queries

    def _find(self, db, ref: str) -> tuple[str, str | None]:
        """(digest, name used) for a name, name without tag, digest or
        unique digest prefix (at least 12 hex digits)."""
        if not isinstance(ref, str) or not ref:
            raise UsageError("an image reference is required")
        row = db.execute("SELECT image FROM names WHERE name = ?", (ref,)).fetchone()
        if row:
            return row[0], ref
        try:
            norm = normalise_ref(ref)
        except UsageError:
            norm = None
        if norm:
            row = db.execute("SELECT image FROM names WHERE name = ?", (norm,)).fetchone()
            if row:
                return row[0], norm
        if "@" in ref:
            repo, _, dg = ref.partition("@")
            digest, _ = self._find(db, dg)
            from ..trust.reference import parse_docker_reference
            try:
                repo = parse_docker_reference(repo).repository
            except ValueError:
                raise UsageError(f"{ref!r} is not a valid image name") from None
            return digest, f"{repo}@{dg}"
        m = _HEX_RE.match(ref)
        if m:
            hexpart = m.group(2)
            rows = db.execute(
                "SELECT digest FROM images WHERE digest LIKE ? OR digest LIKE ?",
                (f"sha256:{hexpart}%", f"sha512-{hexpart}%")).fetchall()
            if len(rows) == 1:
                return rows[0][0], None
            if len(rows) > 1:
                raise UsageError(f"{ref!r} matches {len(rows)} images; give more digits")
        raise NotFound(f"image {ref!r} is not in the store",
                       hint="'sandbox image list' shows the images; "
                            "'sandbox image import FILE' adds one")

    def resolve_or_pull(self, ref: str, *, insecure_options=()) -> ImageRecord:
        """`resolve`, except that a ``docker://REF`` missing from the store
        is pulled first (issue 12; `sandbox run docker://REF`). The lookaside
        stores come from ``$SANDBOX_REGISTRIES_D`` when set, else skopeo's
        own registries.d; ``SANDBOX_PULL_TLS_VERIFY=false`` talks to the
        registry without TLS checks (the signatures are checked all the same;
        a warning says so)."""
        from . import _pull
        if not (isinstance(ref, str) and ref.startswith("docker://")):
            return self.resolve(ref)
        _src, name = _pull.parse_pull_ref(ref, None)
        try:
            return self.resolve(name)
        except NotFound:
            pass
        tls = os.environ.get("SANDBOX_PULL_TLS_VERIFY", "true").lower() not in ("false", "0", "no")
        return _pull.pull(self, ref, insecure_options=insecure_options,
                          registries_d=os.environ.get("SANDBOX_REGISTRIES_D") or None,
                          tls_verify=tls)

    def resolve(self, ref: str) -> ImageRecord:
        """The `ImageRecord` for a name (``:latest`` implied), ``name@digest``,
        digest, or unique digest prefix. Raises `NotFound`, `UsageError`
        (ambiguous prefix), `ArtifactError` (a stored layer has vanished)."""
        db = self._db()
        try:
            digest, used = self._find(db, ref)
            return self._record(db, digest, used)
        finally:
            db.close()

    def _record(self, db, digest: str, used: str | None) -> ImageRecord:
        row = db.execute(
            "SELECT format, platform, manifest_blob, config_blob, archive_blob, config, "
            "size, imported_at, allow_setuid, xattr_ns FROM images WHERE digest = ?",
            (digest,)).fetchone()
        if row is None:
            raise NotFound(f"image {digest} is not in the store")
        (fmt, platform, mblob, cblob, ablob, config, size, imported, suid, xns) = row
        names = tuple(r[0] for r in db.execute(
            "SELECT name FROM names WHERE image = ? ORDER BY name", (digest,)))
        if used is None and len(names) == 1:
            used = names[0]
        layers = [r[0] for r in db.execute(
            "SELECT layer FROM image_layers WHERE image = ? ORDER BY idx", (digest,))]
        layer_dirs = []
        skipped, cleared, seals = [], [], []
        for key in layers:
            d = self.layers / key / "root"
            if not d.is_dir():
                raise ArtifactError(f"image {digest}: layer {key} is missing from the store",
                                    hint="remove the image and import it again")
            layer_dirs.append(str(d))
            lm = db.execute("SELECT meta FROM layers WHERE key = ?", (key,)).fetchone()
            meta = json.loads(lm[0]) if lm else {}
            skipped += [tuple(s) for s in meta.get("skipped", [])]
            cleared += meta.get("cleared_setuid", [])
            seals.append((key, meta.get("seal"), meta.get("tree")))
        sigs, sig_blobs = [], []
        bound = [used] if used is not None else []
        if used is not None and "@" in used:
            # REPO@DIGEST: the signatures kept for this image under names of
            # the same repository (a claim matches a digest reference by
            # repository, as containers/image's matchRepoDigestOrExact).
            repo = used.split("@", 1)[0]
            bound = [n for n in names if n.rpartition(":")[0] == repo
                     and n.rpartition(":")[0].count("/") == repo.count("/")]
        for n in bound:
            for (b,) in db.execute("SELECT blob FROM name_signatures WHERE name = ? AND "
                                   "image = ? ORDER BY idx", (n, digest)):
                sigs.append(self._blob_path(b).read_bytes())
                sig_blobs.append(b)
        manifest = self._blob_path(mblob).read_bytes() if mblob else None
        blob_seals = []
        kept = [mblob, cblob, ablob] + [b for b in sig_blobs]
        for b in dict.fromkeys(x for x in kept if x):
            r = db.execute("SELECT size, ino, ctime_ns FROM blob_seals WHERE digest = ?",
                           (b,)).fetchone()
            # a blob without a seal row is refused by the on-disk check
            blob_seals.append((b, str(self._blob_path(b)), *(r or (-1, -1, -1))))
        return ImageRecord(
            name=used, names=names, digest=digest, format=fmt, platform=platform,
            layer_dirs=tuple(layer_dirs), config=json.loads(config),
            signatures=tuple(sigs), manifest=manifest, manifest_digest=mblob,
            config_digest=cblob if fmt != "aci" else None,
            archive_path=str(self._blob_path(ablob)) if ablob else None,
            archive_digest=ablob,
            size=size, imported_at=imported, allow_setuid=bool(suid),
            overlay_xattr=xns, skipped=tuple(skipped), cleared_setuid=tuple(cleared),
            config_blob=cblob, layer_seals=tuple(seals), blob_seals=tuple(blob_seals))

    def list(self) -> list[ImageRecord]:
        """Every image, one record per image (``name`` its first name)."""
        db = self._db()
        try:
            out = []
            for (digest,) in db.execute("SELECT digest FROM images ORDER BY imported_at, digest"):
                names = [r[0] for r in db.execute(
                    "SELECT name FROM names WHERE image = ? ORDER BY name", (digest,))]
                out.append(self._record(db, digest, names[0] if names else None))
            return out
        finally:
            db.close()

    # ------------------------------------------------------------ removal

    def remove(self, ref: str) -> list[str]:
        """Remove a name, or (given a digest, or the image's last name) the
        image, then collect unreferenced content. Returns what was removed
        (names and digests). Raises `NotFound`."""
        removed = []
        with self._lock(exclusive=True):
            db = self._db()
            try:
                db.execute("BEGIN IMMEDIATE")
                digest, used = self._find(db, ref)
                by_name = used is not None and db.execute(
                    "SELECT 1 FROM names WHERE name = ?", (used,)).fetchone() is not None
                if by_name:
                    db.execute("DELETE FROM names WHERE name = ?", (used,))
                    db.execute("DELETE FROM name_signatures WHERE name = ?", (used,))
                    removed.append(used)
                left = db.execute("SELECT COUNT(*) FROM names WHERE image = ?",
                                  (digest,)).fetchone()[0]
                if not by_name or left == 0:
                    for (n,) in db.execute("SELECT name FROM names WHERE image = ?", (digest,)):
                        removed.append(n)
                    db.execute("DELETE FROM images WHERE digest = ?", (digest,))
                    removed.append(digest)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            finally:
                db.close()
            self._gc_locked()
        from ..audit import record_event
        record_event(self.paths, "image.remove", {"ref": ref, "removed": removed})
        return removed

    def gc(self) -> GcReport:
        """Remove layers and blobs no image references, and workspaces left
        by killed imports. Waits for running imports to finish."""
        with self._lock(exclusive=True):
            return self._gc_locked()

    def _gc_locked(self) -> GcReport:
        from ._unpack import rmtree
        report = GcReport()
        db = self._db()
        try:
            used_layers = {r[0] for r in db.execute("SELECT layer FROM image_layers")}
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM layers WHERE key NOT IN "
                       "(SELECT layer FROM image_layers)")
            db.execute("COMMIT")
            used_blobs = set()
            for row in db.execute("SELECT manifest_blob, config_blob, archive_blob FROM images"):
                used_blobs.update(b for b in row if b)
            used_blobs.update(r[0] for r in db.execute("SELECT blob FROM signatures"))
            used_blobs.update(r[0] for r in db.execute("SELECT blob FROM name_signatures"))
        finally:
            db.close()
        # The exclusive lock means no import is running: every workspace and
        # every temporary blob is left over from a killed process.
        for entry in list(self.tmp.iterdir()):
            rmtree(str(entry))
            report.temporary += 1
        for entry in list(self.layers.iterdir()):
            if entry.name not in used_layers:
                # Rename first so a half-removed tree never carries a
                # layer's name.
                trash = self.tmp / f"trash-{os.urandom(8).hex()}"
                os.rename(entry, trash)
                rmtree(str(trash))
                report.layers += 1
                report.removed.append(entry.name)
        for algo_dir in self.blobs.iterdir():
            for blob in list(algo_dir.iterdir()):
                digest = f"{algo_dir.name}:{blob.name}"
                if blob.name.startswith(".tmp-"):
                    blob.unlink()
                    report.temporary += 1
                elif digest not in used_blobs:
                    blob.unlink()
                    self._forget_blob_seal(digest)
                    report.blobs += 1
                    report.removed.append(digest)
        return report

    # ------------------------------------------------------------ trust

    def verify(self, record: ImageRecord, *, name: str | None = None):
        """Check ``record``'s signatures against the trust store for
        ``name`` (default: the name it was resolved by); returns the trust
        module's ``Verification``. Raises `VerificationError` on refusal,
        `UsageError` when the image has no name to check against."""
        who = name or record.name
        if not who:
            raise UsageError(f"image {record.digest} has no single name to verify against",
                             hint="verify it by name: sandbox image verify NAME")
        try:
            from ..trust import verify_any
        except ImportError:
            raise CheckFailed("the trust module (sandbox.trust.verify_any) is not available "
                              "in this installation") from None
        if record.manifest is None and record.archive_path is None:
            from ..errors import VerificationError
            raise VerificationError(
                f"image {who} is not signed (its archive was not kept: it was "
                "imported without signatures)", reason="unsigned",
                hint="import it again with --signature SIG")
        v = verify_any(
            self.paths, who, manifest=record.manifest,
            archive_path=Path(record.archive_path) if record.archive_path else None,
            archive_digest=record.archive_digest,
            signatures=list(record.signatures))
        if record.format == "aci":
            _check_aci_name(record.config, who)
        return v


def _has_digest(path: Path, digest: str) -> bool:
    import hashlib
    algo = digest.partition(":")[0]
    try:
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, ValueError):
        return False
    return f"{algo}:{h.hexdigest()}" == digest


def _private_copy(source: Path, ws: Path):
    """(copy, "sha256:<hex>") of a regular file, read through one open file
    description into the workspace; (None, None) for a folder."""
    import hashlib
    import stat as _stat
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file or folder") from None
    except OSError as e:
        raise UsageError(f"{source}: cannot open it ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if _stat.S_ISDIR(st.st_mode):
            return None, None
        if not _stat.S_ISREG(st.st_mode):
            raise UsageError(f"{source}: not a regular file or folder",
                             hint="give an OCI layout, a docker-archive or an ACI file")
        dst = ws / "source.blob"
        h = hashlib.sha256()
        with os.fdopen(fd, "rb", closefd=False) as f, open(dst, "xb") as out:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        return dst, f"sha256:{h.hexdigest()}"
    finally:
        os.close(fd)


def _check_aci_name(config: dict, who: str) -> None:
    """An ACI's signature covers its manifest, and so the name the manifest
    gives the image: like the identity of a simple-signing claim, the name
    it is run by (tag and digest aside) must be that name (rkt checked the
    same), else a key's signature on one image would let it run as any
    other name under the key's prefix. Images stored before the name was
    recorded are not checked."""
    signed = ((config or {}).get("Labels") or {}).get("appc.name")
    if not signed:
        return
    repo = who.split("@", 1)[0]
    head, sep, last = repo.rpartition("/")
    repo = head + sep + last.split(":", 1)[0]
    try:
        from ..trust.reference import parse_docker_reference
        signed_repo = parse_docker_reference(signed).repository
    except ValueError:
        signed_repo = signed
    if repo not in (signed, signed_repo):
        from ..errors import VerificationError
        raise VerificationError(
            f"image {who} is an ACI that names itself {signed}: its signature covers "
            f"that name, not {repo}", reason="identity-mismatch",
            hint=f"run it by its own name: sandbox image import FILE --name {signed}:TAG")
