"""sandbox: a security-hardening sandbox toolkit for Linux.

The library API is `Sandbox` (``from sandbox import Sandbox``); it is
imported lazily so ``import sandbox`` stays cheap for the CLI.
"""

__version__ = "0.1.0"
__all__ = ["Sandbox", "RunResult", "__version__"]


def __getattr__(name):
    if name in ("Sandbox", "RunResult"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
