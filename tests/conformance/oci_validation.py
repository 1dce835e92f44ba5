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
    """(ok, not ok, note) of one program's TAP output."""
    try:
        p = subprocess.run([os.path.join(suite, prog)], cwd=suite,
                           env=dict(os.environ, RUNTIME=runtime), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=limit)
        out, note = p.stdout.decode(errors="replace"), ""
    except subprocess.TimeoutExpired as e:
        out, note = (e.stdout or b"").decode(errors="replace"), "timeout"
    ok = len(re.findall(r"^ok\b", out, re.M))
    bad = len(re.findall(r"^not ok\b", out, re.M))
    if not ok and not bad and not note:
        note = "no TAP"
    return ok, bad, note


def run_all(suite: str, runtimes: dict[str, str], limit: float = 60,
            jobs: int = 2) -> dict[str, dict[str, tuple[int, int, str]]]:
    """{runtime name: {program: (ok, not ok, note)}}, all runtimes at once."""
    progs = programs(suite)
    out: dict[str, dict] = {name: {} for name in runtimes}
    with concurrent.futures.ThreadPoolExecutor(jobs * len(runtimes)) as ex:
        futs = {ex.submit(run_one, suite, path, prog, limit): (name, prog)
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
            cells.append(f"{('ok' if ok and not bad and not note else 'not ok'):>7} "
                         f"{ok:>5}/{bad:<4}{note[:4]:>5}")
        lines.append(f"{os.path.basename(p):<48}" + "".join(f"{c:>22}" for c in cells))
    tot = []
    for n in names:
        ok = sum(v[0] for v in results[n].values())
        bad = sum(v[1] for v in results[n].values())
        clean = sum(1 for v in results[n].values() if v[0] and not v[1] and not v[2])
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
