"""Trust from containers' policy.json, imported (issue 12): what maps is
trusted through the trust store, what does not is listed with its reason,
and every decision names the policy scope that allowed it."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import run_sandbox  # noqa: E402

from sandbox.image import ImageStore  # noqa: E402
from sandbox.paths import Paths  # noqa: E402

C = Path("/work/shared/corpus/containers-image-signature")
pytestmark = [pytest.mark.skipif(not C.is_dir(), reason=f"corpus absent: {C}"),
              pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")]
FPR = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
NAME = "docker.io/testing/manifest:latest"


def sb(sroot, *args):
    return run_sandbox(sroot, *args, timeout=60)


def _policy(tmp_path: Path) -> Path:
    other = (C / "public-key-2.gpg").read_bytes()
    pol = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "docker.io/testing": [{"type": "signedBy", "keyType": "GPGKeys",
                                       "keyPath": str(C / "public-key.gpg")}],
                "example.com/data": [{"type": "signedBy", "keyType": "GPGKeys",
                                      "keyData": base64.b64encode(other).decode()}],
                "example.com/any": [{"type": "insecureAcceptAnything"}],
                "example.com/repo": [{"type": "signedBy", "keyType": "GPGKeys",
                                      "keyPath": str(C / "public-key.gpg"),
                                      "signedIdentity": {"type": "matchRepository"}}],
                "example.com/app:1": [{"type": "signedBy", "keyType": "GPGKeys",
                                       "keyPath": str(C / "public-key.gpg")}],
            },
            "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }
    p = tmp_path / "policy.json"
    p.write_text(json.dumps(pol))
    return p


def _corpus_image(sroot):
    from sandbox.image._formats import ImportPlan
    manifest = (C / "image.manifest.json").read_bytes()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    plan = ImportPlan(format="oci", digest=digest, layers=[], manifest=manifest,
                      manifest_digest=digest, config_bytes=b"{}",
                      config_digest="sha256:" + hashlib.sha256(b"{}").hexdigest(),
                      config={"Cmd": ["/bin/true"]}, platform="linux/amd64", names=[])
    ImageStore(Paths.resolve(sroot))._admit_and_commit(
        plan, [], None, name=NAME, sigs=[(C / "dir-img-valid" / "signature-1").read_bytes()],
        allow_setuid=False)


def test_import_policy_trusts_signed_by_scopes_and_lists_the_rest(sroot, tmp_path):
    pol = _policy(tmp_path)
    r = sb(sroot, "trust", "import-policy", str(pol))
    assert r.returncode == 2 and "--yes" in r.stderr          # asks first; no terminal
    r = sb(sroot, "trust", "import-policy", str(pol), "--yes")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"trust {FPR} for docker.io/testing" in out
    for why in ("reject", "insecureAcceptAnything", "matchRepository", "a tag",
                "not a docker-reference transport"):
        assert why in out, (why, out)
    keys = json.loads(sb(sroot, "trust", "list", "--json").stdout)["keys"]
    assert sorted((k["scope"], k["fingerprint"]) for k in keys)[0] == \
        ("docker.io/testing", FPR)
    assert len(keys) == 2
    # a decision names the policy scope that allowed it
    _corpus_image(sroot)
    v = json.loads(sb(sroot, "image", "verify", "--json", NAME).stdout)
    assert v["verified"] and v["source"] == f"policy.json {pol} scope 'docker.io/testing'"
    r = sb(sroot, "image", "verify", NAME)
    assert f"allowed by policy.json {pol} scope 'docker.io/testing'" in r.stdout


def test_default_containers_policy_imports_nothing(sroot):
    r = sb(sroot, "trust", "import-policy", str(C / "default-policy.json"), "--yes")
    assert r.returncode == 0, r.stderr
    assert "nothing to trust" in r.stdout and "insecureAcceptAnything" in r.stdout
    assert json.loads(sb(sroot, "trust", "list", "--json").stdout)["keys"] == []


def test_malformed_policy_is_one_line(sroot, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"transports": 3}')
    r = sb(sroot, "trust", "import-policy", str(p), "--yes")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "default" in r.stderr
