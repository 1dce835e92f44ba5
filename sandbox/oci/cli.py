"""``sandbox-oci``: runc's command line over `sandbox.oci`.

Global options come before the command, as runc takes them:
``sandbox-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug]
COMMAND ...``. Errors are one or two lines on stderr (and a record in
``--log``, which containerd and podman read back); exit 1 for a failed
command, 2 for bad usage. Thin: it parses and prints; the work is in
`container` and `translate`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from ..errors import SandboxError, UsageError
from . import container as C
from .translate import SPEC_VERSION

DEFAULT_ROOT = "/run/sandbox-oci"


class _Log:
    def __init__(self, path: str | None, fmt: str):
        self.path, self.fmt = path, fmt

    def __call__(self, level: str, msg: str) -> None:
        if not self.path:
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = json.dumps({"level": level, "msg": msg, "time": now}) if self.fmt == "json" \
            else f'time="{now}" level={level} msg="{msg}"'
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"sandbox-oci: {message}", hint="see 'sandbox-oci --help'")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sandbox-oci", description="An OCI runtime with runc's command line, "
                "built on the sandbox toolkit.")
    p.add_argument("--root", default=None, help=f"state folder (default {DEFAULT_ROOT})")
    p.add_argument("--log", default=None, help="append errors and warnings to this file")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors")
    p.add_argument("--systemd-cgroup", action="store_true",
                   help="refused: cgroups are managed through cgroupfs")
    p.add_argument("--rootless", default=None, help="accepted for runc compatibility")
    p.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    c = sub.add_parser("create", help="create a container (its process waits for 'start')")
    _create_args(c)
    r = sub.add_parser("run", help="create and start a container, wait unless --detach")
    _create_args(r)
    r.add_argument("-d", "--detach", action="store_true")
    for name in ("start", "state", "pause", "resume"):
        x = sub.add_parser(name)
        x.add_argument("id")
    k = sub.add_parser("kill", help="send a signal to the container's process")
    k.add_argument("-a", "--all", action="store_true")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="SIGTERM")
    d = sub.add_parser("delete", help="remove a stopped container (--force: any)")
    d.add_argument("-f", "--force", action="store_true")
    d.add_argument("id")
    ps = sub.add_parser("ps")
    ps.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ps.add_argument("id")
    ps.add_argument("ps_args", nargs="*")
    ls = sub.add_parser("list")
    ls.add_argument("-f", "--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("features")
    e = sub.add_parser("exec")
    e.add_argument("-p", "--process")
    e.add_argument("-t", "--tty", action="store_true")
    e.add_argument("--console-socket")
    e.add_argument("-d", "--detach", action="store_true")
    e.add_argument("--pid-file")
    e.add_argument("-e", "--env", action="append", default=[])
    e.add_argument("--cwd")
    e.add_argument("-u", "--user")
    e.add_argument("--preserve-fds", type=int, default=0)
    e.add_argument("id")
    e.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _create_args(c) -> None:
    c.add_argument("-b", "--bundle", default=".")
    c.add_argument("--pid-file")
    c.add_argument("--console-socket")
    c.add_argument("--no-pivot", action="store_true")
    c.add_argument("--no-new-keyring", action="store_true")
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument("--policy", metavar="PROFILE",
                   help="refuse a config weaker than this sandbox profile")
    c.add_argument("id")


def main(argv=None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    log = _Log(None, "text")
    try:
        args = build_parser().parse_args(args_list)
        log = _Log(args.log, args.log_format)
        status = dispatch(args, log)
    except SandboxError as e:
        if debug:
            raise
        for line in e.lines():
            print(line, file=sys.stderr)
        log("error", " ".join(e.lines()))
        status = e.status
    except OSError as e:
        if debug:
            raise
        msg = f"sandbox-oci: {e.filename + ': ' if e.filename else ''}{e.strerror or e}"
        print(msg, file=sys.stderr)
        log("error", msg)
        status = 1
    except KeyboardInterrupt:
        status = 130
    sys.stdout.flush()
    sys.exit(status)


def dispatch(a, log) -> int:
    if a.version:
        from importlib.metadata import version
        print(f"sandbox-oci version {version('sandbox')}\nspec: {SPEC_VERSION}")
        return 0
    if a.systemd_cgroup:
        raise UsageError("--systemd-cgroup is not supported: sandbox-oci manages cgroupfs paths",
                         hint="configure the engine with cgroup_manager = \"cgroupfs\"")
    if a.command is None:
        raise UsageError("sandbox-oci: no command given", hint="see 'sandbox-oci --help'")
    root = os.path.abspath(a.root or DEFAULT_ROOT)
    if a.command == "features":
        print(json.dumps(features(), indent=2))
        return 0
    if a.command == "list":
        return cmd_list(root, a)
    if a.command in ("create", "run"):
        return cmd_create(root, a, log)
    return globals()["cmd_" + a.command](root, a, log)


# ---------------------------------------------------------------- create

def cmd_create(root: str, a, log) -> int:
    C.check_id(a.id)
    try:
        return _create(root, a, log)
    except SandboxError as e:
        from .policy import PolicyRefusal
        C.audit("refusal", {
            "sandbox_id": a.id, "runtime": "sandbox-oci",
            "stage": "policy" if isinstance(e, PolicyRefusal) else
            "bundle" if e.__class__.__name__ == "BundleError" else "setup",
            "error": e.message, "field": getattr(e, "field", None),
            "policy": getattr(e, "profile", None),
            "bundle": os.path.abspath(a.bundle)}, log)
        raise


def _create(root: str, a, log) -> int:
    from .translate import BundleError, build_plan, load_bundle
    if a.preserve_fds:
        raise UsageError("--preserve-fds is not supported yet")
    bundle = load_bundle(a.bundle)
    os.makedirs(root, mode=0o700, exist_ok=True)
    d = os.path.join(root, a.id)
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        raise C.ContainerError(f"container {a.id} already exists",
                               hint="pick another id, or 'sandbox-oci delete' it") from None
    try:
        plan = build_plan(bundle, a.id, os.path.join(d, "run"), seccomp_dir=d,
                          console=bool(a.console_socket))
        cfg = bundle.config
        policies = _enforce_floor(a.policy, plan, cfg)
        rec = {"ociVersion": cfg["ociVersion"], "id": a.id, "status": "creating", "pid": 0,
               "bundle": bundle.path, "annotations": cfg.get("annotations") or {},
               "config_digest": bundle.digest, "owner": os.geteuid(),
               "cgroup": list(plan.cgroup.dirs) if plan.cgroup else [],
               "policies": policies}
        C.write_state(root, a.id, rec)
        os.mkfifo(os.path.join(d, "exec.fifo"), 0o600)
        hooks = cfg.get("hooks") or {}
        if not isinstance(hooks, dict):
            raise BundleError("config.json: hooks must be an object", field="hooks")
        C.ensure_cgroup_parents(plan.cgroup)
        tty = None
        if plan.controlling_tty:
            tty = _send_console(a.console_socket)
        elif a.console_socket:
            raise BundleError("config.json: --console-socket was given but process.terminal "
                              "is not true", field="process.terminal")
        try:
            pid = _spawn_supervisor(root, a.id, plan, hooks, log, tty)
        finally:
            if tty is not None:
                os.close(tty)
    except BaseException:
        shutil.rmtree(d, ignore_errors=True)
        raise
    if a.pid_file:
        tmp = a.pid_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.replace(tmp, a.pid_file)
    if a.command == "run":
        cmd_start(root, a, log)
        if a.detach:
            return 0
        rec = C.load(root, a.id)
        C.wait_gone(rec, timeout=1e9)
        rec = C.load(root, a.id)
        _remove(root, a.id, rec, log)
        return int(rec.get("exit_status") or 0)
    return 0


def _enforce_floor(flag, plan, cfg) -> list[str]:
    """Every floor that applies (`policy.floors`), checked; their names."""
    from ..paths import Paths
    from .policy import check_floor, floors
    paths = Paths.resolve()
    names = floors(flag, cfg, paths.config)
    if names:
        from ..profile.load import load
        for n in names:
            check_floor(load(n, user_dir=paths.user_profiles), plan, cfg)
    return names


def _send_console(path: str) -> int:
    """A new pseudo-terminal: its master goes to the console socket (as
    runc sends it, SCM_RIGHTS with the slave's name), its slave is returned
    to become the container process's stdio and controlling terminal."""
    import socket
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(path)
            except OSError as e:
                raise UsageError(f"--console-socket {path}: {e.strerror}",
                                 hint="give the path of a listening unix socket") from None
            socket.send_fds(s, [name.encode()], [master])
    except BaseException:
        os.close(slave)
        raise
    finally:
        os.close(master)
    return slave


def _spawn_supervisor(root, cid, plan, hooks, log, tty: int | None = None) -> int:
    """Fork the detached supervisor; wait for ``ok PID`` or its error."""
    r, w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    mid = os.fork()
    if mid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            if tty is not None:
                # the payload's stdio; the supervisor drops its copies once
                # the sandbox's first child has forked (on_forked)
                for fd in (0, 1, 2):
                    os.dup2(tty, fd)
                os.close(tty)
            C.supervise(root, cid, plan, hooks, w, log)
        finally:
            os._exit(1)
    os.close(w)
    os.waitpid(mid, 0)
    # one line: the sandbox's processes hold copies of the write end until
    # execve, so EOF would come only then
    buf = b""
    while not buf.endswith(b"\n"):
        c = os.read(r, 65536)
        if not c:
            break
        buf += c
    os.close(r)
    line = buf.decode(errors="replace").strip()
    if line.startswith("ok "):
        return int(line[3:])
    rec = C.load(root, cid)
    C.wait_gone(rec)
    if line.startswith("err "):
        info = json.loads(line[4:])
        err = SandboxError(info["lines"][0], hint="\n".join(info["lines"][1:]) or None)
        err.status = 1
        raise err
    raise SandboxError(f"container {cid}: the supervisor ended before the container was "
                       "created", hint="run again with --debug, or see --log")


# -------------------------------------------------------------- lifecycle

def cmd_start(root: str, a, log) -> int:
    rec = C.load(root, a.id)
    s = C.status(rec)
    if s != "created":
        raise C.ContainerError(f"cannot start container {a.id}: it is {s}, not created")
    fifo = os.path.join(root, a.id, "exec.fifo")
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise C.ContainerError(f"cannot start container {a.id}: its supervisor is gone",
                               hint="delete it and create it again") from None
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
    C.audit("oci.start", {"sandbox_id": a.id, "runtime": "sandbox-oci", "pid": rec.get("pid")},
            log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rec = C.load(root, a.id)
        if rec.get("status") in ("running", "stopped"):
            if rec.get("error"):
                raise SandboxError(rec["error"][0],
                                   hint="\n".join(rec["error"][1:]) or None)
            return 0
        time.sleep(0.002)
    raise C.ContainerError(f"container {a.id} did not start within 30 s")


def cmd_state(root: str, a, log) -> int:
    print(json.dumps(C.oci_state(C.load(root, a.id)), indent=2))
    return 0


def cmd_kill(root: str, a, log) -> int:
    rec = C.load(root, a.id)
    sig = C.signal_number(a.signal)
    s = C.status(rec)
    if s not in ("created", "running", "paused"):
        raise C.ContainerError(f"cannot kill container {a.id}: it is {s}")
    pids = C.container_pids(rec) if a.all else [rec["pid"]]
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return 0


def cmd_delete(root: str, a, log) -> int:
    try:
        rec = C.load(root, a.id)
    except SandboxError:
        if a.force:
            return 0
        raise
    s = C.status(rec)
    if s != "stopped":
        if not a.force:
            raise C.ContainerError(f"cannot delete container {a.id}: it is {s}",
                                   hint="stop it first ('sandbox-oci kill'), or use --force")
        for pid in C.container_pids(rec) or [rec.get("pid")]:
            try:
                os.kill(pid, 9)
            except (ProcessLookupError, TypeError):
                pass
        if s == "paused":           # a frozen task acts on SIGKILL only once thawed
            with open(_freezer(rec, a.id) + "/freezer.state", "w") as f:
                f.write("THAWED")
    _remove(root, a.id, rec, log)
    return 0


def _remove(root, cid, rec, log) -> None:
    if not C.wait_gone(rec):
        raise C.ContainerError(f"container {cid}: its supervisor did not end within 5 s")
    from ..runtime import cgroups
    from ..runtime.cgroups import CgroupPlan
    left = cgroups.remove(CgroupPlan(tuple(rec.get("cgroup") or ()), (), ()))
    for x in left:
        log("warning", f"cgroup {x} could not be removed")
    try:
        cfg = json.load(open(os.path.join(rec["bundle"], "config.json")))
        hooks = (cfg.get("hooks") or {}).get("poststop")
    except (OSError, ValueError):
        hooks = None
    if hooks:
        st = C.oci_state(rec)
        st["status"] = "stopped"
        try:
            C.run_hooks(hooks, st, "poststop")
        except SandboxError as e:
            log("warning", str(e))
    shutil.rmtree(os.path.join(root, cid), ignore_errors=True)


def cmd_exec(root: str, a, log) -> int:
    """Run a command in a running container, confined as its process is
    (its namespaces, root, capabilities or fewer, no_new_privs, seccomp
    filter): `sandbox.lifecycle.enter` over the confinement the supervisor
    recorded. The process may choose args, env, cwd and user; never more
    capabilities than the container's process."""
    for flag, name in ((a.tty, "--tty"), (a.console_socket, "--console-socket"),
                       (a.detach, "--detach"), (a.preserve_fds, "--preserve-fds")):
        if flag:
            raise UsageError(f"sandbox-oci exec {name} is not supported yet",
                             hint="run it in the foreground without a terminal")
    rec = C.load(root, a.id)
    if C.status(rec) != "running":
        raise C.ContainerError(f"cannot exec in container {a.id}: it is {C.status(rec)}")
    conf = json.load(open(os.path.join(root, a.id, "confine.json")))
    args = list(a.args[1:] if a.args[:1] == ["--"] else a.args)
    env = dict(conf["env"])
    if a.process:
        try:
            with open(a.process) as f:
                proc = json.load(f)
        except (OSError, ValueError) as e:
            raise UsageError(f"--process {a.process}: cannot read it as JSON ({e})") from None
        args = list(proc.get("args") or [])
        env = dict(e.split("=", 1) for e in proc.get("env") or [] if "=" in e)
        conf["workdir"] = proc.get("cwd") or conf["workdir"]
        user = proc.get("user") or {}
        conf["uid"], conf["gid"] = int(user.get("uid", 0)), int(user.get("gid", 0))
        caps = (proc.get("capabilities") or {}).get("effective")
        if caps is not None:
            conf["capabilities"] = sorted(set(caps) & set(conf["capabilities"]))
        if proc.get("terminal"):
            raise UsageError("sandbox-oci exec: process.terminal is not supported yet")
    if not args:
        raise UsageError("sandbox-oci exec: no command given",
                         hint="pass the command after the id, or --process FILE")
    for e in a.env:
        k, _, v = e.partition("=")
        env[k] = v
    if a.cwd:
        conf["workdir"] = a.cwd
    if a.user:
        u, _, g = a.user.partition(":")
        if not u.isdigit() or (g and not g.isdigit()):
            raise UsageError(f"--user {a.user}: give UID[:GID] as numbers")
        conf["uid"], conf["gid"] = int(u), int(g or 0)
    conf["env"] = [[k, v] for k, v in env.items()]
    import tempfile
    from pathlib import Path
    from ..lifecycle import enter_sandbox as enter
    from ..paths import Paths
    with tempfile.TemporaryDirectory(dir=os.path.join(root, a.id), prefix="exec-") as t:
        paths = Paths(Path(t), Path(t), Path(t))
        rd = Path(t) / "sandboxes" / a.id
        rd.mkdir(parents=True)
        (rd / "confine.json").write_text(json.dumps(conf))
        erec = {"id": a.id, "state": "running", "supervisor": rec.get("supervisor"),
                "pid1": {"pid": rec["pid"], "start_time": rec["pid_start"]}}
        C.audit("oci.exec", {"sandbox_id": a.id, "runtime": "sandbox-oci", "command": args,
                             "uid": conf["uid"]}, log)
        if a.pid_file:
            with open(a.pid_file, "w") as f:
                f.write(str(os.getpid()))
        return enter(paths, erec, args)


def _freezer(rec: dict, cid: str) -> str:
    for d in rec.get("cgroup") or ():
        if "/freezer/" in d:
            return d
    raise C.ContainerError(f"container {cid} has no freezer cgroup",
                           hint="pause needs the cgroup v1 freezer controller")


def cmd_pause(root: str, a, log) -> int:
    rec = C.load(root, a.id)
    if C.status(rec) != "running":
        raise C.ContainerError(f"cannot pause container {a.id}: it is {C.status(rec)}")
    with open(_freezer(rec, a.id) + "/freezer.state", "w") as f:
        f.write("FROZEN")
    rec["status"] = "paused"
    C.write_state(root, a.id, rec)
    return 0


def cmd_resume(root: str, a, log) -> int:
    rec = C.load(root, a.id)
    if rec.get("status") != "paused":
        raise C.ContainerError(f"cannot resume container {a.id}: it is not paused")
    with open(_freezer(rec, a.id) + "/freezer.state", "w") as f:
        f.write("THAWED")
    rec["status"] = "running"
    C.write_state(root, a.id, rec)
    return 0


def cmd_ps(root: str, a, log) -> int:
    rec = C.load(root, a.id)
    pids = C.container_pids(rec) if C.status(rec) != "stopped" else []
    if a.format == "json":
        print(json.dumps(pids))
        return 0
    if pids:
        import subprocess
        return subprocess.call(["ps"] + (a.ps_args or ["-f"]) + ["-p", ",".join(map(str, pids))])
    return 0


def cmd_list(root: str, a) -> int:
    recs = []
    if os.path.isdir(root):
        for cid in sorted(os.listdir(root)):
            try:
                recs.append(C.load(root, cid))
            except SandboxError:
                continue
    if a.quiet:
        for r in recs:
            print(r["id"])
    elif a.format == "json":
        print(json.dumps([dict(C.oci_state(r), created=r.get("created"), owner=r.get("owner"))
                          for r in recs]))
    else:
        print(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for r in recs:
            s = C.oci_state(r)
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.get("created") or 0))
            print(f"{r['id']:<20} {s['pid']:<8} {s['status']:<10} {r['bundle']:<40} {when}")
    return 0


def features() -> dict:
    from ..capabilities import CAPABILITIES, last_cap
    from .translate import NAMESPACES
    return {
        "ociVersionMin": "1.0.0", "ociVersionMax": SPEC_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                         "bind", "rbind", "mode", "size"],
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": sorted((c for c, n in CAPABILITIES.items() if n <= last_cap()),
                                   key=CAPABILITIES.get),
            "cgroup": {"v1": True, "v2": False, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True,
                        "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                        "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
                                      "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ",
                                      "SCMP_CMP_NE"],
                        "archs": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {"run.sandbox.runtime": "sandbox-oci"},
    }
