"""One OCI container: its state folder under ``--root`` and its lifecycle.

State folder ``ROOT/ID/`` (mode 0700, as runc's ``/run/runc/ID``):

  state.json   the runtime-spec state plus our own keys (written atomically)
  exec.fifo    `start` writes one byte here; the supervisor waits on it
  run/         the launch's runtime folder (`LaunchPlan.base`)
  seccomp.json the config's filter, as compiled

The lifecycle, over the runtime's read-back handshake (`spawn.launch`):

  1. `create` (the CLI) makes the folder, translates config.json into a
     plan, and forks a detached supervisor (double fork, new session).
  2. The supervisor runs `launch`. The child builds the sandbox; the
     payload stops fully confined just before execve. In ``on_confined``
     the supervisor records ``created`` with the payload's host pid, runs
     the createRuntime/prestart/createContainer hooks, tells `create` to
     return, and blocks on ``exec.fifo`` (or the payload's death).
  3. `start` writes the fifo; the payload execs; ``on_started`` records
     ``running`` and runs the poststart hooks; `start` returns once it
     sees ``running`` (or ``stopped``).
  4. When the payload ends, `launch` tears the sandbox down (cgroups, the
     runtime folder) and the supervisor records ``stopped`` and exits.
  5. `delete` runs the poststop hooks and removes the folder.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from ..errors import NotFound, SandboxError, SetupError, UsageError
from ..runtime import state as rst

ID_RE = re.compile(r"^[\w+.-]{1,1024}$")
OCI_STATES = ("creating", "created", "running", "stopped")


class ContainerError(SandboxError):
    """A lifecycle command does not fit the container's state."""


def check_id(cid: str) -> None:
    if not ID_RE.match(cid) or cid in (".", ".."):
        raise UsageError(f"invalid container id {cid!r}: use letters, digits, '_', '+', '-', '.'")


def folder(root: str, cid: str) -> str:
    check_id(cid)
    return os.path.join(root, cid)


def write_state(root: str, cid: str, rec: dict) -> None:
    d = os.path.join(root, cid)
    tmp = os.path.join(d, ".state.json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, os.path.join(d, "state.json"))


def load(root: str, cid: str) -> dict:
    d = folder(root, cid)
    try:
        with open(os.path.join(d, "state.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        raise NotFound(f"container {cid} does not exist",
                       hint="see 'sandbox-oci list'") from None
    except ValueError:
        raise SetupError(f"container {cid}: its state file is damaged", step="state") from None


def status(rec: dict) -> str:
    """The OCI status as the kernel shows it now: a created or running
    container whose payload (same pid and start time) is gone is stopped."""
    s = rec.get("status", "creating")
    if s in ("created", "running") and not rst.same_process(
            {"pid": rec.get("pid"), "start_time": rec.get("pid_start")}):
        return "stopped"
    if s == "creating" and not rst.same_process(rec.get("supervisor")):
        return "stopped"
    return s


def oci_state(rec: dict) -> dict:
    """The runtime-spec state JSON."""
    s = status(rec)
    out = {"ociVersion": rec["ociVersion"], "id": rec["id"], "status": s,
           "pid": rec.get("pid") or 0 if s != "stopped" else 0, "bundle": rec["bundle"]}
    if rec.get("annotations"):
        out["annotations"] = rec["annotations"]
    return out


def ensure_cgroup_parents(cg) -> None:
    """Create the parents of the container's cgroup folders (cgroupsPath may
    nest, e.g. ``/k8s.io/ID``); `spawn.launch` creates the leaves. A new
    cpuset folder starts with no cpus or mems: copy its parent's."""
    if cg is None:
        return
    for d in cg.dirs:
        parts = d.split("/")
        for i in range(5, len(parts)):          # /sys/fs/cgroup/<ctl>/...
            p = "/".join(parts[:i])
            if not os.path.isdir(p):
                os.mkdir(p, 0o755)
                if "/cpuset/" in d:
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        with open(os.path.join(os.path.dirname(p), f)) as src:
                            v = src.read().strip()
                        with open(os.path.join(p, f), "w") as dst:
                            dst.write(v)


# ------------------------------------------------------------------ audit

def audit(kind: str, data: dict, log=None) -> None:
    """One record in the sandbox audit chain (`sandbox.audit.record_event`,
    the folders of `sandbox.paths.Paths.resolve`, so ``SANDBOX_ROOT`` moves
    it). A refusal that cannot be recorded is logged, not raised: the
    refusal itself must still reach the caller."""
    from ..audit import record_event
    from ..paths import Paths
    try:
        record_event(Paths.resolve(), kind, data)
    except Exception as e:  # noqa: BLE001
        if kind != "refusal":
            raise
        if log is not None:
            log("warning", f"the refusal was not recorded in the audit log: {e}")


def launch_record(rec: dict, plan, effective: dict | None) -> dict:
    """The launch record's data, in the shape `sandbox.audit.report` reads."""
    return {
        "sandbox_id": plan.sandbox_id, "name": plan.name, "runtime": "sandbox-oci",
        "user": {"uid": os.getuid()}, "command": list(plan.argv),
        "profile": {"name": "oci", "digest": plan.profile_digest, "source": "config.json",
                    "unconfined": plan.seccomp is None},
        "oci": {"bundle": rec["bundle"], "config_digest": rec["config_digest"],
                "policies": rec.get("policies") or [], "pid": rec.get("pid")},
        "plan_digest": plan.digest(),
        "root": {"kind": "bundle", "path": plan.mounts[0].source},
        "image": None, "insecure_options": [],
        "namespaces": {n: n in plan.namespaces for n in
                       ("user", "mount", "pid", "net", "uts", "ipc", "cgroup")},
        "capabilities": list(plan.capabilities),
        "seccomp": {"enabled": plan.seccomp is not None,
                    "default_action": plan.seccomp.default_action if plan.seccomp else None,
                    "digest": plan.seccomp.digest if plan.seccomp else None},
        "no_new_privs": plan.no_new_privs,
        "read_only_root": any(m.op == "remount-ro" and m.target == "/" for m in plan.mounts),
        "volumes": [{"source": m.source, "target": m.target, "mode":
                     "ro" if "ro" in m.options.split(",") else "rw", "label": None}
                    for m in plan.mounts if m.op == "bind" and m.why.startswith("mounts[")],
        "network": {"mode": plan.network, "shared_with_host": plan.network == "host"},
        "limits": {"memory": None, "pids": None, "nofile": None},
        "label": None, "landlock": {"enabled": False, "abi": None},
        "missing": [], "effective": effective,
    }


# ------------------------------------------------------------------ hooks

def run_hooks(hooks: list, state: dict, which: str, *, enter_pid: int | None = None) -> None:
    """Run each hook with the state JSON on stdin; `SetupError` naming the
    first that fails or outlives its timeout. ``enter_pid``: run it in
    that process's mount namespace (createContainer, startContainer)."""
    data = json.dumps(state).encode()
    for i, h in enumerate(hooks or []):
        path = h.get("path")
        args = h.get("args") or [path]
        env = dict(e.split("=", 1) for e in (h.get("env") or []) if "=" in e)
        timeout = h.get("timeout")
        pre = None
        if enter_pid is not None:
            def pre(pid=enter_pid):
                from ..runtime.child import apply_join_namespaces
                apply_join_namespaces((("mount", f"/proc/{pid}/ns/mnt"),))
        try:
            p = subprocess.run([path] + list(args[1:]), executable=path, input=data, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=timeout if timeout and timeout > 0 else None,
                               preexec_fn=pre)
        except subprocess.TimeoutExpired:
            raise SetupError(f"hooks.{which}[{i}] {path}: timed out after {timeout} s",
                             step=f"hook {which}") from None
        except OSError as e:
            raise SetupError(f"hooks.{which}[{i}] {path}: {e.strerror}",
                             step=f"hook {which}") from None
        if p.returncode != 0:
            msg = p.stderr.decode(errors="replace").strip().splitlines()
            raise SetupError(f"hooks.{which}[{i}] {path} exited {p.returncode}"
                             + (f": {msg[-1]}" if msg else ""), step=f"hook {which}")


# ------------------------------------------------------------- supervisor

def supervise(root: str, cid: str, plan, hooks: dict, report_w: int, log) -> None:
    """Body of the detached supervisor (never returns). Reports ``ok PID``
    or ``err STATUS JSON-LINES`` on ``report_w``."""
    from ..runtime.spawn import launch
    d = os.path.join(root, cid)
    rec = json.load(open(os.path.join(d, "state.json")))
    rec["supervisor"] = rst.proc_ref(os.getpid())
    write_state(root, cid, rec)
    fifo = os.open(os.path.join(d, "exec.fifo"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    reported = False

    def report(line: str):
        nonlocal reported
        if not reported:
            reported = True
            try:
                os.write(report_w, (line + "\n").encode())
            except OSError:
                pass
            os.close(report_w)

    def on_forked():
        # the payload has the caller's stdio; the supervisor keeps none of it
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

    def on_confined(eff, ppid):
        if not ppid:
            raise SetupError("the payload's pid could not be read", step="create")
        rec.update(status="created", pid=ppid, pid_start=rst.start_time(ppid),
                   effective=eff, created=time.time())
        write_state(root, cid, rec)
        audit("launch", launch_record(rec, plan, eff), log)
        from ..runtime.supervise import confinement
        rst.write_json(Path(d) / "confine.json", confinement(plan))
        st = oci_state(rec)
        run_hooks(hooks.get("prestart"), st, "prestart")
        run_hooks(hooks.get("createRuntime"), st, "createRuntime")
        run_hooks(hooks.get("createContainer"), st, "createContainer", enter_pid=ppid)
        report(f"ok {ppid}")
        pidfd = _pidfd(ppid)
        poll = select.poll()
        poll.register(fifo, select.POLLIN)
        if pidfd is not None:
            poll.register(pidfd, select.POLLIN)
        while True:
            ev = poll.poll(None if pidfd is not None else 200)
            if any(fd == fifo and e & select.POLLIN for fd, e in ev):
                break
            if any(fd == pidfd for fd, _ in ev) or not rst.same_process(
                    {"pid": ppid, "start_time": rec["pid_start"]}):
                raise SetupError("the container was killed before start", step="start")
        os.read(fifo, 16)
        run_hooks(hooks.get("startContainer"), oci_state(rec), "startContainer", enter_pid=ppid)

    def on_started(eff, ppid):
        rec.update(status="running", started=time.time())
        write_state(root, cid, rec)
        try:
            run_hooks(hooks.get("poststart"), oci_state(rec), "poststart")
        except SandboxError as e:
            log("warning", str(e))

    status = 0
    try:
        res = launch(plan, on_forked=on_forked, on_confined=on_confined, on_started=on_started)
        rec.update(status="stopped", exit_status=res.status, leftovers=list(res.leftovers))
        try:
            audit("exit", {"sandbox_id": cid, "status": res.status, "signal": res.signal,
                           "duration_ms": round(res.duration_ms, 1),
                           "leftovers": list(res.leftovers)}, log)
        except Exception as e:  # noqa: BLE001 - the container has ended either way
            log("error", f"the exit was not recorded in the audit log: {e}")
    except SandboxError as e:
        status = e.status
        rec.update(status="stopped", error=e.lines())
        report("err " + json.dumps({"lines": e.lines(), "status": e.status}))
    except BaseException as e:  # noqa: BLE001 - reported, never a traceback
        status = 1
        rec.update(status="stopped", error=[f"{type(e).__name__}: {e}"])
        report("err " + json.dumps({"lines": [f"sandbox-oci supervisor: {e}"], "status": 1}))
    rec["pid"] = 0
    try:
        write_state(root, cid, rec)
    except OSError:
        pass                        # deleted with --force meanwhile
    os._exit(status)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def signal_number(text: str | None) -> int:
    if text is None or text == "":
        return signal.SIGTERM
    t = text.upper()
    if t.isdigit():
        return int(t)
    if not t.startswith("SIG"):
        t = "SIG" + t
    try:
        return int(getattr(signal.Signals, t))
    except AttributeError:
        raise UsageError(f"unknown signal {text!r}") from None


def container_pids(rec: dict) -> list[int]:
    """Every process in the container's pid namespace (host pids)."""
    pid = rec.get("pid")
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    if ns == os.readlink("/proc/self/ns/pid"):
        return [pid]
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if os.readlink(f"/proc/{e}/ns/pid") == ns:
                    out.append(int(e))
            except OSError:
                pass
    return sorted(out)


def wait_gone(rec: dict, timeout: float = 5.0) -> bool:
    """Wait for the supervisor (and so the teardown) to finish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not rst.same_process(rec.get("supervisor")):
            return True
        time.sleep(0.01)
    return False
