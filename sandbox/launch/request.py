"""Stage 1 of a launch: the request, validated once (DESIGN §2 step 1).

`build_request` is the one validator of what a caller asks for besides the
profile: the CLI (`sandbox.cli._run_fast`) and the library
(`sandbox.api.Sandbox`) both go through it, so a bad volume, environment
variable, user, name or insecure option gets the same one-line refusal
from both. It returns a frozen `Request`; `check_argv` does the same for
the command, which a `Sandbox` receives per launch.

No kernel work here; the only file-system look-up is the existence of a
volume source, so a typo fails before anything else.

Speed: this module is on every launch path; it imports no regular
expressions (``re`` costs ~5 ms at start-up).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import UsageError
from ..runtime.spec import Volume

#: Options that weaken the sandbox and the only way to ask for them
#: (STYLE: unsafe is loud). Each use is recorded in the audit log.
INSECURE_OPTIONS = ("image", "ondisk", "userns")


class Request(NamedTuple):
    """What the caller asked for, checked. Everything after the profile
    reference overrides the profile (with ``flag --NAME`` as origin)."""

    profile: str = "default"
    rootfs: str | None = None
    image: str | None = None
    volumes: tuple[Volume, ...] = ()
    name: str | None = None
    hostname: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    workdir: str | None = None
    user: tuple[int, int] | str | None = None   # a str names a user (resolved in the root)
    network: str | None = None          # none | host | bridge | allow:RULES (None: the profile's)
    bridge: str | None = None           # the bridge's name with ``bridge:NAME``
    ports: tuple = ()                   # sandbox.net.PortForward values
    dns: tuple[str, ...] = ()
    allow_host: tuple = ()              # sandbox.net.HostPort values (--allow-host)
    insecure_options: tuple[str, ...] = ()
    audit: bool = True
    #: who asked (issue 14): taken when the request is made, in the
    #: caller's process (a detached supervisor is a daemon); None unaudited
    caller: dict | None = None
    #: ``(profile key, checked value, origin)``: the per-run limits
    #: (``--timeout``, ``--cpus``, ``--memory``, ``--pids-limit``)
    limits: tuple[tuple[str, object, str], ...] = ()
    #: ``--ulimit`` values, checked: ``(RLIMIT_NAME, soft, hard)``
    ulimits: tuple[tuple[str, int, int], ...] = ()
    #: ``(profile key, raw value, origin)`` handed to the profile loader
    #: (``--cap-add``, ``--cap-drop``, ``--security-opt``, ``--tmpfs``,
    #: ``--read-only``/``--read-write``), checked by its schema
    profile_overrides: tuple[tuple[str, object, str], ...] = ()
    entrypoint: tuple[str, ...] | None = None     # --entrypoint (() clears the image's)
    #: ``-i``: the CLI gives the payload the caller's stdin (else /dev/null);
    #: None: not said (the library, whose ``run`` takes ``stdin``)
    interactive: bool | None = None


#: run option -> the profile key it overrides (issue 15: limits for
#: untrusted work); the value is checked by the profile's own schema
LIMIT_FLAGS = (("timeout", "limits.timeout", "--timeout"),
               ("cpus", "limits.cpus", "--cpus"),
               ("memory", "limits.memory", "--memory"),
               ("pids_limit", "limits.pids", "--pids-limit"))


def build_limits(**values) -> tuple[tuple[str, object, str], ...]:
    """The per-run limits (keywords of `LIMIT_FLAGS`; None: not given),
    each checked as the profile checks it; `UsageError` naming the flag."""
    from ..profile import schema
    out = []
    for kw, key, flag in LIMIT_FLAGS:
        raw = values.get(kw)
        if raw is None:
            continue
        if kw == "pids_limit" and isinstance(raw, str):     # Docker: -1 is unlimited
            raw = "unlimited" if raw.strip() == "-1" else \
                int(raw) if raw.strip().isdigit() else raw
        try:
            out.append((key, schema.check(key, raw, None), f"flag {flag}"))
        except ValueError as e:
            raise UsageError(f"bad {flag} {raw!r}: {e}") from None
    return tuple(out)


def build_profile_overrides(*, cap_add=(), cap_drop=(), security_opt=(), tmpfs=(),
                            read_only=None) -> tuple[tuple[str, object, str], ...]:
    """Docker's run options that change the profile, as ``(profile key, raw
    value, origin)`` for the loader, each checked now by the profile's
    schema; `UsageError` naming the flag and the value otherwise."""
    from pathlib import Path
    from ..profile import schema
    out: list[tuple[str, object, str]] = []

    def add(key, value, flag, shown=None):
        try:
            schema.check(key, value, Path.cwd())
        except (KeyError, ValueError) as e:
            # a KeyError's str() is the repr of its message: take the message
            # itself (stripping quotes off str() ate a ValueError's closing one)
            why = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            raise UsageError(f"bad {flag} {shown if shown is not None else value!r}: "
                             f"{why}") from None
        out.append((key, value, f"flag {flag}"))

    def caps_norm(cs):          # Docker takes NET_RAW and CAP_NET_RAW alike
        return [c.upper() if c.upper().startswith("CAP_") or c.upper() == "ALL"
                else "CAP_" + c.upper() for c in cs]
    if cap_drop:
        drop = caps_norm(cap_drop)
        if "ALL" in drop:
            from ..capabilities import CAPABILITIES
            drop = sorted(CAPABILITIES)
        add("capabilities.retain_remove", drop, "--cap-drop", " ".join(cap_drop))
    if cap_add:
        add("capabilities.retain_add", caps_norm(cap_add), "--cap-add", " ".join(cap_add))
    for opt in security_opt:
        name, sep, value = opt.partition("=")
        if not sep and ":" in opt:          # Docker's old spelling seccomp:FILE
            name, _, value = opt.partition(":")
        if name == "seccomp" and value:
            add("seccomp.profile", value, "--security-opt", opt)
        elif name == "label" and value.startswith("level:") and value[6:]:
            add("label.level", value[6:], "--security-opt", opt)
        elif name in ("no-new-privileges", "no-new-privileges:true") and value in ("", "true"):
            add("process.no_new_privs", True, "--security-opt", opt)
        else:
            raise UsageError(f"bad --security-opt {opt!r}",
                             hint="known: seccomp=FILE, seccomp=unconfined, "
                                  "label=level:LEVEL (e.g. s0:c1,c2), no-new-privileges")
    if tmpfs:
        specs = []
        for t in tmpfs:
            dst, _, opts = t.partition(":")
            # Docker's own tmpfs options: rw/ro are not tmpfs data options here
            opts = ",".join(o for o in opts.split(",") if o and o not in ("rw",))
            if "ro" in opts.split(","):
                raise UsageError(f"bad --tmpfs {t!r}: a read-only tmpfs would stay empty",
                                 hint="drop ',ro'")
            specs.append(f"{dst}:{opts}" if opts else dst)
        add("filesystem.tmpfs_add", specs, "--tmpfs", " ".join(tmpfs))
    if read_only is not None:
        add("filesystem.read_only_root", bool(read_only),
            "--read-only" if read_only else "--read-write")
    return tuple(out)


#: the largest ``--env-file`` read (the kernel's whole argv + environ of an
#: execve is about 2 MiB by default: more could never reach the payload)
ENV_FILE_MAX = 1 << 20


def parse_env_file(path: str) -> dict[str, str]:
    """Docker's ``--env-file``: ``NAME=VALUE`` lines, ``NAME`` alone taking
    the caller's value, ``#`` comments and blank lines skipped."""
    try:
        # Bounded: a file that never ends (/dev/zero, a stuck pipe's writer
        # aside) once grew the caller until the kernel killed it (137, no
        # word). A pipe (`--env-file <(...)`) stays accepted.
        with open(path, "rb") as f:
            data = f.read(ENV_FILE_MAX + 1)
        if len(data) > ENV_FILE_MAX:
            raise UsageError(f"--env-file {path!r}: larger than {ENV_FILE_MAX >> 20} MiB",
                             hint="give a file of NAME=VALUE lines")
        lines = data.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--env-file {path!r}: cannot read it: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    env = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, sep, v = line.partition("=")
        if not sep:
            if k in os.environ:
                env[k] = os.environ[k]
            continue
        if not _env_name_ok(k):
            raise UsageError(f"--env-file {path!r} line {n}: bad variable name {k!r}")
        env[k] = v
    return env


def _entrypoint(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,) if value else ()
    return check_argv(value)


def parse_ulimits(values) -> tuple[tuple[str, int, int], ...]:
    """``--ulimit NAME=SOFT[:HARD]`` strings (or checked triples) to
    ``(RLIMIT_NAME, soft, hard)``; `UsageError` naming the bad one."""
    from ..profile import schema
    out = []
    for v in values:
        if isinstance(v, tuple):
            out.append(v)
            continue
        name, sep, val = str(v).partition("=")
        if not sep or not name or not val:
            raise UsageError(f"bad --ulimit {v!r}", hint="write it as NAME=SOFT[:HARD], "
                             "e.g. nofile=1024:2048 or cpu=10")
        try:
            out.append(schema.parse_ulimit(name, val))
        except ValueError as e:
            raise UsageError(f"bad --ulimit {v!r}: {e}") from None
    return tuple(out)


def build_request(profile: str = "default", *, rootfs=None, image: str | None = None,
                  volumes=(), name: str | None = None, hostname: str | None = None,
                  env=None, workdir: str | None = None, user=None, network: str | None = None,
                  ports=(), dns=(), insecure_options=(), audit: bool = True,
                  timeout=None, cpus=None, memory=None, pids_limit=None,
                  ulimits=(), cap_add=(), cap_drop=(), security_opt=(), tmpfs=(),
                  read_only: bool | None = None, entrypoint: str | None = None,
                  interactive: bool | None = None, allow_host=()) -> Request:
    """Check every field and return the `Request`; `UsageError` naming the
    first bad one otherwise. Accepts the library's forms (a mapping for
    ``env``, ``(UID, GID)`` for ``user``, `Volume` values) and the CLI's
    strings alike."""
    if not isinstance(profile, (str, os.PathLike)):
        raise UsageError(f"bad profile {profile!r}", hint="give a profile name or a TOML path")
    vols = tuple(_volume(v) for v in volumes)
    if name is not None:
        check_name(name)
    opts = tuple(insecure_options)
    for opt in opts:
        if opt not in INSECURE_OPTIONS:
            raise UsageError(f"unknown insecure option {opt!r}",
                             hint=f"known: {', '.join(INSECURE_OPTIONS)}")
    if rootfs is not None and image is not None:
        raise UsageError("give either an image or --rootfs, not both")
    bridge = None
    if network is not None and network.startswith("bridge:"):
        from ..net.model import parse_network
        network, bridge = parse_network(network)
    if network is not None and network.startswith("allow"):
        # --net allow:HOST[,HOST...]: checked here (a malformed name is a
        # usage error naming it); kept whole so the template cache keys on it
        from ..net.egress import parse_rules
        _, sep, rules = network.partition(":")
        if not sep or not rules.strip():
            raise UsageError(f"bad --net {network!r}: name the destinations, "
                             "as in allow:pypi.org,*.pythonhosted.org")
        network = "allow:" + ",".join(str(r) for r in parse_rules(rules, "--net allow:"))
    ports, dns = tuple(ports), tuple(dns)
    allow_host = tuple(allow_host)
    if allow_host:
        from ..net.model import parse_allow_host
        allow_host = tuple(dict.fromkeys(parse_allow_host(p) for p in allow_host))
    if ports or dns:
        from ..net.model import parse_dns, parse_port
        ports = tuple(parse_port(p) if isinstance(p, str) else p for p in ports)
        dns = tuple(parse_dns(d) for d in dns)
    return Request(profile=os.fspath(profile), rootfs=None if rootfs is None else os.fspath(rootfs),
                   image=image, volumes=vols, name=name, hostname=hostname,
                   env=tuple(_env(env).items()), workdir=workdir, user=_user(user),
                   network=network, bridge=bridge, ports=ports, dns=dns, allow_host=allow_host,
                   insecure_options=opts, audit=bool(audit), caller=_caller(audit),
                   limits=build_limits(timeout=timeout, cpus=cpus, memory=memory,
                                       pids_limit=pids_limit),
                   ulimits=parse_ulimits(ulimits),
                   profile_overrides=build_profile_overrides(
                       cap_add=cap_add, cap_drop=cap_drop, security_opt=security_opt,
                       tmpfs=tmpfs, read_only=read_only),
                   entrypoint=_entrypoint(entrypoint),
                   interactive=None if interactive is None else bool(interactive))


def _caller(audit) -> dict | None:
    if not audit:
        return None
    from ..audit.evidence import build_caller
    return build_caller()


def parse_insecure(text: str) -> tuple[str, ...]:
    """``--insecure-options LIST`` (comma-separated) to a tuple, checked."""
    opts = tuple(o for o in (text or "").split(",") if o)
    for o in opts:
        if o not in INSECURE_OPTIONS:
            raise UsageError(f"unknown insecure option {o!r}",
                             hint=f"known: {', '.join(INSECURE_OPTIONS)}")
    return opts


def parse_env_pairs(values) -> dict[str, str]:
    """``--env NAME=VALUE`` strings to a mapping (checked by `build_request`)."""
    env = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k:
            raise UsageError(f"bad --env {v!r}", hint="write it as NAME=VALUE")
        env[k] = val
    return env


def check_argv(argv) -> tuple[str, ...]:
    """The command as a tuple of strings; `UsageError` otherwise."""
    if isinstance(argv, (str, bytes)) or not all(isinstance(a, str) for a in argv):
        raise UsageError("the command must be a list of strings, e.g. ['sh', '-c', 'echo hi']")
    if any("\0" in a for a in argv):
        raise UsageError("the command's arguments may not contain NUL")
    return tuple(argv)


def check_name(name: str) -> None:
    """A sandbox name: letters, digits, ``-_.``, not an id's shape."""
    if not isinstance(name, str) or not name or len(name) > 128 \
            or not all(c.isalnum() or c in "-_." for c in name) \
            or (len(name) == 12 and all(c in "0123456789abcdef" for c in name)):
        raise UsageError(f"bad sandbox name {name!r}",
                         hint="use letters, digits, '-', '_' and '.'; not a 12-hex-digit id")


def parse_volume(text: str) -> Volume:
    """``SRC:DST[:ro|rw][,z|Z]`` (also ``:z``/``:Z`` alone) to a `Volume`;
    `UsageError` naming the volume otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"bad --volume {text!r}", hint="write it as SRC:DST[:ro|rw]")
    src, dst = parts[0], parts[1]
    mode, relabel = "ro", None
    if len(parts) == 3:
        for opt in parts[2].split(","):
            if opt in ("ro", "rw"):
                mode = opt
            elif opt in ("z", "Z"):
                relabel = opt
            else:
                raise UsageError(f"bad --volume {text!r}: unknown option {opt!r}",
                                 hint="options are ro, rw, z and Z")
    if not dst.startswith("/") or ".." in dst.split("/"):
        raise UsageError(f"bad --volume {text!r}: the target must be an absolute path "
                         "without '..'")
    top = "/" + dst.strip("/").split("/")[0] if dst.strip("/") else "/"
    if top in ("/", "/proc", "/dev", "/sys"):
        raise UsageError(f"bad --volume {text!r}: a volume cannot cover {top}",
                         hint="mount it somewhere else, e.g. /mnt/NAME")
    if any(c in src for c in ",\0") or any(c in dst for c in ",\0"):
        raise UsageError(f"bad --volume {text!r}: paths may not contain ',' or NUL")
    if not os.path.lexists(src):
        raise UsageError(f"--volume source {src!r} does not exist")
    # not realpath: the source is opened once, by the resolve stage, without
    # following symbolic links (issue 13 item 9); this is only its spelling
    return Volume(os.path.abspath(src), os.path.normpath(dst), mode, relabel)


def parse_user(text: str) -> tuple[int, int]:
    """``UID[:GID]`` (numbers) to ids; `UsageError` otherwise."""
    uid, _, gid = text.partition(":")
    try:
        u = int(uid)
        g = int(gid) if gid else u
    except ValueError:
        raise UsageError(f"bad --user {text!r}",
                         hint="give numeric ids inside the sandbox: UID or UID:GID") from None
    if not (0 <= u < 2**32 - 1 and 0 <= g < 2**32 - 1):
        raise UsageError(f"bad --user {text!r}: ids must be between 0 and 4294967294")
    return u, g


def _volume(v) -> Volume:
    """A `Volume`, ``"SRC:DST[:ro|rw]"``, or ``(SRC, DST[, MODE])``."""
    if isinstance(v, Volume):
        return v
    if isinstance(v, (tuple, list)) and 2 <= len(v) <= 3 and all(isinstance(x, str) for x in v):
        return parse_volume(":".join(v))
    if isinstance(v, str):
        return parse_volume(v)
    raise UsageError(f"bad volume {v!r}", hint="give 'SRC:DST[:ro|rw]' or (SRC, DST[, MODE])")


def _env_name_ok(k: str) -> bool:
    return bool(k) and (k[0].isascii() and (k[0].isalpha() or k[0] == "_")) and \
        all(c.isascii() and (c.isalnum() or c == "_") for c in k)


def check_env(env) -> dict[str, str]:
    """A mapping of environment variables, checked (names, string values
    without NUL); `UsageError` naming the first bad one."""
    return _env(env)


def _env(env) -> dict[str, str]:
    out = {}
    for k, v in dict(env or {}).items():
        if not isinstance(k, str) or not _env_name_ok(k):
            raise UsageError(f"bad environment variable name {k!r}")
        if not isinstance(v, str) or "\0" in v:
            raise UsageError(f"the value of {k} must be a string without NUL")
        out[k] = v
    return out


def _user(user) -> tuple[int, int] | str | None:
    if user is None:
        return None
    if isinstance(user, str):
        u, _, g = user.partition(":")
        if u.isdigit() and (not g or g.isdigit()):
            return parse_user(user)
        from .users import split_user
        split_user(user)        # names: resolved in the sandbox's root (launch.users)
        return user
    if isinstance(user, int) and not isinstance(user, bool):
        return parse_user(str(user))
    if isinstance(user, (tuple, list)) and len(user) == 2 and \
            all(isinstance(x, int) and not isinstance(x, bool) for x in user):
        return parse_user(f"{user[0]}:{user[1]}")
    raise UsageError(f"bad user {user!r}", hint="give UID, (UID, GID) or 'UID:GID'")
