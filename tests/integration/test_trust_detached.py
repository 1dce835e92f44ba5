"""OpenPGP detached signatures over image archives, rkt style, with keys
from ../shared/corpus/rkt and keys made at test time; the cache."""

import io
import tarfile
import time
from pathlib import Path

import pytest

from sandbox.errors import VerificationError
from sandbox.paths import Paths
from sandbox.trust import TrustStore, keys, verify_any, verify_detached
from sandbox.trust import _gpg
from sandbox.trust._testing import Signer, now

R = Path("/work/shared/corpus/rkt")
KEY1 = "36B287ADD1095DB1AFD9CBF125D5D9FAD9DCEF41"
KEY2 = "84AA0BF58E75FD757B506FE4379E3D70585091E3"

pytestmark = pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")


@pytest.fixture(scope="module")
def rkt_signer():
    with Signer() as s:
        s.import_(R / "secring.gpg")
        yield s


@pytest.fixture
def paths(tmp_path):
    return Paths.resolve(tmp_path / "root")


@pytest.fixture
def store(paths):
    return TrustStore(paths, vendor=None)


@pytest.fixture
def aci(tmp_path):
    """A minimal ACI: a tar with manifest and rootfs/."""
    p = tmp_path / "image.aci"
    with tarfile.open(p, "w") as t:
        data = (R / "image" / "manifest").read_bytes()
        ti = tarfile.TarInfo("manifest")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
        d = tarfile.TarInfo("rootfs")
        d.type = tarfile.DIRTYPE
        t.addfile(d)
    return p


def trust_key1(paths, store, prefix):
    keys.add_key(paths, keys.inspect_key_file((R / "key1.gpg").read_bytes()), prefix=prefix,
                 store=store)


@pytest.mark.parametrize("armor", [True, False])
def test_aci_signed_with_rkt_key_verifies_for_its_prefix(paths, store, aci, rkt_signer, armor):
    sig = rkt_signer.sign_detached(KEY1, aci.read_bytes(), armor=armor)
    trust_key1(paths, store, "coreos.com/rkt-inspect")
    v = verify_detached(paths, "coreos.com/rkt-inspect:1.0", aci, sig, store=store)
    assert (v.primary, v.entry, v.format) == (KEY1, "coreos.com/rkt-inspect", "openpgp-detached")
    assert v.uids[0].startswith("Key for testing only")
    assert abs(v.signed_at.timestamp() - time.time()) < 120


def test_refused_with_key_trusted_only_for_sibling_prefix(paths, store, aci, rkt_signer):
    sig = rkt_signer.sign_detached(KEY1, aci.read_bytes())
    trust_key1(paths, store, "coreos.com/other")
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store)
    assert e.value.reason == "wrong-prefix"
    assert "trusted for coreos.com/other, not for coreos.com/rkt-inspect" in e.value.message


def test_refused_for_appx_when_trusted_for_app(paths, store, aci, rkt_signer):
    sig = rkt_signer.sign_detached(KEY1, aci.read_bytes())
    trust_key1(paths, store, "example.com/app")
    assert verify_detached(paths, "example.com/app/web", aci, sig, store=store).entry == "example.com/app"
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "example.com/appx", aci, sig, store=store)
    assert e.value.reason == "wrong-prefix"


def test_second_rkt_key_is_unknown(paths, store, aci, rkt_signer):
    sig = rkt_signer.sign_detached(KEY2, aci.read_bytes())
    trust_key1(paths, store, "coreos.com")
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store)
    assert e.value.reason == "unknown-key"


def test_signature_over_other_bytes_is_bad_signature(paths, store, aci, rkt_signer, tmp_path):
    sig = rkt_signer.sign_detached(KEY1, b"some other archive")
    trust_key1(paths, store, "coreos.com")
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store)
    assert e.value.reason == "bad-signature"


def test_warm_cache_spawns_no_gpg(paths, store, aci, rkt_signer, monkeypatch):
    sig = rkt_signer.sign_detached(KEY1, aci.read_bytes())
    trust_key1(paths, store, "coreos.com")
    cold = verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store)
    assert not cold.cached

    def boom(*a, **k):
        raise AssertionError("gpg was called on a warm cache")
    monkeypatch.setattr(_gpg, "ThrowAwayHome", boom)
    warm = verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store)
    assert warm.cached and warm.primary == cold.primary and warm.entry == cold.entry
    # the cache is per name: another name under the same prefix is decided again
    with pytest.raises(AssertionError):
        verify_detached(paths, "coreos.com/other", aci, sig, store=store)


def test_removed_key_is_refused_at_next_verification_even_with_warm_cache(
        paths, store, aci, rkt_signer):
    sig = rkt_signer.sign_detached(KEY1, aci.read_bytes())
    trust_key1(paths, store, "coreos.com/rkt-inspect")
    verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store)
    assert verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store).cached
    store.remove(KEY1)
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "coreos.com/rkt-inspect", aci, sig, store=store)
    assert e.value.reason == "unknown-key"


def test_verify_any_routes_detached_and_signed_message(paths, store, aci, rkt_signer):
    trust_key1(paths, store, "coreos.com")
    det = rkt_signer.sign_detached(KEY1, aci.read_bytes())
    v = verify_any(paths, "coreos.com/x", archive_path=aci, signatures=[det], store=store)
    assert v.format == "openpgp-detached"
    with pytest.raises(VerificationError) as e:
        verify_any(paths, "coreos.com/x", archive_path=aci, signatures=[], store=store)
    assert e.value.reason == "unsigned"


# ---------------------------------------------------------------------------
# keys and signatures made at test time (ed25519; gpg --faked-system-time)

DAY = 86400


@pytest.fixture
def signer():
    with Signer() as s:
        yield s


def write_entry(store, blob, fpr, prefix="example.com"):
    store.add(_gpg.dearmor(blob), fpr, prefix)


def test_fresh_ed25519_key_verifies(paths, store, signer, aci):
    fpr = signer.gen_key("Fresh <fresh@example.com>")
    keys.add_key(paths, keys.inspect_key_file(signer.export(fpr)), prefix="example.com",
                 store=store)
    v = verify_detached(paths, "example.com/app", aci,
                        signer.sign_detached(fpr, aci.read_bytes()), store=store)
    assert v.primary == fpr and v.uids == ("Fresh <fresh@example.com>",)


def test_expired_key_is_refused(paths, store, signer, aci):
    t0 = now() - 10 * DAY
    fpr = signer.gen_key("Expired <e@example.com>", expire="1d", at=t0)
    sig = signer.sign_detached(fpr, aci.read_bytes(), at=t0 + 3600)
    blob = signer.export(fpr)
    with pytest.raises(Exception):
        keys.inspect_key_file(blob)  # `trust add` refuses an expired key
    write_entry(store, blob, fpr)
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "example.com/app", aci, sig, store=store)
    assert e.value.reason == "expired-key"
    assert fpr in e.value.message


def test_revoked_key_is_refused(paths, store, signer, aci):
    fpr = signer.gen_key("Revoked <r@example.com>")
    keys.add_key(paths, keys.inspect_key_file(signer.export(fpr)), prefix="example.com",
                 store=store)
    sig = signer.sign_detached(fpr, aci.read_bytes())
    assert verify_detached(paths, "example.com/app", aci, sig, store=store).primary == fpr
    signer.revoke(fpr)
    write_entry(store, signer.export(fpr), fpr)  # the vendor ships the revoked key
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "example.com/app", aci, sig, store=store)
    assert e.value.reason == "revoked-key"


def test_expired_signature_is_refused(paths, store, signer, aci):
    t0 = now() - 10 * DAY
    fpr = signer.gen_key("Sigexp <s@example.com>", at=t0)
    keys.add_key(paths, keys.inspect_key_file(signer.export(fpr)), prefix="example.com",
                 store=store)
    sig = signer.sign_detached(fpr, aci.read_bytes(), at=now() - 3 * DAY,
                               extra=("--default-sig-expire", "1d"))
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "example.com/app", aci, sig, store=store)
    assert e.value.reason == "expired-signature"


def test_cached_verification_expires_with_the_signature(paths, store, signer, aci):
    fpr = signer.gen_key("Short <short@example.com>")
    keys.add_key(paths, keys.inspect_key_file(signer.export(fpr)), prefix="example.com",
                 store=store)
    sig = signer.sign_detached(fpr, aci.read_bytes(), extra=("--default-sig-expire", "seconds=2"))
    v = verify_detached(paths, "example.com/app", aci, sig, store=store)
    assert v.signature_expires is not None
    assert verify_detached(paths, "example.com/app", aci, sig, store=store).cached
    time.sleep(v.signature_expires.timestamp() - time.time() + 1.1)
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "example.com/app", aci, sig, store=store)
    assert e.value.reason == "expired-signature"


def test_simple_signing_made_at_test_time(paths, store, signer):
    from sandbox.trust import verify_simple_signing
    from sandbox.trust._testing import simple_signing_payload
    import hashlib
    fpr = signer.gen_key("Podman <p@example.com>")
    keys.add_key(paths, keys.inspect_key_file(signer.export(fpr)), prefix="registry.example.com/team",
                 store=store)
    manifest = b'{"schemaVersion": 2}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    name = "registry.example.com/team/app:1.0"
    for armor in (False, True):
        sig = signer.sign_message(fpr, simple_signing_payload(digest, name, creator="test"),
                                  armor=armor)
        v = verify_simple_signing(paths, name, manifest, sig, store=store)
        assert v.identity == name and v.entry == "registry.example.com/team"
    # a claim that is not a container signature, by a trusted key
    for payload in (b"[]", b'{"critical": {}, "optional": {}}', b"\xff\xfe",
                    b'{"critical": {"type": "atomic container signature", "image": {"docker-manifest-digest": "%s"}, "identity": {"docker-reference": "%s"}}, "optional": {}, "optional": {}}'
                    % (digest.encode(), name.encode())):
        with pytest.raises(VerificationError) as e:
            verify_simple_signing(paths, name, manifest, signer.sign_message(fpr, payload),
                                  store=store)
        assert e.value.reason == "bad-signature"


# ---------------------------------------------------------------------------
# real-world detached signatures (../shared/corpus/gpg/pgpy)

P = Path("/work/shared/corpus/gpg/pgpy")


def test_signature_made_before_key_expired_is_refused_now(paths, tmp_path):
    # Decision: a key that has expired signs nothing any more, whenever the
    # signature was made (gpg: EXPKEYSIG). rkt and containers/image agree.
    vendor = tmp_path / "vendor"
    blob = (P / "aptapproval-test.key.asc").read_bytes()
    from sandbox.trust._gpg import inspect_keys, dearmor
    (info,), _ = inspect_keys(dearmor(blob))
    (vendor / "root.d").mkdir(parents=True)
    (vendor / "root.d" / info.fingerprint).write_bytes(blob)
    store = TrustStore(paths, vendor=vendor)
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "apt/test", P / "aptapproval-test.subj",
                        (P / "aptapproval-test.sig.asc").read_bytes(), store=store)
    assert e.value.reason == "expired-key"


def test_real_ubuntu_signature_and_one_flipped_byte(paths, tmp_path):
    store = TrustStore(paths, vendor=None)
    keys.add_key(paths, keys.inspect_key_file((P / "ubuntu-precise.key.asc").read_bytes()),
                 prefix="ubuntu", store=store)
    sig = (P / "ubuntu-precise.sig.asc").read_bytes()
    v = verify_detached(paths, "ubuntu/precise", P / "ubuntu-precise.subj", sig, store=store)
    assert v.primary == "630239CC130E1A7FD81A27B140976EAF437D05B5"
    flipped = tmp_path / "subj"
    data = bytearray((P / "ubuntu-precise.subj").read_bytes())
    data[100] ^= 1
    flipped.write_bytes(bytes(data))
    with pytest.raises(VerificationError) as e:
        verify_detached(paths, "ubuntu/precise", flipped, sig, store=store)
    assert e.value.reason == "bad-signature"


def test_verify_any_with_manifest_and_archive_routes_each_signature_by_form(
        paths, store, signer, aci):
    import hashlib
    from sandbox.trust._testing import simple_signing_payload
    fpr = signer.gen_key("Both <both@example.com>")
    keys.add_key(paths, keys.inspect_key_file(signer.export(fpr)), prefix="example.com",
                 store=store)
    manifest = b'{"schemaVersion": 2, "layers": []}'
    d = "sha256:" + hashlib.sha256(manifest).hexdigest()
    simple = signer.sign_message(fpr, simple_signing_payload(d, "example.com/app:1"))
    detached = signer.sign_detached(fpr, aci.read_bytes())
    v = verify_any(paths, "example.com/app:1", manifest=manifest, archive_path=aci,
                   signatures=[simple], store=store)
    assert v.format == "simple-signing" and v.image_digest == d
    v = verify_any(paths, "example.com/app:1", manifest=manifest, archive_path=aci,
                   signatures=[detached], store=store)
    assert v.format == "openpgp-detached"


@pytest.mark.parametrize("form", ["sha512:{}", "sha512-{}", "sha256:{}"])
def test_archive_digest_given_in_sha512_or_appc_form(paths, store, aci, rkt_signer, form):
    import hashlib
    algo = "sha256" if form.startswith("sha256") else "sha512"
    digest = form.format(hashlib.new(algo, aci.read_bytes()).hexdigest())
    sig = rkt_signer.sign_detached(KEY1, aci.read_bytes())
    trust_key1(paths, store, "coreos.com")
    v = verify_detached(paths, "coreos.com/x", aci, sig, data_digest=digest, store=store)
    assert v.image_digest == f"{algo}:" + digest.split(digest[6], 1)[1]
    assert verify_detached(paths, "coreos.com/x", aci, sig, data_digest=digest, store=store).cached
