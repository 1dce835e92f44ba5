#!/usr/bin/env python3
"""Added cost per launch of the audit records (issue 4; target <= 2 ms median).

A ``sandbox run`` is one process that writes two records: ``launch`` after
the payload started and ``exit`` after it ended. So the cost that counts is
the one paid by a *fresh* process: importing `sandbox.audit` on top of what
the launch path imports anyway, opening the database, and the two appends.

Measured three ways, each on one audit log that grows as a real one does:

1. ``fresh``: N separate processes; each first imports what the launch path
   needs without auditing (paths, profile model, json, hashlib, dataclasses,
   ctypes for the kernel door), then times, inside the process with ``perf_counter``, ``import
   sandbox.audit`` + ``record_event(launch)`` + ``record_event(exit)``.
   Byte code is cached under a temporary ``PYTHONPYCACHEPREFIX`` (as an
   installed wheel has it), not compiled on each start.
   ``prepared``: the same, but `sandbox.audit.prepare` (import sqlite3,
   open the log) runs first, as the runtime does while the child sets
   itself up; the two appends are timed apart from it.
2. ``warm``: the two appends in one long-lived process (a library caller).
3. ``wall``: whole-process wall time with and without the two records, to
   show the in-process number is not hiding anything (noisy: +-1 ms).
4. ``--real`` (root; host view): REAL launches of ``/bin/true``.
   ``library``: ``Sandbox(audit=True).run`` against ``Sandbox(audit=False)``
   in one process, interleaved, ``--real-runs`` each; reported as the
   difference of the medians, the median of the paired differences, and,
   exactly, the time spent inside the record writing itself (building the
   launch record, ``Sandbox._record`` x2) per launch, plus the time of
   `prepare`, which overlaps the child's setup. ``fresh``: the same as one
   ``Sandbox.run`` per new process (what ``sandbox run`` pays), interleaved.

Every 32nd record (or after 10 minutes) the append also makes the Ed25519
signature (~15 ms incl. importing `cryptography`): that shows in p95 and the
mean, not in the median. Run::

    .venv/bin/python benchmarks/audit_cost.py [--runs 60] [--json]
    .venv/bin/python benchmarks/audit_cost.py --real [--real-runs 50] [--only-real]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# What the launch path imports anyway (the kernel door uses ctypes).
BASE = ("import sandbox.paths, sandbox.profile, sandbox.capabilities, json, hashlib, "
        "dataclasses, pathlib, ctypes\n")

FRESH = BASE + r"""
import sys, time
# The runtime builds the record data anyway: take it ready-made.
launch, exit_ = json.loads(sys.argv[2])
t0 = time.perf_counter()
from sandbox.audit import record_event
p = sandbox.paths.Paths.resolve(sys.argv[1])
t1 = time.perf_counter()
record_event(p, "launch", launch)
t2 = time.perf_counter()
record_event(p, "exit", exit_)
t3 = time.perf_counter()
print(json.dumps({"import": (t1 - t0) * 1e3, "launch": (t2 - t1) * 1e3,
                  "exit": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3}))
"""

PREPARED = BASE + r"""
import sys, time
launch, exit_ = json.loads(sys.argv[2])
t0 = time.perf_counter()
from sandbox.audit import prepare, record_event
p = sandbox.paths.Paths.resolve(sys.argv[1])
prepare(p)          # the runtime does this while the child sets up
t1 = time.perf_counter()
record_event(p, "launch", launch)
record_event(p, "exit", exit_)
t2 = time.perf_counter()
print(json.dumps({"prepare": (t1 - t0) * 1e3, "records": (t2 - t1) * 1e3}))
"""

WALL_WITH = BASE + r"""
import sys
launch, exit_ = json.loads(sys.argv[2])
from sandbox.audit import record_event
p = sandbox.paths.Paths.resolve(sys.argv[1])
record_event(p, "launch", launch)
record_event(p, "exit", exit_)
"""

WALL_WITHOUT = BASE + r"""
import sys
launch, exit_ = json.loads(sys.argv[2])     # same data, nothing written
p = sandbox.paths.Paths.resolve(sys.argv[1])
"""


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "mean": statistics.fmean(xs),
            "p95": xs[min(len(xs) - 1, int(len(xs) * 0.95))], "min": xs[0], "max": xs[-1],
            "n": len(xs)}


REAL_FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
from sandbox import Sandbox
box = Sandbox(root=sys.argv[1], audit=sys.argv[2] == "1")
t1 = time.perf_counter()
r = box.run(["/bin/true"])
t2 = time.perf_counter()
assert r.status == 0
print(json.dumps({"run": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}))
"""


def real_launches(runs: int, base: str, env: dict) -> dict:
    """Real launches of /bin/true with and without the audit records."""
    import sandbox.audit as audit_pkg
    from sandbox import Sandbox

    root = os.path.join(base, "real")
    on, off = Sandbox(root=root, audit=True), Sandbox(root=root, audit=False)
    inline: list[float] = [0.0]   # building the launch record + both appends
    prep: list[float] = [0.0]     # audit.prepare (overlaps the child's setup)

    def timed(fn, acc):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[-1] += (time.perf_counter() - t) * 1e3
        return wrapper

    on._record = timed(on._record, inline)
    on._launch_record = timed(on._launch_record, inline)
    orig_prepare = audit_pkg.prepare
    audit_pkg.prepare = timed(orig_prepare, prep)
    try:
        for _ in range(5):                       # warm up: log, key, caches
            on.run(["/bin/true"])
            off.run(["/bin/true"])
        with_, without, nulls = [], [], 0
        inline.clear()
        prep.clear()
        for i in range(runs):
            order = ((on, with_), (off, without)) if i % 2 == 0 else ((off, without), (on, with_))
            for box, out in order:
                if box is on:
                    inline.append(0.0)
                    prep.append(0.0)
                t = time.perf_counter()
                r = box.run(["/bin/true"])
                out.append((time.perf_counter() - t) * 1e3)
                assert r.status == 0
                if box is on and r.effective is None:
                    nulls += 1
    finally:
        audit_pkg.prepare = orig_prepare
    paired = [a - b for a, b in zip(with_, without)]

    # fresh processes: one Sandbox.run each, interleaved
    fw, fo = [], []
    for i in range(runs):
        for flag in (("1", "0") if i % 2 == 0 else ("0", "1")):
            out = subprocess.run([sys.executable, "-c", REAL_FRESH, root, flag], env=env,
                                 check=True, capture_output=True, text=True).stdout
            (fw if flag == "1" else fo).append(json.loads(out)["total"])
    return {
        "library_with_ms": _stats(with_),
        "library_without_ms": _stats(without),
        "library_added_ms_median_diff": statistics.median(with_) - statistics.median(without),
        "library_added_ms_paired": _stats(paired),
        "library_inline_records_ms": _stats(inline),
        "library_prepare_overlapped_ms": _stats(prep),
        "library_effective_null": nulls,
        "fresh_with_ms": _stats(fw),
        "fresh_without_ms": _stats(fo),
        "fresh_added_ms_median_diff": statistics.median(fw) - statistics.median(fo),
        "fresh_added_ms_paired": _stats([a - b for a, b in zip(fw, fo)]),
        "real_runs": runs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--dir", default="/var/tmp",
                    help="folder for the test logs; use the file system of the real state "
                         "folder (/var/lib/sandbox), not a tmpfs, where fsync is free")
    ap.add_argument("--real", action="store_true",
                    help="also time real launches of /bin/true with and without the "
                         "records (root)")
    ap.add_argument("--real-runs", type=int, default=50)
    ap.add_argument("--only-real", action="store_true",
                    help="only the real launches (implies --real)")
    args = ap.parse_args()
    if args.only_real:
        args.real = True

    work = tempfile.mkdtemp(prefix="audit-bench-", dir=args.dir)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("SANDBOX_ROOT", None)
    env["PYTHONPYCACHEPREFIX"] = os.path.join(work, "pycache")
    root = os.path.join(work, "root")

    res: dict = {}
    if args.real:
        if os.geteuid() != 0:
            ap.error("--real needs root (real launches with the default profile)")
        res.update(real_launches(args.real_runs, work, env))
    if args.only_real:
        return _report(res, args, work)

    from sandbox.audit import samples
    data = json.dumps([samples.launch("default", "sb-bench"), samples.exit_("sb-bench")])

    def run(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code, root, data], env=env, check=True,
                              capture_output=True, text=True).stdout

    for _ in range(3):   # warm the byte-code cache, create the key and database
        run(FRESH)

    fresh = [json.loads(run(FRESH)) for _ in range(args.runs)]
    prepared = [json.loads(run(PREPARED)) for _ in range(args.runs)]

    # warm: one process, many pairs
    from sandbox.audit import record_event
    from sandbox.paths import Paths
    p = Paths.resolve(os.path.join(work, "warm"))
    launch, exit_ = json.loads(data)
    record_event(p, "launch", launch)
    warm = []
    for _ in range(args.runs * 5):
        t = time.perf_counter()
        record_event(p, "launch", launch)
        record_event(p, "exit", exit_)
        warm.append((time.perf_counter() - t) * 1e3)

    wall_with, wall_without = [], []
    for _ in range(args.runs):
        for code, out in ((WALL_WITH, wall_with), (WALL_WITHOUT, wall_without)):
            t = time.perf_counter()
            run(code)
            out.append((time.perf_counter() - t) * 1e3)

    res.update({
        "fresh_total_ms": _stats([f["total"] for f in fresh]),
        "fresh_import_ms": _stats([f["import"] for f in fresh]),
        "fresh_launch_record_ms": _stats([f["launch"] for f in fresh]),
        "fresh_exit_record_ms": _stats([f["exit"] for f in fresh]),
        "prepare_ms": _stats([f["prepare"] for f in prepared]),
        "prepared_pair_ms": _stats([f["records"] for f in prepared]),
        "warm_pair_ms": _stats(warm),
        "wall_with_ms": _stats(wall_with),
        "wall_without_ms": _stats(wall_without),
        "wall_added_ms_median": statistics.median(wall_with) - statistics.median(wall_without),
        "python": sys.version.split()[0],
        "dir": args.dir,
        "load_average": os.getloadavg(),
        "sqlite": __import__("sqlite3").sqlite_version,
    })
    return _report(res, args, work)


def _report(res: dict, args, work: str) -> int:
    res.setdefault("python", sys.version.split()[0])
    res.setdefault("load_average", os.getloadavg())
    import shutil
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print("audit cost per launch (launch + exit records), ms")
        print(f"(logs in {args.dir}; load average {res['load_average'][0]:.1f})")
        print(f"{'measure':<32}{'min':>8}{'median':>8}{'mean':>8}{'p95':>8}{'max':>8}")
        for k, v in res.items():
            if isinstance(v, dict):
                print(f"{k:<32}{v['min']:>8.2f}{v['median']:>8.2f}{v['mean']:>8.2f}"
                      f"{v['p95']:>8.2f}{v['max']:>8.2f}")
        if "wall_added_ms_median" in res:
            print("wall-clock added (median with - median without): "
                  f"{res['wall_added_ms_median']:.2f}")
        if "library_with_ms" in res:
            print(f"real /bin/true launches, {res['real_runs']} each, interleaved:")
            for k in ("library_added_ms_median_diff", "fresh_added_ms_median_diff"):
                print(f"  {k}: {res[k]:.2f}")
            print(f"  /bin/true exited before the readback (effective null): "
                  f"{res['library_effective_null']} of {res['real_runs']}")
        for key, what in (("fresh_total_ms", "fresh process, nothing prepared"),
                          ("prepared_pair_ms", "log prepared during child setup"),
                          ("library_inline_records_ms", "real launch, records written inline"),
                          ("library_added_ms_paired", "real launch, paired wall difference")):
            if key not in res:
                continue
            m = res[key]["median"]
            print(f"target <= 2 ms median per launch, {what}: "
                  f"{'met' if m <= 2.0 else 'NOT met'} ({m:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
