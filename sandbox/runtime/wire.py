"""The executor's wire format: the plan's steps as bytes on a pipe.

`build_wire` serializes the confinement steps of a plan (`steps`,
``CONFINEMENT_KINDS``) for the compiled executor ``sandbox-exec``
(``csrc/sandbox-exec.c``, whose header comment is the format's
specification): a header (``SBXE``, `WIRE_VERSION`, step count), then one
record per step (opcode, length, typed fields). Pure; the Landlock rules
are expanded to rights masks here, as the BPF is compiled here, so the
executor only performs them.

The executor refuses an unknown opcode or a step out of order: adding a
kind (OCI sysctls, devices, namespaces by path...) means one opcode here,
one in the C reader, and a bump of `WIRE_VERSION` when a field changes.
"""

from __future__ import annotations

import os
import struct

from ..capabilities import CAPABILITIES

WIRE_VERSION = 1
MAGIC = b"SBXE"

#: step kind -> opcode (numbered as added; the executor's ``op_rank``
#: holds the order: setns, chroot, fork, then setsid .. execve).
OPCODES = {"setsid": 1, "chdir": 2, "capabilities": 3, "ids": 4, "no_new_privs": 5,
           "landlock": 6, "exec_label": 7, "seccomp": 8, "execve": 9,
           "setns": 10, "chroot": 11, "fork": 12,
           # OCI (sandbox.oci): ranked setsid, controlling_tty, umask, chdir,
           # seccomp_early, capabilities | capability_sets, groups, ids
           "controlling_tty": 13, "umask": 14, "seccomp_early": 15, "capability_sets": 16,
           "groups": 17}


class WireError(ValueError):
    """A step the wire format (and so the executor) cannot carry."""


def _u(v: int) -> bytes:
    if not 0 <= v < 1 << 64:
        raise WireError(f"integer {v} out of range")
    return b"u" + struct.pack("<Q", v)


def _s(v: str) -> bytes:
    b = v.encode("utf-8", "surrogateescape")
    if b"\0" in b:
        raise WireError(f"string {v!r} holds a NUL byte")
    return b"s" + struct.pack("<I", len(b)) + b


def _b(v: bytes) -> bytes:
    return b"b" + struct.pack("<I", len(v)) + v


def _landlock_fields(step) -> bytes:
    from ._landlock import (FILE_RIGHTS, LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET,
                            LANDLOCK_SCOPE_SIGNAL, handled_access_fs)
    handled = handled_access_fs(step.abi)
    scoped = (LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL) \
        if step.abi >= 6 else 0
    rights = {r.path: r.rights & handled for r in step.rules}
    out = [_u(step.abi), _u(handled), _u(scoped), _u(FILE_RIGHTS), _u(len(step.rules))]
    for r in step.rules:        # the same split as _landlock._expand
        mask = rights[r.path]
        common = mask
        for e in r.excludes:
            common &= rights.get(e, 0)
        out += [_s(r.path), _u(mask), _u(common), _u(len(r.excludes))]
        out += [_s(e) for e in r.excludes]
    return b"".join(out)


def _fields(step) -> bytes:
    k = step.kind
    if k in ("setsid", "no_new_privs", "fork", "controlling_tty"):
        return b""
    if k == "setns":
        return b"".join([_u(len(step.fds))] + [_u(fd) + _u(t) for fd, t in step.fds])
    if k == "chroot":
        return _u(step.fd)
    if k == "chdir":
        return _s(step.workdir)
    if k == "capabilities":
        return _u(sum(1 << CAPABILITIES[c] for c in set(step.keep)))
    if k == "ids":
        return _u(step.uid) + _u(step.gid) + _u(int(step.setgroups))
    if k == "landlock":
        return _landlock_fields(step)
    if k == "exec_label":
        return _s(step.context)
    if k in ("seccomp", "seccomp_early"):
        return _b(step.filter.bpf)
    if k == "umask":
        if not 0 <= step.mask <= 0o777:
            raise WireError(f"umask {step.mask:o} out of range")
        return _u(step.mask)
    if k == "capability_sets":
        return b"".join(_u(sum(1 << CAPABILITIES[c] for c in set(getattr(step, n))))
                        for n in ("bounding", "effective", "permitted", "inheritable",
                                  "ambient"))
    if k == "groups":
        return b"".join([_u(len(step.gids))] + [_u(g) for g in step.gids])
    if k == "execve":
        env = [f"{n}={v}" for n, v in step.env]
        return b"".join([_u(len(step.argv))] + [_s(a) for a in step.argv]
                        + [_u(len(env))] + [_s(e) for e in env])
    raise WireError(f"the executor cannot perform step {k!r} yet")


def build_wire(steps) -> bytes:
    """The wire bytes of ``steps`` (confinement kinds only, in order)."""
    body = []
    for s in steps:
        if s.kind not in OPCODES:
            raise WireError(f"the executor cannot perform step {s.kind!r} yet")
        f = _fields(s)
        body.append(struct.pack("<HHI", OPCODES[s.kind], 0, len(f)) + f)
    return MAGIC + struct.pack("<HHI", WIRE_VERSION, 0, len(body)) + b"".join(body)


def executor_path() -> str:
    """The compiled executor shipped in the package (built on install by
    ``hatch_build.py``)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "_bin", "sandbox-exec")
