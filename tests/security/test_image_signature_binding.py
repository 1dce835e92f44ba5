"""Signatures are bound to the name they were imported for (issue 12).

Attacks tried: the same content imported under a second name with no
signature of its own, an identity-free detached signature reused for
another tag, a corrupt signature added next to a good one, and every order
of two imports of the containers/image corpus signatures: the decision for
a name depends on that name's own import only, never on what else the
store holds or held.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import image_fixtures as fx  # noqa: E402

from sandbox.errors import VerificationError  # noqa: E402
from sandbox.image import ImageStore  # noqa: E402
from sandbox.paths import Paths  # noqa: E402
from sandbox.trust import TrustStore, _gpg, keys  # noqa: E402
from sandbox.trust._testing import Signer, simple_signing_payload  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")

C = Path("/work/shared/corpus/containers-image-signature")
PREFIX = "example.com/app"


@pytest.fixture(scope="module")
def signer():
    with Signer() as s:
        s.fpr = s.gen_key("Binding Test <binding@example.com>")
        yield s


def _layer() -> bytes:
    return fx.build_tar([fx.entry("etc", "dir"), fx.entry("etc/hello", data=b"hello\n")])


def _store(tmp: Path, signer) -> ImageStore:
    paths = Paths.resolve(tmp / "root")
    TrustStore(paths, vendor=None).add(_gpg.dearmor(signer.export(signer.fpr)), signer.fpr,
                                       PREFIX)
    return ImageStore(paths)


def _reason(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except VerificationError as e:
        return e.reason
    return None


def test_signature_for_one_tag_never_verifies_another_tag_of_identical_content(tmp_path, signer):
    """The pooled-signature attack: example.com/app:1 signed, then the same
    layout imported as example.com/app:evil without a signature."""
    store = _store(tmp_path, signer)
    d = fx.write_oci_layout(tmp_path / "oci", [_layer()], ref_name=f"{PREFIX}:1")
    sig = signer.sign_message(signer.fpr, simple_signing_payload(d["manifest"], f"{PREFIX}:1"))
    rec = store.import_image(tmp_path / "oci", name=f"{PREFIX}:1", signatures=[sig])
    assert store.verify(rec).identity == f"{PREFIX}:1"
    # refused at import: the name :evil has no signature of its own
    assert _reason(store.import_image, tmp_path / "oci", name=f"{PREFIX}:evil") == "unsigned"
    assert [r.names for r in store.list()] == [(f"{PREFIX}:1",)]
    # and at launch, even when imported with --insecure-options=image
    store.import_image(tmp_path / "oci", name=f"{PREFIX}:evil", insecure_options=("image",))
    evil = store.resolve(f"{PREFIX}:evil")
    assert evil.digest == rec.digest and evil.signatures == ()
    assert _reason(store.verify, evil) == "unsigned"
    # handing :1's signature to :evil is an identity mismatch, as in a fresh store
    assert _reason(store.import_image, tmp_path / "oci", name=f"{PREFIX}:evil",
                   signatures=[sig]) == "identity-mismatch"
    assert store.verify(store.resolve(f"{PREFIX}:1")).identity == f"{PREFIX}:1"


def test_identity_free_detached_signature_binds_to_the_name_given_at_import(tmp_path, signer):
    store = _store(tmp_path, signer)
    arch = tmp_path / "app.tar"
    fx.write_docker_archive(arch, [_layer()], tags=[f"{PREFIX}:1"])
    sig = signer.sign_detached(signer.fpr, arch.read_bytes())
    store.import_image(arch, name=f"{PREFIX}:1", signatures=[sig])
    store.import_image(arch, name=f"{PREFIX}:2", insecure_options=("image",))
    store.import_image(arch, name=f"{PREFIX}/web:1", insecure_options=("image",))
    assert _reason(store.verify, store.resolve(f"{PREFIX}:2")) == "unsigned"
    assert _reason(store.verify, store.resolve(f"{PREFIX}/web:1")) == "unsigned"
    assert store.verify(store.resolve(f"{PREFIX}:1")).signer == signer.fpr


def test_corrupt_signature_next_to_a_good_one_is_refused_and_changes_nothing(tmp_path, signer):
    store = _store(tmp_path, signer)
    d = fx.write_oci_layout(tmp_path / "oci", [_layer()], ref_name=f"{PREFIX}:1")
    good = signer.sign_message(signer.fpr, simple_signing_payload(d["manifest"], f"{PREFIX}:1"))
    corrupt = (C / "corrupt.signature").read_bytes() if C.is_dir() else b"\x00" * 64
    store.import_image(tmp_path / "oci", name=f"{PREFIX}:1", signatures=[good])
    assert _reason(store.import_image, tmp_path / "oci", name=f"{PREFIX}:1",
                   signatures=[corrupt]) in ("bad-signature", "unknown-key")
    assert store.resolve(f"{PREFIX}:1").signatures == (good,)
    # kept insecurely, the corrupt one replaces the name's signatures: no pool
    store.import_image(tmp_path / "oci", name=f"{PREFIX}:1", signatures=[corrupt],
                       insecure_options=("image",))
    assert store.resolve(f"{PREFIX}:1").signatures == (corrupt,)
    assert _reason(store.verify, store.resolve(f"{PREFIX}:1")) is not None


# ---------------------------------------------------------------- the corpus, every order

CORPUS_SIGS = ["image.signature", "corrupt.signature", "expired.signature",
               "invalid-reference.signature", "unknown-key.signature", "subkey.signature",
               "dir-img-valid/signature-1", "dir-img-valid-2/signature-2"]
NAME = "docker.io/testing/manifest:latest"


def _corpus_plan():
    from sandbox.image._formats import ImportPlan
    manifest = (C / "image.manifest.json").read_bytes()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    cfg = b"{}"
    return ImportPlan(format="oci", digest=digest, layers=[], manifest=manifest,
                      manifest_digest=digest, config_bytes=cfg,
                      config_digest="sha256:" + hashlib.sha256(cfg).hexdigest(),
                      config={"Entrypoint": None, "Cmd": ["/bin/true"], "Env": []},
                      platform="linux/amd64", names=[])


def _corpus_store(root: Path) -> ImageStore:
    paths = Paths.resolve(root)
    ts = TrustStore(paths, vendor=None)
    for keyfile in ("public-key.gpg", "public-key-with-subkey.gpg"):
        keys.add_key(paths, keys.inspect_key_file((C / keyfile).read_bytes()),
                     prefix="docker.io/testing", store=ts)
    return ImageStore(paths)


def _import(store: ImageStore, sig: str):
    """The import of the corpus manifest (no layers) with one signature,
    through the store's own admit-and-commit step: the decision, or the
    refusal's reason."""
    try:
        rec = store._admit_and_commit(_corpus_plan(), [], None, name=NAME,
                                      sigs=[(C / sig).read_bytes()], allow_setuid=False)
    except VerificationError as e:
        return ("refused", e.reason)
    v = store.verify(rec)
    return ("ok", v.primary, v.signature_digest)


@pytest.mark.skipif(not C.is_dir(), reason=f"corpus absent: {C}")
def test_corpus_signature_decides_the_same_whatever_was_imported_before(tmp_path):
    fresh = {s: _import(_corpus_store(tmp_path / f"fresh-{i}"), s)
             for i, s in enumerate(CORPUS_SIGS)}
    # the corpus's expectations under matchRepoDigestOrExact
    assert fresh["image.signature"] == ("refused", "identity-mismatch")
    assert fresh["corrupt.signature"] == ("refused", "bad-signature")
    assert fresh["dir-img-valid/signature-1"][0] == "ok"
    assert fresh["subkey.signature"][0] == "ok"
    for n, (a, b) in enumerate(itertools.product(CORPUS_SIGS, repeat=2)):
        store = _corpus_store(tmp_path / f"pair-{n}")
        first = _import(store, a)
        assert first == fresh[a], (a, b)
        second = _import(store, b)
        assert second == fresh[b], f"{b} after {a}: {second} != {fresh[b]}"
        # what the store now decides for the name: b's decision if b was
        # admitted, else still a's
        now = fresh[b] if fresh[b][0] == "ok" else fresh[a]
        try:
            v = store.verify(store.resolve(NAME))
            got = ("ok", v.primary, v.signature_digest)
        except VerificationError:
            got = None
        except Exception:
            got = None
        assert (got == now) if now[0] == "ok" else got is None, (a, b, got, now)


def test_digest_reference_uses_only_its_repository_signatures(tmp_path, signer):
    """REPO@DIGEST verifies with a signature kept for a tag of that
    repository; another repository naming the same digest gets nothing."""
    store = _store(tmp_path, signer)
    d = fx.write_oci_layout(tmp_path / "oci", [_layer()], ref_name=f"{PREFIX}:1")
    sig = signer.sign_message(signer.fpr, simple_signing_payload(d["manifest"], f"{PREFIX}:1"))
    rec = store.import_image(tmp_path / "oci", name=f"{PREFIX}:1", signatures=[sig])
    by_digest = store.resolve(f"{PREFIX}@{rec.digest}")
    assert by_digest.name == f"{PREFIX}@{rec.digest}" and by_digest.signatures == (sig,)
    assert store.verify(by_digest).identity == f"{PREFIX}:1"
    other = store.resolve(f"example.com/other@{rec.digest}")
    assert other.signatures == ()
    assert _reason(store.verify, other) == "unsigned"
