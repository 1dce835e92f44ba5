"""Describe, then do: the profile and the run spec become a `LaunchPlan`.

`build_plan` is pure with respect to the kernel: it reads the host's file
tree (to mirror ``/bin -> usr/bin`` links and pick ``/etc`` entries) but
changes nothing. The plan is what ``--dry-run`` prints, what tests assert
on, and what the audit record hashes; its `steps`
(`sandbox.runtime.steps`) are the one ordered program that ``describe()``,
``to_dict()``, ``digest()`` and the child walk.

Mount steps name targets as paths inside the sandbox; before ``pivot_root``
the child resolves each one under the new root without following symlinks.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from .._hash import sha256

from .cgroups import CgroupPlan
from .idmap import IdMap
from .steps import PLAN_VERSION, _mount_describe, build_steps

#: Host system folders the host view binds read-only (or mirrors as links).
HOST_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
#: /etc entries the host view shows (read-only): no shadow, gshadow, ssh host
#: keys, sudoers, machine-id or credentials of any kind.
HOST_ETC_ALLOW = (
    "passwd", "group", "host.conf", "nsswitch.conf", "resolv.conf", "gai.conf",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone",
    "os-release", "debian_version", "lsb-release", "alternatives", "ssl",
    "ca-certificates", "ca-certificates.conf", "mime.types", "protocols",
    "services", "networks", "ethertypes", "rpc", "profile", "profile.d",
    "bash.bashrc", "inputrc", "environment", "shells", "locale.alias",
    "locale.conf", "default", "magic", "magic.mime", "terminfo", "python3",
    "python3.11", "perl", "mailcap", "manpath.config", "issue",
)
#: Device nodes bound from the host into the sandbox's fresh /dev.
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")

#: seconds between the SIGTERM of a timed-out sandbox and its SIGKILL
#: (Docker's stop timeout is 10 s; a grader wants the slot back sooner)
TIMEOUT_GRACE = 2.0
#: the exit status of a timed-out sandbox, as timeout(1)'s
TIMEOUT_STATUS = 124

RLIMITS = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
           "fsize": "RLIMIT_FSIZE", "core": "RLIMIT_CORE"}


class MountOp(NamedTuple):
    """One file-system step of the child's setup.

    ``op`` is one of: ``tmpfs``, ``bind``, ``overlay``, ``proc``, ``sysfs``,
    ``devpts``, ``mkdir``, ``symlink``, ``file``, ``mask``, ``readonly``,
    ``remount-ro``. ``target`` is the path inside the sandbox. ``source``:
    the host path (bind), the link text (symlink), the contents (file), or
    the ``:``-joined lower folders (overlay). ``options``: mount data or
    ``ro``/``rw``/``rec``, comma separated. ``fd``: for a ``bind`` or a
    one-folder ``overlay``, an ``O_PATH`` fd of ``source`` opened once by
    the launch stage (without following symbolic links, issue 13 item 9):
    the runtime mounts that very fd and never looks ``source`` up again.
    Not part of the plan's JSON or digest (a number valid in one process).
    """

    op: str
    target: str
    source: str | None = None
    options: str = ""
    why: str = ""
    fd: int | None = None

    def describe(self) -> str:
        return _mount_describe(self.op, self.target, self.source, self.options, self.why)


class SeccompPlan(NamedTuple):
    """The compiled filter (loaded last, just before execve)."""

    bpf: bytes
    digest: str
    source: str
    default_action: str
    architectures: tuple[str, ...]
    instructions: int

    def __repr__(self) -> str:      # without the program's bytes
        return (f"SeccompPlan(digest={self.digest!r}, source={self.source!r}, "
                f"default_action={self.default_action!r}, "
                f"architectures={self.architectures!r}, instructions={self.instructions!r})")

    def to_dict(self) -> dict:
        return {"digest": self.digest, "source": self.source,
                "default_action": self.default_action,
                "architectures": list(self.architectures),
                "instructions": self.instructions}


class LaunchPlan(NamedTuple):
    """Everything the runtime will do for one sandbox, in order."""

    sandbox_id: str
    name: str | None
    profile: str
    profile_digest: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    workdir: str
    hostname: str
    uid: int
    gid: int
    namespaces: tuple[str, ...]            # new ones, in unshare order
    shared_namespaces: tuple[str, ...]     # shared with the host
    idmap: IdMap | None
    base: str                              # runtime folder; a tmpfs is mounted here
    root_kind: str
    mounts: tuple[MountOp, ...]
    capabilities: tuple[str, ...]
    no_new_privs: bool
    rlimits: tuple[tuple[str, int, int], ...]
    cgroup: CgroupPlan | None
    seccomp: SeccompPlan | None
    landlock: tuple = ()                    # rules: (path, access) as built by labels
    landlock_abi: int = 0
    label: str | None = None
    network: str = "none"
    missing: tuple[str, ...] = ()           # optional protections the host lacks
    insecure_options: tuple[str, ...] = ()
    #: bridge networking, built by sandbox.net (None for none/host)
    net: object = None
    #: wall-clock seconds before the supervisor stops the sandbox (TERM to
    #: its PID 1, KILL after `TIMEOUT_GRACE`); None: no limit (issue 15)
    timeout: float | None = None
    #: ``(requested, applied instead)`` for each limit the host could not
    #: apply as asked (rootless on cgroup v1: rlimits instead of cgroups)
    not_applied: tuple[tuple[str, str], ...] = ()

    #: SELinux context execve runs in; set only where SELinux is active
    #: (`labels.selinux.build_selinux_plan(...).exec_context`), so the
    #: step exists only where the host can perform it.
    exec_label: str | None = None
    # --- steps the OCI runtime (sandbox.oci) needs; the defaults change nothing
    #: (name, value) namespaced sysctls, written in PID 1 before the root is built
    sysctls: tuple[tuple[str, str], ...] = ()
    #: (namespace, path) to setns into before unsharing the new ones
    join_namespaces: tuple[tuple[str, str], ...] = ()
    #: supplementary groups of the payload (setgroups), instead of none
    additional_gids: tuple[int, ...] = ()
    #: the payload's umask (None: inherited)
    umask: int | None = None
    #: /proc/self/oom_score_adj, written before unshare (None: inherited)
    oom_score_adj: int | None = None
    #: mount propagation of the new root after pivot_root ("": private)
    root_propagation: str = ""
    #: fd 0 is a terminal the payload makes its controlling tty (TIOCSCTTY)
    controlling_tty: bool = False
    #: (bounding, effective, permitted, inheritable, ambient) name tuples,
    #: applied exactly instead of `capabilities` (() : `capabilities` rules)
    capability_sets: tuple = ()

    @property
    def root(self) -> str:
        return os.path.join(self.base, "root")

    @property
    def steps(self) -> tuple:
        """The ordered step values the launch performs (`steps.build_steps`)."""
        return build_steps(self)

    def to_dict(self) -> dict:
        steps = self.steps
        by_kind: dict = {}
        for s in steps:
            by_kind.setdefault(s.kind, []).append(s)
        caps = by_kind.get("capabilities")
        sc = by_kind.get("seccomp")
        ll = by_kind.get("landlock")
        d = {
            "plan_version": PLAN_VERSION,
            "sandbox_id": self.sandbox_id, "name": self.name,
            "profile": {"name": self.profile, "digest": self.profile_digest},
            "argv": list(self.argv), "env": dict(self.env), "workdir": self.workdir,
            "hostname": self.hostname, "user": {"uid": self.uid, "gid": self.gid},
            "namespaces": {"new": list(self.namespaces), "host": list(self.shared_namespaces)},
            "idmap": self.idmap.to_dict() if self.idmap else None,
            "root": {"kind": self.root_kind, "base": self.base},
            # summaries of the steps below, for readers that want one key
            "mounts": [{k: v for k, v in s.to_dict().items() if k != "kind"}
                       for s in by_kind.get("mount", ())],
            "capabilities": list(caps[0].keep) if caps else [],
            "no_new_privs": "no_new_privs" in by_kind,
            "rlimits": [[s.resource, s.soft, s.hard] for s in by_kind.get("rlimit", ())],
            "cgroup": self.cgroup.to_dict() if self.cgroup else None,
            "seccomp": sc[0].filter.to_dict() if sc else None,
            "landlock": {"abi": ll[0].abi, "rules": ll[0].to_dict()["rules"]} if ll else None,
            "label": self.label, "network": self.network,
            "missing": list(self.missing), "insecure_options": list(self.insecure_options),
            "net": self.net.to_dict() if self.net is not None else None,
            "steps": [s.to_dict() for s in steps],
        }
        if self.timeout is not None:     # absent when unset: digests unchanged
            d["timeout"] = {"seconds": self.timeout, "grace": TIMEOUT_GRACE}
        if self.not_applied:
            d["not_applied"] = [list(x) for x in self.not_applied]
        return d

    def digest(self) -> str:
        """``sha256:`` of the plan's canonical JSON: `PLAN_VERSION`, the
        profile, the steps and what the audit needs beside them, minus what
        differs per launch (the id, the runtime folder, the MCS level and
        commentary)."""
        steps = []
        for s in self.steps:
            d = s.to_dict()
            d.pop("why", None)      # commentary, which may name the per-launch level
            steps.append(d)
        label = ":".join(self.label.split(":")[:3]) if self.label else None
        d = {"plan_version": PLAN_VERSION,
             "profile": {"name": self.profile, "digest": self.profile_digest},
             "root_kind": self.root_kind, "steps": steps, "label": label,
             "network": self.network, "missing": list(self.missing),
             "insecure_options": list(self.insecure_options),
             "net": self.net.to_dict() if self.net is not None else None}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        # per-launch names: the runtime folder and cgroup folders carry the id
        blob = blob.replace(json.dumps(self.base)[1:-1], "<base>")
        blob = blob.replace(self.sandbox_id, "<id>")
        return "sha256:" + sha256(blob.encode()).hexdigest()

    def describe(self) -> list[str]:
        """The plan as numbered, human-readable steps (``--dry-run``): one
        line per step of `steps`, nothing else numbered."""
        out = [f"     profile {self.profile} ({self.profile_digest[:19]}), "
               f"plan version {PLAN_VERSION}"]
        for i, s in enumerate(self.steps, 1):
            out.append(f"{i:>3}. {s.describe()}")
        if self.timeout is not None:    # the supervisor's, not a step of the sandbox
            out.append(f"     after {self.timeout:g}s: SIGTERM to the sandbox, SIGKILL "
                       f"{TIMEOUT_GRACE:g}s later; exit status {TIMEOUT_STATUS}")
        if self.not_applied:
            out.append("     NOT APPLIED as asked: " + "; ".join(
                f"{r} -> {a}" for r, a in self.not_applied))
        if self.missing:
            out.append(f"     missing (optional): {', '.join(self.missing)}")
        if self.insecure_options:
            out.append(f"     INSECURE options: {', '.join(self.insecure_options)}")
        return out


def _mirror_host_system(mounts: list[MountOp]) -> None:
    for name in HOST_SYSTEM_DIRS:
        host = "/" + name
        if os.path.islink(host):
            mounts.append(MountOp("symlink", host, os.readlink(host)))
        elif os.path.isdir(host):
            mounts.append(MountOp("bind", host, host, "ro", "host system folder, read-only"))


def _host_etc(mounts: list[MountOp], hostname: str) -> None:
    mounts.append(MountOp("mkdir", "/etc", options="0755"))
    for entry in HOST_ETC_ALLOW:
        host = "/etc/" + entry
        if os.path.islink(host):
            mounts.append(MountOp("symlink", host, os.readlink(host)))
        elif os.path.exists(host):
            mounts.append(MountOp("bind", host, host, "ro"))
    mounts.append(MountOp("file", "/etc/hostname", hostname + "\n"))
    mounts.append(MountOp("file", "/etc/hosts",
                          f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n"))


def _dev(mounts: list[MountOp]) -> None:
    mounts.append(MountOp("tmpfs", "/dev", options="mode=755,size=64k,nosuid,noexec",
                          why="minimal /dev"))
    for node in DEV_NODES:
        mounts.append(MountOp("bind", f"/dev/{node}", f"/dev/{node}", "dev"))
    mounts.append(MountOp("devpts", "/dev/pts", options="newinstance,ptmxmode=0666,mode=620"))
    mounts.append(MountOp("symlink", "/dev/ptmx", "pts/ptmx"))
    mounts.append(MountOp("tmpfs", "/dev/shm", options="mode=1777,size=64m,nosuid,nodev"))
    mounts.append(MountOp("symlink", "/dev/fd", "/proc/self/fd"))
    for i, n in enumerate(("stdin", "stdout", "stderr")):
        mounts.append(MountOp("symlink", f"/dev/{n}", f"/proc/self/fd/{i}"))
    mounts.append(MountOp("remount-ro", "/dev", why="no new device nodes"))


def with_home(profile, root_kind: str):
    """The profile with a tmpfs on $HOME added when the root is the host
    view (whose home folders are not shown), so the payload has a writable
    home and Landlock grants it like any other tmpfs. Pure."""
    home = dict(profile.process.env).get("HOME", "/root")
    fs = profile.filesystem
    if root_kind != "host" or any(t.path == home for t in fs.tmpfs):
        return profile
    from ..profile.model import Tmpfs
    return profile._replace(filesystem=fs._replace(
        tmpfs=fs.tmpfs + (Tmpfs(home, "mode=700,size=64m"),)))


def build_mounts(profile, spec, volumes_ops: tuple[MountOp, ...] = ()) -> tuple[MountOp, ...]:
    """The ordered file-system steps for ``profile`` and ``spec.root``.

    ``volumes_ops`` are the volume binds, already checked against labels.
    """
    fs = profile.filesystem
    ns = profile.namespaces
    m: list[MountOp] = []
    root = spec.root
    if root.kind == "host":
        m.append(MountOp("root", "/", None, "host", "a tmpfs holds the host view"))
        _mirror_host_system(m)
        _host_etc(m, profile.process.hostname)
    else:
        lowers = (root.path,) if root.kind == "dir" else tuple(reversed(root.layers))
        m.append(MountOp("overlay", "/", ":".join(lowers), "",
                         "lower folders never modified; upper is a per-sandbox tmpfs"))
    for d in ("/proc", "/sys", "/tmp"):
        m.append(MountOp("mkdir", d, options="0755" if d != "/tmp" else "1777"))
    m.append(MountOp("proc", "/proc", options="nosuid,nodev,noexec",
                     why="fresh /proc of the sandbox's pid namespace" if ns.pid
                     else "host pid namespace: host /proc bound"))
    _dev(m)
    m.append(MountOp("sysfs", "/sys", options="ro,nosuid,nodev,noexec"))
    for t in fs.tmpfs:
        m.append(MountOp("tmpfs", t.path, options=t.options or "mode=755",
                         why="writable scratch space"))
    m.extend(volumes_ops)
    for p in fs.masked_paths:
        m.append(MountOp("mask", p, why="masked kernel interface"))
    for p in fs.read_only_paths:
        m.append(MountOp("readonly", p))
    if fs.read_only_root:
        m.append(MountOp("remount-ro", "/", why="read-only root"))
    return tuple(m)


def build_rlimits(limits) -> tuple[tuple[str, int, int], ...]:
    out = []
    for key, name in RLIMITS.items():
        v = getattr(limits, key)
        if v is not None:
            out.append((name, v, v))
    return tuple(out)


def build_limit_rlimits(limits, cgroups_ok: bool):
    """``(rlimits, not_applied)`` for a launch: the profile's rlimits
    (`build_rlimits`), RLIMIT_CPU and RLIMIT_AS, then ``--ulimit``'s, which
    win. Without usable cgroups (rootless on cgroup v1) the documented
    fallback: RLIMIT_AS for ``memory``, RLIMIT_NPROC for ``pids``; ``cpus``
    has none. Each such substitution is in ``not_applied`` as
    ``(requested, applied instead)`` so the launch can say it. Pure."""
    rl = {name: (soft, hard) for name, soft, hard in
          build_rlimits(limits._replace(cpus=None) if hasattr(limits, "cpus") else limits)}
    if limits.cpu_time is not None:
        rl["RLIMIT_CPU"] = (limits.cpu_time, limits.cpu_time)
    if limits.address_space is not None:
        rl["RLIMIT_AS"] = (limits.address_space, limits.address_space)
    for name, soft, hard in limits.ulimits:
        rl[name] = (soft, hard)
    not_applied = []
    if not cgroups_ok:
        if limits.memory is not None:
            cur = rl.get("RLIMIT_AS", (-1, -1))[1]
            if cur == -1 or cur > limits.memory:
                rl["RLIMIT_AS"] = (limits.memory, limits.memory)
            not_applied.append((f"memory {limits.memory} (cgroup)",
                                f"RLIMIT_AS {rl['RLIMIT_AS'][1]}"))
        if limits.pids is not None:
            cur = rl.get("RLIMIT_NPROC", (-1, -1))[1]
            if cur == -1 or cur > limits.pids:
                rl["RLIMIT_NPROC"] = (limits.pids, limits.pids)
            not_applied.append((f"pids {limits.pids} (cgroup)",
                                f"RLIMIT_NPROC {rl['RLIMIT_NPROC'][1]}"))
        if getattr(limits, "cpus", None) is not None:
            not_applied.append((f"cpus {limits.cpus:g} (cgroup)", "nothing"))
    return tuple((n, s, h) for n, (s, h) in rl.items()), tuple(not_applied)
