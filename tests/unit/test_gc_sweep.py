"""`sandbox gc` sweeps what no record names (a foreground supervisor killed):
the runtime folder and the cgroups of its id. The runtime folder is what
makes such a cgroup this root's, so it must outlive the cgroups."""

from __future__ import annotations

import os
import time

from sandbox import lifecycle

SID = "0123456789ab"


def _setup(tmp_path, monkeypatch):
    paths = lifecycle._paths(str(tmp_path / "root"))
    run = paths.runtime / SID
    run.mkdir(parents=True)
    cg = tmp_path / "cg" / "memory" / "sandbox" / SID
    cg.mkdir(parents=True)
    monkeypatch.setattr(lifecycle, "CGROUP_GLOBS", (str(tmp_path / "cg" / "*" / "sandbox" / "*"),))
    old = time.time() - 10 * lifecycle.ORPHAN_AGE
    os.utime(run, (old, old))
    return paths, run, cg


def test_a_young_cgroup_is_not_leaked_by_removing_its_runtime_folder_first(tmp_path,
                                                                           monkeypatch):
    # gc once removed the (old) runtime folder while deferring the (young)
    # cgroup of the same id; at the next gc no folder named the id, the
    # cgroup was "another root's", and it stayed on the host for good.
    paths, run, cg = _setup(tmp_path, monkeypatch)
    deferred: list = []
    lifecycle._sweep_orphans(paths, set(), deferred)
    assert run.exists() and cg.exists()
    assert {d["what"] for d in deferred} == {str(cg), str(run)}
    old = time.time() - 10 * lifecycle.ORPHAN_AGE
    os.utime(cg, (old, old))
    out = lifecycle._sweep_orphans(paths, set(), [])
    assert not cg.exists() and not run.exists()
    assert str(cg) in out


def test_old_runtime_folder_and_cgroup_go_in_one_sweep(tmp_path, monkeypatch):
    paths, run, cg = _setup(tmp_path, monkeypatch)
    old = time.time() - 10 * lifecycle.ORPHAN_AGE
    os.utime(cg, (old, old))
    lifecycle._sweep_orphans(paths, set(), [])
    assert not cg.exists() and not run.exists()


def test_a_cgroup_of_an_id_this_root_does_not_know_is_left_alone(tmp_path, monkeypatch):
    paths, run, cg = _setup(tmp_path, monkeypatch)
    other = cg.parent / "ba9876543210"
    other.mkdir()
    old = time.time() - 10 * lifecycle.ORPHAN_AGE
    os.utime(other, (old, old))
    lifecycle._sweep_orphans(paths, set(), [])
    assert other.exists()
