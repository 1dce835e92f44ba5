"""A resolved `Profile` written back as a profile file (``sandbox profile show``).

The output is TOML that `sandbox.profile.load` accepts and that resolves to
the same profile: every field is spelled out (``extends`` already applied,
so it has none), in the schema's own spelling (sizes as ``512M``, no limit as
``"unlimited"``, a bundled seccomp filter as ``builtin:NAME``). Where each
value was set goes into a comment at the end of its line, so the origins
survive a copy and paste and cost a reader nothing.
"""

from __future__ import annotations

from .model import NAMESPACES, Profile
from .schema import builtin_seccomp_name

_UNITS = (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10))


def _size(n: int | None):
    if n is None:
        return "unlimited"
    for unit, factor in _UNITS:
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return n


def _count(n: int | None):
    return "unlimited" if n is None else n


def _toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(v) -> str:
    """One TOML value: a string, an integer, a boolean or a list of strings."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def build_tables(p: Profile) -> list[tuple[str, list[tuple[str, str, object]]]]:
    """``[(table, [(key, dotted schema key, value), ...]), ...]``; table ""
    is the top level. Values are as a profile file spells them."""
    seccomp_profile = ("unconfined" if p.seccomp.unconfined
                       else builtin_seccomp_name(p.seccomp.profile) or p.seccomp.profile)
    seccomp = [("profile", "seccomp.profile", seccomp_profile)]
    if p.seccomp.default_action is not None:
        seccomp.append(("default_action", "seccomp.default_action", p.seccomp.default_action))
    seccomp.append(("other_abis", "seccomp.other_abis", p.seccomp.other_abis))
    fs = p.filesystem
    lim = p.limits
    return [
        ("", [("name", "name", p.name),
              ("description", "description", p.description),
              ("optional", "optional", sorted(p.optional))]),
        ("namespaces", [(n, f"namespaces.{n}", True if getattr(p.namespaces, n) else "host")
                        for n in NAMESPACES]),
        ("user", [("uid", "user.uid", p.user.uid), ("gid", "user.gid", p.user.gid),
                  ("map", "user.map", p.user.map)]),
        ("capabilities", [("retain", "capabilities.retain", sorted(p.capabilities))]),
        ("seccomp", seccomp),
        ("filesystem", [
            ("read_only_root", "filesystem.read_only_root", fs.read_only_root),
            ("tmpfs", "filesystem.tmpfs",
             [f"{t.path}:{t.options}" if t.options else t.path for t in fs.tmpfs]),
            ("masked_paths", "filesystem.masked_paths", list(fs.masked_paths)),
            ("read_only_paths", "filesystem.read_only_paths", list(fs.read_only_paths)),
            ("allow_setuid", "filesystem.allow_setuid", fs.allow_setuid)]),
        ("label", [("user", "label.user", p.label.user), ("role", "label.role", p.label.role),
                   ("type", "label.type", p.label.type), ("level", "label.level", p.label.level),
                   ("allow_unlabelled_ro", "label.allow_unlabelled_ro",
                    p.label.allow_unlabelled_ro)]),
        ("network", [("mode", "network.mode", p.network.mode)]),
        ("limits", [("memory", "limits.memory", _size(lim.memory)),
                    ("pids", "limits.pids", _count(lim.pids)),
                    ("nofile", "limits.nofile", _count(lim.nofile)),
                    ("nproc", "limits.nproc", _count(lim.nproc)),
                    ("fsize", "limits.fsize", _size(lim.fsize)),
                    ("core", "limits.core", _size(lim.core)),
                    ("cpus", "limits.cpus", _count(lim.cpus))]),
        ("process", [("workdir", "process.workdir", p.process.workdir),
                     ("hostname", "process.hostname", p.process.hostname),
                     ("no_new_privs", "process.no_new_privs", p.process.no_new_privs)]),
        ("process.env", [(k, "process.env", v) for k, v in p.process.env]),
        ("landlock", [("enabled", "landlock.enabled", p.landlock.enabled)]),
    ]


def render_toml(p: Profile, *, origins: bool = True) -> str:
    """The profile as a TOML file; with ``origins``, where each value was set
    as a comment at the end of its line."""
    from ..display import escape    # comments quote paths and names (issue 13 item 8)
    lines = [escape(f"# profile {p.name}  {p.digest()}"),
             escape(f"# resolved from {p.source} ('extends' applied: every field is here)")]
    for table, rows in build_tables(p):
        if table:
            lines += ["", f"[{table}]"]
        if table == "seccomp" and p.seccomp.default_action is None and origins:
            lines.append("# default_action: not set, the filter's own defaultAction applies")
        for key, dotted, value in rows:
            line = f"{key} = {toml_value(value)}"
            if isinstance(value, list) and len(line) > 78:
                # one item a line, so the file reads in an 80-column terminal
                line = "\n".join([f"{key} = ["] + [f"    {toml_value(x)}," for x in value]
                                  + ["]"])
            if origins and dotted != "name":
                line += escape(f"    # {p.origin(dotted)}")
            lines.append(line)
    return "\n".join(lines) + "\n"
