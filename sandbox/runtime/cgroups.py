"""Memory and pids limits through cgroups (cgroups(7)), v1 or v2.

The supervisor creates ``sandbox/<id>`` under each controller it needs,
writes the limits, and the first child joins before it unshares its cgroup
namespace, so the sandbox sees its own cgroup as the root. Teardown removes
the folders once every process of the sandbox has exited.

This host family runs cgroup v1 with a v2 hierarchy mounted at
``/sys/fs/cgroup/unified`` that owns no memory or pids controller: v1
controllers are preferred when mounted, v2 is used on a pure v2 host.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import NamedTuple

CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupPlan(NamedTuple):
    """Folders to create and ``file -> value`` writes in each (plan data only)."""

    dirs: tuple[str, ...]
    writes: tuple[tuple[str, str], ...]     # (absolute file path, value)
    procs: tuple[str, ...]                  # cgroup.procs files to join

    def to_dict(self) -> dict:
        return {"dirs": list(self.dirs), "writes": [list(w) for w in self.writes]}


def _v2_root() -> Path | None:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return CGROUP_ROOT
    return None


def available(cpu: bool = False) -> tuple[bool, str]:
    """(usable, reason) for the calling process: root, and memory+pids
    controllers mounted (v1) or enabled (v2); with ``cpu`` the cpu
    controller too."""
    if os.geteuid() != 0:
        return False, "cgroup limits need root here (cgroup v1 cannot be delegated to a user)"
    need = ("memory", "pids") + (("cpu",) if cpu else ())
    v2 = _v2_root()
    if v2 is not None:
        ctrl = (v2 / "cgroup.controllers").read_text().split()
        if set(need) <= set(ctrl):
            return True, ""
        return False, f"the cgroup v2 hierarchy lacks one of the {'/'.join(need)} controllers"
    for c in need:
        if not (CGROUP_ROOT / c / "cgroup.procs").exists():
            return False, f"the cgroup v1 {c} controller is not mounted at {CGROUP_ROOT / c}"
    return True, ""


#: the CFS period the cpu quota is a share of (microseconds; the kernel's
#: default, as runc and Docker use)
CPU_PERIOD_US = 100_000


def build(sandbox_id: str, memory: int | None, pids: int | None,
          cpus: float | None = None) -> CgroupPlan | None:
    """The cgroup plan for these limits, or None when no limit is asked for.
    ``cpus`` (Docker's ``--cpus``) becomes a CFS quota of ``cpus`` periods:
    ``cpu.max`` on v2, ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` on v1
    (plus a cpuacct group where that controller is mounted apart, so the
    sandbox's CPU usage can be read)."""
    if memory is None and pids is None and cpus is None:
        return None
    quota = None if cpus is None else max(1000, round(cpus * CPU_PERIOD_US))
    dirs, writes, procs = [], [], []
    v2 = _v2_root()
    if v2 is not None:
        d = v2 / "sandbox" / sandbox_id
        dirs.append(str(d))
        if memory is not None:
            writes += [(str(d / "memory.max"), str(memory)), (str(d / "memory.swap.max"), "0")]
        if pids is not None:
            writes.append((str(d / "pids.max"), str(pids)))
        if quota is not None:
            writes.append((str(d / "cpu.max"), f"{quota} {CPU_PERIOD_US}"))
        procs.append(str(d / "cgroup.procs"))
    else:
        if memory is not None:
            d = CGROUP_ROOT / "memory" / "sandbox" / sandbox_id
            dirs.append(str(d))
            writes.append((str(d / "memory.limit_in_bytes"), str(memory)))
            procs.append(str(d / "cgroup.procs"))
        if pids is not None:
            d = CGROUP_ROOT / "pids" / "sandbox" / sandbox_id
            dirs.append(str(d))
            writes.append((str(d / "pids.max"), str(pids)))
            procs.append(str(d / "cgroup.procs"))
        if quota is not None:
            d = CGROUP_ROOT / "cpu" / "sandbox" / sandbox_id
            dirs.append(str(d))
            # the period first: a quota is checked against the current one
            writes += [(str(d / "cpu.cfs_period_us"), str(CPU_PERIOD_US)),
                       (str(d / "cpu.cfs_quota_us"), str(quota))]
            procs.append(str(d / "cgroup.procs"))
            acct = CGROUP_ROOT / "cpuacct"
            if (acct / "cgroup.procs").exists() and not acct.is_symlink() \
                    and not (acct / "cpu.cfs_quota_us").exists():
                d = acct / "sandbox" / sandbox_id
                dirs.append(str(d))
                procs.append(str(d / "cgroup.procs"))
    return CgroupPlan(tuple(dirs), tuple(writes), tuple(procs))


def apply_create(plan: CgroupPlan) -> None:
    """Create the folders and write the limits (supervisor side). On error,
    removes what it created and raises ``OSError``."""
    made = []
    try:
        for d in plan.dirs:
            p = Path(d)
            if p.parent.name == "sandbox" and not p.parent.exists():
                p.parent.mkdir(exist_ok=True)
                if _v2_root() is not None:
                    _enable_v2_controllers(p.parent)
            p.mkdir()
            made.append(p)
        for f, v in plan.writes:
            if f.endswith("memory.swap.max") and not os.path.exists(f):
                continue
            with open(f, "w") as fh:
                fh.write(v)
    except OSError:
        remove(CgroupPlan(tuple(str(m) for m in made), (), ()))
        raise


def _enable_v2_controllers(parent: Path) -> None:
    for p in (parent.parent, parent):
        for c in ("memory", "pids", "cpu"):     # one by one: a missing one fails alone
            try:
                with open(p / "cgroup.subtree_control", "w") as f:
                    f.write("+" + c)
            except OSError:
                pass


def join(plan: CgroupPlan) -> None:
    """Move the calling process into the sandbox's cgroups (child side)."""
    for f in plan.procs:
        with open(f, "w") as fh:
            fh.write("0")


def remove(plan: CgroupPlan, timeout: float = 2.0) -> list[str]:
    """Remove the folders; retry while the kernel still counts exiting
    tasks (EBUSY). Returns the folders that could not be removed."""
    left = []
    for d in plan.dirs:
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno == errno.EBUSY and time.monotonic() < deadline:
                    _kill_all(d)
                    time.sleep(0.01)
                    continue
                left.append(d)
                break
    return left


def _kill_all(d: str) -> None:
    import signal
    try:
        with open(os.path.join(d, "cgroup.procs")) as f:
            for line in f:
                try:
                    os.kill(int(line), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
    except OSError:
        pass
