"""Our simple-signing verdicts agree with `skopeo standalone-verify` on every
corpus case (../shared/corpus/containers-image-signature).

skopeo 1.9's standalone-verify takes the expected KEY-FINGERPRINT of the
key that made the signature (a signing subkey's own fingerprint, not its
primary's) and reads keys from $GNUPGHOME; it compares identities exactly
after normalisation, as `names.identity_matches` does for names without a
digest, except that a reference with no tag means ``:latest`` here
(DIVERGENT below). Names with @digest are outside this comparison: there we
follow containers/image's policy rule, matching the repository only.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from sandbox.errors import VerificationError
from sandbox.paths import Paths
from sandbox.trust import TrustStore, keys, verify_simple_signing

C = Path("/work/shared/corpus/containers-image-signature")
SKOPEO = shutil.which("skopeo")
pytestmark = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")

M = "image.manifest.json"
CASES = [
    # manifest, signature, key file, name, our expected reason (None = good)
    (M, "image.signature", "public-key.gpg", "testing/manifest:latest", "identity-mismatch"),
    (M, "expired.signature", "public-key.gpg", "testing/manifest", "expired-signature"),
    (M, "unknown-key.signature", "public-key.gpg", "testing/manifest", "unknown-key"),
    (M, "invalid-reference.signature", "public-key.gpg", "testing/manifest", "identity-mismatch"),
    (M, "corrupt.signature", "public-key.gpg", "testing/manifest", "bad-signature"),
    (M, "image.signature", "public-key-2.gpg", "testing/manifest", "unknown-key"),
    ("dir-img-modified-manifest/manifest.json", "dir-img-modified-manifest/signature-1",
     "public-key.gpg", "testing/manifest:latest", "digest-mismatch"),
    (M, "subkey.signature", "public-key-with-subkey.gpg", "testing/manifest:latest", None),
    ("dir-img-valid-subkey/manifest.json", "dir-img-valid-subkey/signature-1",
     "public-key-with-subkey.gpg", "testing/manifest:latest", None),
    ("dir-img-valid/manifest.json", "dir-img-valid/signature-1", "public-key.gpg",
     "testing/manifest:latest", None),
    ("dir-img-valid-2/manifest.json", "dir-img-valid-2/signature-2", "public-key.gpg",
     "testing/manifest:latest", None),
] + [
    (M, s, "public-key.gpg", n, None if ok else "identity-mismatch")
    for s, n, ok in [
        ("image.signature", "testing/other", False),
        ("image.signature", "testing/manifest:v1", False),
        ("dir-img-valid/signature-1", "docker.io/testing/manifest:latest", True),
        ("dir-img-valid/signature-1", "testing/manifest:v1", False),
    ]
]

#: Where we differ from skopeo standalone-verify on purpose
#: (`sandbox.trust.reference.identity_matches`): the name run means
#: "name:latest" when untagged, as the image store holds it (containers/image's
#: TagNameOnly before matchRepoDigestOrExact); skopeo standalone-verify
#: compares the strings exactly.
DIVERGENT_REFUSED = [
    (M, "image.signature", "public-key.gpg", "testing/manifest"),
    (M, "image.signature", "public-key.gpg", "docker.io/testing/manifest"),
]
DIVERGENT = [
    ("dir-img-valid/manifest.json", "dir-img-valid/signature-1", "public-key.gpg",
     "testing/manifest"),
]


def skopeo_accepts(manifest: Path, name: str, fpr: str, sig: Path, keyfile: Path) -> bool:
    home = tempfile.mkdtemp(prefix="sk-", dir="/tmp")
    env = {"PATH": "/usr/bin:/bin", "GNUPGHOME": home, "HOME": home, "LC_ALL": "C"}
    try:
        subprocess.run(["gpg", "--batch", "--import", str(keyfile)], env=env,
                       capture_output=True, check=True)
        p = subprocess.run([SKOPEO, "standalone-verify", str(manifest), name, fpr, str(sig)],
                           env=env, capture_output=True)
        return p.returncode == 0
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("manifest,signature,keyfile,name,reason", CASES,
                         ids=[f"{c[1]}-{c[3]}" for c in CASES])
def test_skopeo_standalone_verify_agrees(tmp_path, manifest, signature, keyfile, name, reason):
    paths = Paths.resolve(tmp_path)
    store = TrustStore(paths, vendor=None)
    cand = keys.inspect_key_file((C / keyfile).read_bytes())
    # trust prefixes match the name literally (no docker.io normalisation)
    keys.add_key(paths, cand, prefix=name.split("/")[0], store=store)
    try:
        v = verify_simple_signing(paths, name, (C / manifest).read_bytes(),
                                  (C / signature).read_bytes(), store=store)
        ours, got, fpr = True, None, v.signer
    except VerificationError as e:
        ours, got, fpr = False, e.reason, cand.fingerprint
    assert got == reason
    theirs = skopeo_accepts(C / manifest, name, fpr, C / signature, C / keyfile)
    assert ours == theirs


@pytest.mark.parametrize("manifest,signature,keyfile,name", DIVERGENT,
                         ids=[f"{c[1]}-{c[3]}" for c in DIVERGENT])
def test_documented_divergence_default_latest_tag(tmp_path, manifest, signature, keyfile, name):
    paths = Paths.resolve(tmp_path)
    store = TrustStore(paths, vendor=None)
    cand = keys.inspect_key_file((C / keyfile).read_bytes())
    keys.add_key(paths, cand, prefix="testing", store=store)
    v = verify_simple_signing(paths, name, (C / manifest).read_bytes(),
                              (C / signature).read_bytes(), store=store)
    assert not skopeo_accepts(C / manifest, name, v.signer, C / signature, C / keyfile)


@pytest.mark.parametrize("manifest,signature,keyfile,name", DIVERGENT_REFUSED,
                         ids=[f"{c[1]}-{c[3]}" for c in DIVERGENT_REFUSED])
def test_documented_divergence_untagged_name_is_latest(tmp_path, manifest, signature, keyfile,
                                                        name):
    paths = Paths.resolve(tmp_path)
    store = TrustStore(paths, vendor=None)
    cand = keys.inspect_key_file((C / keyfile).read_bytes())
    keys.add_key(paths, cand, prefix=name.split("/")[0], store=store)
    with pytest.raises(VerificationError) as e:
        verify_simple_signing(paths, name, (C / manifest).read_bytes(),
                              (C / signature).read_bytes(), store=store)
    assert e.value.reason == "identity-mismatch"
    assert skopeo_accepts(C / manifest, name, cand.fingerprint, C / signature, C / keyfile)
