"""The plan is the program: one ordered tuple of frozen step values.

`LaunchPlan.steps` derives this tuple purely from the plan's fields; it is
the only place the order of a launch is written. ``describe()`` (the
``--dry-run`` text), ``to_dict()`` (``--dry-run --json``), ``digest()`` and
the executor's wire format (`sandbox.runtime.wire`) all walk it.

Every step is a `Step`: a ``kind`` (a short fixed name, also the step name
every error of that step carries), its arguments as fields, a one-line
``describe()`` and a ``to_dict()`` (``{"kind": ..., **arguments}``).
Commentary (``why``) is shown but never hashed.

A step this host cannot perform is never in the tuple: the SELinux exec
label appears only when the plan carries ``exec_label`` (set where SELinux
is active); Landlock only with a non-zero ABI and rules.

The order of the security steps is the property (DESIGN §2, child.py):

    ... mounts, pivot_root, hostname, rlimits, close fds, spawn payload,
    setsid, chdir, capabilities (bounding, inheritable, ambient), ids
    (then permitted/effective), no_new_privs, Landlock, exec label,
    seccomp (last: it may forbid what the steps before it need), execve.

New step kinds (the OCI ones below: sysctls, joining namespaces by path,
oom_score_adj, root propagation in C and C2; controlling terminal, umask,
early seccomp, exact capability sets, additional gids in the executor) are
added as new classes here, one entry in `STEP_KINDS`, and, for the
payload's, one opcode in the wire format; the executor
refuses a kind it does not know, so an old executor never silently skips a
new protection.
"""

from __future__ import annotations

import os
from typing import NamedTuple

#: Bumped whenever the meaning or order of steps changes; part of the
#: digest, the JSON and the wire header.
PLAN_VERSION = 2


def _mount_describe(op: str, target: str, source, options: str, why: str) -> str:
    src = "" if source is None else (
        f" <- {source!r}" if op == "file" and len(source) < 40
        else " <- (contents)" if op == "file" else f" <- {source}")
    opts = f" [{options}]" if options else ""
    w = f"  # {why}" if why else ""
    return f"{op:<10} {target}{src}{opts}{w}"


class JoinCgroups(NamedTuple):
    """Join the sandbox's cgroups (before unshare, so the new cgroup
    namespace is rooted at the sandbox's own cgroup)."""

    procs: tuple[str, ...]
    writes: tuple[tuple[str, str], ...]
    kind: str = "cgroup"

    def describe(self) -> str:
        return "cgroup " + ", ".join(f"{os.path.basename(f)}={v}" for f, v in self.writes)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "procs": list(self.procs),
                "writes": [list(w) for w in self.writes]}


class Unshare(NamedTuple):
    """New namespaces, all at once; ``shared`` stay the host's."""

    namespaces: tuple[str, ...]
    shared: tuple[str, ...] = ()
    kind: str = "unshare"

    def describe(self) -> str:
        return "unshare " + ", ".join(self.namespaces) + (
            f"; SHARED with host: {', '.join(self.shared)}" if self.shared else "")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "namespaces": list(self.namespaces),
                "shared": list(self.shared)}


class IdMaps(NamedTuple):
    """The supervisor writes the id maps while the child waits."""

    uid_map: str
    gid_map: str
    deny_setgroups: bool
    kind: str = "idmap"

    def describe(self) -> str:
        return (f"uid_map {self.uid_map.strip()!r}, gid_map {self.gid_map.strip()!r}"
                + (", setgroups deny" if self.deny_setgroups else ""))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "uid_map": self.uid_map.strip(),
                "gid_map": self.gid_map.strip(), "deny_setgroups": self.deny_setgroups}


class Network(NamedTuple):
    """``none``: a new network namespace with loopback up; ``bridge``: the
    supervisor attaches a veth; ``host``: the host's."""

    mode: str
    loopback: bool
    kind: str = "network"

    def describe(self) -> str:
        return f"network {self.mode}" + (" (loopback up)" if self.mode == "none" else "")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mode": self.mode, "loopback": self.loopback}


class RuntimeTmpfs(NamedTuple):
    """Private propagation for the whole tree, then the runtime folder."""

    base: str
    kind: str = "base"

    def describe(self) -> str:
        return f"tmpfs at {self.base} (private mount propagation first)"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "base": self.base}


class Mount(NamedTuple):
    """One file-system step (a `plan.MountOp` as a step): targets are paths
    inside the sandbox, resolved component by component with O_NOFOLLOW."""

    op: str
    target: str
    source: str | None = None
    options: str = ""
    why: str = ""
    kind: str = "mount"

    def describe(self) -> str:
        return _mount_describe(self.op, self.target, self.source, self.options, self.why)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "op": self.op, "target": self.target,
                "source": self.source, "options": self.options, "why": self.why}


class PivotRoot(NamedTuple):
    new_root: str
    kind: str = "pivot_root"

    def describe(self) -> str:
        return f"pivot_root into {self.new_root}; detach the old root"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "new_root": self.new_root}


class Hostname(NamedTuple):
    hostname: str
    kind: str = "hostname"

    def describe(self) -> str:
        return f"hostname {self.hostname}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "hostname": self.hostname}


class Rlimit(NamedTuple):
    resource: str          # RLIMIT_* name
    soft: int
    hard: int
    kind: str = "rlimit"

    def describe(self) -> str:
        return f"setrlimit {self.resource} {self.soft}/{self.hard}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "resource": self.resource, "soft": self.soft,
                "hard": self.hard}


class CloseFds(NamedTuple):
    """Every fd above 2 but the runtime's own close-on-exec pipes."""

    kind: str = "close_fds"

    def describe(self) -> str:
        return "close every fd above 2"

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class Setsid(NamedTuple):
    """New session: TIOCSTI cannot reach the caller's terminal."""

    kind: str = "setsid"

    def describe(self) -> str:
        return "new session (setsid)"

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class Chdir(NamedTuple):
    workdir: str
    kind: str = "chdir"

    def describe(self) -> str:
        return f"chdir {self.workdir}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "workdir": self.workdir}


class Capabilities(NamedTuple):
    """Bounding set reduced to ``keep``; inheritable and ambient cleared.
    Permitted and effective follow the id change (`SetIds`)."""

    keep: tuple[str, ...]
    kind: str = "capabilities"

    def describe(self) -> str:
        return ("capabilities (bounding, permitted, effective): "
                + (", ".join(self.keep) or "none") + "; inheritable and ambient: none")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "keep": list(self.keep)}


class SetIds(NamedTuple):
    """setgroups (unless denied), setresgid, setresuid; then permitted and
    effective set to the kept capabilities (uid 0) or emptied."""

    uid: int
    gid: int
    setgroups: bool
    kind: str = "ids"

    def describe(self) -> str:
        return f"uid {self.uid}, gid {self.gid}" + ("" if self.setgroups else
                                                    " (supplementary groups: denied)")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "uid": self.uid, "gid": self.gid,
                "setgroups": self.setgroups}


class NoNewPrivs(NamedTuple):
    kind: str = "no_new_privs"

    def describe(self) -> str:
        return "no_new_privs"

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class Landlock(NamedTuple):
    """Restrict the file system to ``rules`` (`_landlock.LandlockRule`)."""

    abi: int
    rules: tuple
    kind: str = "landlock"

    def describe(self) -> str:
        return f"landlock ABI {self.abi}: {len(self.rules)} rules"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "abi": self.abi,
                "rules": [_jsonable(r) for r in self.rules]}


class ExecLabel(NamedTuple):
    """SELinux context the execve runs in (only where SELinux is active)."""

    context: str
    kind: str = "exec_label"

    def describe(self) -> str:
        return f"exec label {self.context}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "context": self.context}


class Seccomp(NamedTuple):
    """Load the pre-compiled BPF program (a `plan.SeccompPlan`)."""

    filter: object
    kind: str = "seccomp"

    def describe(self) -> str:
        f = self.filter
        return (f"seccomp {os.path.basename(f.source)} ({f.instructions} BPF instructions, "
                f"{'+'.join(f.architectures)}, default {f.default_action})")

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.filter.to_dict()}


class Execve(NamedTuple):
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    kind: str = "execve"

    def describe(self) -> str:
        return "execve " + " ".join(self.argv)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "argv": list(self.argv), "env": dict(self.env)}


class JoinNamespaces(NamedTuple):
    """`enter`: setns(2) each open namespace fd, user first. ``fds``:
    (fd, CLONE_NEW* flag) pairs, open in the calling process."""

    fds: tuple[tuple[int, int], ...]
    kind: str = "setns"

    def describe(self) -> str:
        return f"setns into {len(self.fds)} namespaces"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "count": len(self.fds)}


class ChrootFd(NamedTuple):
    """`enter`: fchdir to the sandbox's root (an open fd), chroot there."""

    fd: int
    kind: str = "chroot"

    def describe(self) -> str:
        return "chroot into the sandbox's root"

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class ForkWait(NamedTuple):
    """`enter`: fork (a joined pid namespace applies to children only); the
    parent forwards signals and exits with the child's status."""

    kind: str = "fork"

    def describe(self) -> str:
        return "fork; the parent waits"

    def to_dict(self) -> dict:
        return {"kind": self.kind}


# ---- OCI steps (sandbox.oci); a plan that does not set their fields has none

class OomScoreAdj(NamedTuple):
    """OCI process.oomScoreAdj, written by C before unshare (while it still
    holds the caller's privilege to lower it)."""

    value: int
    kind: str = "oom_score_adj"

    def describe(self) -> str:
        return f"oom_score_adj {self.value}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value}


class JoinNamespacePath(NamedTuple):
    """OCI linux.namespaces[].path: C setns(2)es into it before unsharing
    the new ones (the user namespace first)."""

    namespace: str
    path: str
    kind: str = "join_namespace"

    def describe(self) -> str:
        return f"setns {self.namespace} {self.path}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "namespace": self.namespace, "path": self.path}


class Sysctl(NamedTuple):
    """OCI linux.sysctl (namespaced keys only), written by PID 1 before the
    root is built."""

    name: str
    value: str
    kind: str = "sysctl"

    def describe(self) -> str:
        return f"sysctl {self.name}={self.value}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "value": self.value}


class RootPropagation(NamedTuple):
    """OCI linux.rootfsPropagation of the new root, after pivot_root."""

    mode: str
    kind: str = "root_propagation"

    def describe(self) -> str:
        return f"root propagation {self.mode}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mode": self.mode}


class ControllingTty(NamedTuple):
    """OCI process.terminal: fd 0 (the console's slave) becomes the new
    session's controlling terminal (TIOCSCTTY), right after setsid."""

    kind: str = "controlling_tty"

    def describe(self) -> str:
        return "controlling terminal: fd 0 (TIOCSCTTY)"

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class Umask(NamedTuple):
    """OCI process.user.umask."""

    mask: int
    kind: str = "umask"

    def describe(self) -> str:
        return f"umask {self.mask:04o}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "mask": self.mask}


class SeccompEarly(NamedTuple):
    """The filter loaded before the capability drop: without no_new_privs
    the kernel loads a filter only for a holder of CAP_SYS_ADMIN, so it
    goes while the capabilities are still there (as runc does); it then
    also governs the capability and id changes after it."""

    filter: object
    kind: str = "seccomp_early"

    def describe(self) -> str:
        f = self.filter
        return (f"seccomp {os.path.basename(f.source)} ({f.instructions} BPF instructions, "
                f"{'+'.join(f.architectures)}, default {f.default_action}), before the "
                "capability drop (no_new_privs is off)")

    def to_dict(self) -> dict:
        return {"kind": self.kind, **self.filter.to_dict()}


class CapabilitySets(NamedTuple):
    """OCI process.capabilities, the five sets applied exactly (instead of
    `Capabilities`): the bounding set now, ambient cleared and
    PR_SET_KEEPCAPS so the id change keeps the permitted set; `SetIds`
    then sets permitted, effective (within permitted) and inheritable
    exactly and raises ambient only where permitted and inheritable."""

    bounding: tuple[str, ...]
    effective: tuple[str, ...]
    permitted: tuple[str, ...]
    inheritable: tuple[str, ...]
    ambient: tuple[str, ...]
    kind: str = "capability_sets"

    def describe(self) -> str:
        return "capabilities " + "; ".join(
            f"{n}: {', '.join(getattr(self, n)) or 'none'}"
            for n in ("bounding", "effective", "permitted", "inheritable", "ambient"))

    def to_dict(self) -> dict:
        return {"kind": self.kind, **{n: list(getattr(self, n)) for n in (
            "bounding", "effective", "permitted", "inheritable", "ambient")}}


class Groups(NamedTuple):
    """OCI process.user.additionalGids: setgroups(2) to exactly these, just
    before the ids step (which then leaves them)."""

    gids: tuple[int, ...]
    kind: str = "groups"

    def describe(self) -> str:
        return "supplementary groups " + ", ".join(map(str, self.gids))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "gids": list(self.gids)}


#: Every step kind, by name (tests and the wire format check against it).
STEP_KINDS = {c._field_defaults["kind"]: c for c in (
    JoinCgroups, Unshare, IdMaps, Network, RuntimeTmpfs, Mount, PivotRoot, Hostname,
    Rlimit, CloseFds, Setsid, Chdir, Capabilities, SetIds, NoNewPrivs, Landlock,
    ExecLabel, Seccomp, Execve, JoinNamespaces, ChrootFd, ForkWait,
    OomScoreAdj, JoinNamespacePath, Sysctl, RootPropagation, ControllingTty, Umask,
    SeccompEarly, CapabilitySets, Groups)}

#: The payload's confinement, in the only order it may run (`enter` runs
#: the same ones after setns).
CONFINEMENT_KINDS = ("setsid", "controlling_tty", "umask", "chdir", "seccomp_early",
                     "capabilities", "capability_sets", "groups", "ids", "no_new_privs",
                     "landlock", "exec_label", "seccomp", "execve")


def build_steps(plan) -> tuple:
    """The plan's steps, in order; pure (reads only ``plan``'s fields)."""
    s: list = []
    if plan.cgroup is not None:
        s.append(JoinCgroups(tuple(plan.cgroup.procs), tuple(plan.cgroup.writes)))
    oom = getattr(plan, "oom_score_adj", None)
    if oom is not None:
        s.append(OomScoreAdj(oom))
    join = tuple(getattr(plan, "join_namespaces", ()))
    # the user namespace first: it grants what the other joins need
    s.extend(JoinNamespacePath(ns, path) for ns, path in sorted(join, key=lambda j: j[0] != "user"))
    s.append(Unshare(tuple(plan.namespaces), tuple(plan.shared_namespaces)))
    if plan.idmap is not None:
        s.append(IdMaps(plan.idmap.uid_map, plan.idmap.gid_map, plan.idmap.deny_setgroups))
    s.append(Network(plan.network, "net" in plan.namespaces))
    s.extend(Sysctl(n, v) for n, v in getattr(plan, "sysctls", ()))
    s.append(RuntimeTmpfs(plan.base))
    s.extend(Mount(m.op, m.target, m.source, m.options, m.why) for m in plan.mounts)
    s.append(PivotRoot(os.path.join(plan.base, "root")))
    if getattr(plan, "root_propagation", ""):
        s.append(RootPropagation(plan.root_propagation))
    if "uts" in plan.namespaces or (plan.hostname and any(ns == "uts" for ns, _ in join)):
        s.append(Hostname(plan.hostname))
    s.extend(Rlimit(n, soft, hard) for n, soft, hard in plan.rlimits)
    s.append(CloseFds())
    s.extend(build_confinement(plan))
    return tuple(s)


def build_confinement(plan) -> tuple:
    """The payload's own steps (setsid .. execve), shared by `run` and
    `enter`."""
    s: list = [Setsid()]
    if getattr(plan, "controlling_tty", False):
        s.append(ControllingTty())
    umask = getattr(plan, "umask", None)
    if umask is not None:
        s.append(Umask(umask))
    s.append(Chdir(plan.workdir))
    capsets = tuple(getattr(plan, "capability_sets", ()))
    # OCI's exact capability sets follow runc: without no_new_privs the
    # filter goes before the drop (it needs CAP_SYS_ADMIN then); a
    # profile's plan keeps seccomp last, failing closed instead
    early = capsets and plan.seccomp is not None and not plan.no_new_privs
    if early:
        s.append(SeccompEarly(plan.seccomp))
    if capsets:
        s.append(CapabilitySets(*(tuple(x) for x in capsets)))
    else:
        s.append(Capabilities(tuple(plan.capabilities)))
    gids = tuple(getattr(plan, "additional_gids", ()))
    if gids:
        s.append(Groups(gids))
    s.append(SetIds(plan.uid, plan.gid,
                    plan.idmap is None or not plan.idmap.deny_setgroups))
    if plan.no_new_privs:
        s.append(NoNewPrivs())
    if plan.landlock_abi and plan.landlock:
        s.append(Landlock(plan.landlock_abi, tuple(plan.landlock)))
    if getattr(plan, "exec_label", None):
        s.append(ExecLabel(plan.exec_label))
    if plan.seccomp is not None and not early:
        s.append(Seccomp(plan.seccomp))
    s.append(Execve(tuple(plan.argv), tuple(plan.env)))
    return tuple(s)


def _jsonable(v):
    # A landlock rule: a LandlockRule (a NamedTuple with to_dict, checked
    # first: it is a tuple too) or a plain (path, access) tuple.
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if hasattr(v, "_asdict"):
        return {k: _jsonable(x) for k, x in v._asdict().items()}
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
