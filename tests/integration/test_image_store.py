"""The image store end to end: a busybox root file system made at test time
in each of the three formats, imported through the CLI, listed, inspected,
run from its layers on a real overlayfs, removed; the corpus archives; a
kill part way through an import; signatures kept and handed to trust."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import image_fixtures as fx  # noqa: E402

from sandbox.cli import cli  # noqa: E402
from sandbox.errors import ArtifactError, VerificationError  # noqa: E402
from sandbox.image import ImageStore  # noqa: E402
from sandbox.paths import Paths  # noqa: E402

pytestmark = pytest.mark.skipif(not fx.have_busybox(), reason="busybox-static not installed "
                                "(apt-get install busybox-static)")
SANDBOX = Path(sys.executable).with_name("sandbox")


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return fx.busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")


@pytest.fixture(scope="module")
def base_tar(rootfs):
    return fx.tar_dir(rootfs)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "root"


def run_cli(root, *args, ok=True):
    r = CliRunner().invoke(cli, ["--root", str(root), *args], catch_exceptions=True)
    if ok and r.exit_code != 0:
        raise AssertionError(f"sandbox {' '.join(args)} -> {r.exit_code}\n{r.output}\n{r.exception!r}")
    return r


def make_image(kind: str, tmp: Path, base_tar: bytes, rootfs: Path) -> tuple[Path, str]:
    """(source, expected name) of the busybox image in ``kind``."""
    if kind == "oci-dir":
        fx.write_oci_layout(tmp / "oci", [base_tar], ref_name="example.com/busybox:oci")
        return tmp / "oci", "example.com/busybox:oci"
    if kind == "oci-tar":
        fx.write_oci_layout(tmp / "ocid", [base_tar], ref_name="example.com/busybox:ocitar",
                            tar_path=tmp / "oci.tar")
        return tmp / "oci.tar", "example.com/busybox:ocitar"
    if kind == "docker-archive":
        fx.write_docker_archive(tmp / "docker.tar", [base_tar],
                                tags=["example.com/busybox:docker"])
        return tmp / "docker.tar", "example.com/busybox:docker"
    if kind.startswith("aci"):
        comp = kind.partition("-")[2] or None
        path = tmp / f"busybox{'.' + comp if comp else ''}.aci"
        fx.write_aci(path, rootfs, fx.aci_manifest(version=kind), compression=comp)
        return path, f"example.com/busybox:{kind}"
    raise ValueError(kind)


KINDS = ["oci-dir", "oci-tar", "docker-archive", "aci", "aci-gzip", "aci-bzip2", "aci-xz"]


def _overlay_run(layer_dirs, tmp: Path, script: str) -> subprocess.CompletedProcess:
    """Mount the layers read-only with overlayfs in a private mount namespace
    and run ``script`` with the image's busybox sh, chrooted."""
    mnt, upper, work = tmp / "mnt", tmp / "upper", tmp / "work"
    for d in (mnt, upper, work):
        d.mkdir(exist_ok=True)
    # overlayfs lists the top layer first; a fresh upper per run, as the
    # runtime makes one per sandbox (and one lower alone needs an upper).
    lower = ":".join(reversed(layer_dirs))
    cmd = (f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} "
           f"{mnt} && "
           f"chroot {mnt} /bin/sh -c '{script}'")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=30)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="overlay mount and chroot need root")


@pytest.mark.parametrize("kind", KINDS)
def test_busybox_imports_lists_inspects_runs_and_removes(kind, tmp_path, root, base_tar, rootfs):
    src, name = make_image(kind, tmp_path, base_tar, rootfs)
    r = run_cli(root, "image", "import", "--insecure-options=image", str(src))
    assert f"imported {name}" in r.output
    lst = json.loads(run_cli(root, "image", "list", "--json").output)
    assert [i["names"] for i in lst] == [[name]]
    info = json.loads(run_cli(root, "image", "inspect", name).output)
    fmt = "aci" if kind.startswith("aci") else "docker-archive" if kind == "docker-archive" else "oci"
    assert info["format"] == fmt
    if fmt == "aci":
        assert info["digest"].startswith("sha512-") and len(info["digest"]) == 7 + 128
        assert info["config"]["Entrypoint"] == ["/bin/sh", "-c", "echo hi"]
        assert info["config"]["User"] == "0:0"
        assert info["archive_path"] and Path(info["archive_path"]).is_file()
    else:
        assert info["digest"].startswith("sha256:")
        assert info["config"]["Cmd"] == ["/bin/sh", "-c", "echo hello"]
        assert info["config"]["Env"] == ["PATH=/bin"]
    assert (info["manifest"] is not None) == (fmt == "oci")
    layer = Path(info["layer_dirs"][0])
    assert (layer / "bin" / "busybox").is_file()
    assert os.readlink(layer / "bin" / "sh") == "busybox"
    assert (layer / "tmp").stat().st_mode & 0o1777 == 0o1777
    if os.geteuid() == 0:
        p = _overlay_run(info["layer_dirs"], tmp_path, "echo hello from $(id -u); ls /bin/sh")
        assert p.returncode == 0, p.stderr
        assert "hello from 0" in p.stdout
    r = run_cli(root, "image", "rm", name)
    assert name in r.output
    assert json.loads(run_cli(root, "image", "list", "--json").output) == []
    images = root / "state" / "images"
    assert list((images / "layers").iterdir()) == []
    assert list((images / "blobs" / "sha256").iterdir()) == []


def _whiteout_image(tmp: Path, base_tar: bytes) -> Path:
    import tarfile
    # layer 1: busybox + files to delete; layer 2: whiteouts and an opaque dir
    extra = fx.build_tar([fx.entry("etc/removeme", data=b"x"),
                          fx.entry("data", "dir"),
                          fx.entry("data/a", data=b"a"), fx.entry("data/b", data=b"b"),
                          fx.entry("keep", data=b"k")])
    import io
    merged = io.BytesIO()
    with tarfile.open(fileobj=merged, mode="w", format=tarfile.PAX_FORMAT) as out:
        for blob in (base_tar, extra):
            with tarfile.open(fileobj=io.BytesIO(blob)) as t:
                for m in t:
                    out.addfile(m, t.extractfile(m) if m.isreg() else None)
    upper = fx.build_tar([fx.entry("etc/.wh.removeme", data=b""),
                          fx.entry("data/.wh..wh..opq", data=b""),
                          fx.entry("data/c", data=b"c"),
                          fx.entry(".wh.keep", data=b""), fx.entry("keep", data=b"new")])
    fx.write_oci_layout(tmp / "wh", [merged.getvalue(), upper])
    return tmp / "wh"


def test_whiteouts_become_overlay_whiteouts(tmp_path, root, base_tar):
    import stat
    store = ImageStore(Paths.resolve(root))
    rec = store.import_image(_whiteout_image(tmp_path, base_tar), name="example.com/wh:1", insecure_options=("image",))
    assert len(rec.layer_dirs) == 2
    top = Path(rec.layer_dirs[1])
    st = os.lstat(top / "etc" / "removeme")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(top / "data", f"{rec.overlay_xattr}.overlay.opaque") == b"y"
    # a whiteout never hides a file of its own layer
    assert (top / "keep").read_bytes() == b"new"
    assert not any(n.startswith(".wh.") for n in os.listdir(top) + os.listdir(top / "etc"))


@needs_root
def test_whiteouts_apply_on_a_real_overlay(tmp_path, root, base_tar):
    store = ImageStore(Paths.resolve(root))
    rec = store.import_image(_whiteout_image(tmp_path, base_tar), name="example.com/wh:1", insecure_options=("image",))
    p = _overlay_run(list(rec.layer_dirs), tmp_path,
                     "ls /etc; echo ---; ls /data; echo ---; cat /keep")
    assert p.returncode == 0, p.stderr
    etc, data, keep = p.stdout.split("---\n")
    assert "removeme" not in etc and "passwd" in etc
    assert data.split() == ["c"]
    assert keep.strip() == "new"


def test_layers_are_shared_and_unpacked_once(tmp_path, root, base_tar):
    store = ImageStore(Paths.resolve(root))
    fx.write_oci_layout(tmp_path / "a", [base_tar, fx.build_tar([fx.entry("a", data=b"a")])])
    fx.write_oci_layout(tmp_path / "b", [base_tar, fx.build_tar([fx.entry("b", data=b"b")])])
    ra = store.import_image(tmp_path / "a", name="example.com/a", insecure_options=("image",))
    marker = Path(ra.layer_dirs[0]) / "marker-from-first-import"
    marker.write_text("x")
    rb = store.import_image(tmp_path / "b", name="example.com/b", insecure_options=("image",))
    assert ra.layer_dirs[0] == rb.layer_dirs[0] and marker.exists()
    assert ra.name == "example.com/a:latest"
    store.remove("example.com/a")
    assert Path(rb.layer_dirs[0]).is_dir() and not Path(ra.layer_dirs[1]).exists()
    store.remove(rb.digest)
    assert list(store.layers.iterdir()) == []


def test_refs_by_digest_prefix_and_missing(tmp_path, root, base_tar):
    from sandbox.errors import NotFound
    store = ImageStore(Paths.resolve(root))
    fx.write_oci_layout(tmp_path / "a", [base_tar])
    rec = store.import_image(tmp_path / "a", name="example.com/a:1", insecure_options=("image",))
    assert store.resolve(rec.digest).digest == rec.digest
    assert store.resolve(rec.digest.split(":")[1][:12]).name == "example.com/a:1"
    with pytest.raises(NotFound):
        store.resolve("example.com/nothing")
    r = run_cli(root, "image", "inspect", "example.com/nothing", ok=False)
    assert r.exit_code != 0


def test_multi_arch_index_chooses_host_platform(tmp_path, root, base_tar):
    arm_cfg = fx.image_config([fx.sha256(base_tar)], arch="arm64")
    fx.write_oci_layout(tmp_path / "arm", [base_tar], config=arm_cfg)
    arm_index = json.loads((tmp_path / "arm" / "index.json").read_text())
    dest = tmp_path / "multi"
    shutil.copytree(tmp_path / "arm", dest)
    fx.write_oci_layout(dest, [base_tar], extra_manifests=arm_index["manifests"])
    rec = ImageStore(Paths.resolve(root)).import_image(dest, name="example.com/multi:1", insecure_options=("image",))
    assert rec.platform == "linux/amd64"
    with pytest.raises(ArtifactError, match="no linux/amd64 image.*linux/arm64"):
        ImageStore(Paths.resolve(root)).import_image(tmp_path / "arm", name="x:1", insecure_options=("image",))


def test_signatures_are_kept_and_verification_is_one_call(tmp_path, root, base_tar, rootfs):
    store = ImageStore(Paths.resolve(root))
    src, name = make_image("aci-gzip", tmp_path, base_tar, rootfs)
    rec = store.import_image(src, insecure_options=("image",))
    with pytest.raises(VerificationError) as ei:
        store.verify(rec)
    assert ei.value.reason == "unsigned"
    r = run_cli(root, "image", "verify", name, ok=False)
    assert r.exit_code == 1 or isinstance(r.exception, VerificationError)
    sig = tmp_path / "busybox.aci.asc"
    sig.write_bytes(b"-----BEGIN PGP SIGNATURE-----\nnot really\n-----END PGP SIGNATURE-----\n")
    # a bad signature is refused at import, and nothing changes
    r = run_cli(root, "image", "import", str(src), "--signature", str(sig), ok=False)
    assert isinstance(r.exception, VerificationError) or r.exit_code == 1
    assert store.resolve(name).signatures == ()
    run_cli(root, "image", "import", str(src), "--signature", str(sig),
            "--insecure-options=image")
    rec = store.resolve(name)
    assert rec.signatures == (sig.read_bytes(),)
    assert Path(rec.archive_path).read_bytes() == src.read_bytes()
    with pytest.raises(VerificationError):
        store.verify(rec)


@pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")
def test_signed_aci_verifies_for_its_prefix_only(tmp_path, root, base_tar, rootfs):
    from sandbox.trust import TrustStore, _gpg
    from sandbox.trust._testing import Signer
    src, name = make_image("aci-gzip", tmp_path, base_tar, rootfs)
    with Signer() as s:
        fpr = s.gen_key("Image Test <test@example.com>")
        sig = s.sign_detached(fpr, src.read_bytes())
        pub = s.export(fpr)
    paths = Paths.resolve(root)
    TrustStore(paths, vendor=None).add(_gpg.dearmor(pub), fpr, "example.com/busybox")
    store = ImageStore(paths)
    rec = store.import_image(src, signatures=[sig])
    v = store.verify(rec)
    assert v.signer == fpr and v.entry == "example.com/busybox"
    with pytest.raises(VerificationError) as ei:
        store.import_image(src, name="example.com/other:1", signatures=[sig])
    assert ei.value.reason == "wrong-prefix"
    rec2 = store.import_image(src, name="example.com/other:1", signatures=[sig],
                              insecure_options=("image",))
    with pytest.raises(VerificationError):
        store.verify(rec2)


CORPUS = fx.CORPUS / "image-archives"
corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus absent: {CORPUS}")


@corpus
@pytest.mark.parametrize("rel,select,expect", [
    ("containers-image/almostempty.tar", None, ("docker-archive", "docker.io/library/emptyimage:latest",
                                                ["emptyfile"])),
    ("go-containerregistry/test_image_1.tar", None, ("docker-archive",
                                                     "docker.io/bazel/v1/tarball:test_image_1", None)),
    ("go-containerregistry/test_index_one_image", None, ("oci", None, ["test"])),
    ("go-containerregistry/test_index", "1", ("oci", None, ["bar", "foo"])),
    ("go-containerregistry/test_index", "2", ("oci", None, ["bat", "baz"])),
    ("go-containerregistry/test_index", "3", ("oci", None, ["bar", "foo"])),
    ("go-containerregistry/test_index", "4", ("oci", None, ["bar", "foo"])),
])
def test_corpus_archive_imports(rel, select, expect, root):
    fmt, name, files = expect
    store = ImageStore(Paths.resolve(root))
    rec = store.import_image(CORPUS / rel, select=select, insecure_options=("image",))
    assert rec.format == fmt
    assert rec.name == name
    if files is not None:
        assert sorted(os.listdir(rec.layer_dirs[0])) == files
    assert store.resolve(rec.digest).digest == rec.digest
    store.remove(rec.digest)
    assert store.list() == []


@corpus
def test_corpus_index_with_two_images_refused_with_reason(root):
    with pytest.raises(ArtifactError) as ei:
        ImageStore(Paths.resolve(root)).import_image(CORPUS / "go-containerregistry/test_index", insecure_options=("image",))
    assert "holds 2 linux/amd64 images" in str(ei.value)
    assert "--select" in ei.value.hint


@corpus
def test_every_corpus_archive_imports_or_is_refused_with_reason(root):
    store = ImageStore(Paths.resolve(root))
    seen = 0
    for p in sorted(CORPUS.rglob("*")):
        if not (p.suffix == ".tar" or (p / "oci-layout").is_file()):
            continue
        seen += 1
        try:
            store.import_image(p, insecure_options=("image",))
        except ArtifactError as e:
            assert e.message and str(p) in e.message
    assert seen >= 4


MANIFESTS = fx.CORPUS / "manifests" / "containers-image"


@pytest.mark.skipif(not MANIFESTS.is_dir(), reason=f"corpus absent: {MANIFESTS}")
@pytest.mark.parametrize("fname,reason", [
    ("ociv1.manifest.json", "missing from the layout"),
    ("v2s2.manifest.json", "missing from the layout"),
    ("v2s1-unsigned.manifest.json", "schema 1"),
    ("v2list.manifest.json", "no linux/amd64 image"),
    ("oci1index.json", "missing from the layout"),
])
def test_corpus_manifests_in_a_layout_without_blobs_are_refused(fname, reason, tmp_path, root):
    """The registry manifests of containers/image, put in a layout on their
    own: none is runnable here (their blobs are not shipped), and each is
    refused for its own stated reason, never a crash."""
    data = (MANIFESTS / fname).read_bytes()
    lay = tmp_path / "lay"
    (lay / "blobs" / "sha256").mkdir(parents=True)
    d = fx.sha256(data)
    (lay / "blobs" / "sha256" / d[7:]).write_bytes(data)
    (lay / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    mt = json.loads(data).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    (lay / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": mt, "digest": d, "size": len(data)}]}))
    with pytest.raises(ArtifactError) as ei:
        ImageStore(Paths.resolve(root)).import_image(lay, name="x:1", insecure_options=("image",))
    assert reason in str(ei.value) + (ei.value.hint or ""), str(ei.value)


def test_import_killed_part_way_leaves_nothing_visible(tmp_path, root):
    """SIGKILL at several points of a ~96 MB import: no index row, no
    half-written blob under a final name; gc then clears the leftovers and
    the next import works."""
    big = fx.build_tar([fx.entry("big", data=os.urandom(96 << 20))])
    fx.write_docker_archive(tmp_path / "big.tar", [big], tags=["example.com/big:1"])
    del big
    env = {**os.environ, "SANDBOX_ROOT": str(root)}
    images = root / "state" / "images"
    killed_before_commit = 0
    for delay in (0.0, 0.02, 0.08, 0.2):
        p = subprocess.Popen([str(SANDBOX), "image", "import", "--insecure-options=image", str(tmp_path / "big.tar")],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        # wait until the layer is being written, then a little more
        while time.monotonic() < deadline:
            if any(images.glob("tmp/import-*/layer-0/root/big")):
                break
            time.sleep(0.002)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        r = subprocess.run([str(SANDBOX), "image", "list", "--json"], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        if listed:
            # killed after the commit: then the image is whole
            rec = ImageStore(Paths.resolve(root)).resolve("example.com/big:1")
            assert (Path(rec.layer_dirs[0]) / "big").stat().st_size == 96 << 20
            ImageStore(Paths.resolve(root)).remove("example.com/big:1")
        else:
            killed_before_commit += 1
        for b in (images / "blobs" / "sha256").iterdir():
            if not b.name.startswith(".tmp-"):
                assert fx.sha256(b.read_bytes())[7:] == b.name
        for layer in (images / "layers").iterdir():
            assert (layer / "meta.json").is_file()  # complete, only unreferenced
        run_cli(root, "image", "gc")
        assert list((images / "tmp").iterdir()) == []
        assert list((images / "layers").iterdir()) == []
        assert [b for b in (images / "blobs" / "sha256").iterdir()] == []
    assert killed_before_commit >= 2
    rec = ImageStore(Paths.resolve(root)).import_image(tmp_path / "big.tar", insecure_options=("image",))
    assert rec.name == "example.com/big:1"
    assert (Path(rec.layer_dirs[0]) / "big").stat().st_size == 96 << 20


def test_progress_reports_bytes(tmp_path, root):
    big = fx.build_tar([fx.entry("f", data=os.urandom(6 << 20))])
    fx.write_oci_layout(tmp_path / "p", [big], compression=None)
    seen = []
    ImageStore(Paths.resolve(root)).import_image(
        tmp_path / "p", name="x:1", progress=lambda done, total: seen.append((done, total)), insecure_options=("image",))
    assert seen and seen[-1][0] == seen[-1][1] >= 6 << 20
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


def test_progress_bar_only_on_a_terminal_for_big_imports(monkeypatch):
    from sandbox.cli import image as climg
    bar = climg._Bar()
    bar.enabled = True
    bar(1, 1 << 20)
    assert bar.bar is None  # small import: no bar
    bar(1 << 20, 8 << 20)
    assert bar.bar is not None
    bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert climg._Bar().enabled is False


def test_compressed_docker_archive_and_duplicate_layer_links(tmp_path, root, base_tar):
    import gzip
    extra = fx.build_tar([fx.entry("x", data=b"x")])
    fx.write_docker_archive(tmp_path / "d.tar", [base_tar, extra, base_tar],
                            tags=["example.com/dup:1"], link_duplicate=True)
    (tmp_path / "d.tar.gz").write_bytes(gzip.compress((tmp_path / "d.tar").read_bytes()))
    store = ImageStore(Paths.resolve(root))
    for src in ("d.tar", "d.tar.gz"):
        rec = store.import_image(tmp_path / src, insecure_options=("image",))
        assert rec.format == "docker-archive" and rec.name == "example.com/dup:1"
        assert len(rec.layer_dirs) == 3 and rec.layer_dirs[0] == rec.layer_dirs[2]


def test_docker_save_that_is_also_an_oci_layout(tmp_path, root, base_tar):
    """Docker 25+ ``docker save``: an OCI layout whose index names the image
    with io.containerd.image.name, plus a manifest.json pointing into
    blobs/. The layout is read (it has a real manifest to verify)."""
    import tarfile
    lay = tmp_path / "lay"
    d = fx.write_oci_layout(lay, [base_tar], compression=None)
    idx = json.loads((lay / "index.json").read_text())
    idx["manifests"][0]["annotations"] = {
        "io.containerd.image.name": "docker.io/library/busybox:latest",
        "org.opencontainers.image.ref.name": "latest"}
    (lay / "index.json").write_text(json.dumps(idx))
    mj = [{"Config": "blobs/sha256/" + d["config"][7:], "RepoTags": ["busybox:latest"],
           "Layers": ["blobs/sha256/" + x[7:] for x in d["layers"]]}]
    (lay / "manifest.json").write_text(json.dumps(mj))
    with tarfile.open(tmp_path / "save.tar", "w") as tf:
        for p in sorted(lay.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(lay)), recursive=False)
    store = ImageStore(Paths.resolve(root))
    rec = store.import_image(tmp_path / "save.tar", insecure_options=("image",))
    assert rec.format == "oci" and rec.name == "docker.io/library/busybox:latest"
    assert rec.digest == d["manifest"] and rec.manifest == d["manifest_bytes"]
    # The same files without oci-layout are a plain docker-archive.
    (lay / "oci-layout").unlink()
    (lay / "index.json").unlink()
    with tarfile.open(tmp_path / "old.tar", "w") as tf:
        for p in sorted(lay.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(lay)), recursive=False)
    rec2 = store.import_image(tmp_path / "old.tar", insecure_options=("image",))
    assert rec2.format == "docker-archive" and rec2.name == "docker.io/library/busybox:latest"
    assert rec2.layer_dirs != rec.layer_dirs or True
