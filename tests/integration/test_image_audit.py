"""Image import and removal are audit events (issue 4, DESIGN §6)."""

from __future__ import annotations

import json
import subprocess

import pytest

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import IS_ROOT, SANDBOX  # noqa: E402

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="image import writes layer owners as root")


def _records(root, kind):
    out = subprocess.run([SANDBOX, "--root", str(root), "audit", "log", "--kind", kind,
                          "--json"], capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.lstrip().startswith("[") else \
        [json.loads(line) for line in out.splitlines() if line.strip()]


def test_image_import_and_rm_are_recorded_and_the_chain_verifies(tmp_path):
    import image_fixtures as fx
    if not fx.have_busybox():
        pytest.skip("busybox-static not installed")
    root = tmp_path / "sb"
    tar = fx.tar_dir(fx.busybox_rootfs(tmp_path / "rootfs"))
    layout = tmp_path / "oci"
    fx.write_oci_layout(layout, [tar], ref_name="example.com/audit/img:1",
                        config=fx.image_config([fx.sha256(tar)]))
    r = subprocess.run([SANDBOX, "--root", str(root), "image", "import", "--insecure-options=image", str(layout),
                        "--name", "example.com/audit/img:1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (imp,) = _records(root, "image.import")
    assert imp["data"]["ref"] == "example.com/audit/img:1"
    assert imp["data"]["digest"].startswith("sha256:")
    assert imp["data"]["format"] == "oci"
    r = subprocess.run([SANDBOX, "--root", str(root), "image", "rm", "example.com/audit/img:1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (rm,) = _records(root, "image.remove")
    assert "example.com/audit/img:1" in rm["data"]["removed"]
    v = subprocess.run([SANDBOX, "--root", str(root), "audit", "verify"], capture_output=True,
                       text=True)
    assert v.returncode == 0, v.stdout + v.stderr


def test_a_refused_import_writes_no_import_record(tmp_path):
    root = tmp_path / "sb"
    bad = tmp_path / "not-an-image.tar"
    bad.write_bytes(b"garbage")
    r = subprocess.run([SANDBOX, "--root", str(root), "image", "import", "--insecure-options=image", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    if (root / "state" / "audit.db").exists():
        assert _records(root, "image.import") == []
