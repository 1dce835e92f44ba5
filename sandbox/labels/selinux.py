"""The SELinux side of a sandbox's label, where SELinux is active.

Detection: SELinux is active when ``/sys/fs/selinux/enforce`` exists
(libselinux's ``is_selinux_enabled`` looks at the same selinuxfs). On this
project's hosts it is built in but not active, so everything here is
either a pure ``build_*`` function (what would be written) or a small
``apply_*`` that the child calls only when `selinux_active` is true.

What is written, as container runtimes do (runc ``label.SetProcessLabel``,
Podman's ``--security-opt label=...``; types from container-selinux's
``container_contexts``):

- exec context: ``user:role:type:level`` written to
  ``/proc/thread-self/attr/exec`` just before ``execve``; the new program
  starts in that context.
- mount context: the option ``context="system_u:object_r:container_file_t:
  s0:c1,c2"`` on the sandbox's own mounts (tmpfs, /dev, overlay), quoted
  because the level holds commas.
- file context of a relabelled volume: ``system_u:object_r:container_file_t:
  LEVEL``, written to ``security.selinux``.

The policy must know the types: the profile's ``label.type`` (default
``sandbox_t``) needs a policy module on SELinux hosts; ``container_t`` from
container-selinux is the usual choice there.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import HostSupportError, SetupError
from .model import Context, Level, LevelRange

SELINUXFS = "/sys/fs/selinux"
#: The file type and user/role of sandbox files (container-selinux's).
FILE_USER = "system_u"
FILE_ROLE = "object_r"
FILE_TYPE = "container_file_t"


def selinux_active(selinuxfs: str = SELINUXFS) -> bool:
    """True when ``<selinuxfs>/enforce`` exists."""
    return os.path.exists(os.path.join(selinuxfs, "enforce"))


def selinux_enforcing(selinuxfs: str = SELINUXFS) -> bool | None:
    """True enforcing, False permissive, None when SELinux is not active."""
    try:
        with open(os.path.join(selinuxfs, "enforce"), "rb") as f:
            return f.read(8).strip() == b"1"
    except OSError:
        return None


def build_exec_context(user: str, role: str, type_: str,
                       level: Level | LevelRange) -> Context:
    """The process context ``user:role:type:level`` (a `Context`; `str`
    of it is what `apply_exec_context` writes). Raises `LabelError`."""
    rng = level if isinstance(level, LevelRange) else LevelRange.of(level)
    return Context(user, role, type_, rng)


def build_file_context(level: Level, *, type_: str = FILE_TYPE) -> str:
    """``system_u:object_r:<type_>:<level>`` for files of the sandbox."""
    return str(Context(FILE_USER, FILE_ROLE, type_, LevelRange.of(level)))


def build_mount_context_option(level: Level, *, type_: str = FILE_TYPE) -> str:
    """The mount option ``context="system_u:object_r:<type_>:<level>"``,
    quoted so the commas of the level stay part of it (mount(8))."""
    return f'context="{build_file_context(level, type_=type_)}"'


class SELinuxPlan(NamedTuple):
    """What the child applies where SELinux is active (None fields: not
    active, nothing to apply). Shown in the launch plan either way."""

    active: bool
    exec_context: str | None
    mount_option: str | None

    def to_dict(self) -> dict:
        return {"active": self.active, "exec_context": self.exec_context,
                "mount_option": self.mount_option}


def build_selinux_plan(user: str, role: str, type_: str, level: Level, *,
                       active: bool | None = None) -> SELinuxPlan:
    """The exec context and mount option for a sandbox at ``level``;
    ``active`` defaults to `selinux_active`. Pure apart from detection."""
    on = selinux_active() if active is None else active
    if not on:
        return SELinuxPlan(False, None, None)
    return SELinuxPlan(True, str(build_exec_context(user, role, type_, level)),
                       build_mount_context_option(level))


def apply_exec_context(context: str, *, attr: str = "/proc/thread-self/attr/exec") -> None:
    """Write ``context`` to the exec attribute so the next ``execve`` runs
    in it. Call it before Landlock (which may deny writes under /proc) and
    before seccomp.

    Raises `HostSupportError` when SELinux is not active (the write fails
    with EINVAL/ENOENT/EOPNOTSUPP), `SetupError` for a refused context.
    """
    data = context.encode("ascii")
    try:
        fd = os.open(attr, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise HostSupportError(f"SELinux exec label: cannot open {attr}: {e.strerror}",
                               hint="SELinux is not active on this host; mark "
                                    "'selinux' optional in the profile") from None
    try:
        os.write(fd, data)
    except OSError as e:
        import errno
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP) and not selinux_active():
            raise HostSupportError(f"SELinux exec label {context}: SELinux is not active",
                                   hint="mark 'selinux' optional in the profile") from None
        raise SetupError(f"SELinux exec label {context}: {e.strerror}",
                         step="selinux exec label", errno=e.errno,
                         hint="check that the policy knows the type "
                              "(container-selinux, or a module for it)") from None
    finally:
        os.close(fd)
