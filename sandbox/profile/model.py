"""The resolved profile: one frozen value handed down the launch pipeline.

A `Profile` is built only by `sandbox.profile.load` (validated, ``extends``
applied, command-line overrides applied). ``origins`` maps every dotted key
(``filesystem.read_only_root``) to where its value was set: a profile file,
a parent profile, a command-line flag, or the built-in default.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from .._hash import sha256
from .._values import asdict, ignore_last_field_in_eq

NAMESPACES = ("user", "pid", "mount", "net", "uts", "ipc", "cgroup")
#: Protections a profile may mark optional: the launch goes on without them
#: when the host lacks them, and the audit record says they were missing.
OPTIONAL_PROTECTIONS = ("seccomp", "landlock", "cgroups", "selinux")


class Namespaces(NamedTuple):
    """True: a new namespace; False: shared with the host ("host" in TOML)."""

    user: bool = True
    pid: bool = True
    mount: bool = True
    net: bool = True
    uts: bool = True
    ipc: bool = True
    cgroup: bool = True

    def shared(self) -> tuple[str, ...]:
        return tuple(n for n in NAMESPACES if not getattr(self, n))


class UserSpec(NamedTuple):
    uid: int = 0
    gid: int = 0
    #: "auto": a free 65536-id range from /etc/subuid when run by root, the
    #: caller's own id when not; "identity": always the caller's own id.
    map: str = "auto"


class SeccompSpec(NamedTuple):
    """``profile`` is an absolute path to OCI/Docker JSON, or None with
    ``unconfined`` True. ``default_action`` overrides the JSON's."""

    profile: str | None = None
    unconfined: bool = False
    default_action: str | None = None
    #: Extra ABIs to cover; on x86_64 the x86 and x32 ABIs are always
    #: covered (same rules) unless ``other_abis`` is "kill".
    other_abis: str = "same"


class Tmpfs(NamedTuple):
    path: str
    options: str = ""


class FilesystemSpec(NamedTuple):
    read_only_root: bool = True
    tmpfs: tuple[Tmpfs, ...] = ()
    masked_paths: tuple[str, ...] = ()
    read_only_paths: tuple[str, ...] = ()
    allow_setuid: bool = False


class LabelSpec(NamedTuple):
    user: str = "system_u"
    role: str = "system_r"
    type: str = "sandbox_t"
    level: str = "auto"
    #: Allow unlabelled volumes to be mounted read-only.
    allow_unlabelled_ro: bool = False


class NetworkSpec(NamedTuple):
    mode: str = "none"  # none | host | bridge | allow
    allow: tuple[str, ...] = ()   # egress rules for mode allow (sandbox.net.egress)
    deny: tuple[str, ...] = ()


class LimitsSpec(NamedTuple):
    #: wall-clock seconds before the sandbox is stopped (TERM, then KILL
    #: after `sandbox.runtime.plan.TIMEOUT_GRACE`); exit status 124
    timeout: float | None = None
    cpu_time: int | None = None       # RLIMIT_CPU, seconds
    address_space: int | None = None  # RLIMIT_AS, bytes
    #: ``(NAME, soft, hard)`` as Docker's ``--ulimit``; wins over the above
    ulimits: tuple[tuple[str, int, int], ...] = ()
    memory: int | None = None     # bytes
    pids: int | None = None
    nofile: int | None = None     # RLIMIT_NOFILE, soft = hard
    nproc: int | None = None      # RLIMIT_NPROC
    fsize: int | None = None      # RLIMIT_FSIZE, bytes
    core: int | None = 0          # RLIMIT_CORE, bytes
    #: CPUs' worth of time (cgroup cpu controller's CFS quota), as Docker's
    #: --cpus; no rlimit can stand in for it (rootless on cgroup v1: said
    #: at launch as not applied)
    cpus: float | None = None


class ProcessSpec(NamedTuple):
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/"
    hostname: str = "sandbox"
    no_new_privs: bool = True


class LandlockSpec(NamedTuple):
    enabled: bool = True


@ignore_last_field_in_eq          # origins: where values came from, not what they are
class Profile(NamedTuple):
    name: str
    description: str
    source: str                      # file the profile came from
    namespaces: Namespaces
    user: UserSpec
    capabilities: frozenset[str]     # exactly these, in every set but inheritable/ambient
    seccomp: SeccompSpec
    filesystem: FilesystemSpec
    label: LabelSpec
    network: NetworkSpec
    limits: LimitsSpec
    process: ProcessSpec
    landlock: LandlockSpec
    optional: frozenset[str] = frozenset()
    #: dotted key -> where it was set ("profiles/default.toml", "flag --hostname")
    origins: tuple[tuple[str, str], ...] = ()

    @property
    def unconfined(self) -> bool:
        return self.name == "unconfined" or self.seccomp.unconfined

    def to_dict(self) -> dict:
        """Plain JSON-able form (sets sorted), without ``origins``."""
        d = asdict(self)
        d.pop("origins")
        for key in ("timeout", "cpu_time", "address_space", "ulimits"):
            if not d["limits"][key]:     # unset: digests stay what they were
                del d["limits"][key]
        d["capabilities"] = sorted(self.capabilities)
        d["optional"] = sorted(self.optional)
        d["process"]["env"] = dict(self.process.env)
        if self.limits.cpus is None:
            # unset: left out, so the digests of profiles that do not use
            # it stay what they were before the field existed
            del d["limits"]["cpus"]
        return d

    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical JSON of `to_dict` (the seccomp
        JSON is hashed by the filter compiler, not here)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + sha256(blob.encode()).hexdigest()

    def origin(self, key: str) -> str:
        return dict(self.origins).get(key, "built-in default")
