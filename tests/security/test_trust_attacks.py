"""Attacks on the trust store and the trust decision, each asserting the
exact refusal (DESIGN §4, §10)."""

import hashlib
import os
from pathlib import Path

import pytest

from sandbox.errors import ArtifactError, UsageError, VerificationError
from sandbox.paths import Paths
from sandbox.trust import TrustStore, keys, verify_detached, verify_simple_signing
from sandbox.trust import _gpg
from sandbox.trust._testing import Signer, simple_signing_payload

C = Path("/work/shared/corpus/containers-image-signature")
R = Path("/work/shared/corpus/rkt")
FPR = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
KEY1 = "36B287ADD1095DB1AFD9CBF125D5D9FAD9DCEF41"
MANIFEST = (C / "image.manifest.json").read_bytes()
IMAGE_SIG = (C / "dir-img-valid" / "signature-1").read_bytes()

pytestmark = pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")


@pytest.fixture
def paths(tmp_path):
    return Paths.resolve(tmp_path / "root")


@pytest.fixture
def vendor(tmp_path):
    v = tmp_path / "vendor"
    (v / "root.d").mkdir(parents=True)
    (v / "prefix.d").mkdir()
    return v


@pytest.fixture
def store(paths, vendor):
    return TrustStore(paths, vendor=vendor)


@pytest.fixture(scope="module")
def rkt():
    with Signer() as s:
        s.import_(R / "secring.gpg")
        yield s


@pytest.fixture
def archive(tmp_path):
    p = tmp_path / "image.aci"
    p.write_bytes(b"an image archive\n" * 100)
    return p


def trust(paths, store, keyfile, prefix=None, root=False):
    keys.add_key(paths, keys.inspect_key_file(Path(keyfile).read_bytes()), prefix=prefix,
                 root=root, store=store)


def reason(fn, *a, **k):
    with pytest.raises(VerificationError) as e:
        fn(*a, **k)
    return e.value.reason


def test_prefix_example_com_app_does_not_cover_example_com_appx(paths, store, rkt, archive):
    trust(paths, store, R / "key1.gpg", prefix="example.com/app")
    sig = rkt.sign_detached(KEY1, archive.read_bytes())
    assert verify_detached(paths, "example.com/app", archive, sig, store=store)
    assert reason(verify_detached, paths, "example.com/appx", archive, sig, store=store) \
        == "wrong-prefix"


def test_prefix_example_com_app_does_not_cover_example_com_evil_app(paths, store, rkt, archive):
    trust(paths, store, R / "key1.gpg", prefix="example.com/app")
    sig = rkt.sign_detached(KEY1, archive.read_bytes())
    for name in ("example.com.evil/app", "evil.com/example.com/app", "example.com",
                 "example.com/ap", "example.com/app.evil"):
        assert reason(verify_detached, paths, name, archive, sig, store=store) == "wrong-prefix"


@pytest.mark.parametrize("prefix", ["../../escape", "a/../../../escape", "/tmp/escape",
                                    "a/./b", "..", "a//b", "a/..", ".hidden/x"])
def test_prefix_with_dotdot_cannot_write_outside_trust_store(paths, store, prefix, tmp_path):
    cand = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(UsageError):
        keys.add_key(paths, cand, prefix=prefix, store=store)
    with pytest.raises(UsageError):
        store.add(cand.blob, cand.fingerprint, prefix)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/escape").exists()


def test_name_with_dotdot_cannot_borrow_a_trusted_prefix(paths, store, rkt, archive):
    trust(paths, store, R / "key1.gpg", prefix="example.com/app")
    sig = rkt.sign_detached(KEY1, archive.read_bytes())
    for name in ("example.com/app/../../evil.com/x", "example.com/app/./x",
                 "example.com/app:../../x", "example.com/app//x"):
        with pytest.raises(UsageError):
            verify_detached(paths, name, archive, sig, store=store)


def test_users_own_keyring_is_never_consulted(paths, store, tmp_path, monkeypatch):
    # The user's GNUPGHOME (and ~/.gnupg) hold the signing key, ultimately trusted.
    home = tmp_path / "userhome"
    gh = home / ".gnupg"
    gh.mkdir(parents=True, mode=0o700)
    with Signer(gh) as s:
        s.import_(C / "public-key.gpg")
        s.gpg("--import-ownertrust", input=f"{FPR}:6:\n".encode())
        # gpg itself, with that home, calls the signature good
        assert b"VALIDSIG" in s.gpg("--status-fd", "1", "--decrypt", str(C / "image.signature"),
                                    check=False).stdout
    monkeypatch.setenv("GNUPGHOME", str(gh))
    monkeypatch.setenv("HOME", str(home))
    before = snapshot(gh)
    # our store trusts a different key only
    trust(paths, store, C / "public-key-2.gpg", root=True)
    assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, IMAGE_SIG,
                  store=store) == "unknown-key"
    # and an empty store refuses too
    assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, IMAGE_SIG,
                  store=TrustStore(Paths.resolve(tmp_path / "empty"), vendor=None)) == "unknown-key"
    # nothing in the user's gpg home was read-modified or created
    assert snapshot(gh) == before


def snapshot(folder):
    return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size)
                  for p in Path(folder).rglob("*") if p.is_file())


def test_empty_config_file_masks_vendor_key(paths, store, vendor):
    (vendor / "root.d" / FPR).write_bytes((C / "public-key.gpg").read_bytes())
    v = verify_simple_signing(paths, "testing/manifest", MANIFEST, IMAGE_SIG, store=store)
    assert (v.layer, v.entry) == ("vendor", "root")
    mask = paths.trustedkeys / "root.d" / FPR
    mask.parent.mkdir(parents=True)
    mask.write_bytes(b"")
    assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, IMAGE_SIG,
                  store=store) == "unknown-key"


def test_masked_vendor_key_is_not_served_from_warm_cache(paths, store, vendor):
    (vendor / "prefix.d" / "testing").mkdir()
    (vendor / "prefix.d" / "testing" / FPR).write_bytes((C / "public-key.gpg").read_bytes())
    verify_simple_signing(paths, "testing/manifest", MANIFEST, IMAGE_SIG, store=store)
    assert verify_simple_signing(paths, "testing/manifest", MANIFEST, IMAGE_SIG, store=store).cached
    store.remove(FPR)  # writes the mask
    assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, IMAGE_SIG,
                  store=store) == "unknown-key"


def test_symlinked_prefix_folder_does_not_graft_trust(paths, store, tmp_path):
    trust(paths, store, C / "public-key.gpg", prefix="trusted")
    pd = paths.trustedkeys / "prefix.d"
    os.symlink(pd / "trusted", pd / "testing")
    assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, IMAGE_SIG,
                  store=store) == "wrong-prefix"


def test_symlinked_key_file_is_not_trusted(paths, store, tmp_path):
    outside = tmp_path / "outside.gpg"
    outside.write_bytes((C / "public-key.gpg").read_bytes())
    d = paths.trustedkeys / "root.d"
    d.mkdir(parents=True)
    os.symlink(outside, d / FPR)
    assert store.entries() == []
    assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, IMAGE_SIG,
                  store=store) == "unknown-key"


def test_key_file_named_for_another_fingerprint_signs_nothing(paths, store):
    other = "F2B501009F78B0B340221A12A3CD242DA6028093"
    d = paths.trustedkeys / "root.d"
    d.mkdir(parents=True)
    (d / other).write_bytes((C / "public-key.gpg").read_bytes())  # holds 08CD.. under F2B5..'s name
    assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, IMAGE_SIG,
                  store=store) == "unknown-key"


def test_signed_message_passed_as_detached_signature_is_refused(paths, store, tmp_path):
    trust(paths, store, C / "public-key.gpg", root=True)
    data = tmp_path / "archive"
    data.write_bytes(b"any other bytes")
    assert reason(verify_detached, paths, "testing/manifest", data, IMAGE_SIG,
                  store=store) == "bad-signature"


def test_two_signatures_in_one_file_are_refused(paths, store, rkt, archive):
    trust(paths, store, R / "key1.gpg", prefix="example.com")
    good = rkt.sign_detached(KEY1, archive.read_bytes(), armor=False)
    other = rkt.sign_detached("84AA0BF58E75FD757B506FE4379E3D70585091E3", archive.read_bytes(),
                              armor=False)
    for both in (good + other, other + good, good + good):
        assert reason(verify_detached, paths, "example.com/app", archive, both,
                      store=store) == "bad-signature"


def test_cache_entry_for_one_name_does_not_serve_another(paths, store, rkt, archive):
    trust(paths, store, R / "key1.gpg", prefix="example.com/app")
    sig = rkt.sign_detached(KEY1, archive.read_bytes())
    digest = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    verify_detached(paths, "example.com/app", archive, sig, data_digest=digest, store=store)
    assert reason(verify_detached, paths, "example.com/appx", archive, sig,
                  data_digest=digest, store=store) == "wrong-prefix"


def test_secret_key_file_is_never_stored(paths, store):
    with pytest.raises(ArtifactError):
        keys.inspect_key_file((R / "secring.gpg").read_bytes())
    assert not paths.trustedkeys.exists()


def test_claim_with_duplicate_critical_keys_is_refused(paths, store):
    # JSON with two "identity" entries: the last one would win in a lax parser.
    with Signer() as s:
        fpr = s.gen_key("Dup <dup@example.com>")
        keys.add_key(paths, keys.inspect_key_file(s.export(fpr)), root=True, store=store)
        d = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
        payload = ('{"critical": {"type": "atomic container signature", '
                   f'"image": {{"docker-manifest-digest": "{d}"}}, '
                   '"identity": {"docker-reference": "evil/other"}, '
                   '"identity": {"docker-reference": "testing/manifest"}}, "optional": {}}').encode()
        sig = s.sign_message(fpr, payload)
        assert reason(verify_simple_signing, paths, "testing/manifest", MANIFEST, sig,
                      store=store) == "bad-signature"
        # and the honest claim is fine
        sig = s.sign_message(fpr, simple_signing_payload(d, "testing/manifest:latest"))
        assert verify_simple_signing(paths, "testing/manifest", MANIFEST, sig, store=store)


def test_throw_away_home_is_removed_even_on_refusal(paths, store, monkeypatch):
    made = []
    real = _gpg.ThrowAwayHome.__enter__

    def spy(self):
        r = real(self)
        made.append(self.path)
        return r
    monkeypatch.setattr(_gpg.ThrowAwayHome, "__enter__", spy)
    trust(paths, store, C / "public-key.gpg", prefix="testing/other")
    reason(verify_simple_signing, paths, "testing/manifest", MANIFEST,
           (C / "corrupt.signature").read_bytes(), store=store)
    assert made and not any(Path(p).exists() for p in made)


def test_archive_digest_recorded_by_store_must_be_the_verified_bytes(paths, store, rkt, archive):
    # A store that records digest D for an archive whose bytes are now
    # different (but still validly signed) must not get a cache entry for D.
    trust(paths, store, R / "key1.gpg", prefix="example.com")
    sig = rkt.sign_detached(KEY1, archive.read_bytes())
    fake = "sha256:" + "ab" * 32
    assert reason(verify_detached, paths, "example.com/app", archive, sig, data_digest=fake,
                  store=store) == "digest-mismatch"
    assert not list((paths.state / "trust" / "cache").rglob("*.json"))


def test_broken_vendor_key_file_signs_nothing_and_breaks_nothing(paths, store, vendor):
    (vendor / "root.d" / "F2B501009F78B0B340221A12A3CD242DA6028093").write_bytes(
        b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!not base64!!!\n")
    (vendor / "root.d" / FPR).write_bytes((C / "public-key.gpg").read_bytes())
    v = verify_simple_signing(paths, "testing/manifest", MANIFEST, IMAGE_SIG, store=store)
    assert v.primary == FPR
