"""Labels on real launches (issue 5): concurrent sandboxes hold distinct
category pairs, and a volume labelled for one sandbox is refused in another."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import shutil

from helpers import IS_ROOT, SANDBOX, run_sandbox
from helpers import world_dir as _world_dir

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="launches need root here (subordinate ids)")

_made: list = []


def world_dir(prefix):
    d = _world_dir(prefix)
    _made.append(d)
    return d


@pytest.fixture(autouse=True)
def _cleanup_world_dirs():
    yield
    while _made:
        shutil.rmtree(_made.pop(), ignore_errors=True)


def _labels_from_audit(root) -> list[str]:
    out = subprocess.run([SANDBOX, "--root", str(root), "audit", "log", "--kind", "launch",
                          "--json"], capture_output=True, text=True, check=True).stdout
    recs = json.loads(out) if out.lstrip().startswith("[") else \
        [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r["data"]["label"] for r in recs]


def test_50_concurrent_sandboxes_hold_50_distinct_category_pairs(sroot):
    # each payload sleeps long enough that all 50 are alive at once
    procs = [subprocess.Popen([SANDBOX, "--root", str(sroot), "run", "--", "sleep", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(50)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 50, errs
    labels = _labels_from_audit(sroot)
    assert len(labels) == 50
    levels = [lab.split(":", 3)[3] for lab in labels]
    assert all(lv.startswith("s0:c") for lv in levels)
    assert len(set(levels)) == 50


def test_volume_labelled_for_one_sandbox_is_refused_in_another(sroot):
    vol = world_dir("sandbox-labelvol-")
    os.chmod(vol, 0o777)
    subprocess.run([SANDBOX, "--root", str(sroot), "label", "set", str(vol), "s0:c1,c2"],
                   check=True, capture_output=True)
    # a sandbox at another level: refused read-write and read-only alike
    for mode in ("rw", "ro"):
        r = run_sandbox(sroot, "run", "-v", f"{vol}:/v:{mode}", "--", "true")
        assert r.returncode == 125
        assert "refused" in r.stderr and "s0:c1,c2" in r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2
        assert "Traceback" not in r.stderr


def test_lower_level_mounts_read_only_and_a_write_is_refused(sroot, tmp_path):
    vol = world_dir("sandbox-lowvol-")
    os.chmod(vol, 0o777)
    subprocess.run([SANDBOX, "--root", str(sroot), "label", "set", str(vol), "s0"],
                   check=True, capture_output=True)
    r = run_sandbox(sroot, "run", "-v", f"{vol}:/v:ro", "--", "sh", "-c",
                    "ls /v >/dev/null && echo read-ok; echo x > /v/f && echo WROTE; true")
    assert r.returncode == 0, r.stderr
    assert "read-ok" in r.stdout and "WROTE" not in r.stdout
    assert "Read-only file system" in r.stderr
    assert not (vol / "f").exists()


def test_equal_levels_allow_writes(sroot):
    prof = world_dir("sandbox-fixedprof-") / "fixed.toml"
    prof.write_text('extends = "default"\n[label]\nlevel = "s0:c7,c8"\n')
    os.chmod(prof, 0o644)
    vol = world_dir("sandbox-eqvol-")
    os.chmod(vol, 0o777)
    subprocess.run([SANDBOX, "--root", str(sroot), "label", "set", str(vol), "s0:c7,c8"],
                   check=True, capture_output=True)
    r = run_sandbox(sroot, "run", "-p", str(prof), "-v", f"{vol}:/v:rw", "--", "sh", "-c",
                    "echo hi > /v/f && echo wrote")
    assert r.returncode == 0, r.stderr
    assert (vol / "f").read_text() == "hi\n"
