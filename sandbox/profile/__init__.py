"""Profiles: TOML files resolved into one frozen `Profile` (DESIGN §3)."""

from .load import available, load, loads, locate
from .model import Profile

__all__ = ["Profile", "available", "load", "loads", "locate"]
