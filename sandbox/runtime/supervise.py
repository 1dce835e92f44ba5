"""The detached supervisor's runtime side (issue 6): the payload's
rotating log and the confinement `enter` applies. The supervisor itself
(`start_detached`), which drives the launch stages, is
`sandbox.launch.detach`: the runtime never calls back into them.

Payload output: the payload's stdout and stderr are the write end of a
pipe; the supervisor reads it and writes ``payload.log`` in the sandbox's
run folder, rotating at `LOG_MAX` bytes and keeping `LOG_KEEP` older files
(``payload.log.1``, ``.2``). A pipe rather than the log file itself: the
cap is exact (a payload writing fast cannot fill the disk between two
checks, and no RLIMIT_FSIZE kills it), rotation never races a writer, and
the payload holds no fd of a host file (DESIGN §2: no host fd crosses).

State: `sandbox.runtime.state` (record in the state folder, run folder in
the runtime folder). The record is written before any host resource is
taken, then updated with what was taken, then ``running`` (pids with
their start times), then ``exited``/``refused``.
"""

from __future__ import annotations

import base64
import os
import signal

LOG_MAX = 1 << 20          # bytes per log file
LOG_KEEP = 2               # rotated files kept besides payload.log
LOG_NAME = "payload.log"


def crash_point(name: str) -> None:
    """TEST HOOK, see `sandbox.runtime.spawn._crash_point`."""
    if os.environ.get("SANDBOX_TEST_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class RotatingLog:
    """Append-only log capped at ``max_bytes`` per file, ``keep`` rotations."""

    def __init__(self, path: str, max_bytes: int = LOG_MAX, keep: int = LOG_KEEP):
        self.path, self.max, self.keep = path, max_bytes, keep
        self.fd = -1
        self._open()

    def _open(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                          | os.O_NOFOLLOW, 0o600)
        self.size = os.fstat(self.fd).st_size

    def _rotate(self):
        os.close(self.fd)
        for i in range(self.keep, 0, -1):
            src = self.path if i == 1 else f"{self.path}.{i - 1}"
            try:
                os.rename(src, f"{self.path}.{i}")
            except FileNotFoundError:
                pass
        if self.keep == 0:
            os.unlink(self.path)
        self._open()

    def write(self, data: bytes) -> None:
        while data:
            room = self.max - self.size
            if room <= 0:
                self._rotate()
                continue
            chunk, data = data[:room], data[room:]
            os.write(self.fd, chunk)
            self.size += len(chunk)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def confinement(plan) -> dict:
    """What `enter` must apply to match the payload (owner-only file)."""
    return {
        "namespaces": list(plan.namespaces),
        "capabilities": list(plan.capabilities),
        "uid": plan.uid, "gid": plan.gid,
        "may_setgroups": plan.idmap is None or not plan.idmap.deny_setgroups,
        "env": [list(kv) for kv in plan.env],
        "workdir": plan.workdir,
        "no_new_privs": plan.no_new_privs,
        "landlock_abi": plan.landlock_abi,
        "landlock": [{"path": r.path, "access": r.access,
                      "excludes": list(getattr(r, "excludes", ()))} for r in plan.landlock]
        if plan.landlock_abi else [],
        "seccomp": base64.b64encode(plan.seccomp.bpf).decode() if plan.seccomp else None,
        "cgroup_procs": list(plan.cgroup.procs) if plan.cgroup else [],
        "label": plan.label,
        "exec_label": plan.exec_label,
    }
