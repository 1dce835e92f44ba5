"""Seccomp filters that silently break the payload or open the kernel (issue 13, item 5).

The compiled BPF is the truth: a small classic-BPF interpreter asks it what
the kernel will answer for a handful of syscalls, so every way a profile can
say it (default action, rule, errno, the ENOSYS stub) is judged the same.

* io_uring allowed: io_uring_setup/enter/register give the payload a ring
  whose operations seccomp never sees (and a large kernel attack surface).
* clone3 answered with anything but ENOSYS (or allowed): glibc falls back to
  clone only on ENOSYS, so threads fail ("can't start new thread").
* exit, exit_group, rt_sigreturn or execve not allowed: the payload cannot
  start, return from a signal handler or end, and dies with no message.

`build_findings` returns them; ``sandbox profile validate`` and the launch
print one line each and refuse them in profiles derived from ``strict``.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import struct
from typing import NamedTuple

#: Native syscall numbers (the unified table makes most equal on both).
_NR = {
    "x86_64": {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
               "clone3": 435, "exit": 60, "exit_group": 231, "rt_sigreturn": 15,
               "execve": 59},
    "aarch64": {"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
                "clone3": 435, "exit": 93, "exit_group": 94, "rt_sigreturn": 139,
                "execve": 221},
}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
IO_URING = ("io_uring_setup", "io_uring_enter", "io_uring_register")
LIFECYCLE = ("exit", "exit_group", "rt_sigreturn", "execve")

_RET_ALLOW, _RET_LOG, _RET_ERRNO = 0x7FFF0000, 0x7FFC0000, 0x00050000
_RET_KILL_PROCESS, _RET_KILL_THREAD, _RET_TRAP, _RET_TRACE = 0x80000000, 0, 0x00030000, 0x7FF00000
_M32 = 0xFFFFFFFF


class SeccompFinding(NamedTuple):
    """One risky answer of the filter: ``kind`` is ``io_uring``, ``clone3``
    or ``lifecycle``; ``syscalls`` the calls concerned; ``message`` one line."""

    kind: str
    syscalls: tuple[str, ...]
    message: str


def run_bpf(bpf: bytes | list, nr: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """What the classic BPF program ``bpf`` (bytes, or the list of its
    ``(code, jt, jf, k)`` instructions) returns for one ``struct
    seccomp_data`` (instruction pointer 0). Raises ValueError on an
    instruction seccomp filters do not use."""
    a6 = (list(args) + [0] * 6)[:6]
    data = struct.pack("=IIQ6Q", nr & _M32, arch, 0, *(v & 0xFFFFFFFFFFFFFFFF for v in a6))
    prog = list(struct.iter_unpack("=HBBI", bpf)) if isinstance(bpf, bytes) else bpf
    acc = x = 0
    mem = [0] * 16
    pc = 0
    for _ in range(len(prog) + 1):          # classic BPF only jumps forward
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if code == 0x20:                    # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x00:                  # ld #k
            acc = k
        elif code == 0x60:                  # ld M[k]
            acc = mem[k]
        elif code == 0x61:                  # ldx M[k]
            x = mem[k]
        elif code == 0x01:                  # ldx #k
            x = k
        elif code == 0x02:                  # st M[k]
            mem[k] = acc
        elif code == 0x03:                  # stx M[k]
            mem[k] = x
        elif code == 0x07:                  # tax
            x = acc
        elif code == 0x87:                  # txa
            acc = x
        elif cls == 0x04:                   # alu
            op, src = code & 0xF0, (x if code & 0x08 else k)
            ops = {0x00: lambda: acc + src, 0x10: lambda: acc - src, 0x20: lambda: acc * src,
                   0x40: lambda: acc | src, 0x50: lambda: acc & src,
                   0x60: lambda: acc << src, 0x70: lambda: acc >> src, 0x80: lambda: -acc,
                   0xA0: lambda: acc ^ src}
            if op not in ops:
                raise ValueError(f"BPF ALU op {code:#x}")
            acc = ops[op]() & _M32
        elif code == 0x05:                  # ja
            pc += k
        elif cls == 0x05:                   # jeq/jgt/jge/jset
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x10:
                cond = acc == src
            elif op == 0x20:
                cond = acc > src
            elif op == 0x30:
                cond = acc >= src
            elif op == 0x40:
                cond = acc & src
            else:
                raise ValueError(f"BPF jump {code:#x}")
            pc += jt if cond else jf
        elif code == 0x06:                  # ret #k
            return k
        elif code == 0x16:                  # ret a
            return acc
        else:
            raise ValueError(f"BPF instruction {code:#x}")
    raise ValueError("BPF program runs past its end")


def _describe(ret: int) -> str:
    action = ret & 0xFFFF0000
    if action == _RET_ERRNO:
        num = ret & 0xFFFF
        return f"errno:{_errno.errorcode.get(num, num)}"
    return {_RET_ALLOW: "allow", _RET_LOG: "log", _RET_KILL_PROCESS: "kill_process",
            _RET_KILL_THREAD: "kill_thread", _RET_TRAP: "trap",
            _RET_TRACE: "trace"}.get(action, hex(ret))


def _allows(ret: int) -> bool:
    return ret & 0xFFFF0000 in (_RET_ALLOW, _RET_LOG)


@functools.lru_cache(maxsize=8)     # the launch asks twice: plan and audit record
def build_findings(bpf: bytes, machine: str | None = None) -> tuple[SeccompFinding, ...]:
    """The risky answers of the native ABI of ``bpf`` (see the module docstring)."""
    machine = machine or os.uname().machine
    if machine not in _NR:
        return ()
    nr, arch = _NR[machine], _AUDIT_ARCH[machine]
    bpf = list(struct.iter_unpack("=HBBI", bpf))
    out = []
    # io_uring: any of a few argument values allowed counts (a rule may
    # allow it only for some sizes or flags).
    opened = [n for n in IO_URING
              if any(_allows(run_bpf(bpf, nr[n], arch, (a0, a1)))
                     for a0 in (0, 1, 8, 4096) for a1 in (0, 1))]
    if opened:
        out.append(SeccompFinding(
            "io_uring", tuple(opened),
            f"allows {', '.join(opened)}: io_uring operations are not seen by seccomp; "
            f"deny them (Docker's profile answers ENOSYS)"))
    ret = run_bpf(bpf, nr["clone3"], arch)
    if not _allows(ret) and ret != _RET_ERRNO | _errno.ENOSYS:
        out.append(SeccompFinding(
            "clone3", ("clone3",),
            f"answers clone3 with {_describe(ret)}: glibc falls back to clone only on "
            f"ENOSYS, so threads fail; give clone3 errnoRet 38 (ENOSYS)"))
    for name in LIFECYCLE:
        ret = run_bpf(bpf, nr[name], arch)
        if not _allows(ret):
            out.append(SeccompFinding(
                "lifecycle", (name,),
                f"denies {name} ({_describe(ret)}): the payload cannot "
                + ("start" if name == "execve" else
                   "return from a signal handler" if name == "rt_sigreturn" else "exit")
                + f" and dies with no message; allow {name}"))
    return tuple(out)


def derived_from_strict(profile) -> bool:
    """The profile is the bundled ``strict`` or extends it (its values came from it)."""
    from sandbox._resources import data_dir
    strict = str(data_dir("profiles") / "strict.toml")
    return profile.name == "strict" or any(o == strict for _, o in profile.origins)


def build_warnings(profile, bpf: bytes) -> tuple[str, ...]:
    """One line per risky answer of ``profile``'s compiled filter ``bpf``.

    Raises `ProfileError` instead when the profile derives from ``strict``:
    there a filter that breaks or opens things is refused, not warned about.
    """
    findings = build_findings(bpf)
    if not findings:
        return ()
    what = f"seccomp profile {profile.seccomp.profile}"
    if derived_from_strict(profile):
        from sandbox.errors import ProfileError
        f = findings[0]
        raise ProfileError(f"{what} {f.message}", source=profile.source, key="seccomp.profile",
                           hint="profiles derived from strict refuse this; fix the seccomp JSON")
    return tuple(f"{what} {f.message}" for f in findings)
