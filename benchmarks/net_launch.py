#!/usr/bin/env python3
"""Launch time of ``--net bridge`` against ``--net none`` (issue 7).

Not a test: run it as root with the project's venv interpreter

    .venv/bin/python benchmarks/net_launch.py [-n 30] [--write docs/benchmarks.md]

Contenders, interleaved in shuffled rounds (3 warm-up rounds dropped), each
launching ``/bin/true`` on the host view under the ``default`` profile:

- CLI ``sandbox run --net none``
- CLI ``sandbox run --net bridge`` with no other sandbox on the bridge (the
  launch makes the bridge and its teardown deletes it again)
- CLI ``sandbox run --net bridge`` while another sandbox keeps the bridge up
- CLI ``sandbox run --net bridge --port H:80`` (bridge kept up; adds the
  nftables rules, two ``nft`` calls to add and three to remove)
- library ``Sandbox(network=...).run`` in one process, none and bridge
  (bridge kept up): pyroute2's import is paid once there

plus a breakdown of one bridge launch's network steps (pyroute2 import,
plan with lease, attach, detach). The bridge is ``sbxbench`` on
10.207.250.0/24 (``SANDBOX_NET_SUBNET``): traffic never leaves the host.
podman is compared with ``podman run --network bridge`` when installed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "sandbox")
WORK = Path("/var/tmp/sandbox-bench-net")
BRIDGE = "sbxbench"
SUBNET = "10.207.250.0/24"
HEADING = "## Networking"


def _env() -> dict:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "SANDBOX_NET_SUBNET": SUBNET}


def cli(args: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run([CLI, "--root", str(WORK), "run", *args, "--", "/bin/true"],
                       env=_env(), capture_output=True, text=True)
    dt = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        raise SystemExit(f"launch failed ({args}): {r.stderr.strip()}")
    return dt


def summary(xs: list[float]) -> tuple[float, float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[len(xs) // 10], xs[min(len(xs) - 1, len(xs) * 9 // 10)]


def _import_cost() -> float:
    """ms that ``import pyroute2`` adds to a fresh interpreter."""
    def one(code):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return (time.perf_counter() - t) * 1000
    return one("import pyroute2") - one("pass")


def breakdown(n: int) -> dict[str, float]:
    """Median ms of each network step of a bridge launch, in this process."""
    os.environ["SANDBOX_NET_SUBNET"] = SUBNET
    imp = statistics.median(_import_cost() for _ in range(7))
    from sandbox.net import attach, detach, plan_bridge
    from sandbox.paths import Paths
    paths = Paths.resolve(WORK)
    steps: dict[str, list[float]] = {"plan (route check, lease)": [], "attach": [],
                                     "detach": [], "release lease": []}
    for _ in range(n):
        pid = os.fork()
        if pid == 0:           # a process with its own network namespace to wire
            import ctypes
            ctypes.CDLL(None, use_errno=True).unshare(0x40000000)
            os.kill(os.getpid(), 19)   # SIGSTOP until wired
            os._exit(0)
        os.waitpid(pid, os.WUNTRACED)
        sid = os.urandom(6).hex()
        t0 = time.perf_counter()
        np, held = plan_bridge(paths, sid, bridge=BRIDGE, hold=True)
        t1 = time.perf_counter()
        h = attach(np, pid)
        t2 = time.perf_counter()
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        t3 = time.perf_counter()
        detach(h)
        t4 = time.perf_counter()
        held.release()
        t5 = time.perf_counter()
        for k, a, b in (("plan (route check, lease)", t0, t1), ("attach", t1, t2),
                        ("detach", t3, t4), ("release lease", t4, t5)):
            steps[k].append((b - a) * 1000)
    out = {"import pyroute2 (once per process; fresh interpreter)": imp}
    out.update({k: statistics.median(v) for k, v in steps.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=30, help="measured rounds")
    ap.add_argument("--write", metavar="MD", help="replace the Networking section of MD")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: --net bridge needs root")
    WORK.mkdir(parents=True, exist_ok=True)
    holder = None
    res: dict[str, list[float]] = {}
    try:
        names = {"none": ["--net", "none"], "bridge (made and deleted)": ["--net",
                 f"bridge:{BRIDGE}"]}
        # rounds without a holder: each bridge launch makes the bridge
        for i in range(a.n + 3):
            order = list(names.items())
            random.shuffle(order)
            for name, args in order:
                dt = cli(args)
                if i >= 3:
                    res.setdefault(name, []).append(dt)
        # a holder keeps the bridge up
        holder = subprocess.Popen([CLI, "--root", str(WORK), "run", "--net",
                                   f"bridge:{BRIDGE}", "--", "sleep", "3600"], env=_env())
        while not os.path.exists(f"/sys/class/net/{BRIDGE}"):
            time.sleep(0.05)
        time.sleep(0.5)
        kept = {"none ": ["--net", "none"],
                "bridge (kept up)": ["--net", f"bridge:{BRIDGE}"],
                "bridge (kept up) + --port": ["--net", f"bridge:{BRIDGE}", "--port",
                                              "18999:80"]}
        for i in range(a.n + 3):
            order = list(kept.items())
            random.shuffle(order)
            for name, args in order:
                dt = cli(args)
                if i >= 3:
                    res.setdefault(name, []).append(dt)
        # library, in this process (bridge kept up by the holder)
        os.environ["SANDBOX_NET_SUBNET"] = SUBNET
        from sandbox import Sandbox
        lib = {"library none": Sandbox("default", root=WORK, network="none"),
               "library bridge": Sandbox("default", root=WORK, network=f"bridge:{BRIDGE}")}
        for i in range(a.n + 3):
            order = list(lib.items())
            random.shuffle(order)
            for name, box in order:
                t = time.perf_counter()
                r = box.run(["/bin/true"])
                dt = (time.perf_counter() - t) * 1000
                assert r.status == 0
                if i >= 3:
                    res.setdefault(name, []).append(dt)
        steps = breakdown(min(a.n, 20))
    finally:
        if holder is not None:
            holder.terminate()
            holder.wait()
    podman = shutil.which("podman")
    lines = render(res, steps, a.n, podman)
    print("\n".join(lines))
    if a.write:
        write_section(Path(a.write), lines)


def render(res, steps, n, podman) -> list[str]:
    def commit() -> str:
        try:
            c = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"],
                                   capture_output=True, text=True).stdout.strip()
            return c + (" + uncommitted changes" if dirty else "")
        except OSError:
            return "?"
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.machine())
    base = statistics.median(res["none"])
    base_kept = statistics.median(res["none "])
    out = [HEADING, "",
           "Launch time of `--net bridge` against `--net none` (`benchmarks/net_launch.py`,",
           "issue 7): `/bin/true` on the host view under the `default` profile, wall",
           "time from fork to reaped exit, interleaved in shuffled rounds.", "",
           "Re-run as root: `.venv/bin/python benchmarks/net_launch.py -n 30 --write "
           "docs/benchmarks.md`", "",
           f"Run {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC on "
           f"{platform.node()}, {cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}; "
           f"commit {commit()}; {n} measured launches per contender after 3 warm-up rounds; "
           f"load average at the end {os.getloadavg()[0]:.1f}.", "",
           "| contender | median ms | p10 | p90 | vs none |", "| --- | --- | --- | --- | --- |"]
    order = ["none", "bridge (made and deleted)", "none ", "bridge (kept up)",
             "bridge (kept up) + --port", "library none", "library bridge"]
    for name in sorted(res, key=lambda k: order.index(k) if k in order else 99):
        xs = res[name]
        med, p10, p90 = summary(xs)
        ref = base_kept if name in ("none ", "bridge (kept up)", "bridge (kept up) + --port") \
            else statistics.median(res["library none"]) if name.startswith("library") \
            else base
        label = "CLI `--net none`" if name.strip() == "none" else \
            f"CLI `--net {name}`" if not name.startswith("library") else f"`Sandbox.run` {name[8:]}"
        if name == "none ":
            label += " (second block, bridge held up)"
        out.append(f"| {label} | {med:.1f} | {p10:.1f} | {p90:.1f} | {med / ref:.2f}x |")
    out += ["", "Where a bridge launch's network time goes (median ms, in one process):", "",
            "| step | ms |", "| --- | --- |"]
    out += [f"| {k} | {v:.1f} |" for k, v in steps.items()]
    out += ["",
            "podman: " + ("installed but not measured by this script" if podman else
                          "not installed on this machine, so `podman run --network bridge` "
                          "was not measured."), "",
            "Notes: most of a CLI bridge launch's extra time is pyroute2's import "
            f"({list(steps.values())[0]:.0f} ms in this run; HOST.md measured about 240 ms on "
            "a busier day), paid once per process, so the library pays it only for its first "
            "launch. Deleting the veth in the teardown is the largest netlink step (the kernel "
            "waits for RCU grace periods). Without a sandbox holding the bridge, every launch "
            "also makes and deletes the bridge. `--port` adds `nft` runs (a list and one batch "
            "to add; a list, a delete and an emptiness check to remove).",
            ""]
    return out


def write_section(path: Path, lines: list[str]) -> None:
    text = path.read_text() if path.exists() else ""
    block = "\n".join(lines).rstrip("\n") + "\n"
    if HEADING + "\n" in text:
        start = text.index(HEADING + "\n")
        nxt = text.find("\n## ", start + len(HEADING))
        end = len(text) if nxt < 0 else nxt + 1
        text = text[:start] + block + ("\n" if nxt >= 0 else "") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


if __name__ == "__main__":
    main()
