"""The profile schema: every key a profile may set, its type and its default.

Keys are dotted (``filesystem.read_only_root``). A list key ``K`` may also be
given in a child profile as ``K_add`` / ``K_remove`` to change the parent's
list instead of replacing it (``capabilities.add`` / ``capabilities.remove``
are short for ``capabilities.retain_add`` / ``_remove``).

Each checker takes ``(value, base_dir)`` and returns the normalised value or
raises ``ValueError`` with a message that says what was expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import capabilities as caps
from .._resources import data_dir
from .model import OPTIONAL_PROTECTIONS

#: Locked down by default: a profile that does not say otherwise (even one
#: written without ``extends``) gets the bundled seccomp allow-list and
#: Docker's masked and read-only paths (moby oci/defaults.go).
DEFAULT_SECCOMP = str(data_dir("profiles") / "seccomp" / "default.json")
DEFAULT_MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap")
DEFAULT_READ_ONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                           "/proc/sysrq-trigger")

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.I)
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
_ENVNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_size(value) -> int:
    """``512M``, ``64m``, ``1GiB``, ``4096`` or an int to bytes (powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512M")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ValueError("expected a size such as 512M")
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size; write it like 512M or 1G")
    n, unit = int(m.group(1)), m.group(2).lower()
    return n * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit]


def _bool(v, _):
    if not isinstance(v, bool):
        raise ValueError("expected true or false")
    return v


def _namespace(v, _):
    if v is True or v is False:
        return v
    if v == "host":
        return False
    if v == "new":
        return True
    raise ValueError('expected true (a new namespace) or "host"')


def _int(lo, hi):
    def check(v, _):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return v
    return check


def _str(v, _):
    if not isinstance(v, str):
        raise ValueError("expected a string")
    return v


def _choice(*options):
    def check(v, _):
        if v not in options:
            raise ValueError("expected one of " + ", ".join(repr(o) for o in options))
        return v
    return check


def _size(v, _):
    return parse_size(v)


def _unlimited(v) -> bool:
    # not `v in (..., False)`: 0 == False, and 0 is a limit (core = 0), never "no limit"
    return v is False or v in ("unlimited", "none")


def _optional_size(v, _):
    if _unlimited(v):
        return None
    return parse_size(v)


#: the smallest memory limit accepted, as Docker's ("Minimum memory limit
#: allowed is 6MB"): below it the cgroup's OOM killer ends the sandbox during
#: setup, before the payload starts, and the launch could only say "failed
#: during setup without saying why".
MIN_MEMORY = 6 << 20


def _memory(v, _):
    if _unlimited(v):
        return None
    n = parse_size(v)
    if n < MIN_MEMORY:
        raise ValueError(f"{v!r} is below the minimum memory limit of 6M "
                         "(the sandbox cannot even start in less); give 6M or more")
    return n


def _optional_count(v, _):
    if _unlimited(v):
        return None
    return _int(1, 1 << 31)(v, _)


#: CPUs a sandbox may use, as Docker's ``--cpus``: 0.5 is half of one CPU's
#: time. The upper bound is the kernel's (NR_CPUS at most 8192), not this
#: host's, so a profile stays valid from machine to machine.
MIN_CPUS, MAX_CPUS = 0.01, 8192


def _cpus(v, _):
    if _unlimited(v):
        return None
    if isinstance(v, bool):
        raise ValueError("expected a number of CPUs such as 0.5 or 2")
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ValueError(f"{v!r} is not a number of CPUs; write it like 0.5 or 2") from None
    if not isinstance(v, (int, float)) or v != v or not MIN_CPUS <= v <= MAX_CPUS:
        raise ValueError(f"expected a number of CPUs from {MIN_CPUS} to {MAX_CPUS}, "
                         'or "unlimited"')
    return float(v)


def _list_of(item):
    def check(v, base):
        if not isinstance(v, list):
            raise ValueError("expected a list")
        return tuple(item(x, base) for x in v)
    return check


def _abs_path(v, _):
    if not isinstance(v, str) or not v.startswith("/") or "\0" in v:
        raise ValueError("expected an absolute path inside the sandbox")
    parts = [p for p in v.split("/") if p]
    if ".." in parts:
        raise ValueError(f"{v!r} must not contain '..'")
    return "/" + "/".join(parts)


def _tmpfs(v, base):
    if not isinstance(v, str):
        raise ValueError('expected "PATH[:OPTIONS]" such as "/tmp:size=64m,mode=1777"')
    path, _, opts = v.partition(":")
    path = _abs_path(path, base)
    for opt in filter(None, opts.split(",")):
        key = opt.split("=", 1)[0]
        if key not in ("size", "mode", "nr_inodes", "uid", "gid", "noexec", "exec",
                       "nosuid", "nodev"):
            raise ValueError(f"unknown tmpfs option {key!r} in {v!r}")
    return v if not opts else f"{path}:{opts}"


def _cap(v, _):
    if not isinstance(v, str):
        raise ValueError("expected a capability name such as CAP_CHOWN")
    try:
        return caps.normalize(v)
    except KeyError:
        raise ValueError(f"unknown capability {v!r}; names are as in capabilities(7), "
                         "for example CAP_NET_BIND_SERVICE") from None


def _caps(v, base):
    if isinstance(v, str) and v.upper() == "ALL":
        return tuple(sorted(caps.CAPABILITIES))
    return _list_of(_cap)(v, base)


#: ``seccomp.profile = "builtin:NAME"`` names a filter that ships with
#: sandbox (``profiles/seccomp/NAME.json``), from any profile file.
BUILTIN_SECCOMP_PREFIX = "builtin:"


def builtin_seccomp_dir() -> Path:
    return data_dir("profiles") / "seccomp"


def builtin_seccomp_names() -> list[str]:
    return sorted(p.stem for p in builtin_seccomp_dir().glob("*.json"))


def builtin_seccomp_name(path: str) -> str | None:
    """``builtin:NAME`` for a resolved path to a bundled filter, else None."""
    p = Path(path)
    if p.suffix == ".json" and p.parent == builtin_seccomp_dir().resolve():
        return BUILTIN_SECCOMP_PREFIX + p.stem
    return None


def _seccomp_profile(v, base: Path):
    if not isinstance(v, str) or not v:
        raise ValueError('expected a path to an OCI/Docker seccomp JSON, "builtin:NAME" '
                         'or "unconfined"')
    if v == "unconfined":
        return v
    builtins = ", ".join(BUILTIN_SECCOMP_PREFIX + n for n in builtin_seccomp_names())
    if v.startswith(BUILTIN_SECCOMP_PREFIX):
        name = v[len(BUILTIN_SECCOMP_PREFIX):]
        if name not in builtin_seccomp_names():
            raise ValueError(f"no bundled seccomp filter {v!r}; the bundled ones are {builtins}")
        return str((builtin_seccomp_dir() / f"{name}.json").resolve())
    # A relative path is relative to the profile file that names it.
    p = Path(v) if os.path.isabs(v) else (base / v)
    p = p.resolve()
    if p.exists() and not p.is_file():
        # /dev/null or a folder: "does not exist" sent users looking for a typo
        raise ValueError(f"seccomp profile {str(p)!r} is not a regular file; give an "
                         f"OCI/Docker seccomp JSON file (bundled filters: {builtins})")
    if not p.is_file():
        raise ValueError(f"seccomp profile {str(p)!r} does not exist (a relative path is "
                         f"read next to the profile file; bundled filters: {builtins})")
    return str(p)


def _hostname(v, _):
    if not isinstance(v, str) or not _HOSTNAME.match(v) or len(v) > 64:
        raise ValueError(f"{v!r} is not a valid host name (letters, digits, '-', '.', at most 64)")
    return v


def _env(v, _):
    if not isinstance(v, dict):
        raise ValueError('expected a table of NAME = "value"')
    out = []
    for k, val in v.items():
        if not _ENVNAME.match(k):
            raise ValueError(f"{k!r} is not a valid environment variable name")
        if not isinstance(val, str) or "\0" in val:
            raise ValueError(f"value of {k!r} must be a string")
        out.append((k, val))
    return tuple(out)


def _optional(v, base):
    return _list_of(_choice(*OPTIONAL_PROTECTIONS))(v, base)


def _seccomp_action(v, _):
    if not isinstance(v, str):
        raise ValueError('expected an action such as "SCMP_ACT_ERRNO", "errno:ENOSYS" or "kill"')
    return v


#: dotted key -> (checker, default). The defaults are what `default.toml`
#: starts from; bundled profiles say every important field explicitly anyway.
SCHEMA: dict[str, tuple] = {
    "name": (_str, None),
    "description": (_str, ""),
    "extends": (_str, None),
    "optional": (_optional, ()),
    **{f"namespaces.{n}": (_namespace, True)
       for n in ("user", "pid", "mount", "net", "uts", "ipc", "cgroup")},
    "user.uid": (_int(0, 2**32 - 2), 0),
    "user.gid": (_int(0, 2**32 - 2), 0),
    "user.map": (_choice("auto", "identity"), "auto"),
    "capabilities.retain": (_caps, ()),
    "seccomp.profile": (_seccomp_profile, DEFAULT_SECCOMP),
    "seccomp.default_action": (_seccomp_action, None),
    "seccomp.other_abis": (_choice("same", "kill"), "same"),
    "filesystem.read_only_root": (_bool, True),
    "filesystem.tmpfs": (_list_of(_tmpfs), ()),
    "filesystem.masked_paths": (_list_of(_abs_path), DEFAULT_MASKED_PATHS),
    "filesystem.read_only_paths": (_list_of(_abs_path), DEFAULT_READ_ONLY_PATHS),
    "filesystem.allow_setuid": (_bool, False),
    "label.user": (_str, "system_u"),
    "label.role": (_str, "system_r"),
    "label.type": (_str, "sandbox_t"),
    "label.level": (_str, "auto"),
    "label.allow_unlabelled_ro": (_bool, False),
    "network.mode": (_choice("none", "host", "bridge", "allow"), "none"),
    # egress rules (NAME, *.DOMAIN, ADDRESS, each [:PORT]), checked by
    # sandbox.net.egress.policy when the plan is built
    "network.allow": (_list_of(_str), ()),
    "network.deny": (_list_of(_str), ()),
    "limits.memory": (_memory, None),
    "limits.pids": (_optional_count, None),
    "limits.nofile": (_optional_count, None),
    "limits.nproc": (_optional_count, None),
    "limits.fsize": (_optional_size, None),
    "limits.core": (_optional_size, 0),
    "limits.cpus": (_cpus, None),
    "process.env": (_env, ()),
    "process.workdir": (_abs_path, "/"),
    "process.hostname": (_hostname, "sandbox"),
    "process.no_new_privs": (_bool, True),
    "landlock.enabled": (_bool, True),
}

#: keys whose values are lists and so accept ``_add`` / ``_remove``.
LIST_KEYS = frozenset(k for k in SCHEMA if k in {
    "optional", "capabilities.retain", "filesystem.tmpfs",
    "filesystem.masked_paths", "filesystem.read_only_paths", "network.allow", "network.deny"})
#: keys whose TOML value is a table but which are leaves here.
TABLE_LEAVES = frozenset({"process.env"})
ALIASES = {"capabilities.add": "capabilities.retain_add",
           "capabilities.remove": "capabilities.retain_remove"}


def check(key: str, value, base_dir: Path):
    """Validate one value; ``KeyError`` for an unknown key, ``ValueError`` for a bad value."""
    real = ALIASES.get(key, key)
    for suffix in ("_add", "_remove"):
        if real.endswith(suffix) and real[: -len(suffix)] in LIST_KEYS:
            checker = SCHEMA[real[: -len(suffix)]][0]
            return checker(value, base_dir)
    if real not in SCHEMA:
        raise KeyError(key)
    return SCHEMA[real][0](value, base_dir)


def known_keys() -> list[str]:
    keys = list(SCHEMA) + list(ALIASES)
    keys += [k + s for k in LIST_KEYS for s in ("_add", "_remove")]
    return keys


# --- limits for untrusted work (issue 15): wall clock, CPU, rlimits -------

#: Docker's ``--ulimit`` names -> the rlimit each sets (setrlimit(2))
ULIMIT_NAMES = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}
#: the largest value setrlimit(2) takes besides RLIM_INFINITY
_RLIM_MAX = (1 << 63) - 1
#: timeout(1)'s suffixes, and ms for sub-second limits
_DURATION_UNITS = (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400))
MAX_TIMEOUT = 366 * 86400


def parse_duration(value) -> float:
    """``30``, ``1.5s``, ``500ms``, ``2m``, ``1h`` or ``1d`` to seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s or 5m")
    if isinstance(value, (int, float)):
        secs = float(value)
    elif isinstance(value, str):
        text, scale = value.strip(), 1.0
        for suffix, mult in _DURATION_UNITS:
            if text.endswith(suffix) and text[: -len(suffix)][-1:].isdigit():
                text, scale = text[: -len(suffix)], mult
                break
        try:
            secs = float(text) * scale
        except ValueError:
            raise ValueError(f"{value!r} is not a duration; write it like 30s, 500ms, "
                             "5m or 1h") from None
    else:
        raise ValueError("expected a duration such as 30s or 5m")
    if not secs == secs or not 0.001 <= secs <= MAX_TIMEOUT:   # NaN, zero, negative
        raise ValueError(f"expected a duration from 1ms to {MAX_TIMEOUT // 86400} days")
    return secs


def _optional_duration(v, _):
    if v in ("unlimited", "none", False):
        return None
    return parse_duration(v)


def _rlimit_value(name: str, text) -> int:
    if text in ("unlimited", "-1", -1):
        return -1                       # RLIM_INFINITY
    if name in ("as", "core", "data", "fsize", "memlock", "msgqueue", "rss", "stack"):
        n = parse_size(text)            # sizes in bytes, 512M allowed
    else:
        if isinstance(text, bool) or not (isinstance(text, int) or
                                          (isinstance(text, str) and text.isdigit())):
            raise ValueError(f"{name}: {text!r} is not a number")
        n = int(text)
    if not 0 <= n <= _RLIM_MAX:
        raise ValueError(f"{name}: {text!r} is out of range")
    return n


def parse_ulimit(name: str, value) -> tuple[str, int, int]:
    """``nofile``, ``"1024:2048"`` (SOFT[:HARD]) to ``("RLIMIT_NOFILE", 1024,
    2048)``; -1 is unlimited (RLIM_INFINITY)."""
    if name not in ULIMIT_NAMES:
        raise ValueError(f"unknown ulimit {name!r}; known: {', '.join(sorted(ULIMIT_NAMES))}")
    if isinstance(value, str):
        soft_t, sep, hard_t = value.partition(":")
        soft = _rlimit_value(name, soft_t)
        hard = _rlimit_value(name, hard_t) if sep else soft
    else:
        soft = hard = _rlimit_value(name, value)
    if hard != -1 and (soft == -1 or soft > hard):
        raise ValueError(f"{name}: the soft limit {value!r} is above the hard limit")
    return ULIMIT_NAMES[name], soft, hard


def _ulimits(v, _):
    """A table ``{nofile = "1024:2048", cpu = 10}``, ``NAME=SOFT[:HARD]``
    strings (``--ulimit``) or checked triples; sorted by rlimit name."""
    out: dict[str, tuple[str, int, int]] = {}
    if isinstance(v, dict):
        items = list(v.items())
    elif isinstance(v, (list, tuple)):
        items = []
        for x in v:
            if isinstance(x, (list, tuple)) and len(x) == 3 and x[0] in ULIMIT_NAMES.values():
                out[x[0]] = (x[0], int(x[1]), int(x[2]))
                continue
            if not isinstance(x, str) or "=" not in x:
                raise ValueError(f"bad ulimit {x!r}; write it as NAME=SOFT[:HARD]")
            items.append(tuple(x.split("=", 1)))
    else:
        raise ValueError("expected a table such as {nofile = \"1024:2048\"}")
    for name, value in items:
        lim = parse_ulimit(name, value)
        out[lim[0]] = lim
    return tuple(sorted(out.values()))


SCHEMA.update({
    "limits.timeout": (_optional_duration, None),
    "limits.cpu_time": (_optional_count, None),
    "limits.address_space": (_optional_size, None),
    "limits.ulimits": (_ulimits, ()),
})
TABLE_LEAVES = TABLE_LEAVES | {"limits.ulimits"}
