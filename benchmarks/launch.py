#!/usr/bin/env python3
"""Launch latency of `sandbox run` against bwrap, crun, runc and unshare.

Not a test: run it as root with the project's venv interpreter

    .venv/bin/python benchmarks/launch.py [-n 30] [--write docs/benchmarks.md]

Everything is measured side by side in one run, interleaved (each round
launches every contender once, in a shuffled order), on the same busybox-static
root file system that this script builds under /var/tmp. Each contender runs
``/bin/true`` with about the same hardening:

- ``sandbox``: ``.venv/bin/sandbox run --profile default --rootfs ROOT -- /bin/true``
- ``bwrap``: every namespace (user, mount, pid, net, uts, ipc, cgroup), all
  capabilities dropped, a new session, the root bound read-only, and the very
  BPF program `sandbox` compiles from ``profiles/seccomp/default.json``
  (x86_64 + i386 + x32, no capabilities) passed with ``--seccomp FD``
- ``crun`` / ``runc``: an OCI bundle with the same namespaces, a user
  namespace mapping 65536 ids, no capabilities, ``noNewPrivileges``, Docker's
  masked and read-only paths, and the same seccomp JSON flattened to the OCI
  format (x86_64, x86, x32); a fresh container id per launch
- ``unshare -Urpf --mount-proc true``: the floor (no root change, no filter)

crun 1.8 refuses this host's hybrid cgroup layout unless
/sys/fs/cgroup/unified is unmounted in its mount namespace (HOST.md). Rather
than wrapping each crun launch in ``unshare -m sh -c 'umount ...; exec crun'``
(which would add a few ms to crun alone), the whole script re-executes
itself once in a private mount namespace with that folder unmounted, so
every contender runs under exactly the same conditions with no wrapper.

The library path: ``Sandbox(profile, rootfs=ROOT).run(["/bin/true"])`` in a
loop in this process, against bwrap spawned from this process with
`subprocess`, interleaved the same way.

``--phases`` adds a breakdown of where one CLI launch spends its time.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SANDBOX_CLI = VENV_BIN / "sandbox"
WORK = Path("/var/tmp/sandbox-bench")
ROOT = WORK / "rootfs"
UNIFIED = "/sys/fs/cgroup/unified"
MARK = "SANDBOX_BENCH_IN_MNTNS"

MASKED = ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
          "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
          "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
BUSYBOX_APPLETS = ["sh", "true", "false", "id", "cat", "ls", "echo", "grep", "mount"]


# --------------------------------------------------------------------------- setup
def reexec_in_mount_namespace() -> None:
    """Re-run this script in a private mount namespace without the cgroup v2
    'unified' mount, so crun 1.8 accepts the host (see module docstring)."""
    if os.environ.get(MARK) or not os.path.ismount(UNIFIED):
        return
    env = dict(os.environ, **{MARK: "1"})
    script = f'umount {UNIFIED} && exec "$0" "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
           sys.executable, *sys.argv]
    os.execvpe("unshare", cmd, env)


def make_rootfs() -> Path:
    """A tiny world-readable root: busybox-static and a few applets."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        sys.exit("launch.py: busybox-static is missing (apt-get install busybox-static)")
    if ROOT.exists():
        shutil.rmtree(ROOT)
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "run"):
        (ROOT / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, ROOT / "bin" / "busybox")
    for a in BUSYBOX_APPLETS:
        (ROOT / "bin" / a).symlink_to("busybox")
    (ROOT / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (ROOT / "etc" / "group").write_text("root:x:0:\n")
    for p in [WORK, *ROOT.rglob("*"), ROOT]:
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() or p.name == "busybox" else 0o644)
    os.chmod(ROOT / "tmp", 0o1777)
    return ROOT


def pick_profile() -> tuple[str, str]:
    """The real `default` profile if it launches; otherwise (Landlock not
    wired in yet) a temporary copy with Landlock off. Returns (profile, note)."""
    probe = subprocess.run([str(SANDBOX_CLI), "--root", str(WORK / "state"), "run",
                            "--profile", "default", "--rootfs", str(ROOT), "--", "/bin/true"],
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return "default", "the bundled `default` profile"
    if "Landlock is not wired" not in probe.stderr:
        sys.exit(f"launch.py: sandbox run fails:\n{probe.stderr}")
    path = WORK / "default-no-landlock.toml"
    path.write_text('name = "default-no-landlock"\n'
                    'description = "benchmark stand-in: default without Landlock"\n'
                    'extends = "default"\n\n[landlock]\nenabled = false\n')
    return str(path), ("a temporary copy of `default` with `[landlock] enabled = false` "
                       "(this build refused `default`: \"Landlock is not wired into this "
                       "build yet\")")


def seccomp_bpf() -> bytes:
    sys.path.insert(0, str(REPO))
    from sandbox._resources import data_dir
    from sandbox.seccomp import compile_filter
    cf = compile_filter(str(data_dir("profiles") / "seccomp" / "default.json"),
                        capabilities=frozenset(), cache_dir=None)
    return cf.bpf


MOBY_SECCOMP = Path("/work/shared/corpus/seccomp/moby-profiles-v0.2.3-current/default.json")


def oci_seccomp(path: Path) -> dict:
    """A Docker seccomp JSON flattened to what runc/crun take (Docker does the
    same before it calls runc): includes and excludes resolved for an empty
    capability set on x86_64, architectures x86_64, x86 and x32.

    Docker's profile is the default here: ours (profiles/seccomp/default.json)
    has per-family ``socket`` rules, which libseccomp turns into conflicting
    ``socketcall`` rules on i386, and runc then refuses the filter ("error
    adding seccomp rule for syscall socket: file exists"); our compiler builds
    a separate i386 filter for exactly that reason."""
    src = json.loads(path.read_text())
    arches = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "amd64", "x86", "x32",
              "x86_64", "386"}
    out = []
    for rule in src["syscalls"]:
        inc, exc = rule.get("includes", {}), rule.get("excludes", {})
        if inc.get("caps"):
            continue                       # needs a capability the payload lacks
        if inc.get("arches") and not arches & set(inc["arches"]):
            continue
        if exc.get("arches") and arches & set(exc["arches"]):
            continue
        names = rule.get("names") or [rule["name"]]
        r = {"names": names, "action": rule["action"]}
        if "errnoRet" in rule:
            r["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            r["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                         for a in rule["args"]]
        out.append(r)
    spec = {"defaultAction": src["defaultAction"],
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": out}
    if "defaultErrnoRet" in src:
        spec["defaultErrnoRet"] = src["defaultErrnoRet"]
    return spec


def make_bundle(root: Path, seccomp_json: Path) -> Path:
    bundle = WORK / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    caps: dict[str, list] = {k: [] for k in ("bounding", "effective", "inheritable",
                                              "permitted", "ambient")}
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                    "env": ["PATH=/bin"], "cwd": "/", "capabilities": caps,
                    "noNewPrivileges": True,
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]},
        "root": {"path": str(root), "readonly": True},
        "hostname": "sandbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=64m"]},
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 6000000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 6000000, "size": 65536}],
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount",
                                                 "user", "cgroup")],
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
            "seccomp": oci_seccomp(seccomp_json),
        },
    }
    (bundle / "config.json").write_text(json.dumps(config, indent=1))
    return bundle


# --------------------------------------------------------------------------- contenders
def contenders(profile: str, root: Path, bundle: Path, bpf_path: Path) -> dict:
    state = str(WORK / "state")
    counter = iter(range(10**9))

    def oci(tool):
        def argv():
            return [tool, "run", "--bundle", str(bundle), f"bench-{os.getpid()}-{next(counter)}"]
        return argv

    bwrap = ["bwrap", "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
             "--unshare-uts", "--unshare-cgroup", "--uid", "0", "--gid", "0",
             "--cap-drop", "ALL", "--new-session", "--die-with-parent",
             "--ro-bind", str(root), "/", "--proc", "/proc", "--dev", "/dev",
             "--tmpfs", "/tmp", "--seccomp", "3", "/bin/true"]
    return {
        "sandbox": (lambda: [str(SANDBOX_CLI), "--root", state, "run", "--profile", profile,
                             "--rootfs", str(root), "--", "/bin/true"], False),
        "bwrap": (lambda: bwrap, True),
        "crun": (oci("crun"), False),
        "runc": (oci("runc"), False),
        "unshare": (lambda: ["unshare", "-Urpf", "--mount-proc", "true"], False),
    }


CPU: dict[str, list[float]] = {}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def spawn(argv: list[str], bpf_path: Path | None = None, cpu_key: str | None = None) -> float:
    """Wall time in ms of one launch, from fork to reaped exit. With
    ``cpu_key``, the CPU time (user + system) of the launcher and every
    descendant it reaped is appended to ``CPU[cpu_key]``."""
    fds = ()
    if bpf_path is not None:
        fd = os.open(bpf_path, os.O_RDONLY)
        if fd != 3:
            os.dup2(fd, 3, inheritable=False)
            os.close(fd)
        fds = (3,)
    try:
        c0 = _cpu()
        t0 = time.perf_counter()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, pass_fds=fds)
        dt = (time.perf_counter() - t0) * 1000
        if cpu_key is not None:
            CPU.setdefault(cpu_key, []).append(_cpu() - c0)
    finally:
        if fds:
            os.close(3)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {p.returncode}: {p.stderr.decode()[-400:]}")
    return dt


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=10) if len(xs) >= 10 else [xs[0]] * 9 + [xs[-1]]
    return {"median": statistics.median(xs), "p10": q[0], "p90": q[-1], "n": len(xs)}


def bench_cli(n: int, warmup: int, profile: str, root: Path, bundle: Path,
              bpf_path: Path) -> dict[str, dict]:
    cs = contenders(profile, root, bundle, bpf_path)
    times: dict[str, list[float]] = {k: [] for k in cs}
    for rnd in range(warmup + n):
        order = list(cs)
        random.shuffle(order)
        for name in order:
            make, needs_bpf = cs[name]
            dt = spawn(make(), bpf_path if needs_bpf else None,
                       cpu_key=name if rnd >= warmup else None)
            if rnd >= warmup:
                times[name].append(dt)
    return {k: stats(v) for k, v in times.items()}


def bench_library(n: int, warmup: int, profile: str, root: Path, bpf_path: Path) -> dict:
    from sandbox import Sandbox
    sb = Sandbox(profile=profile, rootfs=root, root=str(WORK / "state"))
    bw = contenders(profile, root, WORK / "bundle", bpf_path)["bwrap"][0]()
    times: dict[str, list[float]] = {"Sandbox.run": [], "bwrap (subprocess)": []}
    for rnd in range(warmup + n):
        pair = ["lib", "bwrap"]
        random.shuffle(pair)
        for which in pair:
            if which == "lib":
                t0 = time.perf_counter()
                r = sb.run(["/bin/true"])
                dt = (time.perf_counter() - t0) * 1000
                if r.status != 0:
                    raise RuntimeError(f"Sandbox.run gave status {r.status}")
                key = "Sandbox.run"
            else:
                dt = spawn(bw, bpf_path)
                key = "bwrap (subprocess)"
            if rnd >= warmup:
                times[key].append(dt)
    return {k: stats(v) for k, v in times.items()}


# --------------------------------------------------------------------------- phases
PHASES = r"""
import os, sys, time
t = [("start", time.perf_counter())]
def mark(n): t.append((n, time.perf_counter()))
import click; mark("import click")
import sandbox.cli, sandbox.cli.run; mark("import sandbox.cli (+run)")
from sandbox.api import Sandbox; mark("import sandbox.api (+plan, spec, paths)")
sb = Sandbox(profile=sys.argv[1], rootfs=sys.argv[2], root=sys.argv[3])
prof = sb.resolve_profile(); mark("resolve profile (TOML, extends, validate)")
import sandbox.runtime.spawn, sandbox.runtime.child; mark("import runtime.spawn/child")
res = []
plan = sb.plan(["/bin/true"], reservations=res); mark("plan (profile again, idmap, cgroups, seccomp cache, mounts)")
from sandbox.runtime.spawn import launch
r = launch(plan); mark("launch (fork, unshare, maps, mounts, exec, wait, teardown)")
for x in res: x.release()
mark("release reservations")
import json
print(json.dumps([(n, (b - a) * 1000) for (_, a), (n, b) in zip(t, t[1:])]))
"""


def phases(n: int, profile: str, root: Path) -> list[tuple[str, float]]:
    py = str(VENV_BIN / "python")
    acc: dict[str, list[float]] = {}
    order: list[str] = []
    state = str(WORK / "state")
    walls = {
        "interpreter start and exit (python -c pass)": [py, "-c", "pass"],
        "whole CLI: `sandbox --version`": [str(SANDBOX_CLI), "--version"],
        "whole CLI: `sandbox run --dry-run`": [str(SANDBOX_CLI), "--root", state, "run",
                                               "--profile", profile, "--rootfs", str(root),
                                               "--dry-run", "--", "/bin/true"],
        "whole CLI: `sandbox run`": [str(SANDBOX_CLI), "--root", state, "run", "--profile",
                                     profile, "--rootfs", str(root), "--", "/bin/true"],
    }
    wall_t: dict[str, list[float]] = {k: [] for k in walls}
    for _ in range(n):
        for k, argv in walls.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            wall_t[k].append((time.perf_counter() - t0) * 1000)
        out = subprocess.run([py, "-c", PHASES, profile, str(root), str(WORK / "state")],
                             capture_output=True, text=True, check=True, cwd="/")
        for name, ms in json.loads(out.stdout):
            if name not in acc:
                order.append(name)
            acc.setdefault(name, []).append(ms)
    rows = [(k, statistics.median(v)) for k, v in wall_t.items()]
    rows += [("in-process: " + k, statistics.median(acc[k])) for k in order]
    return rows


def importtime(profile: str, root: Path, top: int = 15) -> list[tuple[float, str]]:
    p = subprocess.run([str(VENV_BIN / "python"), "-X", "importtime", str(SANDBOX_CLI),
                        "--root", str(WORK / "state"), "run", "--profile", profile,
                        "--rootfs", str(root), "--", "/bin/true"],
                       capture_output=True, text=True)
    rows = []
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cum_us, name = line.split(":", 1)[1].split("|")
        name = name[1:]                     # one space, then two per nesting level
        if not name.startswith(" "):
            rows.append((int(cum_us) / 1000, name.rstrip()))
    top_level = sorted(rows, reverse=True)
    return top_level[:top]


# --------------------------------------------------------------------------- report
def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}, {cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def commit() -> str:
    try:
        c = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "sandbox", "profiles"], capture_output=True, text=True).stdout
        return c + (" + uncommitted changes" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> str:
    out = []
    for cmd in (["bwrap", "--version"], ["crun", "--version"], ["runc", "--version"]):
        try:
            out.append(subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0])
        except (OSError, IndexError):
            pass
    return "; ".join(out) + f"; Python {platform.python_version()} ({sys.executable})"


def render(cli: dict, lib: dict, ph, imp, args, note: str) -> str:
    runc = cli["runc"]["median"]
    bw = lib["bwrap (subprocess)"]["median"]
    L = []
    L.append(f"Run {_dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} on {machine()}; "
             f"commit {commit()}.  ")
    L.append(f"{versions()}; load average at the end {os.getloadavg()[0]:.1f} "
             f"(1 min) on {os.cpu_count()} CPUs.  ")
    L.append(f"{args.n} measured launches per contender after {args.warmup} warm-up rounds, "
             f"interleaved in shuffled order. Profile: {note}.")
    L.append("")
    L.append("### CLI: one `/bin/true` launch, wall time from fork to reaped exit")
    L.append("")
    L.append("| launcher | median ms | p10 | p90 | vs runc | CPU ms (median) |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for k in ("unshare", "bwrap", "sandbox", "crun", "runc"):
        s = cli[k]
        cpu = statistics.median(CPU[k]) if CPU.get(k) else float("nan")
        L.append(f"| {LABELS[k]} | {s['median']:.1f} | {s['p10']:.1f} | {s['p90']:.1f} | "
                 f"{s['median'] / runc:.2f}x | {cpu:.1f} |")
    r = cli["sandbox"]["median"] / runc
    L.append("")
    L.append("CPU ms: user + system time of the launcher and the descendants it reaped "
             "(`RUSAGE_CHILDREN`); less sensitive to a busy machine than wall time.")
    L.append("")
    L.append(f"Target `sandbox run` <= 1.0x runc: **{r:.2f}x, "
             f"{'met' if r <= 1.0 else 'missed'}**.")
    L.append("")
    L.append("### Library: launches from one Python process")
    L.append("")
    L.append("| launcher | median ms | p10 | p90 | vs bwrap |")
    L.append("| --- | ---: | ---: | ---: | ---: |")
    for k, s in lib.items():
        L.append(f"| {k} | {s['median']:.1f} | {s['p10']:.1f} | {s['p90']:.1f} | "
                 f"{s['median'] / bw:.2f}x |")
    r = lib["Sandbox.run"]["median"] / bw
    L.append("")
    L.append(f"Target `Sandbox.run` <= 0.8x bwrap: **{r:.2f}x, "
             f"{'met' if r <= 0.8 else 'missed'}**.")
    if ph:
        L.append("")
        L.append("### Where one CLI launch spends its time (medians, separate runs)")
        L.append("")
        L.append("| phase | ms |")
        L.append("| --- | ---: |")
        for name, ms in ph:
            L.append(f"| {name} | {ms:.1f} |")
    if imp:
        L.append("")
        L.append("Heaviest top-level imports of `sandbox run` (`python -X importtime`, "
                 "cumulative ms):")
        L.append("")
        L.append("| module | ms |")
        L.append("| --- | ---: |")
        for ms, name in imp:
            L.append(f"| `{name.strip()}` | {ms:.1f} |")
    return "\n".join(L) + "\n"


LABELS = {
    "unshare": "`unshare -Urpf --mount-proc true` (floor)",
    "bwrap": "bwrap: all namespaces, caps dropped, seccomp BPF",
    "sandbox": "`sandbox run --profile default --rootfs ROOT`",
    "crun": "crun: userns, no caps, NNP, seccomp (x86_64+x86+x32)",
    "runc": "runc: same bundle",
}

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def write_doc(path: Path, text: str) -> None:
    doc = path.read_text() if path.exists() else ""
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc = f"{head}{BEGIN}\n{text}{END}{tail}"
    else:
        doc = f"{doc}\n{BEGIN}\n{text}{END}\n"
    path.write_text(doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=30, help="measured launches per contender")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--phases", type=int, default=15, metavar="N",
                    help="runs for the phase breakdown (0 skips it)")
    ap.add_argument("--write", metavar="FILE", help="put the results into FILE (Markdown)")
    ap.add_argument("--profile", help="sandbox profile to use (default: 'default', or a "
                                      "copy without Landlock if this build refuses it)")
    ap.add_argument("--oci-seccomp", metavar="JSON",
                    help="Docker seccomp JSON for crun/runc (default: moby's current "
                         "default.json from the shared corpus)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("launch.py: run me as root (crun/runc and the id ranges need it)")
    reexec_in_mount_namespace()
    sys.path.insert(0, str(REPO))
    WORK.mkdir(parents=True, exist_ok=True)
    root = make_rootfs()
    if args.profile:
        profile, note = args.profile, f"`{args.profile}`"
    else:
        profile, note = pick_profile()
    bpf_path = WORK / "seccomp.bpf"
    bpf_path.write_bytes(seccomp_bpf())
    oci_json = Path(args.oci_seccomp) if args.oci_seccomp else (
        MOBY_SECCOMP if MOBY_SECCOMP.exists() else
        REPO / "profiles" / "seccomp" / "default.json")
    bundle = make_bundle(root, oci_json)
    note += f"; crun/runc seccomp from `{oci_json}`"
    print(f"profile: {note}", file=sys.stderr)
    cli = bench_cli(args.n, args.warmup, profile, root, bundle, bpf_path)
    lib = bench_library(args.n, args.warmup, profile, root, bpf_path)
    ph = phases(args.phases, profile, root) if args.phases else []
    imp = importtime(profile, root) if args.phases else []
    text = render(cli, lib, ph, imp, args, note)
    print(text)
    if args.write:
        write_doc(Path(args.write), text)


if __name__ == "__main__":
    main()
