"""SHA-256 and BLAKE2b for the launch path, without loading OpenSSL.

``import hashlib`` loads OpenSSL's libcrypto through ``_hashlib`` (~2 ms),
which a launch would pay only for SHA-256 (digests of profiles, plans,
filters and audit records) and BLAKE2b (audit seals). CPython has both
built in (``_sha256``, ``_blake2``; the standard library's `random` takes
its SHA-512 the same way). Same algorithms, same digests; where a Python
lacks those modules (3.12 renamed ``_sha256`` to ``_sha2``) this falls back
to `hashlib`.
"""

try:
    from _sha256 import sha256
except ImportError:  # pragma: no cover - other Python versions
    try:
        from _sha2 import sha256
    except ImportError:
        from hashlib import sha256

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - other Python versions
    from hashlib import blake2b

__all__ = ["sha256", "blake2b"]
