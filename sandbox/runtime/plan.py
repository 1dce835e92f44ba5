"""Describe, then do: the profile and the run spec become a `LaunchPlan`.

`build_plan` is pure with respect to the kernel: it reads the host's file
tree (to mirror ``/bin -> usr/bin`` links and pick ``/etc`` entries) but
changes nothing. The plan is what ``--dry-run`` prints, what tests assert
on, and what the audit record hashes; `sandbox.runtime.child` executes its
mount steps in order and nothing else.

Mount steps name targets as paths inside the sandbox; before ``pivot_root``
the child resolves each one under the new root without following symlinks.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

from .._hash import sha256
from .._values import asdict

from .cgroups import CgroupPlan
from .idmap import IdMap

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

RLIMITS = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
           "fsize": "RLIMIT_FSIZE", "core": "RLIMIT_CORE"}


class MountOp(NamedTuple):
    """One file-system step of the child's setup.

    ``op`` is one of: ``tmpfs``, ``bind``, ``overlay``, ``proc``, ``sysfs``,
    ``devpts``, ``mkdir``, ``symlink``, ``file``, ``mask``, ``readonly``,
    ``remount-ro``. ``target`` is the path inside the sandbox. ``source``:
    the host path (bind), the link text (symlink), the contents (file), or
    the ``:``-joined lower folders (overlay). ``options``: mount data or
    ``ro``/``rw``/``rec``, comma separated.
    """

    op: str
    target: str
    source: str | None = None
    options: str = ""
    why: str = ""

    def describe(self) -> str:
        src = "" if self.source is None else (
            f" <- {self.source!r}" if self.op == "file" and len(self.source) < 40
            else " <- (contents)" if self.op == "file" else f" <- {self.source}")
        opts = f" [{self.options}]" if self.options else ""
        why = f"  # {self.why}" if self.why else ""
        return f"{self.op:<10} {self.target}{src}{opts}{why}"


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

    def to_dict(self) -> dict:
        d = {
            "sandbox_id": self.sandbox_id, "name": self.name,
            "profile": {"name": self.profile, "digest": self.profile_digest},
            "argv": list(self.argv), "env": dict(self.env), "workdir": self.workdir,
            "hostname": self.hostname, "user": {"uid": self.uid, "gid": self.gid},
            "namespaces": {"new": list(self.namespaces), "host": list(self.shared_namespaces)},
            "idmap": self.idmap.to_dict() if self.idmap else None,
            "root": {"kind": self.root_kind, "base": self.base},
            "mounts": [m._asdict() for m in self.mounts],
            "capabilities": list(self.capabilities),
            "no_new_privs": self.no_new_privs,
            "rlimits": [list(r) for r in self.rlimits],
            "cgroup": self.cgroup.to_dict() if self.cgroup else None,
            "seccomp": self.seccomp.to_dict() if self.seccomp else None,
            "landlock": {"abi": self.landlock_abi,
                         "rules": [_jsonable(r) for r in self.landlock]}
            if self.landlock_abi else None,
            "label": self.label, "network": self.network,
            "missing": list(self.missing), "insecure_options": list(self.insecure_options),
            "net": self.net.to_dict() if self.net is not None else None,
        }
        # OCI steps appear only when set, so earlier plans keep their digest
        for key in ("sysctls", "join_namespaces", "additional_gids", "umask",
                    "oom_score_adj", "root_propagation", "controlling_tty",
                    "capability_sets"):
            v = getattr(self, key)
            if v not in ((), None, "", False):
                d[key] = [list(x) if isinstance(x, tuple) else x for x in v] \
                    if isinstance(v, tuple) else v
        return d

    def digest(self) -> str:
        """``sha256:`` of the plan's canonical JSON, minus what differs per
        launch (the id and the runtime folder)."""
        d = self.to_dict()
        for k in ("sandbox_id", "name"):
            d.pop(k)
        d["root"].pop("base")
        if d["cgroup"]:       # cgroup folders are named after the sandbox id
            d["cgroup"] = json.loads(json.dumps(d["cgroup"]).replace(self.sandbox_id, "<id>"))
        if d["label"]:        # the MCS level is drawn per launch; keep user:role:type
            d["label"] = ":".join(d["label"].split(":")[:3])
        for m in d["mounts"]:
            m.pop("why", None)    # commentary, which may name the per-launch level
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + sha256(blob).hexdigest()

    def describe(self) -> list[str]:
        """The plan as numbered, human-readable steps (``--dry-run``)."""
        out: list[str] = []

        def step(text):
            out.append(f"{len(out) + 1:>3}. {text}")

        step(f"profile {self.profile} ({self.profile_digest[:19]})")
        step("unshare " + ", ".join(self.namespaces) +
             (f"; SHARED with host: {', '.join(self.shared_namespaces)}"
              if self.shared_namespaces else ""))
        if self.idmap:
            step(f"uid_map {self.idmap.uid_map.strip()!r}, gid_map {self.idmap.gid_map.strip()!r}"
                 + (", setgroups deny" if self.idmap.deny_setgroups else ""))
        if self.cgroup:
            step("cgroup " + ", ".join(f"{os.path.basename(f)}={v}" for f, v in self.cgroup.writes))
        for ns, path in self.join_namespaces:
            step(f"setns {ns} {path}")
        if self.oom_score_adj is not None:
            step(f"oom_score_adj {self.oom_score_adj}")
        step(f"network {self.network}" + (" (loopback up)" if self.network == "none" else ""))
        for name, value in self.sysctls:
            step(f"sysctl {name}={value}")
        step(f"tmpfs at {self.base} (private mount propagation first)")
        for m in self.mounts:
            step(m.describe())
        step(f"pivot_root into {self.root}; detach the old root")
        if self.root_propagation:
            step(f"root propagation {self.root_propagation}")
        step(f"hostname {self.hostname}")
        for name, soft, hard in self.rlimits:
            step(f"setrlimit {name} {soft}/{hard}")
        step("close every fd above 2; new session (setsid)")
        if self.capability_sets:
            for name, caps in zip(("bounding", "effective", "permitted", "inheritable",
                                   "ambient"), self.capability_sets):
                step(f"capabilities {name}: " + (", ".join(caps) or "none"))
        else:
            step("capabilities (bounding, permitted, effective): " +
                 (", ".join(self.capabilities) or "none") + "; inheritable and ambient: none")
        step(f"uid {self.uid}, gid {self.gid}" + (
            f", groups {','.join(map(str, self.additional_gids))}" if self.additional_gids else ""))
        if self.umask is not None:
            step(f"umask {self.umask:04o}")
        if self.controlling_tty:
            step("controlling terminal: fd 0 (TIOCSCTTY)")
        if self.no_new_privs:
            step("no_new_privs")
        if self.landlock_abi:
            step(f"landlock ABI {self.landlock_abi}: {len(self.landlock)} rules")
        if self.label:
            step(f"label {self.label}")
        if self.seccomp:
            step(f"seccomp {os.path.basename(self.seccomp.source)} "
                 f"({self.seccomp.instructions} BPF instructions, "
                 f"{'+'.join(self.seccomp.architectures)}, default {self.seccomp.default_action})")
        else:
            step("seccomp: NONE (unconfined)")
        step("execve " + " ".join(self.argv))
        if self.missing:
            out.append(f"     missing (optional): {', '.join(self.missing)}")
        if self.insecure_options:
            out.append(f"     INSECURE options: {', '.join(self.insecure_options)}")
        return out


def _jsonable(v):
    # A landlock rule: a LandlockRule (a NamedTuple with to_dict, checked
    # first: it is a tuple too) or a plain (path, access) tuple.
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if hasattr(v, "_asdict"):
        return asdict(v)
    if isinstance(v, tuple):
        return list(v)
    return str(v)


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
