"""Escape attempts against the bundled seccomp filters, each asserting the exact refusal.

Every probe runs in a forked child that sets no_new_privs and loads the
filter (irreversible for that process), then makes raw system calls:
through the native x86_64 ABI (libc's syscall()), through the x32 ABI
(number | 0x40000000) and through the i386 ABI (``int 0x80`` from a small
machine-code stub in an executable mmap). Results come back through a pipe.

Errno policy under test (sandbox/seccomp/_compile.py, docs/seccomp.md): explicit denials
EPERM; unmentioned, newer and deliberately hidden calls (clone3, io_uring)
ENOSYS; with other_abis="kill", any i386 or x32 call kills the process
with SIGSYS.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import pickle
import select
import signal
import struct
import time
from pathlib import Path

import pytest

from sandbox.capabilities import DOCKER_DEFAULT
from sandbox.runtime import _kernel
from sandbox.seccomp import apply_filter, compile_filter, export_pfc

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64",
                                reason="the ABI probes are x86_64 machine code")

BUNDLED = Path(__file__).resolve().parents[2] / "profiles" / "seccomp"
X32 = 0x40000000
AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_ALLOW = 0x7FFF0000

CLONE_NEWUSER = 0x10000000
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_ALG, AF_VSOCK = 1, 2, 10, 16, 38, 40
SOCK_STREAM = 1

# name: (x86_64 nr, x32 nr without the bit, i386 nr, args). The arguments are
# chosen so that, without a filter, none of these calls fails with EPERM
# (test_probes_do_not_fail_with_eperm_without_a_filter), except ptrace of
# PID 1, which is never run unfiltered.
ATTACKS = {
    "mount": (165, 165, 21, (0, 0, 0, 0, 0)),
    "unshare_newuser": (272, 272, 310, (CLONE_NEWUSER,)),
    "keyctl": (250, 250, 288, (0, 0xFFFFFFFD, 0)),            # GET_KEYRING_ID, session
    "open_by_handle_at": (304, 304, 342, (0xFFFFFF9C, 0, 0)),  # AT_FDCWD, NULL handle
    "bpf": (321, 321, 357, (0, 0, 0)),                        # MAP_CREATE, NULL attr
    "ptrace_attach_pid1": (101, 521, 26, (16, 1, 0, 0)),      # PTRACE_ATTACH to PID 1
}


# --- the forked child -----------------------------------------------------------

def _in_child(bpf: bytes | None, fn, timeout: float = 30.0):
    """Run ``fn()`` in a forked child under ``bpf`` (None: no filter).
    Returns (exit code as waitstatus_to_exitcode gives it, fn's result)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if bpf is not None:
                _kernel.prctl(_kernel.PR_SET_NO_NEW_PRIVS, 1)
                apply_filter(bpf)
            os.write(w, pickle.dumps(fn()))
            os._exit(0)
        finally:
            os._exit(121)
    os.close(w)
    data, deadline = b"", time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), (pickle.loads(data) if data else None)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(nr: int, *args: int) -> int:
    """Raw syscall through libc: the result, or -errno."""
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a) for a in args))
    if ret == -1:
        return -ctypes.get_errno()
    if ret == 0 and nr == 56:                # the new process of a clone that got through
        os._exit(0)
    return ret

# int 0x80 from 64-bit code: i386 numbering, 32-bit registers.
#   push rbx; mov eax,edi; mov ebx,esi; xchg edx,ecx; mov esi,r8d; mov edi,r9d;
#   int 0x80; pop rbx; ret
_INT80 = bytes.fromhex("53 89f8 89f3 87ca 4489c6 4489cf cd80 5b c3".replace(" ", ""))
_INT80_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, *[ctypes.c_uint] * 6)
MAP_32BIT = 0x40


def _int80_stub():
    """An i386 system call entry: call(nr, a1..a5) -> eax (negative errno on failure).
    Also returns a 4 KiB buffer below 4 GiB for pointer arguments."""
    code = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                     prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    code.write(_INT80)
    fn = _INT80_TYPE(ctypes.addressof(ctypes.c_char.from_buffer(code)))
    low = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_32BIT)
    low_addr = ctypes.addressof(ctypes.c_char.from_buffer(low))
    assert low_addr < 2**32
    return fn, low, low_addr, code


def _int80(nr: int, *args: int) -> int:
    fn, _low, _addr, _code = _int80_stub()
    return fn(nr, *(list(args) + [0] * (5 - len(args))))


# --- filters ----------------------------------------------------------------------

_CACHE: dict = {}


def _filter(name: str, abis: str = "same", caps=DOCKER_DEFAULT) -> bytes:
    key = (name, abis, caps)
    if key not in _CACHE:
        _CACHE[key] = compile_filter(str(BUNDLED / f"{name}.json"), capabilities=caps,
                                     other_abis=abis).bpf
    return _CACHE[key]


def _default(abis="same"):
    return _filter("default", abis)


def _strict(abis="kill"):
    return _filter("strict", abis, frozenset())


def _ia32_available() -> bool:
    status, ret = _in_child(None, lambda: _int80(20))       # i386 getpid
    return status == 0 and ret is not None and ret > 0


# --- default profile, native ABI ------------------------------------------------------

@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_default_refuses_escape_syscall_with_eperm(attack):
    nr, _, _, args = ATTACKS[attack]
    status, ret = _in_child(_default(), lambda: _syscall(nr, *args))
    assert (status, ret) == (0, -errno.EPERM)


@pytest.mark.parametrize("attack", sorted(set(ATTACKS) - {"ptrace_attach_pid1"}))
def test_probes_do_not_fail_with_eperm_without_a_filter(attack):
    # The control: the EPERM above comes from the filter, not the kernel.
    nr, _, _, args = ATTACKS[attack]
    status, ret = _in_child(None, lambda: _syscall(nr, *args))
    assert status == 0 and ret != -errno.EPERM


def test_default_refuses_clone_into_new_user_namespace_with_eperm():
    status, ret = _in_child(_default(), lambda: _syscall(56, CLONE_NEWUSER | signal.SIGCHLD, 0, 0, 0, 0))
    assert (status, ret) == (0, -errno.EPERM)


def test_default_hides_clone3_with_enosys_so_libc_falls_back():
    status, ret = _in_child(_default(), lambda: _syscall(435, 0, 0))
    assert (status, ret) == (0, -errno.ENOSYS)


def test_default_hides_io_uring_with_enosys():
    status, ret = _in_child(_default(), lambda: _syscall(425, 1, 0))
    assert (status, ret) == (0, -errno.ENOSYS)


def test_syscall_newer_than_libseccomp_gets_enosys():
    # mseal (462) is unknown to libseccomp 2.5: skipped, so the default applies.
    status, ret = _in_child(_default(), lambda: _syscall(462, 0, 0, 0))
    assert (status, ret) == (0, -errno.ENOSYS)


@pytest.mark.parametrize("family", [AF_VSOCK, AF_ALG])
def test_default_refuses_vsock_and_alg_sockets_with_eperm(family):
    status, ret = _in_child(_default(), lambda: _syscall(41, family, SOCK_STREAM, 0))
    assert (status, ret) == (0, -errno.EPERM)


def test_default_refuses_socket_family_hidden_in_high_bits():
    # The kernel reads an int: 0x1_00000028 is AF_VSOCK; the filter compares
    # all 64 bits and must not let it pass as "some other value".
    status, ret = _in_child(_default(), lambda: _syscall(41, (1 << 32) | AF_VSOCK, SOCK_STREAM, 0))
    assert (status, ret) == (0, -errno.EPERM)


# --- the x32 ABI ---------------------------------------------------------------------

@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_default_refuses_escape_syscall_through_x32_abi(attack):
    _, nr32, _, args = ATTACKS[attack]
    status, ret = _in_child(_default(), lambda: _syscall(nr32 | X32, *args))
    assert (status, ret) == (0, -errno.EPERM)


def test_default_x32_ptrace_with_x86_64_number_is_refused():
    # 101 | X32 is not ptrace on x32 (that is 521): unmentioned, so ENOSYS.
    status, ret = _in_child(_default(), lambda: _syscall(101 | X32, 16, 1, 0, 0))
    assert (status, ret) == (0, -errno.ENOSYS)


def test_kill_mode_x32_syscall_kills_the_process():
    status, _ = _in_child(_default("kill"), lambda: _syscall(39 | X32))   # x32 getpid
    assert status == -signal.SIGSYS


# --- the i386 ABI (int 0x80) ----------------------------------------------------------------

@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_default_refuses_escape_syscall_through_int80(attack):
    if not _ia32_available():
        pytest.skip("the kernel has no i386 emulation (CONFIG_IA32_EMULATION, ia32_emulation=)")
    _, _, nr86, args = ATTACKS[attack]
    status, ret = _in_child(_default(), lambda: _int80(nr86, *args))
    assert (status, ret) == (0, -errno.EPERM)


def test_int80_getpid_works_under_same_rules():
    if not _ia32_available():
        pytest.skip("the kernel has no i386 emulation")
    status, ret = _in_child(_default(), lambda: (_int80(20), os.getpid()))
    assert status == 0 and ret[0] == ret[1]


@pytest.mark.parametrize("profile", ["default", "strict"])
def test_kill_mode_int80_kills_the_process_with_sigsys(profile):
    if not _ia32_available():
        pytest.skip("the kernel has no i386 emulation")
    bpf = _default("kill") if profile == "default" else _strict("kill")
    status, ret = _in_child(bpf, lambda: _int80(20))                     # i386 getpid
    assert (status, ret) == (-signal.SIGSYS, None)


@pytest.mark.parametrize("profile, family", [("strict", AF_INET), ("default", AF_VSOCK)])
def test_int80_socketcall_cannot_bypass_socket_family_rules(profile, family):
    # On i386, socket(family) can go through socketcall(SYS_SOCKET, args*)
    # where seccomp cannot read the family; the i386 filter must not allow it.
    if not _ia32_available():
        pytest.skip("the kernel has no i386 emulation")
    bpf = _default("same") if profile == "default" else _strict("same")

    def probe():
        fn, low, addr, _code = _int80_stub()
        low[:12] = struct.pack("=III", family, SOCK_STREAM, 0)
        via_socketcall = fn(102, 1, addr, 0, 0, 0, 0)          # socketcall(SYS_SOCKET, args)
        direct = fn(359, family, SOCK_STREAM, 0, 0, 0, 0)       # i386 socket()
        return via_socketcall, direct

    status, ret = _in_child(bpf, probe)
    assert (status, ret) == (0, (-errno.ENOSYS, -errno.ENOSYS))


# --- the filter checks the architecture ------------------------------------------------------

def _run_bpf(bpf: bytes, nr: int, arch: int, args=(0,) * 6) -> int:
    """A small classic-BPF interpreter over struct seccomp_data (seccomp(2)):
    nr at 0, arch at 4, instruction pointer at 8, args at 16 + 8*i."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *args)
    prog = list(struct.iter_unpack("=HBBI", bpf))
    a, pc, mem = 0, 0, [0] * 16
    x = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:                       # ld [k]
            a = struct.unpack_from("=I", data, k)[0]
        elif code == 0x00:                     # ld #k
            a = k
        elif code == 0x60:                     # ld M[k]
            a = mem[k]
        elif code == 0x02:                     # st M[k]
            mem[k] = a
        elif code == 0x61:                     # ldx M[k]
            x = mem[k]
        elif code == 0x54:                     # and #k
            a &= k
        elif code == 0x05:                     # ja
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):  # jeq, jgt, jge, jset #k
            ok = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if ok else jf
        elif code == 0x06:                     # ret #k
            return k
        else:
            raise AssertionError(f"unexpected BPF opcode {code:#x}")


@pytest.mark.parametrize("profile", ["default", "strict"])
@pytest.mark.parametrize("abis", ["same", "kill"])
def test_compiled_filter_checks_the_architecture_first(profile, abis):
    bpf = _filter(profile, abis, DOCKER_DEFAULT if profile == "default" else frozenset())
    first = list(struct.iter_unpack("=HBBI", bpf[:16]))
    assert first[0] == (0x20, 0, 0, 4)                     # ld seccomp_data.arch
    assert first[1][0] == 0x15 and first[1][3] in (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386)
    # An ABI the filter does not know dies; x86_64 mount is refused with EPERM.
    assert _run_bpf(bpf, 165, 0xDEADBEEF) == SECCOMP_RET_KILL_PROCESS
    assert _run_bpf(bpf, 165, AUDIT_ARCH_X86_64) == SECCOMP_RET_ERRNO | errno.EPERM
    assert _run_bpf(bpf, 39, AUDIT_ARCH_X86_64) == SECCOMP_RET_ALLOW
    i386_mount = _run_bpf(bpf, 21, AUDIT_ARCH_I386)
    x32_mount = _run_bpf(bpf, 165 | X32, AUDIT_ARCH_X86_64)
    if abis == "kill":
        assert i386_mount == x32_mount == SECCOMP_RET_KILL_PROCESS
    else:
        assert i386_mount == x32_mount == SECCOMP_RET_ERRNO | errno.EPERM


def test_pfc_shows_the_architecture_checks():
    pfc = export_pfc(str(BUNDLED / "default.json"), capabilities=DOCKER_DEFAULT, other_abis="same")
    assert f"if ($arch == {AUDIT_ARCH_X86_64})" in pfc
    assert f"if ($arch == {AUDIT_ARCH_I386})" in pfc
    assert "# invalid architecture action\naction KILL_PROCESS;" in pfc


# --- strict profile ----------------------------------------------------------------------

@pytest.mark.parametrize("family", [AF_INET, AF_INET6, AF_NETLINK, AF_VSOCK, (1 << 32) | AF_UNIX])
def test_strict_refuses_network_sockets_with_eperm(family):
    status, ret = _in_child(_strict(), lambda: _syscall(41, family, SOCK_STREAM, 0))
    assert (status, ret) == (0, -errno.EPERM)


def test_strict_refuses_python_inet_socket_with_eperm():
    def probe():
        import socket
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as e:
            return e.errno
        return 0
    assert _in_child(_strict(), probe) == (0, errno.EPERM)


def test_strict_allows_unix_sockets():
    def probe():
        import socket
        a, b = socket.socketpair(socket.AF_UNIX)
        a.sendall(b"hi")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        return b.recv(2), s.family == socket.AF_UNIX
    assert _in_child(_strict(), probe) == (0, (b"hi", True))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_strict_refuses_escape_syscall_with_eperm(attack):
    nr, _, _, args = ATTACKS[attack]
    status, ret = _in_child(_strict(), lambda: _syscall(nr, *args))
    assert (status, ret) == (0, -errno.EPERM)


# --- errno semantics against runc (issue 13, item 6) --------------------------------
# runc answers a syscall newer than the profile (a number above the highest
# one the profile names, per ABI) with ENOSYS so that glibc falls back, and
# gives SCMP_ACT_ERRNO without an errno EPERM. Docker's own profiles, loaded
# as a user would point a profile at them.

CORPUS = Path(os.environ.get("SANDBOX_CORPUS", "/work/shared/corpus")) / "seccomp"
UNALLOCATED = 1000          # no ABI has a syscall numbered this high
CLONE3, IO_URING_SETUP = 435, 425


def _docker(rel: str, abis: str = "same") -> bytes:
    p = CORPUS / rel
    if not p.exists():
        pytest.skip(f"seccomp corpus file {p} is absent")
    key = (rel, abis)
    if key not in _CACHE:
        _CACHE[key] = compile_filter(str(p), capabilities=DOCKER_DEFAULT, other_abis=abis).bpf
    return _CACHE[key]


CURRENT = "moby-profiles-v0.2.3-current/default.json"      # "defaultErrnoRet": 1
OLD = "moby-2016-06-bdf01cf5/default.json"                  # no defaultErrnoRet


def test_docker_current_profile_unknown_syscall_number_gets_enosys_as_in_runc():
    def probe():
        return _syscall(UNALLOCATED), _syscall(X32 | UNALLOCATED)
    assert _in_child(_docker(CURRENT), probe) == (0, (-errno.ENOSYS, -errno.ENOSYS))


def test_docker_current_profile_unknown_i386_syscall_number_gets_enosys():
    if not _ia32_available():
        pytest.skip("this kernel has no IA-32 emulation")
    assert _in_child(_docker(CURRENT), lambda: _int80(UNALLOCATED)) == (0, -errno.ENOSYS)


@pytest.mark.parametrize("rel", [CURRENT, OLD])
@pytest.mark.parametrize("attack", ["mount", "unshare_newuser", "keyctl"])
def test_docker_profile_known_denied_syscall_gets_eperm_as_in_docker(rel, attack):
    nr, x32, _, args = ATTACKS[attack]
    def probe():
        return _syscall(nr, *args), _syscall(X32 | x32, *args)
    assert _in_child(_docker(rel), probe) == (0, (-errno.EPERM, -errno.EPERM))


def test_docker_2016_profile_syscalls_newer_than_it_get_enosys():
    # clone3 and io_uring came after the 2016 profile: glibc must fall back.
    def probe():
        return _syscall(CLONE3, 0, 0), _syscall(IO_URING_SETUP, 0, 0)
    assert _in_child(_docker(OLD), probe) == (0, (-errno.ENOSYS, -errno.ENOSYS))


def test_docker_profile_kill_mode_x32_numbers_still_kill():
    # The stub must not answer x32 numbers with ENOSYS when x32 is not in the
    # filter: they reach the filter's bad-architecture action.
    status, _ = _in_child(_docker(CURRENT, "kill"), lambda: _syscall(X32 | UNALLOCATED))
    assert status == -signal.SIGSYS


def test_docker_profile_still_runs_a_python_thread():
    def probe():
        import threading
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        return os.getpid() > 0
    assert _in_child(_docker(CURRENT), probe) == (0, True)
