"""Profiles: TOML files resolved into one frozen `Profile` (DESIGN §3)."""

from .load import available, load, locate
from .model import Profile

__all__ = ["Profile", "available", "load", "locate"]
