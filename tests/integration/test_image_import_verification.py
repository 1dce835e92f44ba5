"""Verification at import (issue 12): unsigned, untrusted or badly signed
images are refused before anything is kept, unless
--insecure-options=image (recorded); `image verify` names the signature and
the key, and prints JSON on failure too."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import image_fixtures as fx  # noqa: E402
from helpers import run_sandbox  # noqa: E402

from sandbox.trust._testing import Signer, simple_signing_payload  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")
NAME = "example.com/app/imp:1"


def sb(sroot, *args):
    return run_sandbox(sroot, *args, timeout=60)


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("imp")
    layer = fx.build_tar([fx.entry("etc", "dir"), fx.entry("etc/hello", data=b"hi\n")])
    dg = fx.write_oci_layout(d / "oci", [layer], ref_name=NAME)
    with Signer() as s:
        fpr = s.gen_key("Import Test <imp@example.com>")
        (d / "key.asc").write_bytes(s.export(fpr))
        (d / "good.sig").write_bytes(s.sign_message(fpr, simple_signing_payload(dg["manifest"],
                                                                                NAME)))
        other = s.gen_key("Stranger <x@example.com>")
        (d / "stranger.sig").write_bytes(s.sign_message(other, simple_signing_payload(
            dg["manifest"], NAME)))
    (d / "bad.sig").write_bytes(b"\x89\x01\x0c" + b"\x00" * 40)
    return d, fpr


def listed(sroot):
    r = sb(sroot, "image", "list", "--json")
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else []


def one_line_refusal(r, status, *words):
    assert r.returncode == status, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sandbox: ")]
    assert 1 <= len(lines) <= 2, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_unsigned_image_refused_at_import_and_nothing_kept(sroot, signed):
    d, _ = signed
    one_line_refusal(sb(sroot, "image", "import", str(d / "oci")), 1, NAME, "not signed")
    assert listed(sroot) == []


def test_untrusted_and_bad_signatures_refused_at_import(sroot, signed):
    d, _ = signed
    ok = sb(sroot, "trust", "add", str(d / "key.asc"), "--prefix", "example.com/app", "--yes")
    assert ok.returncode == 0, ok.stderr
    one_line_refusal(sb(sroot, "image", "import", str(d / "oci"), "--signature",
                        str(d / "stranger.sig")), 1, NAME, "not in the trust store")
    one_line_refusal(sb(sroot, "image", "import", str(d / "oci"), "--signature",
                        str(d / "bad.sig")), 1, NAME)
    assert listed(sroot) == []


def test_insecure_import_is_recorded(sroot, signed):
    d, _ = signed
    r = sb(sroot, "image", "import", "--insecure-options=image", str(d / "oci"))
    assert r.returncode == 0 and "WARNING" in r.stderr
    log = sb(sroot, "audit", "log", "--json").stdout.strip()
    recs = json.loads(log) if log.startswith("[") else [json.loads(x) for x in log.splitlines()]
    ins = [x["data"] for x in recs if x["kind"] == "insecure-option"]
    assert ins and ins[-1]["stage"] == "import" and ins[-1]["ref"] == NAME


def test_verify_names_signature_and_key_and_prints_json_on_failure(sroot, signed):
    d, fpr = signed
    assert sb(sroot, "trust", "add", str(d / "key.asc"), "--prefix", "example.com/app",
              "--yes").returncode == 0
    r = sb(sroot, "image", "import", str(d / "oci"), "--signature", str(d / "good.sig"))
    assert r.returncode == 0, r.stderr
    r = sb(sroot, "image", "verify", NAME)
    assert r.returncode == 0
    assert "signature 1 (sha256:" in r.stdout and f"by key {fpr}" in r.stdout
    assert "trust store prefix example.com/app" in r.stdout
    out = json.loads(sb(sroot, "image", "verify", "--json", NAME).stdout)
    assert out["verified"] is True and out["signature"] == 1 and out["primary"] == fpr
    assert out["source"] == "trust store prefix example.com/app"
    assert sb(sroot, "trust", "remove", fpr).returncode == 0
    r = sb(sroot, "image", "verify", "--json", NAME)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["verified"] is False and out["reason"] == "unknown-key"
    assert NAME in out["error"] and out["digest"].startswith("sha256:")
