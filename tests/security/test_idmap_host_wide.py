"""Host id ranges are allocated host-wide (issue 13 item 2): two sandboxes
started with different --root folders never share a subordinate range, and
a range a live user namespace maps (whoever made it) is never handed out."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import helpers
from sandbox.runtime import idmap

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="subordinate ranges are root's")


def _first(res):
    return int(res.idmap.uid_map.split()[1])


def test_ranges_distinct_across_state_roots(tmp_path):
    """Four launches at once, each with its own --root, each alive for a
    moment: four different host ranges."""
    procs = [subprocess.Popen([helpers.SANDBOX, "--root", str(tmp_path / f"r{i}"), "run", "--",
                               "/bin/sh", "-c", "cat /proc/self/uid_map; sleep 1.5"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    starts = [int(o.split()[1]) for o, _ in outs]
    assert all(s >= 100000 for s in starts)
    assert len(set(starts)) == 4, starts


def test_reserve_with_different_roots_gives_different_ranges(tmp_path):
    a = idmap.reserve("auto", tmp_path / "a" / "run")
    try:
        b = idmap.reserve("auto", tmp_path / "b" / "run")
        try:
            assert _first(a) != _first(b)
            assert not (tmp_path / "a" / "run" / "idmap").exists()
            assert (idmap.HOST_LOCK_DIR / f"{_first(a)}.lock").exists()
        finally:
            b.release()
    finally:
        a.release()


def test_range_mapped_by_foreign_namespace_not_handed_out(tmp_path):
    probe = idmap.reserve("auto", tmp_path / "run")
    start = _first(probe)
    probe.release()
    # A namespace made outside sandbox (no lock file held) maps that range.
    code = ("import ctypes, sys, time\n"
            "assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0\n"
            "print('in', flush=True)\ntime.sleep(20)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "in\n"
        for f in ("uid_map", "gid_map"):
            with open(f"/proc/{p.pid}/{f}", "w") as m:
                m.write(f"0 {start} 65536\n")
        deadline = time.monotonic() + 5
        while not any(o == start for o, _ in idmap.build_ranges_in_use()[0]):
            assert time.monotonic() < deadline, "unshare did not map the range"
            time.sleep(0.02)
        res = idmap.reserve("auto", tmp_path / "run")
        try:
            got = _first(res)
            assert not (got < start + 65536 and start < got + 65536), (got, start)
        finally:
            res.release()
    finally:
        p.kill()
        p.wait()


def test_ranges_in_use_read_from_proc(tmp_path):
    for pid, text in (("1", "         0          0 4294967295\n"),
                      ("42", "         0     200000      65536\n"),
                      ("43", "         0      65534          1\n")):
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "uid_map").write_text(text)
        (tmp_path / pid / "gid_map").write_text(text)
    (tmp_path / "self").mkdir()
    assert idmap.build_ranges_in_use(str(tmp_path)) == ([(65534, 1), (200000, 65536)],) * 2
