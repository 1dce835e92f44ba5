"""The host audit key: one Ed25519 key pair in the state folder.

Files (made on first use, DESIGN §6):

====================  =====  ================================================
``audit-key``         0600   private key, PEM PKCS#8 (``openssl pkey`` reads it)
``audit-key.pub``     0644   public key, PEM SubjectPublicKeyInfo
====================  =====  ================================================

Two uses:

- **Ed25519 signatures** over the chain head, which anyone holding the
  public key can check offline. `cryptography` is imported only here, and
  only when a key is made or a signature is made or checked (its import
  costs about 13 ms, more than the whole launch-path budget).
- **Seals**: a keyed BLAKE2b MAC (built in: `sandbox._hash`, no extra import) under a key
  derived from the private key file, put on every record and on the anchor
  at each append. They cost microseconds, so the hot path can seal
  everything it writes and leave the Ed25519 signature to be made in
  batches (see `sandbox.audit.log`). Only a holder of the private key can
  make either.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._hash import blake2b, sha256

KEY_NAME = "audit-key"
PUB_NAME = "audit-key.pub"

# DER prefixes of the fixed-size Ed25519 encodings (RFC 8410): PKCS#8 private
# key (then the 32-byte seed) and SubjectPublicKeyInfo (then the 32-byte key).
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

_mac_cache: dict[tuple, bytes] = {}


class KeyError_(Exception):
    """A key file is missing or is not an Ed25519 key in the expected form."""


def _pem_body(data: bytes, label: str) -> bytes:
    import base64
    text = data.decode("ascii", "replace")
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if begin not in text or end not in text:
        raise KeyError_(f"not a PEM {label}")
    inner = text.split(begin, 1)[1].split(end, 1)[0]
    return base64.b64decode("".join(inner.split()))


def private_seed(pem: bytes) -> bytes:
    """The 32-byte Ed25519 seed of a PEM PKCS#8 private key."""
    der = _pem_body(pem, "PRIVATE KEY")
    if len(der) != 48 or not der.startswith(_PKCS8_PREFIX):
        raise KeyError_("not an Ed25519 private key")
    return der[16:]


def public_raw(pem: bytes) -> bytes:
    """The 32-byte Ed25519 public key of a PEM SubjectPublicKeyInfo."""
    der = _pem_body(pem, "PUBLIC KEY")
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise KeyError_("not an Ed25519 public key")
    return der[12:]


def _pem(label: str, der: bytes) -> bytes:
    import base64
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) +
            f"\n-----END {label}-----\n").encode()


def fingerprint(raw_public: bytes) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key."""
    return "sha256:" + sha256(raw_public).hexdigest()


def _write_new(path: Path, data: bytes, mode: int) -> bool:
    """Write ``data`` to ``path`` only if it does not exist yet, atomically:
    a temporary file in the same folder, then ``link`` (fails if another
    process won the race). Returns True when this call created it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def ensure_key(state: Path, before_link=None) -> bool:
    """Make the key pair in ``state`` unless it exists (safe against
    concurrent callers and against a crash half-way). True when this call
    made the private key. ``before_link(seed)`` runs with a new key's seed
    before the key file appears (the log writes the key's high-water mark
    there, so no key is ever seen without one)."""
    key = state / KEY_NAME
    pub = state / PUB_NAME
    made = False
    if not key.exists():
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives import serialization as s
        k = Ed25519PrivateKey.generate()
        seed = k.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
        if before_link is not None:
            before_link(seed)
        made = _write_new(key, _pem("PRIVATE KEY", _PKCS8_PREFIX + seed), 0o600)
    if not pub.exists():
        raw = derive_public(private_seed(key.read_bytes()))
        _write_new(pub, _pem("PUBLIC KEY", _SPKI_PREFIX + raw), 0o644)
    return made


def derive_public(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization as s
    k = Ed25519PrivateKey.from_private_bytes(seed)
    return k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)


def mac_key(state: Path) -> bytes | None:
    """The sealing key derived from the private key file, or None when the
    file cannot be read (another user, or no key yet). Cached per file."""
    path = state / KEY_NAME
    try:
        st = os.stat(path)
    except OSError:
        return None
    ident = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    k = _mac_cache.get(ident)
    if k is None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        k = blake2b(b"sandbox audit seal v1\0" + data, digest_size=32).digest()
        _mac_cache.clear()
        _mac_cache[ident] = k
    return k


def seal(key: bytes, domain: bytes, message: bytes) -> str:
    """Keyed BLAKE2b-256 of ``domain || 0 || message``, hex."""
    return blake2b(domain + b"\0" + message, key=key, digest_size=32).hexdigest()


def sign(state: Path, message: bytes, seed: bytes | None = None) -> tuple[str, str]:
    """Ed25519 signature of ``message`` with the host key (or ``seed``):
    ``(hex, fingerprint)``."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    if seed is None:
        seed = private_seed((state / KEY_NAME).read_bytes())
    k = Ed25519PrivateKey.from_private_bytes(seed)
    return k.sign(message).hex(), fingerprint(derive_public(seed))


def check_signature(raw_public: bytes, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is a valid Ed25519 signature of ``message``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        Ed25519PublicKey.from_public_bytes(raw_public).verify(
            bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False
