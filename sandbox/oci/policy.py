"""The hardening floor: a sandbox profile a container's config may not be
weaker than (DESIGN §12). Never changes the config: refuses it, naming the
first field that falls short.

Where the floor comes from, all of them enforced together:
  * ``sandbox-oci create --policy PROFILE`` (the operator),
  * ``policy = "PROFILE"`` in ``<config>/oci.toml`` (the operator, for
    every container an engine starts),
  * the annotation ``run.sandbox.policy`` (the config's author may only add
    a floor: it never replaces the operator's).

What "weaker" means, field by field (the profile's value -> the config):
  namespaces   each namespace the profile makes new must be new
  capabilities each of bounding, effective, permitted, inheritable and
               ambient must be within the profile's set
  no_new_privs required when the profile sets it
  seccomp      a filter is required unless the profile is unconfined,
               its defaultAction must not be SCMP_ACT_ALLOW/LOG, and it may
               not allow a syscall of `DANGEROUS` that the profile's own
               filter does not allow
  user ns      the uid and gid maps may not map the host's root (id 0)
  binds        no bind of the host's /, /proc, /sys or /dev (or below)
  read-only    root.readonly when the profile's root is read-only
  paths        every masked and read-only path of the profile
  limits       memory and pids at most the profile's
  devices      no linux.devices beyond the default devices
  hooks        none that run on the host (prestart, createRuntime,
               poststart, poststop: they run as the runtime's user, outside
               every protection of the container)
"""

from __future__ import annotations

import os

from .translate import BundleError

ANNOTATION = "run.sandbox.policy"

#: syscalls that reach the kernel's most exposed or host-wide interfaces
DANGEROUS = frozenset((
    "mount", "umount2", "unshare", "setns", "pivot_root", "chroot", "move_mount",
    "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "ptrace", "process_vm_readv",
    "process_vm_writev", "kcmp", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
    "kexec_file_load", "init_module", "finit_module", "delete_module", "open_by_handle_at",
    "name_to_handle_at", "keyctl", "add_key", "request_key", "swapon", "swapoff", "reboot",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm",
    "quotactl", "acct", "lookup_dcookie", "personality", "syslog", "vhangup", "nfsservctl",
))
_HOST_TREES = ("/proc", "/sys", "/dev")


class PolicyRefusal(BundleError):
    """The config is weaker than the floor."""

    def __init__(self, profile: str, field: str, why: str):
        BundleError.__init__(self, f"refused by policy {profile}: {field} {why}", field=field,
                             hint=f"strengthen {field} in config.json, or choose another "
                                  "--policy")
        self.profile = profile


def floors(flag: str | None, cfg: dict, config_dir) -> list[str]:
    """The profile names (or paths) to enforce, operator's first."""
    out = []
    if flag:
        out.append(flag)
    f = os.path.join(str(config_dir), "oci.toml")
    if os.path.exists(f):
        import tomllib
        with open(f, "rb") as fh:
            doc = tomllib.load(fh)
        if doc.get("policy"):
            out.append(str(doc["policy"]))
    ann = (cfg.get("annotations") or {}).get(ANNOTATION)
    if ann:
        out.append(str(ann))
    return list(dict.fromkeys(out))


def check_floor(profile, plan, cfg: dict) -> None:
    """Raise `PolicyRefusal` when ``plan`` (from ``cfg``) is weaker than
    ``profile`` (a `sandbox.profile.model.Profile`). Pure."""
    name = profile.name

    def refuse(field, why):
        raise PolicyRefusal(name, field, why)
    ns = profile.namespaces
    oci_name = {"net": "network"}
    for n in ("user", "mount", "pid", "net", "uts", "ipc", "cgroup"):
        if getattr(ns, n) and n not in plan.namespaces:
            refuse("linux.namespaces", f"lacks a new {oci_name.get(n, n)} namespace")
    allowed = set(profile.capabilities)
    sets = plan.capability_sets or (plan.capabilities,) * 3 + ((), ())
    for key, caps in zip(("bounding", "effective", "permitted", "inheritable", "ambient"),
                         sets):
        extra = sorted(set(caps) - allowed)
        if extra:
            refuse(f"process.capabilities.{key}", f"has {', '.join(extra)}, beyond the "
                                                   "profile's set")
    if profile.process.no_new_privs and not plan.no_new_privs:
        refuse("process.noNewPrivileges", "must be true")
    if not profile.unconfined:
        sc = (cfg.get("linux") or {}).get("seccomp")
        if plan.seccomp is None or not sc:
            refuse("linux.seccomp", "is missing: the profile requires a filter")
        if sc.get("defaultAction") in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"):
            refuse("linux.seccomp.defaultAction", f"{sc['defaultAction']} allows every "
                                                  "syscall not listed")
        extra = sorted((_allowed(sc) & DANGEROUS) - _profile_allowed(profile))
        if extra:
            refuse("linux.seccomp.syscalls", f"allows {', '.join(extra[:4])}, which the "
                                             "profile's filter does not")
    if plan.idmap is not None:
        for key, text in (("uidMappings", plan.idmap.uid_map), ("gidMappings",
                                                                plan.idmap.gid_map)):
            for line in text.splitlines():
                _inside, host, size = (int(x) for x in line.split())
                if host <= 0 < host + size:
                    refuse(f"linux.{key}", "maps the host's root (id 0) into the container")
    for i, m in enumerate(cfg.get("mounts") or ()):
        opts = m.get("options") or ()
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            src = os.path.normpath(str(m.get("source") or ""))
            if src == "/" or any(src == t or src.startswith(t + "/") for t in _HOST_TREES):
                refuse(f"mounts[{i}].source", f"binds the host's {src}")
    fs = profile.filesystem
    if fs.read_only_root and not (cfg.get("root") or {}).get("readonly"):
        refuse("root.readonly", "must be true")
    linux = cfg.get("linux") or {}
    for key, want in (("maskedPaths", fs.masked_paths), ("readonlyPaths", fs.read_only_paths)):
        have = set(linux.get(key) or ())
        miss = [p for p in want if p not in have]
        if miss:
            refuse(f"linux.{key}", f"lacks {', '.join(miss[:3])}"
                                   + (f" and {len(miss) - 3} more" if len(miss) > 3 else ""))
    res = linux.get("resources") or {}
    lim = profile.limits
    if lim.memory is not None:
        m = (res.get("memory") or {}).get("limit")
        if m is None or m <= 0 or m > lim.memory:
            refuse("linux.resources.memory.limit", f"must be at most {lim.memory}")
    if lim.pids is not None:
        p = (res.get("pids") or {}).get("limit")
        if p is None or p <= 0 or p > lim.pids:
            refuse("linux.resources.pids.limit", f"must be at most {lim.pids}")
    if linux.get("devices"):
        refuse("linux.devices", "adds device nodes")
    for h in ("prestart", "createRuntime", "poststart", "poststop"):
        if (cfg.get("hooks") or {}).get(h):
            refuse(f"hooks.{h}", "runs a program on the host, outside the container")


def _allowed(sc: dict, caps: frozenset[str] | None = None) -> set[str]:
    """Syscalls a seccomp JSON allows without argument conditions; with
    ``caps``, a rule included for capabilities counts only when the
    payload holds every one of them (Docker's ``includes.caps``)."""
    out: set[str] = set()
    for r in sc.get("syscalls") or ():
        if r.get("action") not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") or r.get("args"):
            continue
        need = (r.get("includes") or {}).get("caps") or ()
        if caps is not None and not set(need) <= caps:
            continue
        out.update(r.get("names") or ([r["name"]] if r.get("name") else []))
    return out


def _profile_allowed(profile) -> set[str]:
    """What the profile's own filter allows its payload, whose capabilities
    are the profile's."""
    import json
    path = profile.seccomp.profile
    if not path:
        return set()
    try:
        with open(path) as f:
            return _allowed(json.load(f), frozenset(profile.capabilities))
    except (OSError, ValueError):
        return set()
