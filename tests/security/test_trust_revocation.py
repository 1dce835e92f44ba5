"""A revocation or a new expiry for a key already trusted takes effect at
once (issue 13 item 3). Keys are made with gpg at test time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.cli import trust as trust_cli
from sandbox.errors import VerificationError
from sandbox.paths import Paths
from sandbox.trust import TrustStore, verify_detached
from sandbox.trust._testing import Signer

pytestmark = pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SANDBOX_DEBUG", raising=False)
    monkeypatch.setattr(trust_cli, "_stdin_is_tty", lambda: False)

    def _run(*args):
        try:
            main(["--root", str(tmp_path / "sb"), *args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err
    return _run


@pytest.fixture
def signer():
    with Signer() as s:
        yield s


def _verify(tmp_path, archive, sig):
    paths = Paths.resolve(tmp_path / "sb")
    return verify_detached(paths, "example.com/app", archive, sig,
                           store=TrustStore(paths, vendor=None))


def _audit(run, kind):
    code, out, _ = run("audit", "log", "--json", "--kind", kind)
    assert code == 0
    return [json.loads(line)["data"] for line in out.splitlines()]


def test_revoked_copy_of_trusted_key_takes_effect(tmp_path, run, signer):
    fpr = signer.gen_key("Revoked Soon <rev@example.com>")
    good = tmp_path / "good.asc"
    good.write_bytes(signer.export(fpr))
    code, _, err = run("trust", "add", str(good), "--prefix", "example.com", "--yes")
    assert code == 0, err
    archive = tmp_path / "app.aci"
    archive.write_bytes(b"image bytes\n" * 50)
    sig = signer.sign_detached(fpr, archive.read_bytes())
    assert _verify(tmp_path, archive, sig)          # trusted, verifies (and is cached)

    signer.revoke(fpr)
    revoked = tmp_path / "revoked.asc"
    revoked.write_bytes(signer.export(fpr))
    code, out, err = run("trust", "add", str(revoked), "--prefix", "example.com", "--yes")
    assert (code, err) == (0, "")
    assert out == (f"Key {fpr}: merged {revoked} into 1 trust entry; "
                   "REVOKED: its signatures are refused from now on.\n")
    with pytest.raises(VerificationError) as e:
        _verify(tmp_path, archive, sig)
    assert e.value.reason == "revoked-key"
    [rec] = _audit(run, "trust.refresh")
    assert rec["fingerprint"] == fpr and rec["revoked"] is True
    assert rec["scopes"] == ["example.com"]
    assert rec["generation"] != rec["generation_before"]

    # Trusting the old, unrevoked copy again does not undo the revocation.
    code, _, err = run("trust", "add", str(good), "--prefix", "example.com/app", "--yes")
    assert code == 1
    assert err == f"sandbox: key {fpr} in the trust store is revoked; refusing to trust it\n"
    with pytest.raises(VerificationError) as e:
        _verify(tmp_path, archive, sig)
    assert e.value.reason == "revoked-key"


def test_trust_refresh_merges_new_expiry(tmp_path, run, signer):
    fpr = signer.gen_key("Expiring <exp@example.com>", expire="2y")
    first = tmp_path / "first.asc"
    first.write_bytes(signer.export(fpr))
    assert run("trust", "add", str(first), "--root", "--yes")[0] == 0
    signer.gpg("--quick-set-expire", fpr, "5y")
    newer = tmp_path / "newer.asc"
    newer.write_bytes(signer.export(fpr))
    code, out, err = run("trust", "refresh", str(newer))
    assert code == 0, err
    assert out.startswith(f"Key {fpr}: merged {newer} into 1 trust entry; expires ")
    code, out, _ = run("trust", "list", "--json")
    [entry] = [k for k in json.loads(out)["keys"] if k["fingerprint"] == fpr]
    assert entry["expires"] > "2029"
    [rec] = _audit(run, "trust.refresh")
    assert rec["revoked"] is False and rec["expires"] > "2029"


def test_trust_refresh_of_untrusted_key_refused(tmp_path, run, signer):
    fpr = signer.gen_key("Stranger <s@example.com>")
    f = tmp_path / "k.asc"
    f.write_bytes(signer.export(fpr))
    code, _, err = run("trust", "refresh", str(f))
    assert code == 1
    assert err == (f"sandbox: key {fpr} is not in the trust store; nothing to refresh\n"
                   "sandbox: trust it with `sandbox trust add`\n")


def test_revoked_untrusted_key_still_refused(tmp_path, run, signer):
    fpr = signer.gen_key("Gone <g@example.com>")
    signer.revoke(fpr)
    f = tmp_path / "k.asc"
    f.write_bytes(signer.export(fpr))
    code, _, err = run("trust", "add", str(f), "--root", "--yes")
    assert code == 1
    assert err == f"sandbox: key {fpr} in key file {f} is revoked; refusing to trust it\n"
