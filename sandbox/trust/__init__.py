"""Trust: the keys allowed to sign images, per name prefix, and the decision.

Public API::

    from sandbox.trust import (TrustStore, Verification, verify_detached,
                               verify_simple_signing, verify_any)

Names are loaded on first use (PEP 562), so importing this package costs
nothing; gnupg is imported only when gpg must actually run (a cold check).
See `sandbox.trust.store` for the layout, `sandbox.trust.verify` for the
decision and its refusal reasons, `sandbox.trust.names` for prefix
matching and `sandbox.trust.reference` for simple-signing identities.
"""

from __future__ import annotations

_EXPORTS = {
    "DETACHED": "verify", "SIMPLE_SIGNING": "verify", "Verification": "verify",
    "verify_any": "verify", "verify_detached": "verify",
    "verify_simple_signing": "verify", "parse_claim": "verify",
    "Entry": "store", "TrustStore": "store",
    "parse_prefix": "names", "prefix_covers": "names",
    "identity_matches": "reference",
    "KeyCandidate": "keys", "inspect_key_file": "keys", "add_key": "keys",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'sandbox.trust' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value
