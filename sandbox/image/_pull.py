"""Pulling images with skopeo, and reading skopeo's ``dir:`` layout (issue 12).

The transport is Debian's ``skopeo`` (containers/image underneath), so
registries, credentials, mirrors, ``registries.conf`` and the lookaside
signature stores named in ``registries.d`` (``lookaside``/``sigstore``
keys, skopeo 1.9) work exactly as for podman and skopeo. The steps of a
pull, in order:

1. Parse ``TRANSPORT:REF`` (``docker://``, ``oci:``, ``oci-archive:``,
   ``dir:``, ``docker-archive:``); the name to store and verify under is
   the docker reference (``docker://``) or ``--name``.
2. Under the store's shared lock (so ``gc`` cannot remove it), ``skopeo
   copy`` the image with its signatures into a private workspace in the
   store's temp area as a ``dir:`` layout. skopeo runs with a policy that
   accepts anything: the decision is ours, made in step 3 on the exact
   bytes copied, before anything is kept. skopeo dies with us
   (``PR_SET_PDEATHSIG``).
3. Import that layout (`ImageStore.import_image`): its manifest, config
   and layer digests are checked, its ``signature-N`` files verified for
   the name, and only then is it committed in one transaction.
4. The workspace is removed. A pull killed at any point leaves at most a
   workspace in ``images/tmp/``, which nothing reads and ``gc`` removes:
   ``image list`` never shows a half-pulled image.

skopeo's ``dir:`` layout (containers/image ``directory`` transport,
version 1.1): ``version``, ``manifest.json`` (the manifest bytes as the
registry served them, which simple-signing claims cover), one file per
blob named by its sha256 hex, and ``signature-1``, ``signature-2``, ...
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import ArtifactError, HostSupportError, UsageError

TRANSPORTS = ("docker://", "oci:", "oci-archive:", "dir:", "docker-archive:")
_DIR_VERSION = b"Directory Transport Version: 1."
_MAX_SIGNATURES = 64


def is_pull_ref(ref: str) -> bool:
    return isinstance(ref, str) and ref.startswith(TRANSPORTS)


def is_skopeo_dir(path: Path) -> bool:
    try:
        with open(path / "version", "rb") as f:
            return f.read(64).startswith(_DIR_VERSION)
    except OSError:
        return False


def read_dir_signatures(path: Path) -> list[bytes]:
    """``signature-1``, ``signature-2``, ... in order, until the first gap."""
    out = []
    for i in range(1, _MAX_SIGNATURES + 1):
        p = path / f"signature-{i}"
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            break
        except OSError as e:
            raise ArtifactError(f"{p}: cannot read it ({e.strerror})") from None
        with os.fdopen(fd, "rb") as f:
            data = f.read((1 << 20) + 1)
        if len(data) > 1 << 20:
            raise ArtifactError(f"{p}: larger than 1 MiB; not a signature")
        out.append(data)
    return out


def plan_skopeo_dir(path: Path, *, limits, label: str):
    """An `ImportPlan` for a skopeo ``dir:`` layout holding one image."""
    from . import _formats
    src = _SkopeoDirSource(path)
    mbytes = _formats._read_small(src, "manifest.json", limits.max_json_bytes,
                                  what=f"{label}: manifest.json")
    manifest = _formats.load_json(mbytes, what=f"{label}: manifest.json")
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{label}: manifest.json is not a JSON object")
    kind = manifest.get("mediaType")
    if kind in _formats.INDEX_TYPES or "manifests" in manifest:
        raise ArtifactError(f"{label}: holds a manifest list, not one image",
                            hint="copy one platform's image (skopeo copy without --all)")
    if manifest.get("schemaVersion") != 2:
        raise ArtifactError(f"{label}: manifest schema {manifest.get('schemaVersion')!r} "
                            "is not supported (docker schema 2 or OCI only)")
    import hashlib
    mdigest = "sha256:" + hashlib.sha256(mbytes).hexdigest()
    return _formats._plan_from_manifest(src, mdigest, mbytes, manifest, (),
                                        limits=limits, label=label)


class _SkopeoDirSource:
    """Blob names of the plan (``blobs/sha256/<hex>``) -> ``<hex>`` files."""

    def __init__(self, root: Path):
        from ._formats import _DirSource
        self._dir = _DirSource(root)
        self.root = root

    def _map(self, name: str) -> str:
        if name.startswith("blobs/sha256/"):
            return name[len("blobs/sha256/"):]
        if name.startswith("blobs/"):
            raise ArtifactError(f"{self.root}: {name}: only sha256 blobs are supported in a "
                                "dir: layout")
        return name

    def exists(self, name):
        return self._dir.exists(self._map(name))

    def size(self, name):
        return self._dir.size(self._map(name))

    def open(self, name):
        p = self._dir._path(self._map(name))
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, "rb")


def parse_pull_ref(ref: str, name: str | None) -> tuple[str, str]:
    """(skopeo source, name to store it under)."""
    from .store import normalise_ref
    if not is_pull_ref(ref):
        raise UsageError(f"{ref!r} names no transport",
                         hint="use docker://REF, oci:PATH[:REF], oci-archive:PATH, dir:PATH "
                              "or docker-archive:PATH")
    if ref.startswith("docker://"):
        docker = ref[len("docker://"):]
        if not docker:
            raise UsageError("docker:// needs a reference such as docker://example.com/app:1")
        return ref, normalise_ref(name or docker)
    if not name:
        raise UsageError(f"{ref}: give the name to store it under with --name REF",
                         hint="signatures are verified for, and bound to, that name")
    return ref, normalise_ref(name)


def _pdeathsig():
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def pull(store, ref: str, *, name: str | None = None, insecure_options=(),
         registries_d: str | None = None, tls_verify: bool = True,
         progress: bool | None = None):
    """Pull ``ref`` into ``store`` (see the module docstring); returns the
    `ImageRecord`. Raises `UsageError`, `HostSupportError` (no skopeo),
    `ArtifactError` (skopeo failed, bad content), `VerificationError`."""
    source, who = parse_pull_ref(ref, name)
    skopeo = shutil.which("skopeo") or ("/usr/bin/skopeo" if os.path.exists("/usr/bin/skopeo")
                                        else None)
    if skopeo is None:
        raise HostSupportError("image pull needs skopeo, which is not installed",
                               hint="apt-get install skopeo")
    if progress is None:
        progress = sys.stderr.isatty()
    from ._unpack import rmtree
    with store._lock(exclusive=False):
        ws = store.tmp / f"pull-{os.urandom(8).hex()}"
        ws.mkdir(mode=0o700)
        try:
            policy = ws / "policy.json"
            # Step 2: skopeo decides nothing; the trust decision is ours.
            policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
            cmd = [skopeo, "--policy", str(policy)]
            if registries_d:
                cmd += ["--registries.d", str(registries_d)]
            cmd += ["copy"]
            if not tls_verify and source.startswith("docker://"):
                sys.stderr.write(f"sandbox: warning: pulling {source} without TLS "
                                 "verification (signatures are still verified)\n")
                cmd += ["--src-tls-verify=false"]
            if not progress:
                cmd += ["--quiet"]
            cmd += [source, f"dir:{ws / 'image'}"]
            try:
                r = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                                   stdout=sys.stderr if progress else subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, preexec_fn=_pdeathsig,
                                   env={**os.environ, "LC_ALL": "C"})
            except OSError as e:
                raise HostSupportError(f"cannot run skopeo: {e.strerror}") from None
            if r.returncode != 0:
                lines = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines()
                         if ln.strip()]
                why = lines[-1] if lines else f"exit {r.returncode}"
                m = re.search(r'msg="((?:[^"\\]|\\.)*)"', why)
                if m:
                    why = m.group(1).replace('\\"', '"')
                if len(why) > 300:
                    why = why[:300] + "..."
                raise ArtifactError(f"pull of {ref} failed: {why}",
                                    hint="check the reference, the registry and "
                                         "registries.d (skopeo copy did the transfer)")
            return store.import_image(ws / "image", name=who,
                                      insecure_options=insecure_options, source_label=ref)
        finally:
            rmtree(str(ws))
