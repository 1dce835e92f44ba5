"""Listings fit an 80-column terminal: cells too long for their column wrap
within it (nothing is cut off), ids and fingerprints stay whole, and
``--json`` has every value in full. The output is not a terminal here, so
the width is 80 unless COLUMNS says otherwise."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import image_fixtures as fx
from helpers import run_sandbox
from sandbox.cli._table import Col, format_table

CORPUS_KEY = Path("/work/shared/corpus/containers-image-signature/public-key.gpg")
FPR = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
LONG = ("a description long enough to need three lines in an eighty column terminal, "
        "because it says everything about the profile in one first sentence")


def _fits(text: str, width: int = 80) -> None:
    wide = [line for line in text.splitlines() if len(line) > width]
    assert wide == [], "\n".join(wide)


def test_format_table_wraps_within_columns_and_loses_nothing():
    rows = [("short", "x" * 30, LONG), ("s2", "y", "z")]
    lines = format_table([Col("NAME"), Col("ID"), Col("TEXT", 1, 20)], rows, width=80)
    _fits("\n".join(lines))
    assert lines[0].split() == ["NAME", "ID", "TEXT"]
    assert "x" * 30 in lines[1]                            # a fixed column stays whole
    start = lines[0].index("TEXT")
    text = " ".join(line[start:].strip() for line in lines[1:-1])
    assert text == LONG
    assert lines[-1].split() == ["s2", "y", "z"]


def test_format_table_narrows_the_most_willing_column_first():
    rows = [("n" * 30, "d" * 30, "t" * 30)]
    lines = format_table([Col("A", 0), Col("B", 1, 12), Col("C", 2, 12)], rows, width=80)
    _fits("\n".join(lines))
    assert "n" * 30 in lines[1] and "d" * 30 in lines[1]   # C gave way, B did not need to


def test_format_table_notes_go_under_their_row():
    lines = format_table([Col("A"), Col("B")], [("1", "2"), ("3", "4")], width=40,
                         notes=["first note", ""])
    assert lines == ["A  B", "1  2", "    first note", "3  4"]


def test_profile_list_fits_80_columns_and_json_is_full(sroot):
    user = sroot / "config" / "profiles"
    user.mkdir(parents=True)
    (user / "a-user-profile-with-a-long-name.toml").write_text(
        f'extends = "default"\ndescription = "{LONG}"\n')
    (user / "broken.toml").write_text('[capabilities]\nretian = ["CAP_CHOWN", "CAP_KILL"]\n')
    r = run_sandbox(sroot, "profile", "list")
    assert r.returncode == 0, r.stderr
    _fits(r.stdout)
    assert r.stdout.splitlines()[0].split() == ["NAME", "KIND", "DESCRIPTION"]
    for name in ("default", "strict", "unconfined", "a-user-profile-with-a-long-name", "broken"):
        assert any(line.startswith(name + " ") for line in r.stdout.splitlines()), name
    r = run_sandbox(sroot, "profile", "list", env={"COLUMNS": "200"})
    assert any(len(line) > 80 for line in r.stdout.splitlines())
    rows = {p["name"]: p for p in json.loads(run_sandbox(sroot, "profile", "list",
                                                         "--json").stdout)}
    assert rows["a-user-profile-with-a-long-name"]["description"] == LONG
    assert rows["broken"]["description"].startswith("INVALID")


def test_audit_controls_fit_80_columns(sroot):
    r = run_sandbox(sroot, "audit", "controls")
    assert r.returncode == 0, r.stderr
    _fits(r.stdout)
    ids = [line.split()[0] for line in r.stdout.splitlines()[1:] if line[:1] != " "]
    assert len(ids) >= 25 and all(i.startswith("SBX-") for i in ids)


def test_trust_list_fits_80_columns_with_the_fingerprint_whole(sroot):
    if not CORPUS_KEY.is_file():
        pytest.skip(f"{CORPUS_KEY} is absent (the shared corpus)")
    prefix = "registry.example.com/a-team-with-a-long-name/and-a-long-repository"
    r = run_sandbox(sroot, "trust", "add", str(CORPUS_KEY), "--prefix", prefix, "--yes")
    assert r.returncode == 0, r.stderr
    r = run_sandbox(sroot, "trust", "list")
    assert r.returncode == 0, r.stderr
    _fits(r.stdout)
    assert FPR in r.stdout and "user id: skopeo testing key" in r.stdout
    wide = run_sandbox(sroot, "trust", "list", env={"COLUMNS": "200"}).stdout
    assert prefix in wide and "skopeo testing key" in wide and "user id:" not in wide


def test_image_list_fits_80_columns(sroot, tmp_path):
    name = "registry.example.com/a-team-with-a-long-name/and-a-long-repository:v1.2.3"
    fx.write_oci_layout(tmp_path / "oci", [fx.empty_files_tar(["a"])])
    r = run_sandbox(sroot, "image", "import", "--insecure-options=image", "--name", name,
                    str(tmp_path / "oci"), timeout=60)
    assert r.returncode == 0, r.stderr
    r = run_sandbox(sroot, "image", "list")
    assert r.returncode == 0, r.stderr
    _fits(r.stdout)
    assert r.stdout.splitlines()[0].split() == ["NAME", "IMAGE", "ID", "DIGEST", "FORMAT",
                                                "SIZE", "SIGS", "IMPORTED"]
    [img] = json.loads(run_sandbox(sroot, "image", "list", "--json").stdout)
    assert img["names"] == [name]


def test_label_list_fits_80_columns(sroot):
    from sandbox.labels.alloc import allocate_level
    from sandbox.paths import Paths
    owner = "a-sandbox-with-a-very-long-name-" + "x" * 40
    with allocate_level(Paths.resolve(sroot), owner=owner):
        r = run_sandbox(sroot, "label", "list")
        assert r.returncode == 0, r.stderr
        _fits(r.stdout)
        [held] = json.loads(run_sandbox(sroot, "label", "list", "--json").stdout)
        assert held["owner"] == owner


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="launches a detached sandbox as root")
def test_ps_fits_80_columns(sroot):
    name = "a-detached-sandbox-with-a-long-name"
    r = run_sandbox(sroot, "run", "--detach", "--name", name, "--", "sleep", "30", timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ps = run_sandbox(sroot, "ps")
            if name in ps.stdout.replace("\n", "") or len(ps.stdout.splitlines()) > 1:
                break
            time.sleep(0.1)
        assert ps.returncode == 0, ps.stderr
        _fits(ps.stdout)
        assert ps.stdout.splitlines()[0].split()[:3] == ["ID", "NAME", "PROFILE"]
        [item] = json.loads(run_sandbox(sroot, "ps", "--json").stdout)
        assert item["name"] == name and item["id"] in ps.stdout
    finally:
        run_sandbox(sroot, "stop", name, "--time", "1", timeout=60)
        run_sandbox(sroot, "rm", name, timeout=60)
    assert json.loads(run_sandbox(sroot, "ps", "--all", "--json").stdout) == []
    assert list((Path(sroot) / "run" / "sandboxes").iterdir()) == []
