"""What the caller asks the runtime for, besides the profile: frozen values.

The runtime never imports image or trust code (DESIGN §2): an image reaches
it as a list of already verified, unpacked, read-only layer folders.
"""

from __future__ import annotations

from typing import NamedTuple


class RootFS(NamedTuple):
    """The root file system of a sandbox.

    ``kind``: ``host`` (the embedded default: a read-only view of the host's
    system folders), ``dir`` (``path``, never modified: a per-sandbox overlay
    on top of it) or ``layers`` (``layers``: unpacked image layers, lowest
    first, joined with overlayfs).
    """

    kind: str = "host"
    path: str | None = None
    layers: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "host":
            return "host view"
        if self.kind == "dir":
            return f"directory {self.path}"
        return f"image ({len(self.layers)} layers)"


class Volume(NamedTuple):
    """A host folder or file bound into the sandbox.

    ``mode``: ``ro`` or ``rw``; ``relabel``: None, ``z`` (shared) or ``Z``
    (private), Podman's spelling.
    """

    source: str
    target: str
    mode: str = "ro"
    relabel: str | None = None


class RunSpec(NamedTuple):
    """One launch request: the command and everything not in the profile."""

    argv: tuple[str, ...]
    root: RootFS = RootFS()
    volumes: tuple[Volume, ...] = ()
    name: str | None = None
    insecure_options: tuple[str, ...] = ()
