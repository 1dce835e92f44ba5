"""Level allocation: unique pairs across processes, shared fixed levels,
crash-proof release (no privileges; a temporary runtime folder)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import random
import signal
import subprocess
import sys

import pytest

from sandbox.labels.alloc import (allocate_level, gc_labels, labels_dir,
                                  labels_in_use)
from sandbox.labels.model import LabelRefused, Level
from sandbox.paths import Paths


@pytest.fixture
def paths(tmp_path):
    return Paths.resolve(tmp_path)


def test_auto_level_is_a_pair_of_distinct_categories(paths):
    with allocate_level(paths) as lease:
        assert lease.kind == "auto"
        assert lease.level.sensitivity == 0
        i, j = sorted(lease.level.categories)
        assert 0 <= i < j <= 1023
        assert (labels_dir(paths) / str(lease.level)).exists()


def test_lease_fd_is_cloexec_and_release_is_idempotent(paths):
    lease = allocate_level(paths, owner="sb-1")
    flags = fcntl.fcntl(lease.fd, fcntl.F_GETFD)
    assert flags & fcntl.FD_CLOEXEC
    path = lease.path
    lease.release()
    lease.release()
    assert lease.fd is None and not lease.held
    assert not path.exists()
    assert labels_in_use(paths) == ()


def test_two_sandboxes_get_different_pairs(paths):
    a = allocate_level(paths)
    b = allocate_level(paths)
    assert a.level != b.level
    a.release(); b.release()


def test_auto_never_draws_a_held_pair_with_a_forced_collision(paths):
    # A generator that proposes the same pair first each time.
    class Fixed(random.Random):
        def __init__(self):
            super().__init__(1)
            self.n = 0

        def sample(self, population, k):
            self.n += 1
            return [5, 9] if self.n == 1 else super().sample(population, k)

    a = allocate_level(paths, rng=Fixed())
    b = allocate_level(paths, rng=Fixed())
    assert a.level == Level(0, frozenset({5, 9}))
    assert b.level != a.level
    a.release(); b.release()


def _hold(root, barrier, queue, done):
    lease = allocate_level(Paths.resolve(root), owner=f"p{os.getpid()}")
    queue.put(str(lease.level))
    barrier.wait(timeout=60)
    done.wait(timeout=60)
    lease.release()


@pytest.mark.slow
def test_fifty_concurrent_launches_get_distinct_pairs(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n = 50
    barrier = ctx.Barrier(n + 1)
    queue = ctx.Queue()
    done = ctx.Event()
    procs = [ctx.Process(target=_hold, args=(str(tmp_path), barrier, queue, done))
             for _ in range(n)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=60)          # every process holds its lease now
        levels = [queue.get(timeout=10) for _ in range(n)]
        assert len(set(levels)) == n
        held = labels_in_use(Paths.resolve(tmp_path))
        assert sorted(str(h.level) for h in held) == sorted(levels)
        assert all(h.kind == "auto" and h.owner.startswith("p") for h in held)
    finally:
        done.set()
        for p in procs:
            p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    assert labels_in_use(Paths.resolve(tmp_path)) == ()


def test_fifty_concurrent_allocations_with_a_tiny_category_space(tmp_path, monkeypatch):
    """Force collisions: 50 processes racing over few candidates still never
    share a pair (the kernel's flock decides, not luck)."""
    code = r"""
import random, sys, time
from sandbox.paths import Paths
from sandbox.labels import alloc
class Small(random.Random):
    def sample(self, population, k):
        return super().sample(range(12), k)   # 66 pairs for 50 holders
lease = alloc.allocate_level(Paths.resolve(sys.argv[1]), rng=Small())
print(lease.level, flush=True)
sys.stdin.read()
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(50)]
    try:
        levels = [p.stdout.readline().strip() for p in procs]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(30)
    assert all(levels)
    assert len(set(levels)) == 50


def test_dead_holder_frees_its_level(paths, tmp_path):
    code = ("import sys; from sandbox.paths import Paths; from sandbox.labels.alloc "
            "import allocate_level as a; l = a(Paths.resolve(sys.argv[1])); "
            "print(l.level, flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    level = p.stdout.readline().strip()
    assert [str(h.level) for h in labels_in_use(paths)] == [level]
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    assert labels_in_use(paths) == ()
    assert (labels_dir(paths) / level).exists()      # left behind...
    assert gc_labels(paths) == 1                     # ...and swept by gc
    assert not (labels_dir(paths) / level).exists()


def test_gc_leaves_held_levels_alone(paths):
    with allocate_level(paths) as lease:
        assert gc_labels(paths) == 0
        assert lease.path.exists()


def test_fixed_level_is_shared_by_design(paths):
    a = allocate_level(paths, "s0:c3,c7", owner="a")
    b = allocate_level(paths, "s0:c7,c3", owner="b")
    assert a.kind == b.kind == "fixed"
    assert a.level == b.level == Level.parse("s0:c3,c7")
    [h] = labels_in_use(paths)
    assert (str(h.level), h.kind, h.owner) == ("s0:c3,c7", "fixed", "a")
    a.release()
    assert [str(h.level) for h in labels_in_use(paths)] == ["s0:c3,c7"]
    b.release()
    assert labels_in_use(paths) == ()


def test_auto_never_takes_a_running_fixed_pair(paths):
    class Pick(random.Random):
        n = 0

        def sample(self, population, k):
            Pick.n += 1
            return [7, 3] if Pick.n == 1 else super().sample(population, k)

    fixed = allocate_level(paths, "s0:c3,c7")
    auto = allocate_level(paths, rng=Pick())
    assert auto.level != fixed.level
    fixed.release(); auto.release()


def test_fixed_level_held_by_an_auto_sandbox_is_refused(paths):
    auto = allocate_level(paths)
    with pytest.raises(LabelRefused, match="held by a running sandbox"):
        allocate_level(paths, auto.level)
    auto.release()


def test_auto_pair_never_dominates_a_running_single_category_level(paths):
    fixed = allocate_level(paths, "s0:c5")

    class Pick(random.Random):
        n = 0

        def sample(self, population, k):
            Pick.n += 1
            return [5, 9] if Pick.n <= 3 else super().sample(population, k)

    auto = allocate_level(paths, rng=Pick())
    assert 5 not in auto.level.categories
    fixed.release(); auto.release()


def test_single_category_fixed_level_refused_when_a_running_pair_dominates_it(paths):
    auto = allocate_level(paths)
    c = min(auto.level.categories)
    with pytest.raises(LabelRefused, match="readable by a running sandbox"):
        allocate_level(paths, Level(0, frozenset({c})))
    auto.release()


def test_no_free_pair_is_a_label_refusal(paths):
    class Same(random.Random):
        def sample(self, population, k):
            return [1, 2]

    held = allocate_level(paths, rng=Same())
    with pytest.raises(LabelRefused, match="no free category pair"):
        allocate_level(paths, rng=Same(), attempts=20)
    held.release()


def test_labels_in_use_on_a_fresh_root_creates_nothing(paths):
    assert labels_in_use(paths) == ()
    assert not paths.runtime.exists()


def test_stale_record_of_a_dead_auto_holder_is_rewritten_by_fixed(paths):
    d = labels_dir(paths)
    (d / "s0:c1,c2").write_text('{"kind": "auto", "level": "s0:c1,c2", "owner": "x", "pid": 1}\n')
    with allocate_level(paths, "s0:c1,c2", owner="f"):
        [h] = labels_in_use(paths)
        assert (h.kind, h.owner) == ("fixed", "f")


def test_unusable_runtime_folder_is_a_setup_error(tmp_path):
    from sandbox.errors import SetupError
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(SetupError):
        allocate_level(Paths.resolve(tmp_path))


def test_fixed_range_is_a_label_error(paths):
    from sandbox.labels.model import LabelError
    with pytest.raises(LabelError):
        allocate_level(paths, "s0-s0:c0.c1023")
