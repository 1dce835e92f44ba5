"""The public face of Landlock (`sandbox.runtime._landlock`) for the other
packages: the labels build the rules, the runtime applies them."""

from __future__ import annotations

from ._landlock import (LandlockRule, apply_landlock, build_landlock_rules, landlock_abi,
                        landlock_support)

__all__ = ["LandlockRule", "apply_landlock", "build_landlock_rules", "landlock_abi",
           "landlock_support"]
