"""A bundle's ``config.json`` (OCI runtime spec 1.x) becomes a `LaunchPlan`.

Pure with respect to the kernel: it reads the bundle and the host's
``/dev`` and cgroup layout, changes nothing, and either returns the plan or
raises `BundleError` with one line naming the field. What the runtime
cannot do is refused here, by field name, never ignored (fail closed).

Order of the mount steps follows the spec and runc: the root, the
config's mounts in their order, the default devices and their links when
``/dev`` is a config mount, ``linux.devices``, masked paths, read-only
paths, then the read-only root.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from typing import NamedTuple

from ..capabilities import CAPABILITIES, last_cap
from ..errors import ProfileError
from ..runtime.cgroups import CGROUP_ROOT, CgroupPlan
from ..runtime.idmap import IdMap
from ..runtime.plan import LaunchPlan, MountOp

#: runtime-spec version this runtime implements (``--version``, ``features``)
SPEC_VERSION = "1.2.0"
SUPPORTED_MAJOR = 1

#: OCI namespace types to ours
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mount", "ipc": "ipc",
              "uts": "uts", "user": "user", "cgroup": "cgroup"}
#: default device nodes (runtime spec, "Default Devices") bound from the host
DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: sysctls that are namespaced (as runc validates them), by prefix or name,
#: with the namespace that must be new for them to be set
NAMESPACED_SYSCTLS = (("kernel.msgmax", "ipc"), ("kernel.msgmnb", "ipc"),
                      ("kernel.msgmni", "ipc"), ("kernel.sem", "ipc"),
                      ("kernel.shmall", "ipc"), ("kernel.shmmax", "ipc"),
                      ("kernel.shmmni", "ipc"), ("kernel.shm_rmid_forced", "ipc"),
                      ("fs.mqueue.", "ipc"), ("net.", "net"),
                      ("kernel.hostname", "uts"), ("kernel.domainname", "uts"))
_FLAG_OPTS = {"ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec"}
_IGNORED_OPTS = {"strictatime", "relatime", "noatime", "nostrictatime", "norelatime",
                 "atime", "diratime", "nodiratime", "sync", "async", "private", "rprivate",
                 "slave", "rslave", "shared", "rshared", "unbindable", "runbindable",
                 "bind", "rbind", "tmpcopyup", "notmpcopyup", "norecursive", "mand", "nomand"}
_RLIMITS = {"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
            "RLIMIT_LOCKS", "RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
            "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_RTPRIO",
            "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK"}


class BundleError(ProfileError):
    """The bundle or its config.json cannot be run as it is (the user's input).
    Exit 1, as runc fails a create."""

    status = 1

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        ProfileError.__init__(self, message, hint=hint)
        self.field = field


class Bundle(NamedTuple):
    """A bundle read from disk: its folder, the parsed config and its bytes' digest."""

    path: str
    config: dict
    digest: str


def load_bundle(bundle: str) -> Bundle:
    """Read ``bundle/config.json``; `BundleError` for a missing folder or
    file, broken JSON, or an ociVersion of another major version."""
    from .._hash import sha256
    path = os.path.abspath(bundle)
    cfg = os.path.join(path, "config.json")
    try:
        with open(cfg, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise BundleError(f"{cfg}: no such file",
                          hint="pass the bundle folder holding config.json with --bundle") from None
    except OSError as e:
        raise BundleError(f"{cfg}: {e.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise BundleError(f"{cfg}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{cfg}: the top level must be a JSON object")
    ver = doc.get("ociVersion")
    if not isinstance(ver, str) or not ver.split(".")[0].isdigit():
        raise BundleError(f"{cfg}: ociVersion is missing or not a version", field="ociVersion")
    if int(ver.split(".")[0]) != SUPPORTED_MAJOR:
        raise BundleError(f"{cfg}: ociVersion {ver} is not supported (this runtime "
                          f"implements {SPEC_VERSION})", field="ociVersion")
    return Bundle(path, doc, "sha256:" + sha256(raw).hexdigest())


def _get(d: dict, key: str, typ, where: str, default=None):
    v = d.get(key, default)
    if v is None:
        return default
    if not isinstance(v, typ):
        raise BundleError(f"config.json: {where} has the wrong type", field=where)
    return v


def _refuse(field: str, why: str = "is not supported by sandbox-oci") -> BundleError:
    return BundleError(f"config.json: {field} {why}", field=field,
                       hint="remove it from the config, or use runc for this container")


def build_idmap(linux: dict, has_userns: bool) -> IdMap | None:
    uid_m = _get(linux, "uidMappings", list, "linux.uidMappings", [])
    gid_m = _get(linux, "gidMappings", list, "linux.gidMappings", [])
    if not has_userns:
        if uid_m or gid_m:
            raise BundleError("config.json: linux.uidMappings need a user namespace "
                              "(linux.namespaces has no \"user\")", field="linux.uidMappings")
        return None
    if not uid_m or not gid_m:
        if os.geteuid() == 0:
            # root's own id as the container's root would be no user
            # namespace at all (as runc, refuse)
            raise BundleError("config.json: a user namespace needs linux.uidMappings and "
                              "linux.gidMappings", field="linux.uidMappings",
                              hint="map the container's ids to a subordinate range, e.g. "
                                   "containerID 0, hostID 100000, size 65536")
        # an unprivileged caller: its own ids as the container's root, as
        # `unshare -r` does it
        return IdMap(f"0 {os.geteuid()} 1\n", f"0 {os.getegid()} 1\n",
                     os.geteuid() != 0, os.geteuid(), os.getegid())

    def lines(ms, where):
        out = []
        for i, m in enumerate(ms):
            try:
                out.append((int(m["containerID"]), int(m["hostID"]), int(m["size"])))
            except (KeyError, TypeError, ValueError):
                raise BundleError(f"config.json: {where}[{i}] needs containerID, hostID "
                                  "and size", field=where) from None
        return out
    u, g = lines(uid_m, "linux.uidMappings"), lines(gid_m, "linux.gidMappings")

    def host_of(ms, cid):
        for c, h, n in ms:
            if c <= cid < c + n:
                return h + cid - c
        return None
    hu, hg = host_of(u, 0), host_of(g, 0)
    return IdMap("".join(f"{c} {h} {n}\n" for c, h, n in u),
                 "".join(f"{c} {h} {n}\n" for c, h, n in g),
                 os.geteuid() != 0,
                 hu if hu is not None else os.geteuid(),
                 hg if hg is not None else os.getegid())


def _mount_options(opts: list, where: str) -> tuple[str, bool, bool]:
    """(our options string, bind?, recursive?) of an OCI mount's options."""
    out, bind, rec = [], False, False
    for o in opts:
        if not isinstance(o, str):
            raise BundleError(f"config.json: {where}.options must be strings", field=where)
        if o in ("bind", "rbind"):
            bind, rec = True, rec or o == "rbind"
        if o in _FLAG_OPTS:
            if o != "rw":
                out.append(o)
        elif o in _IGNORED_OPTS:
            continue
        elif o.startswith(("mode=", "size=", "uid=", "gid=", "nr_inodes=", "gidmapping",
                           "newinstance", "ptmxmode=")) or o == "newinstance":
            out.append(o)
        elif o.startswith(("idmap", "ridmap")):
            raise _refuse(f"{where}.options {o!r}")
        else:
            out.append(o)
    return ",".join(out), bind, rec


def _resolve_inside(rootfs: str, dest: str, where: str) -> str:
    """``dest`` with the symlinks already in the root file system resolved
    inside it (an absolute link names a path under the root, as runc's
    securejoin reads it); a link that climbs out of the root is refused.
    The child then opens the result refusing any symlink, so a link
    swapped in later fails the launch instead of redirecting the mount."""
    parts = [p for p in dest.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            raise BundleError(f"config.json: {where} {dest!r} contains '..'", field=where)
        cur = os.path.join(rootfs, *done, part)
        if os.path.islink(cur):
            hops += 1
            if hops > 40:
                raise BundleError(f"config.json: {where} {dest!r}: too many symlinks",
                                  field=where)
            target = os.readlink(cur)
            base = [] if target.startswith("/") else list(done)
            for t in [x for x in target.split("/") if x and x != "."]:
                if t == "..":
                    if not base:
                        raise BundleError(
                            f"config.json: {where} {dest!r} goes through the symlink "
                            f"/{'/'.join(done + [part])} -> {target}, which leaves the root",
                            field=where, hint="mount onto a real folder inside the root")
                    base.pop()
                else:
                    base.append(t)
            done = []
            parts = base + parts
            continue
        done.append(part)
    return "/" + "/".join(done)


def build_mounts(cfg: dict, rootfs: str, new_ns: tuple[str, ...],
                 joined: tuple[str, ...] = ()) -> tuple[MountOp, ...]:
    linux = cfg.get("linux") or {}
    m: list[MountOp] = [MountOp("root-bind", "/", rootfs, "rec",
                                "the bundle's root file system, bound as it is")]
    dev_mounted = False
    for i, mt in enumerate(_get(cfg, "mounts", list, "mounts", [])):
        where = f"mounts[{i}]"
        if not isinstance(mt, dict):
            raise BundleError(f"config.json: {where} must be an object", field=where)
        dest = mt.get("destination")
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise BundleError(f"config.json: {where}.destination must be an absolute path",
                              field=f"{where}.destination")
        dest = posixpath.normpath(dest)
        dest = _resolve_inside(rootfs, dest, f"{where}.destination")
        typ = mt.get("type") or ""
        src = mt.get("source")
        opts, bind, rec = _mount_options(mt.get("options") or [], where)
        if bind or typ == "bind":
            if not isinstance(src, str):
                raise BundleError(f"config.json: {where}.source is missing", field=where)
            if not src.startswith("/"):
                src = os.path.normpath(os.path.join(os.path.dirname(rootfs), src))
            if not os.path.exists(src):
                raise BundleError(f"config.json: {where}.source {src}: no such file or folder",
                                  field=f"{where}.source")
            ro = "ro" in opts.split(",")
            m.append(MountOp("bind", dest, src, ",".join(filter(None, [
                "ro" if ro else "", "rec" if rec else "norec"])), f"mounts[{i}]"))
        elif typ == "proc":
            m.append(MountOp("proc", dest, options=opts))
        elif typ == "sysfs":
            m.append(MountOp("sysfs", dest, options=opts))
        elif typ == "tmpfs":
            if dest == "/dev" and linux.get("devices") and "user" not in new_ns \
                    and "nodev" not in opts.split(","):
                # nodes made by mknod must open; the devices cgroup (always
                # set, see build_cgroup) is what limits them, as with runc
                opts = ",".join(filter(None, [opts, "dev"]))
            m.append(MountOp("tmpfs", dest, src if src and src != "tmpfs" else None, opts))
            dev_mounted |= dest == "/dev"
        elif typ == "devpts":
            # mount data only: the child sets nosuid and noexec itself
            m.append(MountOp("devpts", dest, options=",".join(
                o for o in opts.split(",") if o and o not in _FLAG_OPTS)))
        elif typ == "mqueue":
            if "ipc" not in new_ns and "ipc" not in joined:
                raise _refuse(f"{where} (mqueue)", "needs an ipc namespace of the container's "
                              "own (the host's message queues would show)")
            m.append(MountOp("mqueue", dest, options=opts))
        elif typ == "cgroup" or typ == "cgroup2":
            m.extend(_cgroup_view(dest, where))
        else:
            raise _refuse(f"{where}.type {typ!r}")
    if dev_mounted:
        for n in DEFAULT_DEVICES:
            m.append(MountOp("bind", f"/dev/{n}", f"/dev/{n}", "dev", "default device"))
        for link, to in (("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"),
                         ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2"),
                         ("/dev/ptmx", "pts/ptmx")):
            m.append(MountOp("symlink", link, to))
    for i, d in enumerate(_get(linux, "devices", list, "linux.devices", [])):
        m.append(_device(d, f"linux.devices[{i}]", "user" in new_ns))
    for p in _get(linux, "maskedPaths", list, "linux.maskedPaths", []):
        m.append(MountOp("mask", p))
    for p in _get(linux, "readonlyPaths", list, "linux.readonlyPaths", []):
        m.append(MountOp("readonly", p))
    if (cfg.get("root") or {}).get("readonly"):
        m.append(MountOp("remount-ro", "/", why="root.readonly"))
    return tuple(m)


def _cgroup_view(dest: str, where: str) -> list[MountOp]:
    """A read-only view of the host's cgroup v1 controllers: a tmpfs with
    each controller bound read-only one by one (a recursive bind would
    leave the submounts writable), the tmpfs then made read-only."""
    out = [MountOp("tmpfs", dest, options="mode=755", why=f"{where} (cgroup)")]
    try:
        names = sorted(os.listdir(CGROUP_ROOT))
    except OSError:
        names = []
    for n in names:
        host = os.path.join(CGROUP_ROOT, n)
        if os.path.islink(host):
            out.append(MountOp("symlink", f"{dest}/{n}", os.readlink(host)))
        elif os.path.ismount(host):
            out.append(MountOp("bind", f"{dest}/{n}", host, "ro", f"{where} (cgroup {n})"))
    out.append(MountOp("remount-ro", dest))
    return out


def _device(d: dict, where: str, userns: bool) -> MountOp:
    """A ``linux.devices`` entry: made with mknod (no user namespace; the
    devices cgroup allows exactly the listed nodes), or, inside a user
    namespace where mknod is refused, a bind of the host's node with the
    same type, major and minor at the same path."""
    try:
        path, typ = d["path"], d["type"]
        major, minor = int(d.get("major", 0)), int(d.get("minor", 0))
        mode = int(d.get("fileMode", 0o666)) & 0o7777
        uid, gid = int(d.get("uid", 0)), int(d.get("gid", 0))
    except (KeyError, TypeError, ValueError):
        raise BundleError(f"config.json: {where} needs path, type, major and minor",
                          field=where) from None
    if typ not in ("c", "u", "b", "p") or not isinstance(path, str) or \
            not path.startswith("/dev/"):
        raise BundleError(f"config.json: {where}: type must be c, u, b or p and path under "
                          "/dev", field=where)
    if not userns:
        if typ != "p" and not (CGROUP_ROOT / "devices" / "cgroup.procs").exists():
            # a node made on a /dev without nodev is held back only by the
            # devices cgroup: without it, refuse rather than expose it
            raise _refuse(f"{where} ({path})", "needs the cgroup v1 devices controller to "
                          "limit the node to itself")
        return MountOp("mknod", path, None, f"{typ} {major} {minor} {mode:o} {uid} {gid}", where)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    want = stat.S_ISCHR if typ in ("c", "u") else stat.S_ISBLK if typ == "b" else None
    if st is None or want is None or not want(st.st_mode) or \
            os.major(st.st_rdev) != major or os.minor(st.st_rdev) != minor:
        raise _refuse(f"{where} ({path} {typ} {major}:{minor})",
                      "cannot be made in a user namespace and the host has no such node "
                      "at that path to bind")
    return MountOp("bind", path, path, "dev", where)


#: devices every container may use (runtime spec "Default Devices"), as
#: devices cgroup rules, plus mknod of any (opening needs an allow rule)
DEFAULT_DEVICE_RULES = ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",
                        "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm",
                        "c 136:* rwm")


def build_capabilities(caps: dict) -> tuple[tuple[str, ...], ...]:
    """(bounding, effective, permitted, inheritable, ambient) as the config
    names them; capabilities this kernel does not have are left out (as
    runc does), unknown names refused."""
    def names(key):
        out = set()
        for c in _get(caps, key, list, f"process.capabilities.{key}", []):
            if c not in CAPABILITIES:
                raise BundleError(f"config.json: process.capabilities.{key}: unknown "
                                  f"capability {c!r}", field=f"process.capabilities.{key}")
            if CAPABILITIES[c] <= last_cap():
                out.add(c)
        return tuple(sorted(out, key=CAPABILITIES.get))
    return tuple(names(k) for k in ("bounding", "effective", "permitted", "inheritable",
                                    "ambient"))


def build_cgroup(cid: str, linux: dict) -> CgroupPlan | None:
    """cgroup v1 folders and limits from ``linux.resources`` (this host
    family is v1 with a v2 hierarchy that owns no controller we use);
    `BundleError` for a limit it cannot apply."""
    res = _get(linux, "resources", dict, "linux.resources", {})
    rel = _get(linux, "cgroupsPath", str, "linux.cgroupsPath", "") or f"/sandbox-oci/{cid}"
    if ":" in rel and not rel.startswith("/"):
        raise BundleError(f"config.json: linux.cgroupsPath {rel!r} is a systemd slice path",
                          field="linux.cgroupsPath",
                          hint="sandbox-oci manages cgroupfs paths only (no --systemd-cgroup)")
    rel = rel if rel.startswith("/") else "/" + rel
    if ".." in rel.split("/"):
        raise BundleError("config.json: linux.cgroupsPath must not contain '..'",
                          field="linux.cgroupsPath")
    if os.geteuid() != 0:
        # rootless: cgroup v1 cannot be delegated; a limit asked for is refused
        for key, val in res.items():
            if val and key != "devices":
                raise BundleError(f"config.json: linux.resources.{key} needs root here "
                                  "(cgroup v1 cannot be delegated to a user)",
                                  field=f"linux.resources.{key}")
        return None
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        raise BundleError("config.json: linux.resources on a pure cgroup v2 host is not "
                          "supported yet", field="linux.resources")
    dirs: list[str] = []
    writes: list[tuple[str, str]] = []

    def ctl(name: str) -> str:
        d = str(CGROUP_ROOT / name) + rel
        if d not in dirs:
            dirs.append(d)
        return d
    mem = _get(res, "memory", dict, "linux.resources.memory", {})
    if mem.get("limit") is not None and mem["limit"] > 0:
        writes.append((ctl("memory") + "/memory.limit_in_bytes", str(int(mem["limit"]))))
    if mem.get("reservation") is not None and mem["reservation"] > 0:
        writes.append((ctl("memory") + "/memory.soft_limit_in_bytes",
                       str(int(mem["reservation"]))))
    if mem.get("swap") is not None and mem["swap"] > 0:
        writes.append((ctl("memory") + "/memory.memsw.limit_in_bytes", str(int(mem["swap"]))))
    # kernel and kernelTCP: deprecated by the spec (runtimes MAY ignore them);
    # this kernel counts kernel memory in memory.limit_in_bytes anyway
    if mem.get("swappiness") is not None:
        writes.append((ctl("memory") + "/memory.swappiness", str(int(mem["swappiness"]))))
    if mem.get("disableOOMKiller"):
        writes.append((ctl("memory") + "/memory.oom_control", "1"))
    pids = _get(res, "pids", dict, "linux.resources.pids", {})
    if pids.get("limit") is not None:
        lim = int(pids["limit"])
        writes.append((ctl("pids") + "/pids.max", "max" if lim <= 0 else str(lim)))
    cpu = _get(res, "cpu", dict, "linux.resources.cpu", {})
    for key, fname in (("shares", "cpu.shares"), ("quota", "cpu.cfs_quota_us"),
                       ("period", "cpu.cfs_period_us"), ("realtimeRuntime", "cpu.rt_runtime_us"),
                       ("realtimePeriod", "cpu.rt_period_us")):
        if cpu.get(key) is not None:
            writes.append((ctl("cpu") + "/" + fname, str(int(cpu[key]))))
    for key, fname in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
        if cpu.get(key):
            writes.append((ctl("cpuset") + "/" + fname, str(cpu[key])))
    if cpu.get("idle") is not None:
        raise _refuse("linux.resources.cpu.idle", "needs cgroup v2")
    devs = _get(res, "devices", list, "linux.resources.devices", [])
    if (CGROUP_ROOT / "devices" / "cgroup.procs").exists():
        # always, as runc does: the config's rules (deny all first when it
        # has none), then the default devices and the config's own nodes
        d = ctl("devices")
        rules: list[tuple[bool, str]] = [] if devs else [(False, "a")]
        for i, rule in enumerate(devs):
            typ = rule.get("type") or "a"
            major, minor = rule.get("major"), rule.get("minor")
            spec = "a" if typ == "a" and major is None and minor is None else (
                f"{typ} {'*' if major is None or major < 0 else major}:"
                f"{'*' if minor is None or minor < 0 else minor} {rule.get('access') or 'rwm'}")
            rules.append((bool(rule.get("allow")), spec))
        rules += [(True, r) for r in DEFAULT_DEVICE_RULES]
        for dev in _get(linux, "devices", list, "linux.devices", []):
            if isinstance(dev, dict) and dev.get("type") in ("c", "b", "u"):
                t = "c" if dev["type"] == "u" else dev["type"]
                rules.append((True, f"{t} {dev.get('major', 0)}:{dev.get('minor', 0)} rwm"))
        for allow, spec in rules:
            writes.append((d + ("/devices.allow" if allow else "/devices.deny"), spec))
    elif devs:
        raise BundleError("config.json: linux.resources.devices needs the cgroup v1 devices "
                          "controller", field="linux.resources.devices")
    for key in ("hugepageLimits", "blockIO", "network", "rdma", "unified"):
        if res.get(key):
            raise _refuse(f"linux.resources.{key}")
    if (CGROUP_ROOT / "freezer" / "cgroup.procs").exists():
        ctl("freezer")          # for pause/resume
    if not dirs:
        return None
    procs = tuple(x + "/cgroup.procs" for x in dirs)
    return CgroupPlan(tuple(dirs), tuple(writes), procs)


def build_plan(bundle: Bundle, cid: str, base: str, *, seccomp_dir: str | None = None,
               console: bool = False) -> LaunchPlan:
    """The launch plan for container ``cid`` of ``bundle``; ``base`` is the
    runtime folder the child works in; ``seccomp_dir`` where the config's
    seccomp JSON is written to be compiled (None: a filter is refused)."""
    cfg = bundle.config
    root = _get(cfg, "root", dict, "root")
    if not root or not isinstance(root.get("path"), str):
        raise BundleError("config.json: root.path is missing", field="root.path")
    rootfs = os.path.normpath(os.path.join(bundle.path, root["path"]))
    if not os.path.isdir(rootfs):
        raise BundleError(f"config.json: root.path {rootfs}: no such folder",
                          field="root.path", hint="unpack the root file system there first")
    proc = _get(cfg, "process", dict, "process")
    if not proc:
        raise BundleError("config.json: process is missing", field="process")
    args = _get(proc, "args", list, "process.args", [])
    if not args or not all(isinstance(a, str) for a in args):
        raise BundleError("config.json: process.args must be a non-empty list of strings",
                          field="process.args")
    if proc.get("commandLine"):
        raise _refuse("process.commandLine", "is for Windows")
    cwd = _get(proc, "cwd", str, "process.cwd", "/")
    if not cwd.startswith("/"):
        raise BundleError("config.json: process.cwd must be an absolute path", field="process.cwd")
    env = []
    for e in _get(proc, "env", list, "process.env", []):
        if not isinstance(e, str) or "=" not in e:
            raise BundleError(f"config.json: process.env entry {e!r} is not NAME=VALUE",
                              field="process.env")
        k, _, v = e.partition("=")
        env.append((k, v))
    user = _get(proc, "user", dict, "process.user", {})
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    umask = user.get("umask")
    agids = tuple(int(g) for g in (user.get("additionalGids") or ()))
    if user.get("username"):
        raise _refuse("process.user.username", "is for Windows")
    for key in ("apparmorProfile", "selinuxLabel"):
        if proc.get(key):
            raise _refuse(f"process.{key}", "cannot be applied: that security module is not "
                          "active on this host")
    for key in ("ioPriority", "scheduler", "execCPUAffinity"):
        if proc.get(key):
            raise _refuse(f"process.{key}")
    rlimits = []
    for i, r in enumerate(_get(proc, "rlimits", list, "process.rlimits", [])):
        t = r.get("type")
        if t not in _RLIMITS:
            raise BundleError(f"config.json: process.rlimits[{i}].type {t!r} is not an "
                              "RLIMIT_* name", field=f"process.rlimits[{i}]")
        rlimits.append((t, int(r["soft"]), int(r["hard"])))
    linux = _get(cfg, "linux", dict, "linux", {})
    new_ns: list[str] = []
    join: list[tuple[str, str]] = []
    for i, ns in enumerate(_get(linux, "namespaces", list, "linux.namespaces", [])):
        t = ns.get("type")
        if t not in NAMESPACES:
            raise _refuse(f"linux.namespaces[{i}].type {t!r}")
        ours = NAMESPACES[t]
        if ours in new_ns or ours in (j[0] for j in join):
            raise BundleError(f"config.json: linux.namespaces has {t!r} twice",
                              field=f"linux.namespaces[{i}]")
        if ns.get("path"):
            if not os.path.exists(ns["path"]):
                raise BundleError(f"config.json: linux.namespaces[{i}].path {ns['path']}: "
                                  "no such file", field=f"linux.namespaces[{i}].path")
            join.append((ours, ns["path"]))
        else:
            new_ns.append(ours)
    if "mount" not in new_ns:
        raise _refuse("linux.namespaces without a new \"mount\" namespace",
                      "is not supported: the root is built in a mount namespace of its own")
    order = ("user", "mount", "pid", "net", "uts", "ipc", "cgroup")
    new_ns.sort(key=order.index)
    join.sort(key=lambda j: order.index(j[0]))
    shared = tuple(n for n in order if n not in new_ns and n not in (j[0] for j in join))
    hostname = _get(cfg, "hostname", str, "hostname", "")
    uts_joined = any(j[0] == "uts" for j in join)
    if hostname and "uts" not in new_ns and not uts_joined:
        raise BundleError("config.json: hostname needs a new uts namespace", field="hostname")
    if _get(cfg, "domainname", str, "domainname", ""):
        raise _refuse("domainname")
    sysctls = []
    for key, value in (_get(linux, "sysctl", dict, "linux.sysctl", {}) or {}).items():
        need = next((ns for pre, ns in NAMESPACED_SYSCTLS
                     if key == pre or (pre.endswith(".") and key.startswith(pre))), None)
        if need is None:
            raise BundleError(f"config.json: linux.sysctl {key!r} is not namespaced: it would "
                              "change the host", field="linux.sysctl")
        if need not in new_ns:
            raise BundleError(f"config.json: linux.sysctl {key!r} needs a new {need} namespace",
                              field="linux.sysctl")
        sysctls.append((key, str(value)))
    prop = _get(linux, "rootfsPropagation", str, "linux.rootfsPropagation", "")
    if prop and prop not in ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                             "unbindable", "runbindable"):
        raise BundleError(f"config.json: linux.rootfsPropagation {prop!r} is not a propagation "
                          "type", field="linux.rootfsPropagation")
    for key in ("intelRdt", "personality", "memoryPolicy", "timeOffsets"):
        if linux.get(key):
            raise _refuse(f"linux.{key}")
    if linux.get("mountLabel"):
        raise _refuse("linux.mountLabel", "cannot be applied: SELinux is not active")
    if proc.get("terminal") and not console:
        raise BundleError("config.json: process.terminal is true but no --console-socket "
                          "was given", field="process.terminal")
    idmap = build_idmap(linux, "user" in new_ns)
    capsets = build_capabilities(_get(proc, "capabilities", dict, "process.capabilities", {}))
    # `capabilities` (what the audit and the floor read): the effective set
    caps = capsets[1]
    seccomp = None
    sc = _get(linux, "seccomp", dict, "linux.seccomp")
    if sc:
        seccomp = build_seccomp(sc, caps, seccomp_dir)
    oom = proc.get("oomScoreAdj")
    return LaunchPlan(
        sandbox_id=cid, name=cid, profile="oci", profile_digest=bundle.digest,
        argv=tuple(args), env=tuple(env), workdir=cwd,
        hostname=hostname if uts_joined else hostname or cid,
        uid=uid, gid=gid, namespaces=tuple(new_ns), shared_namespaces=shared,
        idmap=idmap, base=base, root_kind="bundle",
        mounts=build_mounts(cfg, rootfs, tuple(new_ns), tuple(j[0] for j in join)),
        capabilities=caps, no_new_privs=bool(proc.get("noNewPrivileges")),
        rlimits=tuple(rlimits), cgroup=build_cgroup(cid, linux), seccomp=seccomp,
        network="none" if "net" in new_ns else "host",
        sysctls=tuple(sysctls), join_namespaces=tuple(join), additional_gids=agids,
        umask=None if umask is None else int(umask), oom_score_adj=None if oom is None
        else int(oom), root_propagation=prop, controlling_tty=bool(proc.get("terminal")),
        capability_sets=capsets)


def build_seccomp(sc: dict, caps: tuple[str, ...], seccomp_dir: str | None):
    from ..runtime.plan import SeccompPlan
    from ..seccomp import compile_filter
    if sc.get("listenerPath"):
        raise _refuse("linux.seccomp.listenerPath", "(SCMP_ACT_NOTIFY) is not supported")
    for i, s in enumerate(sc.get("syscalls") or []):
        if s.get("action") == "SCMP_ACT_NOTIFY":
            raise _refuse(f"linux.seccomp.syscalls[{i}].action SCMP_ACT_NOTIFY")
    if seccomp_dir is None:
        raise BundleError("config.json: linux.seccomp needs a state folder to compile in")
    path = os.path.join(seccomp_dir, "seccomp.json")
    with open(path, "w") as f:
        json.dump(sc, f)
    c = compile_filter(path, capabilities=frozenset(caps))
    return SeccompPlan(c.bpf, c.digest, "config.json linux.seccomp", c.default_action,
                       tuple(c.architectures), c.instructions)
