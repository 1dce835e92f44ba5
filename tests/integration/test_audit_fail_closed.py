"""No launch without its record (issue 14, deliverable 1).

The launch record is written while the payload waits, fully confined,
before execve; when it cannot be written within the log's bounded wait
(`sandbox.audit.log.LOCK_WAIT`) the payload is killed before execve and
the launch is refused with 125. Each test gives the payload a marker file
to write through a volume: the marker must be absent, and the log must
still verify.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tmpfs mounts, CI runs as root)"),
    pytest.mark.skipif(helpers.SANDBOX is None, reason="the sandbox CLI is not installed"),
    pytest.mark.skipif(helpers.BUSYBOX is None, reason="busybox-static is not installed"),
]


@pytest.fixture
def world():
    d = helpers.world_dir("sbx-audit14-")
    helpers.make_busybox_root(d / "r")
    (d / "out").mkdir()
    os.chmod(d / "out", 0o777)
    (d / "state").mkdir(mode=0o700)
    yield d
    subprocess.run(["umount", "-l", str(d / "state")], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


#: the writers' bounded wait, shortened for the test (production: 10 s)
WAIT = {"SANDBOX_AUDIT_LOCK_WAIT": "2"}


def _run_marker(d: Path, timeout=60):
    return helpers.run_sandbox(d, "run", "--rootfs", str(d / "r"), "-v", f"{d / 'out'}:/out:rw,Z",
                               "--", "sh", "-c", "echo ran > /out/marker", timeout=timeout,
                               env=WAIT)


def _verify(d: Path):
    return helpers.run_sandbox(d, "audit", "verify")


def _records(d: Path) -> list[str]:
    r = helpers.run_sandbox(d, "audit", "log", "--json")
    assert r.returncode == 0, r.stderr
    import json
    return [json.loads(x)["kind"] for x in r.stdout.splitlines() if x.strip()]


def test_full_disk_refuses_the_launch_before_the_payload_runs(world):
    d = world
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(d / "state")],
                   check=True)
    first = _run_marker(d)
    assert first.returncode == 0, first.stderr
    assert (d / "out" / "marker").exists()
    (d / "out" / "marker").unlink()
    before = _records(d)
    # fill the state folder's file system to the last block
    with open(d / "state" / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    r = _run_marker(d)
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert "audit log" in r.stderr and "Traceback" not in r.stderr
    assert not (d / "out" / "marker").exists(), "the payload ran without its record"
    v = _verify(d)
    assert v.returncode == 0, v.stderr
    assert _records(d) == before
    # space again: the next launch is recorded and the log still verifies
    (d / "state" / "filler").unlink()
    assert _run_marker(d).returncode == 0
    assert _verify(d).returncode == 0, _verify(d).stderr


def test_database_lock_held_past_the_wait_refuses_the_launch(world):
    d = world
    assert _run_marker(d).returncode == 0
    (d / "out" / "marker").unlink()
    con = sqlite3.connect(d / "state" / "audit.db", isolation_level=None)
    con.execute("BEGIN IMMEDIATE")      # another writer holding SQLite's write lock
    try:
        r = _run_marker(d)
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert "locked" in r.stderr and "Traceback" not in r.stderr
    assert not (d / "out" / "marker").exists(), "the payload ran without its record"
    assert _verify(d).returncode == 0
    assert [k for k in _records(d) if k == "launch"] == ["launch"]


def test_writers_lock_held_past_the_wait_refuses_the_launch(world):
    d = world
    assert _run_marker(d).returncode == 0
    (d / "out" / "marker").unlink()
    fd = os.open(d / "state" / "audit.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = _run_marker(d)
    finally:
        os.close(fd)
    assert r.returncode == 125, (r.returncode, r.stderr)
    assert "locked" in r.stderr and "Traceback" not in r.stderr
    assert not (d / "out" / "marker").exists(), "the payload ran without its record"
    assert _verify(d).returncode == 0
