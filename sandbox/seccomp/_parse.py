"""Read an OCI/Docker seccomp JSON file into frozen values, checking every field.

The format is the one Docker, Podman, runc and crun read (the OCI runtime
spec's ``linux.seccomp`` plus Docker's ``names``/``includes``/``excludes``/
``archMap`` extensions, and containers-common's ``defaultErrno``/``errno``
strings). Nothing here needs libseccomp: the result is plain data that
`_compile` turns into BPF. Every error is a `ProfileError` naming the file
and the JSON path of the bad field (``syscalls[3].action``).
"""

from __future__ import annotations

import errno as _errno
import json
import re
from dataclasses import dataclass

from sandbox.errors import ProfileError

#: Actions of the OCI runtime spec (config-linux.md, "seccomp").
#: SCMP_ACT_KILL is libseccomp's old name for KILL_THREAD.
ACTIONS = frozenset({
    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE", "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
})
#: Comparison operators of libseccomp (seccomp_rule_add(3)).
OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
    "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
})
#: Architecture names libseccomp knows (SCMP_ARCH_*), as the OCI spec lists them.
ARCHES = frozenset({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
})
#: seccomp(2) filter flags the OCI spec allows. They are accepted and
#: reported; prctl(PR_SET_SECCOMP) takes none, so none changes the filter.
FLAGS = frozenset({
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
})

_TOP_KEYS = {"defaultAction", "defaultErrnoRet", "defaultErrno", "architectures", "archMap",
             "syscalls", "flags", "listenerPath", "listenerMetadata", "comment", "comments"}
_RULE_KEYS = {"names", "name", "action", "errnoRet", "errno", "args", "includes", "excludes",
              "comment", "comments"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}
_FILTER_KEYS = {"arches", "caps", "minKernel"}
_KERNEL = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, slots=True)
class ArgCondition:
    """One ``args`` entry: compare syscall argument ``index`` (0-5) with
    ``value`` using ``op``; for SCMP_CMP_MASKED_EQ ``(arg & value) == value_two``.
    Values are unsigned 64-bit, as libseccomp compares them."""

    index: int
    value: int
    value_two: int
    op: str


@dataclass(frozen=True, slots=True)
class Condition:
    """An ``includes`` or ``excludes`` block (Docker's extension).

    ``arches`` are Go or libseccomp architecture names, ``caps`` capability
    names, ``min_kernel`` a (major, minor, patch) tuple or None.
    """

    arches: tuple[str, ...] = ()
    caps: tuple[str, ...] = ()
    min_kernel: tuple[int, int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.arches or self.caps or self.min_kernel)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``syscalls`` entry. ``errno_ret`` is None when the file gives none
    (`_compile` then uses EPERM for SCMP_ACT_ERRNO). ``where`` is its JSON path."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None
    args: tuple[ArgCondition, ...]
    includes: Condition
    excludes: Condition
    where: str


@dataclass(frozen=True, slots=True)
class ArchMapEntry:
    architecture: str
    sub_architectures: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SeccompProfile:
    """A whole seccomp JSON file, checked. ``default_errno_ret`` is None when
    the file gives neither ``defaultErrnoRet`` nor ``defaultErrno``."""

    source: str
    default_action: str
    default_errno_ret: int | None
    architectures: tuple[str, ...]
    arch_map: tuple[ArchMapEntry, ...]
    flags: tuple[str, ...]
    rules: tuple[Rule, ...]


def parse_kernel_version(text: str) -> tuple[int, int, int] | None:
    """``"6.18.44-fc"`` or ``"4.8"`` to ``(6, 18, 44)``/``(4, 8, 0)``; None if not a version."""
    m = _KERNEL.match(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def parse_profile(data: bytes, source: str) -> SeccompProfile:
    """Parse seccomp JSON ``data`` read from ``source`` (used in messages).

    Raises `ProfileError` with ``source`` and ``key`` set for broken JSON,
    an unknown key, action, operator or architecture, a wrong type, an
    out-of-range number, and SCMP_ACT_NOTIFY (sandbox runs no notify agent).
    """
    def fail(key, msg, hint=None):
        raise ProfileError(msg, source=source, key=key, hint=hint)

    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        line = f" at line {e.lineno}, column {e.colno}" if hasattr(e, "lineno") else ""
        fail(None, f"not valid JSON{line}: {getattr(e, 'msg', e)}",
             "fix the syntax; the format is the OCI/Docker seccomp JSON")
    if not isinstance(doc, dict):
        fail(None, "expected a JSON object with defaultAction and syscalls")

    def unknown_keys(obj, allowed, where):
        for k in obj:
            if k not in allowed:
                fail(f"{where}.{k}" if where else k, "unknown key",
                     f"known keys here: {', '.join(sorted(allowed))}")

    def typed(obj, key, kind, where, default=None):
        v = obj.get(key, default)
        if v is None:
            return default
        ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if not ok:
            names = {str: "a string", int: "an integer", list: "a list", dict: "an object"}
            fail(where, f"expected {names.get(kind, kind)}, got {type(v).__name__}")
        return v

    def uint(obj, key, where, hi, default=None):
        v = typed(obj, key, int, where, default)
        if v is not None and not 0 <= v < hi:
            fail(where, f"{v} is out of range (0 to {hi - 1})")
        return v

    def errno_name(v, where):
        n = typed({"v": v}, "v", str, where)
        num = getattr(_errno, n, None) if n.isupper() and n.startswith("E") else None
        if not isinstance(num, int):
            fail(where, f"unknown errno name {n!r}", "use a name from errno(3), such as EPERM")
        return num

    def action(obj, key, where):
        a = typed(obj, key, str, where)
        if a is None:
            fail(where, "missing action")
        if a not in ACTIONS:
            fail(where, f"unknown action {a!r}", f"use one of {', '.join(sorted(ACTIONS))}")
        if a == "SCMP_ACT_NOTIFY":
            fail(where, "SCMP_ACT_NOTIFY needs a user-space notify agent, which sandbox does "
                 "not run", "use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS instead")
        return a

    def condition(obj, where):
        key = where.rsplit(".", 1)[-1]
        block = typed(obj, key, dict, where, {})
        unknown_keys(block, _FILTER_KEYS, where)
        arches = tuple(_strings(block, "arches", f"{where}.arches", fail))
        caps = tuple(_strings(block, "caps", f"{where}.caps", fail))
        mk = typed(block, "minKernel", str, f"{where}.minKernel")
        min_kernel = None
        if mk:
            min_kernel = parse_kernel_version(mk)
            if min_kernel is None or not re.fullmatch(r"\d+\.\d+(\.\d+)?", mk):
                fail(f"{where}.minKernel", f"{mk!r} is not a kernel version like \"4.8\"")
        return Condition(arches, caps, min_kernel)

    unknown_keys(doc, _TOP_KEYS, "")
    if "defaultAction" not in doc:
        fail("defaultAction", "missing", 'add "defaultAction": "SCMP_ACT_ERRNO"')
    default_action = action(doc, "defaultAction", "defaultAction")
    default_errno = uint(doc, "defaultErrnoRet", "defaultErrnoRet", 4096)
    if default_errno is None and doc.get("defaultErrno") is not None:
        default_errno = errno_name(doc["defaultErrno"], "defaultErrno")

    arches = tuple(_strings(doc, "architectures", "architectures", fail))
    for i, a in enumerate(arches):
        if a not in ARCHES:
            fail(f"architectures[{i}]", f"unknown architecture {a!r}")
    arch_map = []
    for i, entry in enumerate(typed(doc, "archMap", list, "archMap", [])):
        where = f"archMap[{i}]"
        if not isinstance(entry, dict):
            fail(where, "expected an object with architecture and subArchitectures")
        unknown_keys(entry, {"architecture", "subArchitectures"}, where)
        main = typed(entry, "architecture", str, f"{where}.architecture")
        subs = tuple(_strings(entry, "subArchitectures", f"{where}.subArchitectures", fail))
        for j, a in enumerate((main,) + subs):
            if a not in ARCHES:
                k = f"{where}.architecture" if j == 0 else f"{where}.subArchitectures[{j - 1}]"
                fail(k, f"unknown architecture {a!r}")
        arch_map.append(ArchMapEntry(main, subs))

    flags = tuple(_strings(doc, "flags", "flags", fail))
    for i, f in enumerate(flags):
        if f not in FLAGS:
            fail(f"flags[{i}]", f"unknown seccomp flag {f!r}")

    rules = []
    for i, raw in enumerate(typed(doc, "syscalls", list, "syscalls", [])):
        where = f"syscalls[{i}]"
        if not isinstance(raw, dict):
            fail(where, "expected an object with names and action")
        unknown_keys(raw, _RULE_KEYS, where)
        names = list(_strings(raw, "names", f"{where}.names", fail))
        old = typed(raw, "name", str, f"{where}.name")   # Docker's pre-1.12 form
        if old:
            names.insert(0, old)
        if not names:
            fail(f"{where}.names", "no syscall names")
        for j, n in enumerate(names):
            if not re.fullmatch(r"[a-z0-9_]+", n):
                fail(f"{where}.names[{j}]", f"{n!r} is not a syscall name")
        act = action(raw, "action", f"{where}.action")
        ret = uint(raw, "errnoRet", f"{where}.errnoRet", 4096 if act != "SCMP_ACT_TRACE" else 65536)
        if ret is None and raw.get("errno") is not None:
            ret = errno_name(raw["errno"], f"{where}.errno")
        args = []
        for j, a in enumerate(typed(raw, "args", list, f"{where}.args", [])):
            aw = f"{where}.args[{j}]"
            if not isinstance(a, dict):
                fail(aw, "expected an object with index, value and op")
            unknown_keys(a, _ARG_KEYS, aw)
            index = uint(a, "index", f"{aw}.index", 6)
            op = typed(a, "op", str, f"{aw}.op")
            if index is None or op is None:
                fail(aw, "index and op are required")
            if op not in OPERATORS:
                fail(f"{aw}.op", f"unknown operator {op!r}",
                     f"use one of {', '.join(sorted(OPERATORS))}")
            args.append(ArgCondition(index, uint(a, "value", f"{aw}.value", 2**64, 0),
                                     uint(a, "valueTwo", f"{aw}.valueTwo", 2**64, 0), op))
        rules.append(Rule(tuple(dict.fromkeys(names)), act, ret, tuple(args),
                          condition(raw, f"{where}.includes"),
                          condition(raw, f"{where}.excludes"), where))

    return SeccompProfile(source, default_action, default_errno, arches, tuple(arch_map),
                          flags, tuple(rules))


def _strings(obj, key, where, fail):
    v = obj.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        fail(where, f"expected a list of strings, got {type(v).__name__}")
    for i, s in enumerate(v):
        if not isinstance(s, str):
            fail(f"{where}[{i}]", f"expected a string, got {type(s).__name__}")
    return v
