"""Compile a parsed seccomp profile to classic BPF with libseccomp, and cache it.

Semantics (DESIGN §3, issue 2), decided here once:

* Errno values, as runc (libcontainer/seccomp and its patchbpf package)
  gives them, so a profile means here what it means under Docker:
  SCMP_ACT_ERRNO without an errno, as default action or in a rule, is
  **EPERM**; ``defaultErrnoRet``/``errnoRet`` (or containers-common's
  ``defaultErrno``/``errno`` names) always win. On top of that, a syscall
  *newer than the profile* gets **ENOSYS** whatever the default action says,
  so glibc falls back (clone3 -> clone, faccessat2 -> faccessat...): for
  each ABI in the filter, a number above the highest syscall the profile
  names for that ABI (`_enosys_stub`, prepended to libseccomp's program).
  Numbers at or below it get the default action. The stub is left out, as
  in runc, when the default action allows (allow, log, trace) or is already
  ENOSYS. Issue 13, item 6.
* Names libseccomp does not know (newer than the library, or misspelt) are
  skipped and listed in `CompiledFilter.skipped`, as Docker does.
* ``includes``/``excludes`` follow moby's rules: ``arches`` match the native
  architecture only (Go or libseccomp spelling, "amd64" or
  "SCMP_ARCH_X86_64"); included ``caps`` must all be held, any held
  excluded cap drops the rule; ``minKernel`` compares with os.uname().
  Repeating an argument index inside one rule makes one libseccomp rule per
  condition (OR), as runc does, because libseccomp refuses two comparisons
  of the same argument in one rule.
* ABIs. On x86_64 the kernel also accepts i386 (``int 0x80``) and x32
  (syscall number | 0x40000000) system calls. ``other_abis="same"`` adds
  those ABIs to the filter with the same rules; ``"kill"`` leaves them out,
  so they reach libseccomp's bad-architecture action, which is set to
  KILL_PROCESS (for x32, libseccomp's x86_64 code sends every number with
  bit 30 set there too). A foreign ABI is never left open. The profile's
  own ``architectures``/``archMap`` are checked and reported, but do not
  open or close ABIs beyond this.
* NNP: the filter's CTL_NNP attribute is 0 and nothing is loaded here; the
  runtime sets no_new_privs itself, then calls `apply_filter` last.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import struct
from typing import NamedTuple

from sandbox._hash import sha256
from sandbox._values import ignore_last_field_in_eq
from sandbox.errors import HostSupportError, ProfileError

#: Bump when the compiler's output for the same inputs changes.
_CACHE_FORMAT = b"sandbox-seccomp-2"     # 2: the ENOSYS stub (issue 13)
#: Kernel limit on a classic BPF program (BPF_MAXINSNS, <linux/bpf_common.h>).
_MAX_INSNS = 4096
#: machine -> (native libseccomp arch, the other ABIs its kernel accepts).
_ABIS = {
    "x86_64": ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    "aarch64": ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
}
#: Spellings of the native arch in includes/excludes ``arches`` (moby uses Go's).
#: ABIs with socketcall/ipc multiplexers (see `_build`).
_MULTIPLEXED = frozenset({"SCMP_ARCH_X86"})
_NATIVE_SPELLINGS = {
    "x86_64": frozenset({"amd64", "x86_64", "SCMP_ARCH_X86_64"}),
    "aarch64": frozenset({"arm64", "aarch64", "SCMP_ARCH_AARCH64"}),
}
_SIMPLE = {"allow": "SCMP_ACT_ALLOW", "log": "SCMP_ACT_LOG", "trap": "SCMP_ACT_TRAP",
           "kill": "SCMP_ACT_KILL_PROCESS", "kill_process": "SCMP_ACT_KILL_PROCESS",
           "kill_thread": "SCMP_ACT_KILL_THREAD", "errno": "SCMP_ACT_ERRNO"}
_TEXT = {v: k for k, v in _SIMPLE.items() if k not in ("kill",)}
_TEXT["SCMP_ACT_KILL"] = "kill_thread"


@ignore_last_field_in_eq          # cached: read from the cache or not
class CompiledFilter(NamedTuple):
    """A seccomp program ready for `apply_filter`.

    ``bpf`` is ``struct sock_filter[]`` (8 bytes an instruction, host byte
    order) as seccomp(2) loads it; ``digest`` is ``sha256:<hex>`` of it and
    ``source_digest`` of the JSON file's bytes. ``architectures`` are the
    libseccomp names the filter accepts (native first); every other ABI gets
    KILL_PROCESS. ``skipped`` lists syscall names libseccomp does not know.
    ``default_action`` is in the override syntax (``"errno:ENOSYS"``,
    ``"kill_process"``, ``"allow"``...). ``rules`` counts libseccomp rules.
    """

    bpf: bytes
    digest: str
    source: str
    source_digest: str
    architectures: tuple[str, ...]
    skipped: tuple[str, ...]
    instructions: int
    default_action: str
    rules: int
    other_abis: str
    flags: tuple[str, ...] = ()
    #: True when read from the cache (not part of equality).
    cached: bool = False

    def __repr__(self) -> str:      # without the program's bytes
        return ("CompiledFilter(" + ", ".join(
            f"{k}={v!r}" for k, v in zip(self._fields, self) if k != "bpf") + ")")

    def describe(self) -> dict:
        """A JSON-ready summary for the launch plan, ``--dry-run`` and the audit record."""
        return {"source": self.source, "source_digest": self.source_digest,
                "digest": self.digest, "architectures": list(self.architectures),
                "other_abis": self.other_abis, "default_action": self.default_action,
                "rules": self.rules, "instructions": self.instructions,
                "skipped": list(self.skipped), "flags": list(self.flags)}


def parse_action(text: str) -> tuple[str, int | None]:
    """An action string to ``(SCMP_ACT_*, errno or None)``.

    Accepts OCI names (``"SCMP_ACT_ERRNO"``, ``"SCMP_ACT_KILL_PROCESS"``...)
    and the short forms ``allow``, ``log``, ``trap``, ``kill`` (= kill the
    process), ``kill_thread``, ``errno`` and ``errno:NAME``/``errno:NUMBER``
    (``"errno:ENOSYS"``). A bare ERRNO gives None: the caller picks the errno.
    Raises `ProfileError` (key ``seccomp.default_action``) for anything else.
    """
    def fail(msg):
        raise ProfileError(msg, key="seccomp.default_action",
                           hint='use for example "errno:ENOSYS", "errno:EPERM", "kill" or "log"')

    if not isinstance(text, str):
        fail(f"expected an action string, got {type(text).__name__}")
    t = text.strip()
    errno_part = None
    if ":" in t:
        t, errno_part = t.split(":", 1)
    act = _SIMPLE.get(t.lower(), t.upper() if t.upper().startswith("SCMP_ACT_") else None)
    if act not in _TEXT:            # NOTIFY and TRACE make no sense as a default here
        fail(f"unknown or unsupported seccomp action {text!r}")
    if errno_part is None:
        return act, None
    if act != "SCMP_ACT_ERRNO":
        fail(f"only errno takes a value, not {text!r}")
    num = int(errno_part) if errno_part.isdigit() else getattr(_errno, errno_part.upper(), None)
    if not isinstance(num, int) or not 0 <= num < 4096:
        fail(f"unknown errno {errno_part!r} in {text!r}")
    return act, num


def _action_text(act: str, num: int | None) -> str:
    if act == "SCMP_ACT_ERRNO":
        return f"errno:{_errno.errorcode.get(num, num)}"
    if act == "SCMP_ACT_TRACE":
        return f"trace:{num or 0}"
    return _TEXT[act]


def compile_filter(json_path: str, *, capabilities: frozenset[str],
                   default_action: str | None = None, other_abis: str = "same",
                   cache_dir: os.PathLike | str | None = None) -> CompiledFilter:
    """Compile the OCI/Docker seccomp JSON at ``json_path`` to BPF for this host.

    ``capabilities`` are the ``CAP_*`` names the payload keeps (for
    includes/excludes ``caps``); ``default_action`` overrides the file's
    (see `parse_action`); ``other_abis`` is ``"same"`` or ``"kill"`` (module
    docstring). With ``cache_dir`` the BPF is kept as
    ``cache_dir/<key>.bpf`` (plus a ``.meta`` line file) where the key is a
    sha256 over the JSON bytes, the sorted capabilities, the override,
    ``other_abis``, the machine, libseccomp's version and the kernel
    release; a hit neither parses the JSON nor imports pyseccomp (nor
    pathlib, tempfile or json: they are imported only on a miss).

    Raises `ProfileError` for an unreadable or invalid file or argument,
    `HostSupportError` when libseccomp or pyseccomp is missing. Loads nothing.
    """
    if other_abis not in ("same", "kill"):
        raise ProfileError(f"other_abis must be \"same\" or \"kill\", not {other_abis!r}",
                           key="seccomp.other_abis")
    try:
        with open(json_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ProfileError(f"cannot read seccomp profile: {e.strerror}", source=str(json_path),
                           hint="check the path in the profile's [seccomp] profile key") from None
    override = parse_action(default_action) if default_action is not None else None
    caps = frozenset(capabilities)
    uname = os.uname()
    source_digest = "sha256:" + sha256(data).hexdigest()

    key = None
    if cache_dir is not None:
        key = sha256(b"\0".join([
            _CACHE_FORMAT, data, ",".join(sorted(caps)).encode(),
            (default_action or "").encode(), other_abis.encode(), uname.machine.encode(),
            libseccomp_version().encode(), uname.release.encode()])).hexdigest()
        hit = _cache_read(os.fspath(cache_dir), key)
        if hit is not None:
            bpf, meta = hit
            return CompiledFilter(
                bpf=bpf, digest="sha256:" + sha256(bpf).hexdigest(),
                source=str(json_path), source_digest=source_digest,
                architectures=tuple(meta["architectures"]), skipped=tuple(meta["skipped"]),
                instructions=len(bpf) // 8, default_action=meta["default_action"][0],
                rules=int(meta["rules"][0]), other_abis=other_abis,
                flags=tuple(meta["flags"]), cached=True)

    from sandbox.seccomp._parse import parse_profile
    profile = parse_profile(data, str(json_path))
    filt, arches, skipped, nrules, default, last = _build(profile, caps, override, other_abis,
                                                          uname)
    bpf = _enosys_stub(default, last) + _export(filt, "export_bpf")
    if len(bpf) // 8 > _MAX_INSNS:
        raise ProfileError(f"the compiled filter has {len(bpf) // 8} instructions, more than "
                           f"the kernel's limit of {_MAX_INSNS}", source=str(json_path),
                           hint="merge rules or drop argument conditions")
    result = CompiledFilter(
        bpf=bpf, digest="sha256:" + sha256(bpf).hexdigest(), source=str(json_path),
        source_digest=source_digest, architectures=arches, skipped=skipped,
        instructions=len(bpf) // 8, default_action=_action_text(*default), rules=nrules,
        other_abis=other_abis, flags=profile.flags)
    if key is not None:
        _cache_write(os.fspath(cache_dir), key, result)
    return result


def export_pfc(json_path: str, *, capabilities: frozenset[str],
               default_action: str | None = None, other_abis: str = "same") -> str:
    """libseccomp's pseudo-filter-code text of the same filter, for debugging.

    Same arguments and errors as `compile_filter`; never cached.
    """
    try:
        with open(json_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ProfileError(f"cannot read seccomp profile: {e.strerror}",
                           source=str(json_path)) from None
    from sandbox.seccomp._parse import parse_profile
    override = parse_action(default_action) if default_action is not None else None
    filt = _build(parse_profile(data, str(json_path)), frozenset(capabilities), override,
                  other_abis, os.uname())[0]
    return _export(filt, "export_pfc").decode()


def apply_filter(bpf: bytes) -> None:
    """Load ``bpf`` (from `CompiledFilter.bpf`) into this thread with
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER) (seccomp(2)). Irreversible.

    The caller must have set no_new_privs (or hold CAP_SYS_ADMIN); call it
    as the last step before execve. Raises ``OSError`` with the kernel's
    errno (EACCES without no_new_privs, EINVAL for a malformed program).
    """
    from ..runtime.kernel import seccomp_set_filter
    seccomp_set_filter(bpf)


def libseccomp_version() -> str:
    """``"2.5.4"``: the libseccomp the dynamic linker finds, via seccomp_version(3),
    without importing pyseccomp (its import runs ``ldconfig -p``: ~35 ms)."""
    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
        lib.seccomp_version.restype = ctypes.POINTER(_Version)
        v = lib.seccomp_version().contents
    except (OSError, AttributeError):
        return "unknown"
    return f"{v.major}.{v.minor}.{v.micro}"


# --- building ---------------------------------------------------------------

def _pyseccomp():
    try:
        import pyseccomp
    except (ImportError, RuntimeError) as e:
        raise HostSupportError(f"cannot compile seccomp filters: {e}",
                               hint="install libseccomp2 (apt-get install libseccomp2) and the "
                                    "pyseccomp package") from None
    return pyseccomp


def _scmp(sc, act: str, num: int | None) -> int:
    if act == "SCMP_ACT_ERRNO":
        return sc.ERRNO(num)
    if act == "SCMP_ACT_TRACE":
        return sc.TRACE(num or 0)
    return {"SCMP_ACT_ALLOW": sc.ALLOW, "SCMP_ACT_LOG": sc.LOG, "SCMP_ACT_TRAP": sc.TRAP,
            "SCMP_ACT_KILL": sc.KILL_THREAD, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
            "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS}[act]


def _applies(rule, caps: frozenset[str], native: frozenset[str], kernel) -> bool:
    inc, exc = rule.includes, rule.excludes
    if inc.arches and not native.intersection(inc.arches):
        return False
    if exc.arches and native.intersection(exc.arches):
        return False
    if inc.caps and not {_cap(c) for c in inc.caps} <= caps:
        return False
    if exc.caps and {_cap(c) for c in exc.caps} & caps:
        return False
    if inc.min_kernel and kernel < inc.min_kernel:
        return False
    if exc.min_kernel and kernel >= exc.min_kernel:
        return False
    return True


def _cap(name: str) -> str:
    n = name.upper()
    return n if n.startswith("CAP_") else "CAP_" + n


def _build(profile, caps, override, other_abis, uname):
    """The pyseccomp filter for ``profile``; returns (filter, arches, skipped,
    rule count, (default action, errno))."""
    from sandbox.seccomp._parse import parse_kernel_version
    if uname.machine not in _ABIS:
        raise HostSupportError(f"seccomp filters are not supported on {uname.machine}",
                               hint="run on x86_64 or aarch64, or use the unconfined profile")
    sc = _pyseccomp()
    native, subs = _ABIS[uname.machine]
    kernel = parse_kernel_version(uname.release) or (0, 0, 0)
    caps = frozenset(_cap(c) for c in caps)

    if override is not None:
        default = override
    else:
        default = (profile.default_action, profile.default_errno_ret)
    if default[0] == "SCMP_ACT_ERRNO" and default[1] is None:
        default = (default[0], _errno.EPERM)      # runc's errno; newer syscalls: see the stub

    def new_filter(add=(), native_too=True):
        f = sc.SyscallFilter(_scmp(sc, *default))
        f.set_attr(sc.Attr.CTL_NNP, 0)                    # the runtime sets no_new_privs
        f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # any ABI not added dies
        for a in add:
            f.add_arch(getattr(sc.Arch, a[len("SCMP_ARCH_"):]))
        if not native_too:
            f.remove_arch(sc.Arch.NATIVE)
        return f

    # i386 reaches socket and System V IPC calls through the socketcall and
    # ipc multiplexers, whose real arguments sit in memory; libseccomp turns a
    # rule such as "socket if a0 == AF_UNIX" into "socketcall if
    # a0 == SYS_SOCKET", which would allow every address family. So i386
    # gets its own filter (merged below) in which a conditional rule on a
    # multiplexed call is left out: those calls then get the default action,
    # never more than the native ABI.
    compat = [a for a in subs if a in _MULTIPLEXED] if other_abis == "same" else []
    plain = [a for a in subs if a not in compat] if other_abis == "same" else []
    targets = [(new_filter(plain), None)]
    targets += [(new_filter([a], native_too=False), getattr(sc.Arch, a[len("SCMP_ARCH_"):]))
                for a in compat]
    arches = (native, *plain, *compat)

    skipped: set[str] = set()
    nrules = 0
    # The highest syscall number the profile names, per ABI, for the ENOSYS
    # stub. Like runc, every applying rule counts, whatever its action.
    last = {a: -1 for a in arches}
    for rule in profile.rules:
        if not _applies(rule, caps, _NATIVE_SPELLINGS[uname.machine], kernel):
            continue
        for name in rule.names:
            for a in arches:
                last[a] = max(last[a], sc.resolve_syscall(getattr(sc.Arch, a[len("SCMP_ARCH_"):]),
                                                          name))
        errno_ret = rule.errno_ret
        if rule.action == "SCMP_ACT_ERRNO" and errno_ret is None:
            errno_ret = _errno.EPERM                 # an explicit denial
        action = _scmp(sc, rule.action, errno_ret)
        if action == _scmp(sc, *default):
            continue          # same as the default: no effect, and libseccomp refuses it
        conds = [sc.Arg(a.index, getattr(sc, a.op[len("SCMP_CMP_"):]), a.value, a.value_two)
                 for a in rule.args]
        indexes = [a.index for a in rule.args]
        groups = [[c] for c in conds] if len(set(indexes)) < len(indexes) else [conds]
        for name in rule.names:
            nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if nr == -1:                 # __NR_SCMP_ERROR: libseccomp does not know it
                skipped.add(name)
                continue
            for filt, arch in targets:
                if arch is not None and conds and sc.resolve_syscall(arch, name) < 0:
                    continue             # multiplexed on this ABI: see above
                for group in groups:
                    try:
                        filt.add_rule(action, nr, *group)
                    except OSError as e:
                        if nr < 0 and e.errno in (_errno.EDOM, _errno.EINVAL, _errno.EFAULT):
                            # A pseudo-syscall (another arch's name, such as
                            # socketcall) that none of our ABIs has: nothing to filter.
                            continue
                        raise ProfileError(
                            f"libseccomp refused the rule for {name!r}: {e.strerror}",
                            source=profile.source, key=f"{rule.where}.names",
                            hint="a syscall may appear in two rules with conflicting actions "
                                 "and the same conditions") from None
                    nrules += 1
    filt = targets[0][0]
    for other, _ in targets[1:]:
        filt.merge(other)
    return filt, tuple(arches), tuple(sorted(skipped)), nrules, default, last


# classic BPF opcodes (<linux/bpf_common.h>) and seccomp constants (<linux/seccomp.h>)
_LD_W_ABS, _JA, _JEQ_K, _JGT_K, _JSET_K, _RET_K = 0x20, 0x05, 0x15, 0x25, 0x45, 0x06
_SECCOMP_RET_ERRNO = 0x00050000
_X32_BIT = 0x40000000
#: libseccomp arch name -> AUDIT_ARCH_* (<linux/audit.h>), what seccomp_data.arch holds.
_AUDIT_ARCH = {"SCMP_ARCH_X86_64": 0xC000003E, "SCMP_ARCH_X32": 0xC000003E,
               "SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_AARCH64": 0xC00000B7,
               "SCMP_ARCH_ARM": 0x40000028}


def _enosys_stub(default: tuple[str, int | None], last: dict[str, int]) -> bytes:
    """The BPF prepended to libseccomp's program so that syscalls newer than
    the profile get ENOSYS, as runc's patchbpf does (module docstring).

    Per ABI: ``ld arch; jeq AUDIT_ARCH; ld nr; jgt LAST -> ENOSYS``, else
    into libseccomp's program, which starts by loading the arch itself. x32
    shares x86_64's AUDIT_ARCH and is told apart by bit 30 of the number;
    with no x32 in the filter such numbers go on to the filter (which kills
    them). An arch the stub does not know goes on to the filter too.
    """
    act, num = default
    if act in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE") or \
            (act == "SCMP_ACT_ERRNO" and num == _errno.ENOSYS):
        return b""
    by_audit: dict[int, dict[str, int]] = {}
    for arch, nr in last.items():
        if nr > 0:
            by_audit.setdefault(_AUDIT_ARCH[arch], {})[arch] = nr
    if not by_audit:
        return b""
    # Instructions as (code, jt, jf, k); jt/jf/k may name a label, resolved below.
    prog: list[list] = [[_LD_W_ABS, 0, 0, 4]]                     # A = seccomp_data.arch
    for audit, nrs in by_audit.items():
        body: list[list] = [[_LD_W_ABS, 0, 0, 0]]                 # A = seccomp_data.nr
        native = nrs.get("SCMP_ARCH_X86_64")
        if native is not None and "SCMP_ARCH_X32" in nrs:
            body += [[_JSET_K, 1, 0, _X32_BIT],
                     [_JGT_K, "enosys", "filter", native],
                     [_JGT_K, "enosys", "filter", nrs["SCMP_ARCH_X32"]]]
        elif native is not None:
            body += [[_JSET_K, "filter", 0, _X32_BIT],
                     [_JGT_K, "enosys", "filter", native]]
        else:
            (only,) = nrs.values()
            body += [[_JGT_K, "enosys", "filter", only]]
        prog.append([_JEQ_K, 0, len(body), audit])                # no: the next ABI's check
        prog += body
    prog.append([_JA, 0, 0, "filter"])
    labels = {"enosys": len(prog), "filter": len(prog) + 1}
    prog.append([_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _errno.ENOSYS])
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt, jf = (labels[j] - i - 1 if isinstance(j, str) else j for j in (jt, jf))
        if isinstance(k, str):
            k = labels[k] - i - 1
        out += struct.pack("=HBBI", code, jt, jf, k)
    return bytes(out)


def _export(filt, method: str) -> bytes:
    # libseccomp writes to a file descriptor; a memfd keeps it off the disk.
    fd = os.memfd_create("sandbox-seccomp", os.MFD_CLOEXEC)
    with open(fd, "w+b") as fh:
        getattr(filt, method)(fh)
        fh.seek(0)
        return fh.read()


# --- cache ------------------------------------------------------------------

_META = ("architectures", "skipped", "default_action", "rules", "flags")


def _private(cache_dir: str) -> bool:
    """The cache folder belongs to us and nobody else can write to it: a BPF
    planted there would be loaded as the sandbox's filter."""
    try:
        st = os.stat(cache_dir)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _cache_read(cache_dir: str, key: str):
    """(bpf, meta) or None. A missing, partial or corrupt entry is a miss, and
    so is every entry of a folder others can write to (see `_private`)."""
    if not _private(cache_dir):
        return None
    try:
        with open(os.path.join(cache_dir, f"{key}.bpf"), "rb") as f:
            bpf = f.read()
        with open(os.path.join(cache_dir, f"{key}.meta"), encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    if not bpf or len(bpf) % 8 or len(bpf) // 8 > _MAX_INSNS:
        return None
    meta = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            meta[k] = tuple(x for x in v.split(",") if x)
    if any(k not in meta for k in _META) or len(meta["default_action"]) != 1 \
            or len(meta["rules"]) != 1 or not meta["rules"][0].isdigit():
        return None
    return bpf, meta


def _cache_write(cache_dir: str, key: str, c: CompiledFilter) -> None:
    """Write the entry atomically: meta first, then the BPF, each through a
    temporary file in the same folder and os.replace, so a reader sees a
    whole entry or a miss. A cache that cannot be written is not an error."""
    meta = "".join(f"{k}={v}\n" for k, v in (
        ("architectures", ",".join(c.architectures)), ("skipped", ",".join(c.skipped)),
        ("default_action", c.default_action), ("rules", str(c.rules)),
        ("flags", ",".join(c.flags))))
    import tempfile
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        if not _private(cache_dir):
            return
        for name, blob in ((f"{key}.meta", meta.encode()), (f"{key}.bpf", c.bpf)):
            fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                os.replace(tmp, os.path.join(cache_dir, name))
            except BaseException:
                os.unlink(tmp)
                raise
    except OSError:
        pass
