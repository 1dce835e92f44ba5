"""`sandbox trust ...`: output, confirmation, one-line errors, exit codes."""

import json
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.cli import trust as trust_cli

C = Path("/work/shared/corpus/containers-image-signature")
FPR = "08CD26E446E2E95249B7A405E932F44B23E8DD43"


@pytest.fixture
def run(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SANDBOX_DEBUG", raising=False)

    def _run(*args, tty=False, answer=None):
        monkeypatch.setattr(trust_cli, "_stdin_is_tty", lambda: tty)
        if answer is not None:
            import io
            monkeypatch.setattr("sys.stdin", io.StringIO(answer + "\n"))
        try:
            main(["--root", str(tmp_path), *args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = capsys.readouterr()
        return code, out.out, out.err
    return _run


def test_add_with_yes_shows_fingerprint_and_uid(run, tmp_path):
    code, out, err = run("trust", "add", str(C / "public-key.gpg"), "--prefix", "testing", "--yes")
    assert code == 0, err
    assert "08CD 26E4 46E2 E952 49B7 A405 E932 F44B 23E8 DD43" in out
    assert "skopeo testing key" in out
    assert (tmp_path / "config/trustedkeys/prefix.d/testing" / FPR).is_file()


def test_add_without_tty_and_without_yes_refuses(run, tmp_path):
    code, out, err = run("trust", "add", str(C / "public-key.gpg"), "--prefix", "testing")
    assert code == 2
    assert "without confirmation" in err and "--yes" in err
    assert "Traceback" not in err
    assert not (tmp_path / "config/trustedkeys/prefix.d/testing" / FPR).exists()


def test_add_asks_on_a_tty(run, tmp_path):
    code, out, err = run("trust", "add", str(C / "public-key.gpg"), "--root", tty=True, answer="n")
    assert code == 1 and "Trust this key" in out
    assert not (tmp_path / "config/trustedkeys/root.d" / FPR).exists()
    code, out, err = run("trust", "add", str(C / "public-key.gpg"), "--root", tty=True, answer="y")
    assert code == 0
    assert (tmp_path / "config/trustedkeys/root.d" / FPR).is_file()


@pytest.mark.parametrize("args", [[], ["--prefix", "a", "--root"]])
def test_add_needs_exactly_one_scope(run, args):
    code, out, err = run("trust", "add", str(C / "public-key.gpg"), *args, "--yes")
    assert code == 2 and "exactly one of --prefix" in err


def test_add_bad_prefix_is_usage_error(run):
    code, out, err = run("trust", "add", str(C / "public-key.gpg"), "--prefix", "../etc", "--yes")
    assert code == 2 and "invalid trust prefix" in err


def test_add_bad_key_file(run, tmp_path):
    bad = tmp_path / "bad.asc"
    bad.write_text("hello")
    code, out, err = run("trust", "add", str(bad), "--root", "--yes")
    assert code == 1 and "not an OpenPGP public key" in err
    assert len(err.strip().splitlines()) <= 2
    code, out, err = run("trust", "add", str(tmp_path / "missing.asc"), "--root", "--yes")
    assert code == 1 and "does not exist" in err


def test_list_show_remove(run):
    run("trust", "add", str(C / "public-key.gpg"), "--prefix", "testing/manifest", "--yes")
    run("trust", "add", str(C / "public-key.gpg"), "--root", "--yes")
    code, out, err = run("trust", "list", "--json")
    assert code == 0
    data = json.loads(out)
    assert sorted(k["scope"] for k in data["keys"]) == ["root", "testing/manifest"]
    assert data["keys"][0]["uids"] == ["skopeo testing key"]
    assert len(data["generation"]) == 64
    code, out, err = run("trust", "list")
    assert FPR in out and "testing/manifest" in out
    code, out, err = run("trust", "show", FPR.lower())
    assert code == 0 and "skopeo testing key" in out and "prefix testing/manifest" in out
    code, out, err = run("trust", "remove", FPR, "--prefix", "testing/manifest")
    assert code == 0 and "removed for prefix testing/manifest" in out
    code, out, err = run("trust", "remove", FPR, "--prefix", "testing/manifest")
    assert code == 1 and "not in the trust store for prefix testing/manifest" in err
    code, out, err = run("trust", "remove", FPR)
    assert code == 0
    code, out, err = run("trust", "list")
    assert "No trusted keys" in out


def test_show_unknown_fingerprint(run):
    code, out, err = run("trust", "show", FPR)
    assert code == 1 and f"key {FPR} is not in the trust store" in err


def test_show_short_key_id_is_usage_error(run):
    code, out, err = run("trust", "show", "E932F44B23E8DD43")
    assert code == 2 and "not a full key fingerprint" in err
