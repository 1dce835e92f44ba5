"""``sandbox label``: a thin CLI, one-line errors, exit codes (errors.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandbox.labels.alloc import allocate_level
from sandbox.paths import Paths


def sandbox(root, *args):
    p = subprocess.run([sys.executable, "-m", "sandbox", "--root", str(root), "label", *args],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def vol(tmp_path):
    v = tmp_path / "vol"
    v.mkdir()
    return v


def test_set_then_show(tmp_path, vol):
    rc, out, err = sandbox(tmp_path, "set", str(vol), "s0:c9,c5")
    assert rc == 0, err
    assert out.strip() == f"{vol}: s0:c5,c9"
    rc, out, _ = sandbox(tmp_path, "show", str(vol))
    assert (rc, out.strip()) == (0, f"{vol}: s0:c5,c9")
    rc, out, _ = sandbox(tmp_path, "show", str(vol), "--json")
    assert json.loads(out) == {"path": str(vol), "label": "s0:c5,c9"}


def test_show_unlabelled(tmp_path, vol):
    rc, out, _ = sandbox(tmp_path, "show", str(vol), "--json")
    assert rc == 0 and json.loads(out)["label"] is None


def test_bad_level_is_one_line_usage_error(tmp_path, vol):
    rc, out, err = sandbox(tmp_path, "set", str(vol), "s0:c1024")
    assert rc == 2
    assert err.strip().count("\n") == 0 and "'c1024'" in err
    assert "Traceback" not in err


def test_protected_folder_refused(tmp_path):
    rc, _, err = sandbox(tmp_path, "set", "/etc", "s0:c1,c2")
    assert rc == 1 and "host system folder" in err
    with pytest.raises(OSError):
        os.getxattr("/etc", "user.sandbox.label")


def test_list_running(tmp_path):
    rc, out, _ = sandbox(tmp_path, "list", "--running", "--json")
    assert (rc, json.loads(out)) == (0, [])
    with allocate_level(Paths.resolve(tmp_path), owner="sb-1") as lease:
        rc, out, _ = sandbox(tmp_path, "list", "--running", "--json")
        assert rc == 0
        assert json.loads(out) == [{"level": str(lease.level), "kind": "auto",
                                    "owner": "sb-1", "pid": os.getpid()}]
        rc, out, _ = sandbox(tmp_path, "list", "--running")
        assert str(lease.level) in out and "sb-1" in out


def test_check_grants_and_refuses(tmp_path, vol):
    sandbox(tmp_path, "set", str(vol), "s0:c1")
    rc, out, _ = sandbox(tmp_path, "check", str(vol), "--level", "s0:c1,c2", "--mode", "ro",
                         "--json")
    assert rc == 0 and json.loads(out)["mode"] == "ro"
    rc, out, err = sandbox(tmp_path, "check", str(vol), "--level", "s0:c1,c2")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "writing needs equal levels" in lines[0]


def test_rm(tmp_path, vol):
    sandbox(tmp_path, "set", str(vol), "s0:c1")
    rc, out, _ = sandbox(tmp_path, "rm", str(vol))
    assert rc == 0 and "removed" in out
    rc, out, _ = sandbox(tmp_path, "show", str(vol))
    assert "unlabelled" in out
