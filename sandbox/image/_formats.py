"""Reading the three image formats into one import plan.

Sources followed:

- OCI image layout and index (OCI image spec v1.1: image-layout.md,
  image-index.md, manifest.md, config.md, descriptor.md). From an index the
  linux/<host arch> manifest is chosen; nested indexes and Docker manifest
  lists are followed; entries without a platform are decided by their
  config's ``os``/``architecture``.
- docker-archive, as ``docker save``/``podman save`` write it (docker image
  spec v1.2: ``manifest.json`` with ``Config``, ``RepoTags``, ``Layers``;
  layer digests are the config's ``rootfs.diff_ids``). ``docker save`` from
  Docker 25 also writes an OCI layout in the same tar; then the layout is
  read, which gives a real manifest to verify.
- ACI (appc spec v0.8: ACI.md, "Image Archives" and "Image Manifest
  Schema"): a tar, optionally gzip/bzip2/xz compressed, holding ``manifest``
  and ``rootfs/``; its image id is ``sha512-`` and the SHA-512 of the
  uncompressed tar.

Nothing here writes into the store; the store unpacks the layers the plan
names and checks every digest the plan expects.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import re
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ArtifactError, UsageError
from ._unpack import Limits, normalise_name

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_V1 = ("application/vnd.docker.distribution.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
CONFIG_TYPES = (MT_OCI_CONFIG, MT_DOCKER_CONFIG)
LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"

_DIGEST_RE = {"sha256": re.compile(r"^[a-f0-9]{64}$"),
              "sha512": re.compile(r"^[a-f0-9]{128}$")}
_AC_NAME_RE = re.compile(r"^[a-z0-9]+([-._~/][a-z0-9]+)*$")

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64", "armv7l": "arm"}
#: appc names some architectures differently (appc spec, "Architectures").
_ACI_ARCH = {"amd64": "amd64", "arm64": "aarch64", "386": "i386",
             "ppc64le": "ppc64le", "s390x": "s390x", "arm": "armv7l"}


def host_platform() -> tuple[str, str]:
    """``("linux", GOARCH)`` for this machine, e.g. ``("linux", "amd64")``."""
    return "linux", _ARCH.get(_platform.machine(), _platform.machine())


@dataclass
class LayerSource:
    """One layer to unpack. ``open`` gives the raw blob; ``digest``/``size``
    are what the manifest promises for the raw bytes, ``diff_id`` for the
    uncompressed tar (either may be None when the format has none)."""

    label: str
    open: Callable
    size: int | None
    digest: str | None
    diff_id: str | None
    key: str | None           # folder name in layers/, None until known (ACI)
    whiteouts: bool = True
    prefix: str | None = None
    capture: dict = field(default_factory=dict)
    blob_algo: str = "sha256"
    diff_algo: str = "sha256"


@dataclass
class ImportPlan:
    """What an archive or layout holds, before anything is unpacked."""

    format: str                        # "oci" | "docker-archive" | "aci"
    digest: str | None                 # None for ACI until unpacked
    layers: list
    manifest: bytes | None = None
    manifest_digest: str | None = None
    config_bytes: bytes | None = None
    config_digest: str | None = None
    config: dict | None = None         # normalised, see normalise_oci_config
    platform: str = ""
    names: list = field(default_factory=list)
    total_bytes: int = 0
    archive: Path | None = None        # the file signatures may cover


# ---------------------------------------------------------------- helpers


def parse_digest(d, *, what: str) -> tuple[str, str]:
    """``"sha256:<hex>"`` -> ("sha256", hex); refuses anything else."""
    if not isinstance(d, str) or ":" not in d:
        raise ArtifactError(f"{what}: {d!r} is not a digest")
    algo, _, hexpart = d.partition(":")
    rx = _DIGEST_RE.get(algo)
    if rx is None or not rx.match(hexpart):
        raise ArtifactError(f"{what}: digest {d!r} is not sha256 or sha512 in lower-case hex")
    return algo, hexpart


def digest_key(d: str) -> str:
    """A digest as a file name that overlayfs options can carry (no ':')."""
    return d.replace(":", "-")


def load_json(data: bytes, *, what: str):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{what} is not valid JSON ({e})") from None


def _digest_of(data: bytes, algo: str = "sha256") -> str:
    import hashlib
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _strlist(v, *, what: str):
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ArtifactError(f"image config: {what} must be a list of strings")
    return list(v)


def normalise_oci_config(cfg: dict) -> dict:
    """The runtime's view of an OCI/docker image config (config.md,
    "Properties"): Entrypoint and Cmd (list or None), Env (list of
    ``K=V``), WorkingDir and User (strings, "" when unset), Labels,
    StopSignal, ExposedPorts and Volumes (sorted keys)."""
    if not isinstance(cfg, dict):
        raise ArtifactError("image config is not a JSON object")
    c = cfg.get("config") or {}
    if not isinstance(c, dict):
        raise ArtifactError("image config: 'config' is not an object")
    labels = c.get("Labels") or {}
    if not isinstance(labels, dict):
        raise ArtifactError("image config: Labels must be an object")
    return {
        "Entrypoint": _strlist(c.get("Entrypoint"), what="Entrypoint"),
        "Cmd": _strlist(c.get("Cmd"), what="Cmd"),
        "Env": _strlist(c.get("Env"), what="Env") or [],
        "WorkingDir": str(c.get("WorkingDir") or ""),
        "User": str(c.get("User") or ""),
        "Labels": {str(k): str(v) for k, v in labels.items()},
        "StopSignal": str(c.get("StopSignal") or ""),
        "ExposedPorts": sorted((c.get("ExposedPorts") or {}).keys())
        if isinstance(c.get("ExposedPorts"), dict) else [],
        "Volumes": sorted((c.get("Volumes") or {}).keys())
        if isinstance(c.get("Volumes"), dict) else [],
    }


def _aci_list(obj: dict, key: str, what: str) -> list:
    """``obj[key]`` when it is a list (or absent: []); else a one-line refusal (issue 13)."""
    v = obj.get(key) or []
    if not isinstance(v, list):
        raise ArtifactError(f"{what}: {key!r} is not a list")
    return list(v)


def normalise_aci_manifest(man: dict) -> tuple[dict, str, str]:
    """(config, name, platform) from an appc ImageManifest (appc spec,
    "Image Manifest Schema"). The app section maps to the OCI-style keys:
    exec -> Entrypoint, environment -> Env, workingDirectory -> WorkingDir,
    user:group -> User; isolators, mountPoints and ports are kept as given.
    Refuses a manifest of the wrong kind, an invalid name, another
    os/arch, or dependencies (images built on others are not supported)."""
    if not isinstance(man, dict) or man.get("acKind") != "ImageManifest":
        raise ArtifactError("ACI manifest: acKind is not 'ImageManifest'")
    name = man.get("name")
    if not isinstance(name, str) or not _AC_NAME_RE.match(name):
        raise ArtifactError(f"ACI manifest: name {name!r} is not an AC identifier")
    labels = {}
    for item in _aci_list(man, "labels", "ACI manifest"):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ArtifactError("ACI manifest: malformed label")
        labels[item["name"]] = str(item.get("value", ""))
    host_os, host_arch = host_platform()
    os_ = labels.get("os", host_os)
    arch = labels.get("arch", _ACI_ARCH.get(host_arch, host_arch))
    if os_ != host_os or arch != _ACI_ARCH.get(host_arch, host_arch):
        raise ArtifactError(
            f"ACI {name}: built for {os_}/{arch}; this host runs "
            f"{host_os}/{_ACI_ARCH.get(host_arch, host_arch)}")
    if man.get("dependencies"):
        raise ArtifactError(f"ACI {name}: has dependencies, which sandbox does not "
                            "resolve; flatten the image (actool) and import that")
    app = man.get("app") or {}
    if not isinstance(app, dict):
        raise ArtifactError(f"ACI {name}: 'app' is not an object")
    env = []
    for item in _aci_list(app, "environment", f"ACI {name}: app"):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ArtifactError(f"ACI {name}: malformed environment entry")
        env.append(f"{item['name']}={item.get('value', '')}")
    user = app.get("user")
    group = app.get("group")
    if app and (user is None or group is None):
        raise ArtifactError(f"ACI {name}: app must name both user and group")
    annotations = {}
    for item in _aci_list(man, "annotations", f"ACI {name}"):
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            annotations[item["name"]] = str(item.get("value", ""))
    cfg = {
        "Entrypoint": _strlist(app.get("exec"), what="app.exec"),
        "Cmd": None,
        "Env": env,
        "WorkingDir": str(app.get("workingDirectory") or ""),
        "User": f"{user}:{group}" if app else "",
        # appc.name: the name the signed manifest gives itself; verification
        # binds the name an ACI is run by to it (see ImageStore.verify)
        "Labels": {**annotations, **{f"appc.label.{k}": v for k, v in labels.items()},
                   "appc.name": name},
        "StopSignal": "",
        "ExposedPorts": sorted(f"{p.get('port')}/{p.get('protocol')}"
                               for p in _aci_list(app, "ports", f"ACI {name}: app")
                               if isinstance(p, dict)),
        "Volumes": sorted(str(m.get("path"))
                          for m in _aci_list(app, "mountPoints", f"ACI {name}: app")
                          if isinstance(m, dict)),
        "Isolators": _aci_list(app, "isolators", f"ACI {name}: app"),
    }
    ref = name + (f":{labels['version']}" if labels.get("version") else "")
    return cfg, ref, f"{os_}/{arch}"


# ---------------------------------------------------------------- containers


class _DirSource:
    """An OCI layout or a docker-archive unpacked into a folder."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, name: str) -> Path:
        rel = normalise_name(name, label=str(self.root), what="path")
        return self.root / rel

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        st = os.stat(self._path(name))
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"{self.root}: {name} is not a regular file")
        return st.st_size

    def open(self, name: str):
        return open(self._path(name), "rb")


class _TarSource:
    """An uncompressed tar read in place: members are found by name and read
    through their offsets; links inside the archive are followed (``docker
    save`` links duplicate layers), up to a small depth, never outside it."""

    def __init__(self, path: Path, limits: Limits):
        self.path = path
        self._tf = tarfile.open(path, "r:")
        self._members: dict[str, tarfile.TarInfo] = {}
        count = 0
        for m in self._tf:
            count += 1
            if count > limits.max_archive_members:
                raise ArtifactError(f"{path}: more than {limits.max_archive_members} "
                                    "members; not an image archive")
            try:
                key = normalise_name(m.name, label=str(path), what="member")
            except ArtifactError:
                continue  # never addressable by a manifest path either
            self._members[key] = m
        self._tf.members = []

    def names(self):
        return self._members.keys()

    def _resolve(self, name: str) -> tarfile.TarInfo:
        key = normalise_name(name, label=str(self.path), what="path")
        for _ in range(8):
            m = self._members.get(key)
            if m is None:
                raise ArtifactError(f"{self.path}: {name} is missing from the archive")
            if m.isreg():
                return m
            if m.issym():
                base = key.rpartition("/")[0]
                target = m.linkname if m.linkname.startswith("/") else \
                    f"{base}/{m.linkname}" if base else m.linkname
                key = os.path.normpath("/" + target).lstrip("/")
            elif m.islnk():
                key = normalise_name(m.linkname, label=str(self.path), what="link")
            else:
                raise ArtifactError(f"{self.path}: {name} is not a file")
        raise ArtifactError(f"{self.path}: {name} is a chain of links")

    def exists(self, name: str) -> bool:
        try:
            self._resolve(name)
            return True
        except ArtifactError:
            return False

    def size(self, name: str) -> int:
        return self._resolve(name).size

    def open(self, name: str):
        m = self._resolve(name)
        f = open(self.path, "rb")
        f.seek(m.offset_data)
        return _Window(f, m.size)

    def close(self):
        self._tf.close()


class _Window:
    """``size`` bytes of an open file from its current offset."""

    def __init__(self, f, size: int):
        self._f = f
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._left:
            n = self._left
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_small(src, name: str, limit: int, *, what: str) -> bytes:
    size = src.size(name)
    if size > limit:
        raise ArtifactError(f"{what} is {size} bytes, over the limit of {limit} "
                            "(limit max_json_bytes)")
    with src.open(name) as f:
        return f.read(limit + 1)


# ---------------------------------------------------------------- detection


def detect(path: Path, limits: Limits, label: str | None = None) -> str:
    """``"oci"``, ``"docker-archive"`` or ``"aci"`` for a folder or file, by
    content, not by name. Refuses what is none of them, naming ``label``
    (the caller's path, when ``path`` is the store's private copy)."""
    who = label or str(path)
    if path.is_dir():
        if (path / "oci-layout").is_file():
            return "oci"
        if (path / "manifest.json").is_file():
            return "docker-archive"
        raise ArtifactError(f"{who}: not an image folder (no oci-layout or manifest.json)",
                            hint="give an OCI layout, a docker-archive or an ACI file")
    if not path.is_file():
        raise UsageError(f"{who}: no such file or folder")
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" \
            or head[:4] == b"\x28\xb5\x2f\xfd":
        return "compressed"
    try:
        with tarfile.open(path, "r:") as tf:
            seen = set()
            for i, m in enumerate(tf):
                n = m.name[2:] if m.name.startswith("./") else m.name
                seen.add(n.rstrip("/"))
                if n in ("oci-layout",):
                    return "oci"
                if i > limits.max_archive_members:
                    break
    except tarfile.TarError as e:
        raise ArtifactError(f"{who}: not a tar archive ({e})",
                            hint="give an OCI layout, a docker-archive or an ACI file") from None
    if "manifest.json" in seen:
        return "docker-archive"
    if "manifest" in seen and ("rootfs" in seen or any(s.startswith("rootfs/") for s in seen)):
        return "aci"
    raise ArtifactError(f"{who}: not an image archive (no oci-layout, manifest.json, "
                        "or ACI manifest and rootfs/)")


def peek_compressed_kind(path: Path, limits: Limits) -> str:
    """For a compressed tar: ``"aci"`` when its first members are an ACI's,
    else ``"tar"`` (a compressed docker-archive or OCI tar)."""
    from ._unpack import LayerStream
    with open(path, "rb") as f:
        stream = LayerStream(f, limits=limits, label=str(path))
        try:
            tf = tarfile.open(fileobj=stream, mode="r:")
            for i, m in enumerate(tf):
                n = m.name[2:] if m.name.startswith("./") else m.name
                if n in ("manifest", "rootfs", "rootfs/") or n.startswith("rootfs/"):
                    return "aci"
                if n in ("oci-layout", "manifest.json", "index.json") or i > 64:
                    return "tar"
                tf.members = []
        except (tarfile.TarError, ArtifactError):
            pass
    return "tar"


# ---------------------------------------------------------------- OCI layout


def plan_oci(src, *, limits: Limits, select: str | None, label: str) -> ImportPlan:
    """Read an OCI image layout (folder or tar) and choose one image."""
    lay = load_json(_read_small(src, "oci-layout", 4096, what=f"{label}: oci-layout"),
                    what=f"{label}: oci-layout")
    ver = lay.get("imageLayoutVersion") if isinstance(lay, dict) else None
    if not isinstance(ver, str) or not ver.startswith("1."):
        raise ArtifactError(f"{label}: unsupported imageLayoutVersion {ver!r}")
    if not src.exists("index.json"):
        raise ArtifactError(f"{label}: OCI layout without index.json")
    index_bytes = _read_small(src, "index.json", limits.max_json_bytes,
                              what=f"{label}: index.json")
    index = load_json(index_bytes, what=f"{label}: index.json")
    seen_platforms: list[str] = []
    candidates: dict[str, tuple] = {}
    _walk_index(src, index, limits=limits, label=label, select=select, depth=0,
                inherited_names=(), candidates=candidates, seen=seen_platforms)
    host = "/".join(host_platform())
    if not candidates:
        if select:
            raise ArtifactError(f"{label}: no {host} image named {select!r} in the index")
        others = ", ".join(sorted(set(seen_platforms))) or "none"
        raise ArtifactError(f"{label}: no {host} image in the index (found: {others})")
    if len(candidates) > 1:
        refs = sorted({n for c in candidates.values() for n in c[2]}) or \
            sorted(candidates)
        raise ArtifactError(
            f"{label}: the index holds {len(candidates)} {host} images; choose one",
            hint="import again with --select REF-NAME (one of: " + ", ".join(refs) + ")")
    (mdigest, (mbytes, manifest, names)), = candidates.items()
    return _plan_from_manifest(src, mdigest, mbytes, manifest, names,
                               limits=limits, label=label)


def _blob_name(digest: str, *, what: str) -> str:
    algo, hexpart = parse_digest(digest, what=what)
    return f"blobs/{algo}/{hexpart}"


def _read_blob(src, desc: dict, *, limits: Limits, what: str) -> bytes:
    if not isinstance(desc, dict):
        raise ArtifactError(f"{what}: descriptor is not an object")
    digest = desc.get("digest")
    name = _blob_name(digest, what=what)
    size = desc.get("size")
    if not isinstance(size, int) or size < 0:
        raise ArtifactError(f"{what}: descriptor has no valid size")
    if size > limits.max_json_bytes:
        raise ArtifactError(f"{what}: {size} bytes, over the limit of "
                            f"{limits.max_json_bytes} (limit max_json_bytes)")
    if not src.exists(name):
        raise ArtifactError(f"{what}: blob {digest} is missing from the layout")
    data = _read_small(src, name, limits.max_json_bytes, what=what)
    if len(data) != size:
        raise ArtifactError(f"{what}: blob {digest} is {len(data)} bytes, "
                            f"its descriptor says {size}")
    algo = digest.split(":")[0]
    if _digest_of(data, algo) != digest:
        raise ArtifactError(f"{what}: blob content does not match digest {digest}")
    return data


def _desc_names(desc: dict) -> tuple:
    ann = desc.get("annotations") or {}
    out = []
    for key in (CONTAINERD_NAME, REF_NAME):
        v = ann.get(key) if isinstance(ann, dict) else None
        if isinstance(v, str) and v:
            out.append(v)
    return tuple(out)


def _walk_index(src, index, *, limits, label, select, depth, inherited_names,
                candidates, seen):
    if depth > 4:
        raise ArtifactError(f"{label}: indexes nested more than 4 deep")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ArtifactError(f"{label}: index has no 'manifests' list")
    host_os, host_arch = host_platform()
    for i, desc in enumerate(index["manifests"]):
        what = f"{label}: index entry {i}"
        if not isinstance(desc, dict):
            raise ArtifactError(f"{what}: not an object")
        names = tuple(dict.fromkeys(_desc_names(desc) + tuple(inherited_names)))
        if select is not None and depth == 0 and select not in names:
            continue
        plat = desc.get("platform")
        if isinstance(plat, dict) and plat.get("os"):
            pstr = f"{plat.get('os')}/{plat.get('architecture')}"
            if plat.get("os") != host_os or plat.get("architecture") != host_arch:
                seen.append(pstr)
                continue
        mt = desc.get("mediaType")
        if mt in MT_DOCKER_V1:
            seen.append("docker schema 1 (unsupported)")
            continue
        data = _read_blob(src, desc, limits=limits, what=what)
        doc = load_json(data, what=what)
        kind = doc.get("mediaType") if isinstance(doc, dict) else None
        if kind is None and isinstance(doc, dict):
            kind = MT_OCI_INDEX if "manifests" in doc else \
                MT_OCI_MANIFEST if "layers" in doc else None
        if kind in INDEX_TYPES:
            _walk_index(src, doc, limits=limits, label=label, select=None,
                        depth=depth + 1, inherited_names=names,
                        candidates=candidates, seen=seen)
        elif kind in MANIFEST_TYPES:
            if not (isinstance(plat, dict) and plat.get("os")):
                cos, carch = _config_platform(src, doc, limits=limits, what=what)
                if (cos, carch) != (host_os, host_arch):
                    seen.append(f"{cos}/{carch}")
                    continue
            prev = candidates.get(desc["digest"])
            candidates[desc["digest"]] = (data, doc, tuple(sorted(
                set(names) | set(prev[2] if prev else ()))))
        elif kind in MT_DOCKER_V1 or (isinstance(doc, dict) and doc.get("schemaVersion") == 1):
            seen.append("docker schema 1 (unsupported)")
        else:
            seen.append(f"{kind or 'unknown'} (not an image)")


def _config_platform(src, manifest, *, limits, what):
    cdesc = manifest.get("config")
    cfg = load_json(_read_blob(src, cdesc, limits=limits, what=f"{what} config"),
                    what=f"{what} config")
    if not isinstance(cfg, dict):
        return "?", "?"
    return str(cfg.get("os", "?")), str(cfg.get("architecture", "?"))


def _config_diff_ids(cfg, *, what: str) -> list:
    """The config's ``rootfs.diff_ids`` list, or a one-line refusal (issue 13:
    a ``rootfs`` that is a string, a boolean or a list crashed here)."""
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{what}: not a JSON object")
    rootfs = cfg.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise ArtifactError(f"{what}: rootfs is not an object with a diff_ids list")
    return rootfs["diff_ids"]


def _plan_from_manifest(src, mdigest, mbytes, manifest, names, *, limits, label):
    what = f"{label}: manifest {mdigest}"
    cdesc = manifest.get("config")
    if not isinstance(cdesc, dict):
        raise ArtifactError(f"{what}: no config descriptor")
    cmt = cdesc.get("mediaType")
    if cmt not in CONFIG_TYPES:
        raise ArtifactError(f"{what}: config type {cmt!r} is not a container image "
                            "config; this artifact is not a runnable image")
    cbytes = _read_blob(src, cdesc, limits=limits, what=f"{what} config")
    cfg = load_json(cbytes, what=f"{what} config")
    layers_desc = manifest.get("layers")
    if not isinstance(layers_desc, list):
        raise ArtifactError(f"{what}: no layers list")
    if len(layers_desc) > limits.max_layers:
        raise ArtifactError(f"{what}: {len(layers_desc)} layers, over the limit of "
                            f"{limits.max_layers}")
    diff_ids = _config_diff_ids(cfg, what=f"{what} config")
    if len(diff_ids) != len(layers_desc):
        raise ArtifactError(f"{what}: config lists {len(diff_ids or [])} diff_ids "
                            f"for {len(layers_desc)} layers")
    host_os, host_arch = host_platform()
    if cfg.get("os", host_os) != host_os or cfg.get("architecture", host_arch) != host_arch:
        raise ArtifactError(f"{what}: image is for {cfg.get('os')}/{cfg.get('architecture')}; "
                            f"this host runs {host_os}/{host_arch}")
    layers = []
    total = 0
    for i, ld in enumerate(layers_desc):
        lwhat = f"layer {i} ({ld.get('digest') if isinstance(ld, dict) else '?'})"
        if not isinstance(ld, dict):
            raise ArtifactError(f"{what}: {lwhat}: not an object")
        if ld.get("mediaType") not in LAYER_TYPES:
            raise ArtifactError(f"{what}: {lwhat}: media type {ld.get('mediaType')!r} "
                                "is not a layer this store can unpack")
        digest = ld.get("digest")
        algo, _ = parse_digest(digest, what=f"{what}: {lwhat}")
        size = ld.get("size")
        if not isinstance(size, int) or size < 0:
            raise ArtifactError(f"{what}: {lwhat}: no valid size")
        parse_digest(diff_ids[i], what=f"{what}: diff_id {i}")
        name = _blob_name(digest, what=lwhat)
        if not src.exists(name):
            raise ArtifactError(f"{what}: {lwhat}: blob missing from the layout"
                                + (" (a foreign layer, not shipped)" if "foreign" in
                                   str(ld.get("mediaType")) or "nondistributable" in
                                   str(ld.get("mediaType")) else ""))
        total += size
        layers.append(LayerSource(
            label=lwhat, open=(lambda n=name: src.open(n)), size=size, digest=digest,
            diff_id=diff_ids[i], key=digest_key(digest), blob_algo=algo,
            diff_algo=diff_ids[i].split(":")[0]))
    full_names = [n for n in names if "/" in n or ":" in n]
    return ImportPlan(
        format="oci", digest=mdigest, layers=layers, manifest=mbytes,
        manifest_digest=mdigest, config_bytes=cbytes,
        config_digest=cdesc["digest"], config=normalise_oci_config(cfg),
        platform=f"{cfg.get('os', host_os)}/{cfg.get('architecture', host_arch)}",
        names=full_names, total_bytes=total)


# ---------------------------------------------------------------- docker-archive


def _repo_tags(entry: dict) -> list[str]:
    """The entry's ``RepoTags`` strings; anything malformed counts as none."""
    tags = entry.get("RepoTags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def plan_docker(src, *, limits: Limits, select: str | None, label: str) -> ImportPlan:
    """Read a docker-archive (``docker save`` format, docker image spec
    v1.2). The image digest is the config's sha256 (Docker's image id); each
    layer tar must hash to its ``rootfs.diff_ids`` entry."""
    mf = load_json(_read_small(src, "manifest.json", limits.max_json_bytes,
                               what=f"{label}: manifest.json"), what=f"{label}: manifest.json")
    if not isinstance(mf, list) or not mf:
        raise ArtifactError(f"{label}: manifest.json lists no images")
    entries = [e for e in mf if isinstance(e, dict)]
    if select is not None:
        entries = [e for e in entries if select in _repo_tags(e)]
        if not entries:
            raise ArtifactError(f"{label}: no image tagged {select!r} in the archive")
    if len(entries) > 1:
        tags = sorted(t for e in entries for t in _repo_tags(e))
        raise ArtifactError(f"{label}: the archive holds {len(entries)} images; choose one",
                            hint="import again with --select TAG (one of: "
                            + ", ".join(tags) + ")")
    if not entries:     # issue 13: [false] and the like listed no usable entry
        raise ArtifactError(f"{label}: manifest.json lists no image objects",
                            hint="expected [{\"Config\": ..., \"Layers\": [...]}]")
    entry = entries[0]
    cname = entry.get("Config")
    if not isinstance(cname, str):
        raise ArtifactError(f"{label}: manifest.json entry has no Config")
    cbytes = _read_small(src, cname, limits.max_json_bytes, what=f"{label}: config")
    config_digest = _digest_of(cbytes)
    base = cname.rsplit("/", 1)[-1].removesuffix(".json")
    if _DIGEST_RE["sha256"].match(base) and f"sha256:{base}" != config_digest:
        raise ArtifactError(f"{label}: config {cname} does not match its name's digest")
    cfg = load_json(cbytes, what=f"{label}: config")
    lnames = entry.get("Layers")
    if not isinstance(lnames, list) or not all(isinstance(x, str) for x in lnames):
        raise ArtifactError(f"{label}: manifest.json entry has no Layers list")
    if len(lnames) > limits.max_layers:
        raise ArtifactError(f"{label}: {len(lnames)} layers, over the limit of {limits.max_layers}")
    diff_ids = _config_diff_ids(cfg, what=f"{label}: config")
    if len(diff_ids) != len(lnames):
        raise ArtifactError(f"{label}: config lists {len(diff_ids or [])} diff_ids "
                            f"for {len(lnames)} layers")
    host_os, host_arch = host_platform()
    if cfg.get("os", host_os) != host_os or cfg.get("architecture", host_arch) != host_arch:
        raise ArtifactError(f"{label}: image is for {cfg.get('os')}/{cfg.get('architecture')}; "
                            f"this host runs {host_os}/{host_arch}")
    layers = []
    total = 0
    for i, ln in enumerate(lnames):
        diff = diff_ids[i]
        algo, _ = parse_digest(diff, what=f"{label}: diff_id {i}")
        size = src.size(ln)
        total += size
        layers.append(LayerSource(
            label=f"layer {i} ({ln})", open=(lambda n=ln: src.open(n)), size=size,
            digest=None, diff_id=diff, key=digest_key(diff), diff_algo=algo))
    tags = _repo_tags(entry)
    return ImportPlan(
        format="docker-archive", digest=config_digest, layers=layers,
        config_bytes=cbytes, config_digest=config_digest,
        config=normalise_oci_config(cfg),
        platform=f"{cfg.get('os', host_os)}/{cfg.get('architecture', host_arch)}",
        names=tags, total_bytes=total)


# ---------------------------------------------------------------- ACI


def plan_aci(path: Path, *, limits: Limits) -> ImportPlan:
    """An ACI is read in one pass: its rootfs is the single layer, its
    manifest is captured on the way, its id known only at the end."""
    size = path.stat().st_size
    layer = LayerSource(
        label=f"ACI {path.name}", open=lambda: open(path, "rb"), size=size,
        digest=None, diff_id=None, key=None, whiteouts=False, prefix="rootfs",
        capture={"manifest": limits.max_json_bytes}, blob_algo="sha256",
        diff_algo="sha512")
    return ImportPlan(format="aci", digest=None, layers=[layer], total_bytes=size,
                      archive=path)


def open_source(path: Path, *, limits: Limits, select: str | None, workdir: Path,
                label: str | None = None):
    """(plan, closer) for a folder or file. A compressed tar that is not an
    ACI is first decompressed into ``workdir`` (bounded by the limits).
    ``label`` names the source in messages (the store passes the caller's
    path while ``path`` is its private copy)."""
    label = label or str(path)
    kind = detect(path, limits, label)
    if kind == "compressed":
        if peek_compressed_kind(path, limits) == "aci":
            return plan_aci(path, limits=limits), None
        plain = workdir / "archive.tar"
        from ._unpack import LayerStream
        with open(path, "rb") as f, open(plain, "wb") as out:
            stream = LayerStream(f, limits=limits, label=label)
            while True:
                chunk = stream.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        kind = detect(plain, limits, label)
        if kind == "aci":
            return plan_aci(path, limits=limits), None
        tar = _TarSource(plain, limits)
        plan = (plan_oci if kind == "oci" else plan_docker)(
            tar, limits=limits, select=select, label=label)
        plan.archive = path
        return plan, tar.close
    if kind == "aci":
        return plan_aci(path, limits=limits), None
    if path.is_dir():
        src = _DirSource(path)
        fn = plan_oci if kind == "oci" else plan_docker
        return fn(src, limits=limits, select=select, label=label), None
    tar = _TarSource(path, limits)
    try:
        fn = plan_oci if kind == "oci" else plan_docker
        plan = fn(tar, limits=limits, select=select, label=label)
    except BaseException:
        tar.close()
        raise
    plan.archive = path
    return plan, tar.close
