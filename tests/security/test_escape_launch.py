"""Escape attempts from inside `sandbox run --profile default` (and strict),
on the host view and on a busybox-static root: each test is named after
the attack and asserts the exact refusal (DESIGN §10)."""

from __future__ import annotations

import errno
import os
import pty
import signal
import subprocess

import pytest

import helpers
from helpers import parse_probe, run_sandbox
from sandbox.capabilities import to_mask

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")

DEFAULT_CAPS = frozenset({
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"})

SYSCALLS = ("mount", "unshare", "keyctl", "open_by_handle_at", "bpf", "ptrace")


def _run(sroot, where, *cmd, profile="default", **kw):
    args, _ = where
    return run_sandbox(sroot, "run", "--profile", profile, *args, "--", *cmd, **kw)


def _status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def test_identity_caps_seccomp_inside_default(sroot, where):
    r = _run(sroot, where, "/bin/sh", "-c",
             "id -u; cat /proc/self/uid_map; echo ---; cat /proc/self/status")
    assert r.returncode == 0, r.stderr
    head, _, status = r.stdout.partition("---\n")
    lines = head.split("\n")
    assert lines[0] == "0"
    inside, outside, count = (int(x) for x in lines[1].split())
    assert inside == 0 and outside != 0 and count >= 1
    st = _status(status)
    mask = f"{to_mask(DEFAULT_CAPS):016x}"
    assert (st["CapEff"], st["CapPrm"], st["CapBnd"]) == (mask, mask, mask)
    assert st["CapInh"] == "0" * 16 and st["CapAmb"] == "0" * 16
    assert st["NoNewPrivs"] == "1"
    assert st["Seccomp"] == "2"


def test_profile_caps_match_bundled_default():
    from sandbox.profile.load import load
    assert frozenset(load("default").capabilities) == DEFAULT_CAPS


def test_reaper_is_pid1_and_payload_its_child(sroot, where):
    r = _run(sroot, where, "/bin/sh", "-c",
             "echo $$; echo PPid: $PPID; tr '\\0' ' ' </proc/1/cmdline; echo;"
             "cat /proc/1/comm")
    assert r.returncode == 0, r.stderr
    pid, ppid, cmdline, comm = r.stdout.splitlines()[:4]
    assert pid == "2"
    assert ppid.split() == ["PPid:", "1"]
    assert cmdline.strip() == "sandbox-init"


def test_host_processes_are_invisible(sroot, where):
    r = _run(sroot, where, "/bin/sh", "-c", "ls -d /proc/[0-9]* | sed 's#/proc/##'")
    assert r.returncode == 0, r.stderr
    pids = sorted(int(p) for p in r.stdout.split())
    # PID 1 (reaper), 2 (the shell), and the ls/sed it forked
    assert pids[:2] == [1, 2]
    assert all(p < 10 for p in pids), pids


def test_network_is_only_loopback_and_it_is_up(sroot, where):
    r = _run(sroot, where, "/bin/sh", "-c",
             "ls /sys/class/net; echo ---; cat /sys/class/net/lo/flags; echo ---; "
             "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert r.returncode == 0, r.stderr
    ifaces, flags, dev = r.stdout.split("---\n")
    assert ifaces.split() == ["lo"]
    assert int(flags.strip(), 16) & 0x1      # IFF_UP
    assert dev.split() == ["lo"]


@pytest.mark.parametrize("abi", ["native", "x32", "i386"])
def test_dangerous_syscalls_are_refused_with_eperm_on_every_abi(sroot, where, abi):
    """default: other_abis = "same", so x32 (nr | 0x40000000) and int 0x80
    (i386 numbers) get the same explicit EPERM refusals as x86_64."""
    prefix = {"native": "", "x32": "x32_", "i386": "i386_"}[abi]
    checks = [prefix + s for s in SYSCALLS]
    r = _run(sroot, where, where[1], *checks)
    assert r.returncode == 0, r.stderr
    res = parse_probe(r.stdout)
    assert res == {c: {"ret": -1, "errno": errno.EPERM} for c in checks}, r.stdout


@pytest.mark.parametrize("abi", ["x32", "i386"])
def test_strict_kills_syscalls_through_other_abis(sroot, where, abi):
    """strict: other_abis = "kill": any x32 or int 0x80 syscall dies by SIGSYS."""
    checks = [f"{abi}_{s}" for s in SYSCALLS]
    r = _run(sroot, where, where[1], *checks, profile="strict")
    assert r.returncode == 0, r.stderr
    assert parse_probe(r.stdout) == {c: {"killed": signal.SIGSYS} for c in checks}, r.stdout


def test_allowed_syscall_still_works(sroot, where):
    r = _run(sroot, where, where[1], "getpid")
    assert parse_probe(r.stdout)["getpid"]["ret"] > 0


def test_compiled_filter_checks_the_architecture_first(sroot):
    from sandbox import Sandbox
    plan = Sandbox("default", root=sroot).plan(["/bin/true"])
    bpf = plan.seccomp.bpf
    assert len(bpf) % 8 == 0 and len(bpf) // 8 == plan.seccomp.instructions
    code = int.from_bytes(bpf[0:2], "little")
    k = int.from_bytes(bpf[4:8], "little")
    assert code == 0x20 and k == 4            # BPF_LD|BPF_W|BPF_ABS of seccomp_data.arch
    # and the filter compares against AUDIT_ARCH_X86_64 somewhere
    ks = {int.from_bytes(bpf[i + 4:i + 8], "little") for i in range(0, len(bpf), 8)}
    assert 0xC000003E in ks


def test_proc_kcore_reads_nothing(sroot, where):
    r = _run(sroot, where, where[1], "read", "/proc/kcore")
    got = parse_probe(r.stdout)["read"]
    if os.path.exists("/proc/kcore"):
        assert got == {"ret": 0, "errno": 0}, got          # /dev/null bound over it
    else:                                                   # kernel without CONFIG_PROC_KCORE
        assert got == {"ret": -1, "errno": errno.ENOENT}, got


def test_proc_keys_and_timer_list_are_masked(sroot, where):
    r = _run(sroot, where, where[1], "read", "/proc/timer_list")
    assert parse_probe(r.stdout)["read"] == {"ret": 0, "errno": 0}


def test_write_proc_sys_kernel_hostname_is_refused(sroot, where):
    r = _run(sroot, where, where[1], "openw", "/proc/sys/kernel/hostname")
    v = parse_probe(r.stdout)["openw"]
    # sysctl files belong to the host's root, which is unmapped: the permission
    # check (EACCES) comes before the read-only mount's EROFS
    assert v == {"ret": -1, "errno": errno.EACCES}, v
    r = _run(sroot, where, "/bin/cat", "/proc/self/mountinfo")
    line = next(ln for ln in r.stdout.splitlines() if ln.split()[4] == "/proc/sys")
    assert "ro" in line.split()[5].split(","), line


def test_write_under_host_usr_fails_with_erofs(sroot, probe):
    r = run_sandbox(sroot, "run", "--profile", "default",
                    "--volume", f"{probe.parent}:/probe:ro,z", "--",
                    "/probe/probe", "openw", "/usr/sandbox-escape-test")
    v = parse_probe(r.stdout)["openw"]
    assert v == {"ret": -1, "errno": errno.EROFS}, v
    assert not os.path.exists("/usr/sandbox-escape-test")


def test_no_inherited_fd_above_2(sroot, where):
    rd, wr = os.pipe()                        # an fd the caller leaks on purpose
    try:
        args, _ = where
        r = subprocess.run([helpers.SANDBOX, "--root", str(sroot), "run", "--profile",
                            "default", *args, "--", "/bin/ls", "/proc/self/fd"],
                           capture_output=True, text=True, timeout=30, pass_fds=(rd, wr))
    finally:
        os.close(rd)
        os.close(wr)
    assert r.returncode == 0, r.stderr
    # 0, 1, 2 and the directory fd ls itself opened for the listing
    assert sorted(int(x) for x in r.stdout.split()) == [0, 1, 2, 3]


def test_tiocsti_cannot_inject_into_callers_terminal(sroot, where):
    master, slave = pty.openpty()
    try:
        args, probe_path = where
        # -i: the payload gets the caller's terminal as stdin (without it,
        # /dev/null, and the attack would not reach the terminal at all)
        r = subprocess.run([helpers.SANDBOX, "--root", str(sroot), "run", "--profile",
                            "default", "-i", *args, "--", probe_path, "tiocsti"],
                           stdin=slave, capture_output=True, text=True, timeout=30)
        v = parse_probe(r.stdout)["tiocsti"]
        # ENOTTY when stdin is not the terminal at all; EPERM/EIO when the
        # kernel refuses it (new session, dev.tty.legacy_tiocsti=0)
        assert v["ret"] == -1 and v["errno"] in (errno.EPERM, errno.EIO), v
        # nothing pushed into the terminal's input queue
        os.set_blocking(slave, False)
        try:
            injected = os.read(slave, 100)
        except BlockingIOError:
            injected = b""
        assert injected == b""
    finally:
        os.close(master)
        os.close(slave)


# -- strict --------------------------------------------------------------------

def test_strict_has_no_capabilities_at_all(sroot, where):
    r = _run(sroot, where, "/bin/sh", "-c", "cat /proc/self/status", profile="strict")
    assert r.returncode == 0, r.stderr
    st = _status(r.stdout)
    for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert st[k] == "0" * 16, (k, st[k])
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2"


def test_strict_root_is_read_only(sroot, where):
    r = _run(sroot, where, where[1], "openw", "/escape-test", profile="strict")
    v = parse_probe(r.stdout)["openw"]
    assert v == {"ret": -1, "errno": errno.EROFS}, v


def test_strict_refuses_inet_socket(sroot, where):
    r = _run(sroot, where, where[1], "socket_inet", profile="strict")
    v = parse_probe(r.stdout)["socket_inet"]
    assert v == {"ret": -1, "errno": errno.EPERM}, v
