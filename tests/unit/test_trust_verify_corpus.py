"""Simple-signing verification against containers/image's own fixtures
(../shared/corpus/containers-image-signature, see SOURCES.md)."""

from pathlib import Path

import pytest

from sandbox.errors import UsageError, VerificationError
from sandbox.paths import Paths
from sandbox.trust import TrustStore, keys, verify_any, verify_simple_signing

C = Path("/work/shared/corpus/containers-image-signature")
KEY = C / "public-key.gpg"
SUBKEY_CERT = C / "public-key-with-subkey.gpg"
FPR = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
SUB_PRIMARY = "B9F4CDB9FD8C475BFA340AC38D54A947EE396F36"
SUB_SIGNER = "57D1D95BBC53BA0EAFF0718CD75B3109B3BAAEAF"
MANIFEST = (C / "image.manifest.json").read_bytes()
VALID = (C / "dir-img-valid" / "signature-1").read_bytes()
DIGEST = "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"

pytestmark = pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")


@pytest.fixture
def paths(tmp_path):
    return Paths.resolve(tmp_path)


@pytest.fixture
def store(paths):
    return TrustStore(paths, vendor=None)


def trust(paths, store, keyfile, prefix=None, root=False):
    keys.add_key(paths, keys.inspect_key_file(keyfile.read_bytes()), prefix=prefix, root=root,
                 store=store)


def sig(name):
    return (C / name).read_bytes()


@pytest.mark.parametrize("how", [{"prefix": "testing/manifest"}, {"prefix": "testing"},
                                 {"root": True}])
def test_image_signature_verifies(paths, store, how):
    trust(paths, store, KEY, **how)
    v = verify_simple_signing(paths, "testing/manifest", MANIFEST, VALID, store=store)
    assert v.signer == v.primary == FPR
    assert v.entry == how.get("prefix", "root") and v.layer == "config"
    assert v.image_digest == DIGEST and v.identity == "testing/manifest:latest"
    assert v.format == "simple-signing" and v.name == "testing/manifest"
    assert v.signed_at is not None
    assert v.key_expires is None and v.signature_expires is None
    assert v.uids == ("skopeo testing key",) and not v.by_subkey and not v.cached


@pytest.mark.parametrize("name", ["testing/manifest", "testing/manifest:latest"])
def test_name_only_identity_refused_for_tagged_name(paths, store, name):
    """image.signature claims "testing/manifest" (no tag): containers/image's
    matchRepoDigestOrExact refuses it for any tagged name, :latest included
    (issue 12)."""
    trust(paths, store, KEY, prefix="testing")
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, name, MANIFEST, sig("image.signature"), store=store)
    assert e.value.reason == "identity-mismatch"
    assert "names only the repository 'testing/manifest'" in e.value.message


def test_binary_key_file_verifies_too(paths, store):
    trust(paths, store, C / "public-key-1.gpg", prefix="testing/manifest")
    verify_simple_signing(paths, "testing/manifest", MANIFEST, VALID, store=store)


@pytest.mark.parametrize("signature,name,reason", [
    ("expired.signature", "testing/manifest", "expired-signature"),
    ("unknown-key.signature", "testing/manifest", "unknown-key"),
    ("invalid-reference.signature", "testing/manifest", "identity-mismatch"),
    ("corrupt.signature", "testing/manifest", "bad-signature"),
    ("image.signature", "testing/manifest:v1", "identity-mismatch"),
    ("image.signature", "testing/other", "identity-mismatch"),
    ("dir-img-valid/signature-1", "testing/manifest:v1", "identity-mismatch"),
    ("dir-img-valid/signature-1", "testing/manifest/sub:latest", "identity-mismatch"),
])
def test_corpus_refusals(paths, store, signature, name, reason):
    trust(paths, store, KEY, prefix="testing")
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, name, MANIFEST, sig(signature), store=store)
    assert e.value.reason == reason
    assert name in e.value.message
    assert len(e.value.lines()) == 2  # message and a hint


def test_modified_manifest_is_digest_mismatch(paths, store):
    trust(paths, store, KEY, prefix="testing/manifest")
    d = C / "dir-img-modified-manifest"
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, "testing/manifest:latest", (d / "manifest.json").read_bytes(),
                              (d / "signature-1").read_bytes(), store=store)
    assert e.value.reason == "digest-mismatch"
    assert "sha256:2edc21ff" in e.value.message


def test_unsigned_image_is_refused(paths, store):
    trust(paths, store, KEY, prefix="testing/manifest")
    m = (C / "dir-img-unsigned" / "manifest.json").read_bytes()
    sigs = sorted((C / "dir-img-unsigned").glob("signature-*"))
    assert sigs == []
    with pytest.raises(VerificationError) as e:
        verify_any(paths, "testing/manifest:latest", manifest=m, signatures=[], store=store)
    assert e.value.reason == "unsigned"


def test_unknown_key_when_only_the_other_key_is_trusted(paths, store):
    keys.add_key(paths, keys.inspect_key_file((C / "public-key-2.gpg").read_bytes()),
                 prefix="testing", store=store)
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, "testing/manifest", MANIFEST, sig("image.signature"),
                              store=store)
    assert e.value.reason == "unknown-key"


def test_key_trusted_for_sibling_prefix_is_wrong_prefix(paths, store):
    trust(paths, store, KEY, prefix="testing/other")
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, "testing/manifest", MANIFEST, sig("image.signature"),
                              store=store)
    assert e.value.reason == "wrong-prefix"
    assert "trusted for testing/other, not for testing/manifest" in e.value.message


@pytest.mark.parametrize("signature", ["subkey.signature", "dir-img-valid-subkey/signature-1"])
def test_signature_by_signing_subkey_verifies_as_gpg_decides(paths, store, signature):
    # gpg: GOODSIG + VALIDSIG 57D1..(subkey) ... B9F4..(primary): a good signature.
    trust(paths, store, SUBKEY_CERT, prefix="testing/manifest")
    m = (C / "dir-img-valid-subkey" / "manifest.json").read_bytes()
    v = verify_simple_signing(paths, "testing/manifest:latest", m, sig(signature), store=store)
    assert (v.signer, v.primary, v.by_subkey) == (SUB_SIGNER, SUB_PRIMARY, True)


def test_dir_img_valid_2_either_signature(paths, store):
    trust(paths, store, KEY, prefix="testing/manifest")
    d = C / "dir-img-valid-2"
    m = (d / "manifest.json").read_bytes()
    v = verify_any(paths, "testing/manifest:latest", manifest=m,
                   signatures=[(d / "signature-1").read_bytes(), (d / "signature-2").read_bytes()],
                   store=store)
    assert v.signature_digest.startswith("sha256:")


def test_verify_any_reports_the_most_informative_refusal(paths, store):
    trust(paths, store, KEY, prefix="testing")
    with pytest.raises(VerificationError) as e:
        verify_any(paths, "testing/manifest", manifest=MANIFEST, store=store,
                   signatures=[sig("unknown-key.signature"), sig("corrupt.signature"),
                               sig("invalid-reference.signature")])
    assert e.value.reason == "identity-mismatch"
    assert "none of 3 signatures" in e.value.message


def test_verify_any_returns_first_good(paths, store):
    trust(paths, store, KEY, prefix="testing")
    v = verify_any(paths, "testing/manifest", manifest=MANIFEST, store=store,
                   signatures=[sig("corrupt.signature"), VALID])
    assert v.primary == FPR


def test_by_digest_name_matches_repository_and_checks_digest(paths, store):
    trust(paths, store, KEY, prefix="testing")
    v = verify_simple_signing(paths, "testing/manifest@" + DIGEST, MANIFEST,
                              sig("dir-img-valid/signature-1"), store=store)
    assert v.identity == "testing/manifest:latest"
    other = "sha256:" + "0" * 64
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, "testing/manifest@" + other, MANIFEST,
                              sig("dir-img-valid/signature-1"), store=store)
    assert e.value.reason == "digest-mismatch"


def test_invalid_name_is_a_usage_error(paths, store):
    with pytest.raises(UsageError):
        verify_simple_signing(paths, "testing/../manifest", MANIFEST, sig("image.signature"),
                              store=store)


def test_empty_store_refuses_as_unknown_key(paths, store):
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, "testing/manifest", MANIFEST, sig("image.signature"),
                              store=store)
    assert e.value.reason == "unknown-key"


def test_garbage_signature_is_bad_signature(paths, store):
    trust(paths, store, KEY, prefix="testing")
    for junk in (b"not a signature", b"\x00" * 100, MANIFEST, KEY.read_bytes()):
        with pytest.raises(VerificationError) as e:
            verify_simple_signing(paths, "testing/manifest", MANIFEST, junk, store=store)
        assert e.value.reason == "bad-signature"


def test_empty_signature_is_unsigned(paths, store):
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, "testing/manifest", MANIFEST, b"", store=store)
    assert e.value.reason == "unsigned"
