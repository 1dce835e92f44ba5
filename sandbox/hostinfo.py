"""What is installed and what the host offers, for bug reports (issue 13, item 11).

`collect` gathers the package version, the versions of its Python
dependencies, libseccomp, gpg, Python and the kernel, and the protections
the host offers (Landlock ABI, cgroup version, SELinux, user namespaces);
``sandbox version --verbose`` prints it as text or JSON. Nothing here
changes the host: it reads files under /proc and /sys, asks the kernel for
the Landlock ABI, and runs ``gpg --version``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib import metadata

DIST = "sandbox"


def package_version() -> str:
    """The installed `sandbox` distribution's version ("unknown" if not installed)."""
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown"


def python_dependencies() -> dict[str, str]:
    """Runtime dependency name -> installed version ("missing" when absent);
    the ``test`` extra is left out."""
    try:
        reqs = metadata.requires(DIST) or []
    except metadata.PackageNotFoundError:
        return {}
    out = {}
    for r in reqs:
        if "extra ==" in r:
            continue
        name = re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0]
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def gpg_version() -> str:
    gpg = shutil.which("gpg")
    if gpg is None:
        return "missing"
    try:
        out = subprocess.run([gpg, "--version"], capture_output=True, text=True, timeout=10,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                  "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    m = re.match(r"gpg \(GnuPG\) (\S+)", out)
    return m.group(1) if m else "unknown"


def cgroup_version() -> str:
    """``"2"`` (unified), ``"1 (hybrid)"`` (v1 controllers, v2 at /sys/fs/cgroup/unified),
    ``"1"``, or ``"none"``."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "2"
    if os.path.isdir("/sys/fs/cgroup/unified") and os.path.ismount("/sys/fs/cgroup/unified"):
        return "1 (hybrid)"
    if os.path.isdir("/sys/fs/cgroup") and os.listdir("/sys/fs/cgroup"):
        return "1"
    return "none"


def selinux_state() -> str:
    """``"enforcing"``, ``"permissive"`` or ``"inactive"``."""
    from sandbox.labels.selinux import selinux_active, selinux_enforcing
    if not selinux_active():
        return "inactive"
    return "enforcing" if selinux_enforcing() else "permissive"


def user_namespaces() -> dict:
    """Whether unprivileged users may create user namespaces, and the limit."""
    limit = _read("/proc/sys/user/max_user_namespaces")
    # Debian's and Ubuntu's switches, where the kernel has them
    debian = _read("/proc/sys/kernel/unprivileged_userns_clone")
    apparmor = _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    unpriv = (limit not in (None, "0") and debian != "0" and apparmor != "1")
    return {"max": int(limit) if limit and limit.isdigit() else None,
            "unprivileged": unpriv}


def collect() -> dict:
    """Everything above as one JSON-ready dict."""
    from sandbox.runtime.landlock import landlock_abi
    from sandbox.seccomp import libseccomp_version
    import platform
    u = os.uname()
    return {
        "version": package_version(),
        "python": platform.python_version(),
        "dependencies": python_dependencies(),
        "libseccomp": libseccomp_version(),
        "gpg": gpg_version(),
        "kernel": {"release": u.release, "machine": u.machine},
        "host": {"landlock_abi": landlock_abi(), "cgroup": cgroup_version(),
                 "selinux": selinux_state(), "user_namespaces": user_namespaces()},
    }


def format_text(info: dict) -> list[str]:
    """The text form: one ``key: value`` line each."""
    h = info["host"]
    uns = h["user_namespaces"]
    lines = [f"sandbox {info['version']}", f"python {info['python']}"]
    lines += [f"  {k} {v}" for k, v in info["dependencies"].items()]
    lines += [f"libseccomp {info['libseccomp']}", f"gpg {info['gpg']}",
              f"kernel {info['kernel']['release']} ({info['kernel']['machine']})",
              f"landlock ABI {h['landlock_abi'] or 'unavailable'}",
              f"cgroup {h['cgroup']}",
              f"selinux {h['selinux']}",
              "user namespaces " + ("unprivileged allowed" if uns["unprivileged"]
                                    else "root only")
              + (f" (max {uns['max']})" if uns["max"] is not None else "")]
    return lines
