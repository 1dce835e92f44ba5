"""The public face of the one door to the kernel (`sandbox.runtime._kernel`)
for the other packages: the few calls they make outside the runtime.

Everything kernel-facing stays in `_kernel` (errno-preserving ctypes
wrappers, one fake for tests); a package outside the runtime imports
these names from here, so the layer test (``tests/unit/test_layers.py``)
can hold that no package reaches into another's private modules.
"""

from __future__ import annotations

from ._kernel import (CLONE_NEWNET, CLONE_NEWUSER, MNT_DETACH, PR_SET_PDEATHSIG, RESOLVE_IN_ROOT,
                      RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, UMOUNT_NOFOLLOW, close_range,
                      openat2, prctl, seccomp_set_filter, setns, umount2)

__all__ = ["CLONE_NEWNET", "CLONE_NEWUSER", "PR_SET_PDEATHSIG", "prctl", "setns",
           "RESOLVE_IN_ROOT",
           "MNT_DETACH", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_SYMLINKS", "UMOUNT_NOFOLLOW",
           "close_range", "openat2", "seccomp_set_filter", "umount2"]
