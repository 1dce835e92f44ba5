"""Where `sandbox` keeps its files (DESIGN §7).

==========  ===================  ===========================
folder      as root              as another user
==========  ===================  ===========================
config      /etc/sandbox         $XDG_CONFIG_HOME/sandbox
state       /var/lib/sandbox     $XDG_DATA_HOME/sandbox
runtime     /run/sandbox         $XDG_RUNTIME_DIR/sandbox
==========  ===================  ===========================

``--root DIR`` (environment ``SANDBOX_ROOT``) moves all three under one
folder: ``DIR/config``, ``DIR/state``, ``DIR/run``. Tests always use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class Paths(NamedTuple):
    """The three folders. Nothing is created until ``ensure_*`` is called."""

    config: Path
    state: Path
    runtime: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike | None = None) -> "Paths":
        """Paths for ``root`` (or ``$SANDBOX_ROOT``), else the defaults for
        the calling user."""
        root = root or os.environ.get("SANDBOX_ROOT") or None
        if root:
            r = Path(root).absolute()
            return cls(r / "config", r / "state", r / "run")
        if os.geteuid() == 0:
            return cls(Path("/etc/sandbox"), Path("/var/lib/sandbox"),
                       Path("/run/sandbox"))
        home = Path(os.environ.get("HOME") or f"/tmp/sandbox-{os.getuid()}")
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        data = Path(os.environ.get("XDG_DATA_HOME") or home / ".local/share")
        rt = os.environ.get("XDG_RUNTIME_DIR")
        runtime = Path(rt) / "sandbox" if rt and os.access(rt, os.W_OK) \
            else Path(f"/tmp/sandbox-run-{os.getuid()}")
        return cls(config / "sandbox", data / "sandbox", runtime)

    def ensure(self, which: str) -> Path:
        """Create ``config``, ``state`` or ``runtime`` (mode 0700 for state
        and runtime) and return it."""
        p: Path = getattr(self, which)
        mode = 0o755 if which == "config" else 0o700
        p.mkdir(parents=True, exist_ok=True, mode=mode)
        return p

    @property
    def user_profiles(self) -> Path:
        return self.config / "profiles"

    @property
    def trustedkeys(self) -> Path:
        return self.config / "trustedkeys"
