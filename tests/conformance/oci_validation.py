"""Build and run the OCI runtime validation suite (opencontainers/runtime-tools)
against a runtime; importable by the test and runnable by hand:

    python tests/conformance/oci_validation.py BUILD_DIR RUNTIME [RUNTIME...]
"""

from __future__ import annotations

import concurrent.futures
import glob
import os
import re
import shutil
import subprocess
import sys
import threading
import time

SUITE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "conformance",
                     "runtime-tools")


def build(dest: str, timeout: float = 300) -> str:
    """Copy the suite to ``dest`` and build runtimetest and every validation
    program (offline: the suite vendors its Go dependencies)."""
    shutil.copytree(SUITE, dest, symlinks=True)
    env = dict(os.environ, GOFLAGS="-mod=vendor", GOCACHE=os.path.join(dest, ".gocache"),
               GOPATH=os.path.join(dest, ".gopath"))
    subprocess.run(["make", "runtimetest", "validation-executables"], cwd=dest, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=timeout)
    return dest


def programs(suite: str) -> list[str]:
    return sorted(os.path.relpath(p, suite)
                  for p in glob.glob(os.path.join(suite, "validation", "*", "*.t")))


def run_one(suite: str, runtime: str, prog: str, limit: float) -> tuple[int, int, str]:
    """(ok, not ok, note) of one program's TAP output; note is "" when it
    exited 0, else "timeout", "exit N" (a Fatal after its assertions)."""
    try:
        p = subprocess.run([os.path.join(suite, prog)], cwd=suite,
                           env=dict(os.environ, RUNTIME=runtime), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=limit)
        out = p.stdout.decode(errors="replace")
        note = "" if p.returncode == 0 else f"exit {p.returncode}"
    except subprocess.TimeoutExpired as e:
        out, note = (e.stdout or b"").decode(errors="replace"), "timeout"
    ok = len(re.findall(r"^ok\b", out, re.M))
    bad = len(re.findall(r"^not ok\b", out, re.M))
    return ok, bad, note


#: programs that use fixed host-wide names (cgroupsPath "/cgrouptest" ...):
#: never two of them at once, whichever the runtime
_SERIAL = threading.Lock()


def _uses_fixed_cgroup(suite: str, prog: str) -> bool:
    try:
        with open(os.path.join(suite, prog[:-2] + ".go")) as f:
            return "SetLinuxCgroupsPath" in f.read()
    except OSError:
        return "cgroups" in prog


def _run_locked(suite, runtime, prog, limit):
    if _uses_fixed_cgroup(suite, prog):
        with _SERIAL:
            return run_one(suite, runtime, prog, limit)
    return run_one(suite, runtime, prog, limit)


def run_all(suite: str, runtimes: dict[str, str], limit: float = 60,
            jobs: int = 2) -> dict[str, dict[str, tuple[int, int, str]]]:
    """{runtime name: {program: (ok, not ok, note)}}, all runtimes at once."""
    progs = programs(suite)
    out: dict[str, dict] = {name: {} for name in runtimes}
    with concurrent.futures.ThreadPoolExecutor(jobs * len(runtimes)) as ex:
        futs = {ex.submit(_run_locked, suite, path, prog, limit): (name, prog)
                for prog in progs for name, path in runtimes.items()}
        for f in concurrent.futures.as_completed(futs):
            name, prog = futs[f]
            out[name][prog] = f.result()
    return out


def table(results: dict) -> str:
    names = list(results)
    progs = sorted(next(iter(results.values())))
    lines = [f"{'program':<48}" + "".join(f"{n:>22}" for n in names)]
    for p in progs:
        cells = []
        for n in names:
            ok, bad, note = results[n][p]
            cells.append(f"{('ok' if not bad and not note else 'not ok'):>7} "
                         f"{ok:>5}/{bad:<4}{note[:7]:>8}")
        lines.append(f"{os.path.basename(p):<48}" + "".join(f"{c:>22}" for c in cells))
    tot = []
    for n in names:
        ok = sum(v[0] for v in results[n].values())
        bad = sum(v[1] for v in results[n].values())
        clean = sum(1 for v in results[n].values() if not v[1] and not v[2])
        tot.append(f"{ok}/{bad} ({clean} clean)")
    lines.append(f"{'TOTAL ok/not ok':<48}" + "".join(f"{t:>22}" for t in tot))
    return "\n".join(lines)


if __name__ == "__main__":
    suite = sys.argv[1]
    if not os.path.exists(os.path.join(suite, "runtimetest")):
        build(suite)
    t0 = time.monotonic()
    res = run_all(suite, {os.path.basename(r): r for r in sys.argv[2:]})
    print(table(res))
    print(f"{time.monotonic() - t0:.0f} s")
