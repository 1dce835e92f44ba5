"""Test helpers for images: a busybox root file system made at test time,
packed by hand into an OCI layout, a docker-archive and an ACI, and a tar
builder for hostile layers. Imported by tests/*/test_image*.py.

The formats are written from the specs (OCI image spec v1.1 image-layout,
manifest, config; docker image spec v1.2 ``docker save``; appc ACI), not by
the code under test.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "echo", "cat", "ls", "id", "true", "false", "env", "pwd", "test")
CORPUS = Path(os.environ.get("SANDBOX_CORPUS", "/work/shared/corpus"))


def have_busybox() -> bool:
    return os.path.isfile(BUSYBOX) and os.access(BUSYBOX, os.X_OK)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def busybox_rootfs(dest: Path) -> Path:
    """``dest/bin/busybox`` plus applet symlinks, ``/etc/passwd``, ``/tmp``."""
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for a in APPLETS:
        os.symlink("busybox", dest / "bin" / a)
    (dest / "etc").mkdir()
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    (dest / "tmp").mkdir(mode=0o1777)
    os.chmod(dest / "tmp", 0o1777)
    return dest


def tar_dir(src: Path, *, prefix: str = "") -> bytes:
    """A deterministic tar of ``src`` (owners 0/0, mtime 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        def norm(ti):
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = 0
            return ti
        for root, dirs, files in os.walk(src):
            dirs.sort()
            rel = os.path.relpath(root, src)
            arc = (prefix + "/" + rel if rel != "." else prefix).strip("/")
            if arc:
                tf.add(root, arcname=arc, recursive=False, filter=norm)
            for f in sorted(files) + sorted(d for d in dirs if os.path.islink(os.path.join(root, d))):
                tf.add(os.path.join(root, f), arcname=(arc + "/" + f).lstrip("/"),
                       recursive=False, filter=norm)
    return buf.getvalue()


def compress(data: bytes, kind: str | None) -> bytes:
    if kind in (None, "none"):
        return data
    if kind == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    raise ValueError(kind)


# ---------------------------------------------------------------- tar builder


def entry(name: str, kind: str = "file", data: bytes = b"", *, mode: int | None = None,
          linkname: str = "", uid: int = 0, gid: int = 0, devmajor: int = 0,
          devminor: int = 0, pax: dict | None = None):
    """One tar entry for `build_tar`: kind is file, dir, symlink, hardlink,
    char, block or fifo."""
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE,
               "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.linkname = linkname
    ti.uid, ti.gid = uid, gid
    ti.devmajor, ti.devminor = devmajor, devminor
    ti.mtime = 0
    if pax:
        ti.pax_headers = dict(pax)
    if kind == "file":
        ti.size = len(data)
    return ti, (data if kind == "file" else None)


def empty_files_tar(names) -> bytes:
    """A ustar archive of empty regular files, built from one header
    template (tarfile takes seconds for 100,000 entries; this takes less)."""
    tmpl = bytearray(tarfile.TarInfo("x").tobuf(format=tarfile.USTAR_FORMAT))
    out = bytearray()
    for name in names:
        h = bytearray(tmpl)
        nb = name.encode()
        assert len(nb) < 100
        h[0:100] = nb.ljust(100, b"\0")
        h[148:156] = b" " * 8
        h[148:156] = b"%06o\0 " % sum(h)
        out += h
    out += bytes(1024)
    return bytes(out)


def build_tar(entries, *, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


# ---------------------------------------------------------------- formats


def image_config(diff_ids, *, cmd=("/bin/sh", "-c", "echo hello"), entrypoint=None,
                 env=("PATH=/bin",), workdir="/", user="0:0", arch="amd64", os_="linux"):
    return {
        "architecture": arch, "os": os_, "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": list(cmd) if cmd else None,
                   "Entrypoint": list(entrypoint) if entrypoint else None,
                   "Env": list(env), "WorkingDir": workdir, "User": user},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }


def _canon(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def write_oci_layout(dest: Path, layer_tars, *, compression: str | None = "gzip",
                     config: dict | None = None, ref_name: str | None = None,
                     platform: bool = True, extra_manifests=(), tar_path: Path | None = None,
                     tamper=None) -> dict:
    """An OCI image layout at ``dest`` (and, with ``tar_path``, the same as a
    tar). Returns digests: manifest, config, layers. ``tamper(blobs)`` may
    change blob bytes after the manifest was written."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    blobs = {}

    def put(data: bytes) -> str:
        d = sha256(data)
        blobs[d] = data
        return d
    mt = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip", None:
          "application/vnd.oci.image.layer.v1.tar", "none": "application/vnd.oci.image.layer.v1.tar"}
    layers = []
    diff_ids = []
    for t in layer_tars:
        c = compress(t, compression)
        layers.append({"mediaType": mt.get(compression, mt["gzip"]), "digest": put(c),
                       "size": len(c)})
        diff_ids.append(sha256(t))
    cfg = config if config is not None else image_config(diff_ids)
    cbytes = _canon(cfg)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": put(cbytes), "size": len(cbytes)},
                "layers": layers}
    mbytes = _canon(manifest)
    mdesc = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": put(mbytes), "size": len(mbytes)}
    if platform:
        mdesc["platform"] = {"os": cfg.get("os", "linux"), "architecture": cfg.get("architecture", "amd64")}
    if ref_name:
        mdesc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": list(extra_manifests) + [mdesc]}
    if tamper:
        tamper(blobs)
    for d, data in blobs.items():
        (dest / "blobs" / "sha256" / d.split(":")[1]).write_bytes(data)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_bytes(_canon(index))
    if tar_path is not None:
        with tarfile.open(tar_path, "w") as tf:
            for p in ("oci-layout", "index.json", "blobs"):
                tf.add(dest / p, arcname=p)
    return {"manifest": mdesc["digest"], "config": manifest["config"]["digest"],
            "layers": [l["digest"] for l in layers], "diff_ids": diff_ids,
            "manifest_bytes": mbytes}


def write_docker_archive(path: Path, layer_tars, *, tags=("example.com/busybox:1",),
                         config: dict | None = None, link_duplicate=False) -> dict:
    """A ``docker save`` archive (docker image spec v1.2): manifest.json,
    ``<config-hex>.json``, ``<n>/layer.tar``, repositories."""
    diff_ids = [sha256(t) for t in layer_tars]
    cfg = config if config is not None else image_config(diff_ids)
    cbytes = _canon(cfg)
    chex = sha256(cbytes).split(":")[1]
    with tarfile.open(path, "w") as tf:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        add(f"{chex}.json", cbytes)
        lnames = []
        for i, t in enumerate(layer_tars):
            lid = hashlib.sha256(f"{i}".encode()).hexdigest()
            ti = tarfile.TarInfo(lid)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
            if link_duplicate and i > 0 and t == layer_tars[0]:
                li = tarfile.TarInfo(f"{lid}/layer.tar")
                li.type = tarfile.SYMTYPE
                li.linkname = f"../{lnames[0].split('/')[0]}/layer.tar"
                tf.addfile(li)
            else:
                add(f"{lid}/layer.tar", t)
            add(f"{lid}/VERSION", b"1.0")
            lnames.append(f"{lid}/layer.tar")
        man = [{"Config": f"{chex}.json", "RepoTags": list(tags), "Layers": lnames}]
        add("manifest.json", json.dumps(man).encode())
        add("repositories", b"{}")
    return {"config": "sha256:" + chex, "diff_ids": diff_ids}


def aci_manifest(name="example.com/busybox", version="1.0", *, exec_=("/bin/sh", "-c", "echo hi"),
                 arch="amd64", os_="linux", extra=None) -> dict:
    man = {"acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
           "labels": [{"name": "version", "value": version},
                      {"name": "arch", "value": arch}, {"name": "os", "value": os_}],
           "app": {"exec": list(exec_), "user": "0", "group": "0",
                   "workingDirectory": "/",
                   "environment": [{"name": "PATH", "value": "/bin"}]}}
    if extra:
        man.update(extra)
    return man


def write_aci(path: Path, rootfs: Path | None, manifest: dict | bytes, *,
              compression: str | None = "gzip", rootfs_tar: bytes | None = None) -> str:
    """An ACI: a tar of ``manifest`` and ``rootfs/``; returns the appc image
    id (``sha512-`` of the uncompressed tar)."""
    mbytes = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("manifest")
        ti.size = len(mbytes)
        tf.addfile(ti, io.BytesIO(mbytes))
        if rootfs_tar is not None:
            with tarfile.open(fileobj=io.BytesIO(rootfs_tar)) as inner:
                for m in inner:
                    data = inner.extractfile(m).read() if m.isreg() else None
                    tf.addfile(m, io.BytesIO(data) if data is not None else None)
    inner_tar = buf.getvalue()
    if rootfs is not None:
        # append the rootfs tree under rootfs/
        tree = tar_dir(rootfs, prefix="rootfs")
        buf2 = io.BytesIO()
        with tarfile.open(fileobj=buf2, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for src in (inner_tar, tree):
                with tarfile.open(fileobj=io.BytesIO(src)) as t:
                    for m in t:
                        data = t.extractfile(m).read() if m.isreg() else None
                        tf.addfile(m, io.BytesIO(data) if data is not None else None)
        inner_tar = buf2.getvalue()
    path.write_bytes(compress(inner_tar, compression))
    return "sha512-" + hashlib.sha512(inner_tar).hexdigest()


def tree_snapshot(root: Path) -> set:
    """Every path under ``root`` (relative), for before/after comparisons."""
    out = set()
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out
