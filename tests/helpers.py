"""Shared helpers for the launch tests: a busybox-static root file system and
a static C probe made at test time, and runners for the CLI (as root and as
user nobody through setpriv).

Everything a sandbox must reach (root file system, probe, profiles) lives in
a world-searchable folder under /var/tmp: the sandbox's root is host uid
100000 when root launches it, and user nobody runs the rootless cases.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SANDBOX = str(VENV_BIN / "sandbox") if (VENV_BIN / "sandbox").exists() else shutil.which("sandbox")
CORPUS = REPO.parent / "shared" / "corpus"
NOBODY = 65534
BUSYBOX = shutil.which("busybox")
IS_ROOT = os.geteuid() == 0

def world_dir(prefix: str) -> Path:
    """A fresh folder under /var/tmp that everybody can search (0755)."""
    base = Path("/var/tmp")
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    os.chmod(d, 0o755)
    return d


def make_busybox_root(dest: Path) -> Path:
    """A minimal root file system: busybox-static and its applet links."""
    if BUSYBOX is None:
        raise RuntimeError("busybox-static is not installed")
    # No /tmp: the sandbox makes it (see test_rootfs_with_root_owned_sticky_tmp_launches
    # for a root whose /tmp already exists).
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root"):
        (dest / d).mkdir(parents=True, exist_ok=True)
        os.chmod(dest / d, 0o755)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    os.chmod(dest / "bin" / "busybox", 0o755)
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        link = dest / "bin" / a
        if not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/false\n")
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    (dest / "notexec").write_text("#!/bin/sh\necho never\n")
    os.chmod(dest / "notexec", 0o644)
    os.chmod(dest, 0o755)
    return dest


PROBE_C = r"""/* A small static probe run inside sandboxes by the tests (tests/helpers.py
 * compiles it at test time).  Each check runs in a forked child so a
 * seccomp kill (SIGSYS) is reported instead of ending the probe.
 * Output: one line per check, "NAME ret=R errno=E" or "NAME killed=SIG". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>

#define X32 0x40000000L
static char handle_buf[64];
static union { long l[16]; char c[128]; } bpf_attr;

static long i386_call(long nr, long a, long b, long c, long d, long e) {
    long ret;
    __asm__ volatile ("int $0x80"
                      : "=a"(ret)
                      : "0"(nr), "b"(a), "c"(b), "d"(c), "S"(d), "D"(e)
                      : "memory");
    return ret;
}

static void report(const char *name, long ret, int err) {
    printf("%s ret=%ld errno=%d\n", name, ret, ret < 0 ? err : 0);
    fflush(stdout);
}

static void run_i386(const char *name, long nr, long a, long b, long c, long d, long e) {
    long r = i386_call(nr, a, b, c, d, e);
    if (r < 0 && r > -4096) report(name, -1, (int)-r); else report(name, r, 0);
}

static void check(const char *which) {
    long r;
    errno = 0;
    if (!strcmp(which, "mount")) { r = syscall(SYS_mount, "none", "/nonexistent-probe-target", "tmpfs", 0L, NULL); report(which, r, errno); }
    else if (!strcmp(which, "unshare")) { r = syscall(SYS_unshare, 0x10000000L); report(which, r, errno); }
    else if (!strcmp(which, "keyctl")) { r = syscall(SYS_keyctl, 0L, -3L, 1L); report(which, r, errno); }
    else if (!strcmp(which, "open_by_handle_at")) { r = syscall(SYS_open_by_handle_at, AT_FDCWD, handle_buf, 0L); report(which, r, errno); }
    else if (!strcmp(which, "bpf")) { r = syscall(SYS_bpf, 0L, &bpf_attr, (long)sizeof bpf_attr); report(which, r, errno); }
    else if (!strcmp(which, "ptrace")) { r = syscall(SYS_ptrace, 16L /*ATTACH*/, 1L, 0L, 0L); report(which, r, errno); }
    else if (!strcmp(which, "x32_mount")) { r = syscall(X32 | SYS_mount, "none", "/nonexistent-probe-target", "tmpfs", 0L, NULL); report(which, r, errno); }
    else if (!strcmp(which, "x32_unshare")) { r = syscall(X32 | SYS_unshare, 0x10000000L); report(which, r, errno); }
    else if (!strcmp(which, "x32_keyctl")) { r = syscall(X32 | SYS_keyctl, 0L, -3L, 1L); report(which, r, errno); }
    else if (!strcmp(which, "x32_open_by_handle_at")) { r = syscall(X32 | SYS_open_by_handle_at, AT_FDCWD, handle_buf, 0L); report(which, r, errno); }
    else if (!strcmp(which, "x32_bpf")) { r = syscall(X32 | SYS_bpf, 0L, &bpf_attr, (long)sizeof bpf_attr); report(which, r, errno); }
    else if (!strcmp(which, "x32_ptrace")) { r = syscall(X32 | 521L /*x32 ptrace*/, 16L, 1L, 0L, 0L); report(which, r, errno); }
    /* i386 numbers; pointers are below 4 GiB in a non-PIE static binary */
    else if (!strcmp(which, "i386_mount")) run_i386(which, 21, (long)"none", (long)"/nonexistent-probe-target", (long)"tmpfs", 0, 0);
    else if (!strcmp(which, "i386_unshare")) run_i386(which, 310, 0x10000000L, 0, 0, 0, 0);
    else if (!strcmp(which, "i386_keyctl")) run_i386(which, 288, 0, -3L, 1, 0, 0);
    else if (!strcmp(which, "i386_open_by_handle_at")) run_i386(which, 342, -100L, (long)handle_buf, 0, 0, 0);
    else if (!strcmp(which, "i386_bpf")) run_i386(which, 357, 0, (long)&bpf_attr, (long)sizeof bpf_attr, 0, 0);
    else if (!strcmp(which, "i386_ptrace")) run_i386(which, 26, 16, 1, 0, 0, 0);
    else if (!strcmp(which, "socket_inet")) { r = socket(AF_INET, SOCK_STREAM, 0); report(which, r, errno); }
    else if (!strcmp(which, "getpid")) { r = syscall(SYS_getpid); report(which, r, errno); }
    else if (!strcmp(which, "tiocsti")) { char ch = 'x'; r = ioctl(0, TIOCSTI, &ch); report(which, r, errno); }
    else if (!strncmp(which, "nr:", 3)) { r = syscall(strtol(which + 3, NULL, 0), 0L, 0L, 0L); report(which, r, errno); }  /* nr:NUMBER, no arguments */
    else { fprintf(stderr, "probe: unknown check %s\n", which); exit(2); }
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "openw")) {      /* openw PATH: open for writing */
        int fd = open(argv[2], O_WRONLY | O_CREAT, 0644);
        long r = fd;
        if (fd >= 0) { r = write(fd, "x\n", 2); }
        report("openw", r, errno);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "read")) {       /* read PATH: bytes readable */
        char buf[4096]; long total = 0, n;
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) { report("read", -1, errno); return 0; }
        while ((n = read(fd, buf, sizeof buf)) > 0 && total < (1 << 20)) total += n;
        if (n < 0) { report("read", -1, errno); return 0; }
        report("read", total, 0);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) { check(argv[i]); _exit(0); }
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st)) { printf("%s killed=%d\n", argv[i], WTERMSIG(st)); fflush(stdout); }
        else if (WEXITSTATUS(st) != 0) return WEXITSTATUS(st);
    }
    return 0;
}
"""


def compile_probe(dest: Path) -> Path:
    """Compile the probe statically (non-PIE, so i386 syscalls can take
    pointers) to ``dest``."""
    if shutil.which("gcc") is None:
        raise RuntimeError("gcc is not installed")
    src = dest.with_suffix(".c")
    src.write_text(PROBE_C)
    subprocess.run(["gcc", "-static", "-no-pie", "-O2", str(src), "-o", str(dest)],
                   check=True, capture_output=True, timeout=120)
    os.chmod(dest, 0o755)
    return dest


def parse_probe(text: str) -> dict[str, dict[str, int]]:
    """``NAME ret=R errno=E`` / ``NAME killed=S`` lines to a dict."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or "=" not in parts[1]:
            continue
        out[parts[0]] = {k: int(v) for k, v in (p.split("=", 1) for p in parts[1:])}
    return out


def run_sandbox(root: Path | str, *args: str, timeout: float = 30, input: str | None = None,
                env: dict | None = None, as_nobody: bool = False, home: Path | None = None,
                **kw) -> subprocess.CompletedProcess:
    """``sandbox --root ROOT ARGS...`` through the CLI, with a timeout.

    ``as_nobody``: run it as user nobody via setpriv (rootless)."""
    cmd = [SANDBOX, "--root", str(root), *args]
    e = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    if as_nobody:
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               "--inh-caps=-all", *cmd]
        e["HOME"] = str(home or root)
    if env:
        e.update(env)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                          env=e, **kw)


def runtime_leftovers(root: Path | str) -> list[str]:
    """Entries left in the --root's runtime folder (sandboxes, not id-range
    reservation files)."""
    run = Path(root) / "run"
    if not run.is_dir():
        return []
    return sorted(p.name for p in run.iterdir() if p.is_dir() and p.name not in ("idmap", "labels"))


def host_mounts_mentioning(text: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if text in line]
