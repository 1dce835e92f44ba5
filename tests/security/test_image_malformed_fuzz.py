"""Malformed image metadata never crashes `image import` (issue 13, item 10).

Property-based: hypothesis mutates one JSON document of an otherwise valid
image (OCI index, manifest and config; docker-archive ``manifest.json`` and
config; ACI ``manifest``) by replacing values anywhere in it with arbitrary
JSON, re-computing every digest that points at it so the damage reaches the
parser instead of the digest check. Every input must end in an import or a
`SandboxError` whose message is one line, never a traceback. The budget is
bounded for CI (``max_examples`` and a per-example deadline below).

The regressions the issue names come first, as plain tests.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import image_fixtures as fx  # noqa: E402

from sandbox.errors import ArtifactError, SandboxError  # noqa: E402
from sandbox.image import ImageStore  # noqa: E402
from sandbox.paths import Paths  # noqa: E402

BUDGET = settings(max_examples=150, deadline=3000, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow,
                                         HealthCheck.function_scoped_fixture])

#: A one-file layer: enough for a real import, small enough for fuzzing.
LAYER = fx.build_tar([fx.entry("hello", data=b"hi\n")])
DIFF_ID = fx.sha256(LAYER)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(["sha256:" + "0" * 64, DIFF_ID, "layers",
                                              "linux", "amd64", "application/vnd.oci."
                                              "image.manifest.v1+json"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                   max_size=3),
    max_leaves=8)


def _paths(doc, prefix=()):
    """Every (path) into ``doc``, the root included."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _replace(doc, path, value):
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value
    return doc


def mutate(data, doc):
    """``doc`` with one to three values (maybe the whole) replaced by arbitrary JSON."""
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths), label="path")
        doc = _replace(doc, path, data.draw(json_values, label="value"))
    return doc


def _canon(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _import_ends_cleanly(source: Path) -> None:
    """Import ``source`` into a fresh store: a record or a one-line refusal."""
    with tempfile.TemporaryDirectory(prefix="fuzz-store-") as root:
        store = ImageStore(Paths.resolve(root))
        try:
            store.import_image(source, name="example.com/fuzz:1", insecure_options=("image",))
        except SandboxError as e:
            _assert_one_line_refusal(e)


def _assert_one_line_refusal(e: SandboxError) -> None:
    """What the CLI prints: the message on one line, maybe a hint line after."""
    assert e.message and "\n" not in e.message, e.message
    assert e.hint is None or "\n" not in e.hint, e.hint


# --- builders: a valid image in each format, with one document replaced -------

def write_oci(dest: Path, *, config=None, manifest=None, index=None) -> None:
    """An OCI layout folder; each of ``config``/``manifest``/``index`` is a
    function from the valid document to the one written."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> str:
        d = fx.sha256(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d
    ldigest = put(LAYER)
    cfg = fx.image_config([DIFF_ID])
    cbytes = _canon(config(cfg) if config else cfg)
    man = {"schemaVersion": 2, "mediaType": fx_mt("manifest"),
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": put(cbytes), "size": len(cbytes)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                       "digest": ldigest, "size": len(LAYER)}]}
    mbytes = _canon(manifest(man) if manifest else man)
    idx = {"schemaVersion": 2, "mediaType": fx_mt("index"),
           "manifests": [{"mediaType": fx_mt("manifest"), "digest": put(mbytes),
                          "size": len(mbytes),
                          "platform": {"os": "linux", "architecture": "amd64"}}]}
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (dest / "index.json").write_bytes(_canon(index(idx) if index else idx))


def fx_mt(kind: str) -> str:
    return f"application/vnd.oci.image.{kind}.v1+json"


def write_docker(path: Path, *, config=None, manifest=None) -> None:
    """A ``docker save`` archive with one layer; hooks as in `write_oci`."""
    cfg = fx.image_config([DIFF_ID])
    cbytes = _canon(config(cfg) if config else cfg)
    chex = hashlib.sha256(cbytes).hexdigest()
    man = [{"Config": f"{chex}.json", "RepoTags": ["example.com/fuzz:1"],
            "Layers": ["l0/layer.tar"]}]
    mbytes = json.dumps(manifest(man) if manifest else man).encode()
    with tarfile.open(path, "w") as tf:
        for name, data in ((f"{chex}.json", cbytes), ("l0/layer.tar", LAYER),
                           ("manifest.json", mbytes)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def write_aci(path: Path, manifest) -> None:
    mbytes = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    fx.write_aci(path, None, mbytes, compression=None,
                 rootfs_tar=fx.build_tar([fx.entry("rootfs/hello", data=b"hi\n")]))


# --- the regressions the issue names ------------------------------------------

@pytest.mark.parametrize("manifest", [[False], [None], [1], ["x"], [[]], [{}], {}, "x", []])
def test_docker_archive_malformed_manifest_json_is_refused_in_one_line(tmp_path, manifest):
    write_docker(tmp_path / "a.tar", manifest=lambda m: manifest)
    store = ImageStore(Paths.resolve(tmp_path / "root"))
    with pytest.raises(ArtifactError) as e:
        store.import_image(tmp_path / "a.tar", name="example.com/fuzz:1", insecure_options=("image",))
    assert "manifest.json" in e.value.message
    _assert_one_line_refusal(e.value)


@pytest.mark.parametrize("rootfs", ["layers", True, False, ["x"], [{"diff_ids": []}], 3])
@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_config_with_malformed_rootfs_is_refused_in_one_line(tmp_path, fmt, rootfs):
    def bad(cfg):
        return {**cfg, "rootfs": rootfs}
    if fmt == "oci":
        src = tmp_path / "layout"
        write_oci(src, config=bad)
    else:
        src = tmp_path / "a.tar"
        write_docker(src, config=bad)
    store = ImageStore(Paths.resolve(tmp_path / "root"))
    with pytest.raises(ArtifactError) as e:
        store.import_image(src, name="example.com/fuzz:1", insecure_options=("image",))
    assert "rootfs" in e.value.message or "diff_ids" in e.value.message
    _assert_one_line_refusal(e.value)


@pytest.mark.parametrize("fmt", ["oci", "docker", "aci"])
def test_unmutated_fuzz_base_images_import(tmp_path, fmt):
    # The control: without a mutation each base image imports, so the fuzz
    # tests below start from valid archives.
    src = tmp_path / "src"
    if fmt == "oci":
        write_oci(src)
    elif fmt == "docker":
        write_docker(src)
    else:
        write_aci(src, fx.aci_manifest())
    store = ImageStore(Paths.resolve(tmp_path / "root"))
    rec = store.import_image(src, name="example.com/fuzz:1", insecure_options=("image",))
    assert rec.digest


# --- property-based fuzzing -----------------------------------------------------

@BUDGET
@given(data=st.data(), which=st.sampled_from(["index", "manifest", "config"]),
       as_tar=st.booleans())
def test_fuzz_oci_metadata_never_crashes_import(data, which, as_tar):
    with tempfile.TemporaryDirectory(prefix="fuzz-oci-") as d:
        layout = Path(d) / "layout"
        write_oci(layout, **{which: lambda doc: mutate(data, doc)})
        if as_tar:                          # the same layout as an OCI archive
            with tarfile.open(Path(d) / "oci.tar", "w") as tf:
                for p in ("oci-layout", "index.json", "blobs"):
                    tf.add(layout / p, arcname=p)
            _import_ends_cleanly(Path(d) / "oci.tar")
        else:
            _import_ends_cleanly(layout)


@BUDGET
@given(data=st.data(), which=st.sampled_from(["manifest", "config"]))
def test_fuzz_docker_archive_metadata_never_crashes_import(data, which):
    with tempfile.TemporaryDirectory(prefix="fuzz-docker-") as d:
        write_docker(Path(d) / "a.tar", **{which: lambda doc: mutate(data, doc)})
        _import_ends_cleanly(Path(d) / "a.tar")


@BUDGET
@given(data=st.data())
def test_fuzz_aci_manifest_never_crashes_import(data):
    with tempfile.TemporaryDirectory(prefix="fuzz-aci-") as d:
        write_aci(Path(d) / "a.aci", mutate(data, fx.aci_manifest()))
        _import_ends_cleanly(Path(d) / "a.aci")
