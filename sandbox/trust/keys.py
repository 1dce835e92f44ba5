"""Reading key files: what a key is before it is trusted, and key metadata.

`inspect_key_file` is what ``sandbox trust add`` shows before asking;
`add_key` writes the key into the config layer of the trust store.
`key_info` gives expiry and user ids of a stored key for a `Verification`,
from a small cache in the state folder (keyed by the SHA-256 of the key
file), so that a verification does not list keys with gpg every time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ArtifactError, UsageError
from ..paths import Paths
from . import _gpg, names
from .store import ROOT, TrustStore

_MAX_KEY_FILE = 1 << 20
_SECRET_TAGS = {5, 7}      # secret key, secret subkey (RFC 4880 §5.5.1)
_PUBLIC_KEY_TAG = 6


@dataclass(frozen=True, slots=True)
class KeyCandidate:
    """A key file checked and ready to be trusted: its info and the exact
    bytes (binary, public part only, as gpg exported it) that will be stored."""

    info: _gpg.KeyInfo
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return self.info.fingerprint


def inspect_key_file(data: bytes, *, source: str = "key file",
                     usable: bool = True) -> KeyCandidate:
    """Check that ``data`` is exactly one usable OpenPGP public certificate
    (RFC 4880 §11.1), armored or binary, and return it.

    Refused with `ArtifactError` (naming ``source``): not OpenPGP, a secret
    key, more than one certificate, no usable key after gpg's import checks,
    a revoked or an expired key (the last two only with ``usable``: a
    revoked copy is what `refresh_key` takes)."""
    if len(data) > _MAX_KEY_FILE:
        raise ArtifactError(f"{source} is larger than 1 MiB; not a public key")
    try:
        binary = _gpg.dearmor(data)
        tags = _gpg.packet_tags(binary)
    except ValueError as e:
        raise ArtifactError(f"{source} is not an OpenPGP public key ({e})",
                            hint="export one with `gpg --export --armor FINGERPRINT > key.asc`") from None
    if _SECRET_TAGS & set(tags):
        raise ArtifactError(f"{source} contains a SECRET key; refusing to store it",
                            hint="give the public key: `gpg --export --armor FINGERPRINT`")
    count = tags.count(_PUBLIC_KEY_TAG)
    if count == 0:
        raise ArtifactError(f"{source} holds no OpenPGP public key",
                            hint="export one with `gpg --export --armor FINGERPRINT`")
    if count > 1:
        raise ArtifactError(f"{source} holds {count} keys; trust them one at a time",
                            hint="export each with `gpg --export --armor FINGERPRINT`")
    try:
        infos, exported = _gpg.inspect_keys(binary)
    except ValueError as e:
        raise ArtifactError(f"{source}: {e}") from None
    if len(infos) != 1 or not infos[0].fingerprint:
        raise ArtifactError(f"{source}: gpg did not accept exactly one key")
    info = infos[0]
    if usable:
        _check_usable(info, source)
    return KeyCandidate(info, exported)


def unusable(info: _gpg.KeyInfo) -> bool:
    """Revoked or expired (by gpg's word or by the expiry date now)."""
    return bool(info.revoked or info.expired
                or (info.expires and info.expires <= datetime.now(timezone.utc)))


def _check_usable(info: _gpg.KeyInfo, source: str) -> None:
    if info.revoked:
        raise ArtifactError(f"key {info.fingerprint} in {source} is revoked; refusing to trust it")
    if info.expired or (info.expires and info.expires <= datetime.now(timezone.utc)):
        raise ArtifactError(f"key {info.fingerprint} in {source} has expired; refusing to trust it",
                            hint="get the key with its expiry extended from its owner")


def _merged(store: TrustStore, candidate: KeyCandidate) -> KeyCandidate:
    """``candidate`` merged with every stored copy of the same key (gpg
    merges certificates by fingerprint: a revocation or a newer expiry in
    either copy is kept). So trusting an old, unrevoked copy again never
    undoes a revocation already stored."""
    stored = [e.read() for e in store.entries_of(candidate.fingerprint)]
    if not stored:
        return candidate
    try:
        infos, blob = _gpg.inspect_keys(b"".join(_gpg.dearmor(b) for b in stored)
                                        + candidate.blob)
    except ValueError as e:
        raise ArtifactError(f"key {candidate.fingerprint}: cannot merge with the stored "
                            f"copy: {e}") from None
    infos = [i for i in infos if i.fingerprint == candidate.fingerprint]
    if len(infos) != 1:
        raise ArtifactError(f"key {candidate.fingerprint}: cannot merge with the stored copy")
    return KeyCandidate(infos[0], blob)


def refresh_key(paths: Paths, candidate: KeyCandidate, *,
                store: TrustStore | None = None) -> tuple[KeyCandidate, list]:
    """Merge a newer copy of an already trusted key (a revocation, a new
    expiry, new subkeys) into every entry that trusts it, at once, with a
    ``trust.refresh`` audit record. Verification reads the merged files
    (and the store's generation changes), so a revoked key's signatures
    are refused from the next verification on.

    Returns (the merged key, the entries rewritten). Raises `NotFound`
    when the key is not trusted."""
    from ..errors import NotFound
    store = store or TrustStore(paths)
    entries = store.entries_of(candidate.fingerprint)
    if not entries:
        raise NotFound(f"key {candidate.fingerprint} is not in the trust store; "
                       "nothing to refresh", hint="trust it with `sandbox trust add`")
    merged = _merged(store, candidate)
    info = merged.info
    store.refresh(merged.blob, merged.fingerprint, [e.scope for e in entries], details={
        "uids": list(info.uids), "revoked": info.revoked,
        "expires": info.expires.isoformat() if info.expires else None,
        "expired": unusable(info) and not info.revoked})
    _save_info(paths, merged.blob, info)
    return merged, entries


def add_key(paths: Paths, candidate: KeyCandidate, *, prefix: str | None = None,
            root: bool = False, store: TrustStore | None = None) -> Path:
    """Trust ``candidate`` for names under ``prefix`` or, with ``root``, for
    every name. Exactly one of the two. Writes the config layer atomically,
    records an audit event, and primes the key-info cache. Returns the
    file written."""
    if bool(prefix) == bool(root):
        raise UsageError("give exactly one of --prefix PREFIX or --root",
                         hint="--prefix example.com/app trusts the key for that name and below")
    scope = ROOT if root else "/".join(names.parse_prefix(prefix))
    store = store or TrustStore(paths)
    candidate = _merged(store, candidate)
    info = candidate.info
    _check_usable(info, "the trust store")
    path = store.add(candidate.blob, candidate.fingerprint, scope, details={
        "uids": list(info.uids),
        "expires": info.expires.isoformat() if info.expires else None})
    _save_info(paths, candidate.blob, candidate.info)
    return path


# --------------------------------------------------------------------------
# key info cache

def _info_dir(paths: Paths) -> Path:
    return paths.state / "trust" / "keyinfo"


def _iso(d: datetime | None):
    return d.isoformat() if d else None


def _from_iso(s):
    return datetime.fromisoformat(s) if s else None


def _save_info(paths: Paths, blob: bytes, info: _gpg.KeyInfo) -> None:
    folder = _info_dir(paths)
    try:
        paths.ensure("state")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = folder / (hashlib.sha256(blob).hexdigest() + ".json")
        tmp = folder / f".{target.name}.{os.getpid()}"
        tmp.write_text(json.dumps(info.as_dict()))
        os.replace(tmp, target)
    except OSError:
        pass  # a cache: failing to write it only costs time later


def _load_info(d: dict) -> _gpg.KeyInfo:
    return _gpg.KeyInfo(
        fingerprint=d["fingerprint"], uids=tuple(d["uids"]),
        created=_from_iso(d["created"]), expires=_from_iso(d["expires"]),
        revoked=d["revoked"], expired=d["expired"], capabilities=d["capabilities"],
        subkeys=tuple((s["fingerprint"], _from_iso(s["expires"]), s["revoked"],
                       s["capabilities"]) for s in d["subkeys"]))


def key_info(paths: Paths, blob: bytes) -> _gpg.KeyInfo | None:
    """Metadata of a stored key (by its file bytes), from the cache or gpg.
    ``None`` when gpg cannot read it."""
    target = _info_dir(paths) / (hashlib.sha256(blob).hexdigest() + ".json")
    try:
        return _load_info(json.loads(target.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        infos, _ = _gpg.inspect_keys(_gpg.dearmor(blob))
    except ValueError:
        return None
    if len(infos) != 1:
        return None
    _save_info(paths, blob, infos[0])
    return infos[0]
