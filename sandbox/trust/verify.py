"""The trust decision: is this image signed by a key trusted for its name?

Used at every launch and by ``sandbox image verify`` (DESIGN §2 step 4).
Two signature formats:

* **OpenPGP detached** (`verify_detached`): an RFC 4880 detached signature
  (armored ``.asc`` or binary) over the bytes of the image archive, as rkt
  signed ACIs (rkt docs/signing-and-verification-guide.md).
* **containers/image simple signing** (`verify_simple_signing`): an
  OpenPGP *signed message* whose literal data is the JSON claim of
  containers/image docs/containers-signature.5.md::

      {"critical": {"type": "atomic container signature",
                    "image": {"docker-manifest-digest": "sha256:..."},
                    "identity": {"docker-reference": "..."}},
       "optional": {...}}

  The claimed digest must be the digest of the manifest bytes and the
  claimed identity must match the name being run
  (`reference.identity_matches`).

The steps, in order (a refusal at any step ends it; nothing is cached
unless every step passed):

1. Limits: the signature is non-empty and at most 1 MiB; the name is
   valid (`names.name_components`).
2. The trust store generation (`TrustStore.generation`).
3. Cache: (name, format, image digest, signature digest) under that
   generation -> an earlier good `Verification`, still within the key's
   and the signature's expiry. A hit spawns no gpg and imports no gnupg.
4. The entries that apply to the name: root keys and the keys of every
   prefix covering it (`TrustStore.entries_for`); gpg runs in a throw-away
   GNUPGHOME holding only those keys (`_gpg.ThrowAwayHome`). The message
   must hold exactly one signature and gpg must report ``GOODSIG`` +
   ``VALIDSIG`` (and exit 0); otherwise the refusal is classified from the
   status lines (table below). Detached: the archive is streamed to gpg
   and hashed on the way, and must have the digest the cache is keyed by.
5. When gpg did not know the key: run again with every *other* key of the
   store, to tell `wrong-prefix` (trusted, but for another prefix) from
   `unknown-key`.
6. The signer's primary fingerprint (VALIDSIG field 10) must name an
   applicable entry (a key file named by another key's fingerprint signs
   nothing).
7. Simple signing only: parse the claim strictly, compare digest, then
   identity.
8. Store the result in the cache.

Refusals (`VerificationError.reason`):

=====================  ==============================================
reason                 gpg status / check
=====================  ==============================================
``unsigned``           no signature at all
``unknown-key``        ERRSIG rc 9 / NO_PUBKEY, key in no entry
``wrong-prefix``       NO_PUBKEY here, but the key is trusted for
                       another prefix
``expired-key``        EXPKEYSIG
``revoked-key``        REVKEYSIG
``expired-signature``  EXPSIG
``bad-signature``      BADSIG, other ERRSIG, not a signature, more
                       than one signature, a payload that is not a
                       container signature claim
``digest-mismatch``    claimed manifest digest != manifest digest
``identity-mismatch``  claimed docker-reference does not match name
=====================  ==============================================
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ArtifactError, VerificationError
from ..paths import Paths
from . import names
from .store import ROOT, Entry, TrustStore

DETACHED = "openpgp-detached"
SIMPLE_SIGNING = "simple-signing"
_MAX_SIGNATURE = 1 << 20
_MAX_MANIFEST = 4 << 20
_CONTAINER_SIGNATURE_TYPE = "atomic container signature"

#: verify_any reports the refusal that got furthest: a signature that
#: verified with a trusted key but claims another image says more than a
#: signature by a stranger.
_RANK = {"identity-mismatch": 9, "digest-mismatch": 8, "revoked-key": 7,
         "expired-key": 6, "expired-signature": 5, "wrong-prefix": 4,
         "bad-signature": 3, "unknown-key": 2, "unsigned": 1}


@dataclass(frozen=True, slots=True)
class Verification:
    """A good signature, as the trust decision saw it.

    Times are timezone-aware UTC `datetime` values; ``None`` means never
    (expiry) or unknown. ``entry`` is ``"root"`` or the matched prefix;
    when the key is trusted under several entries the longest matching
    prefix is reported, root last. Digests are ``"sha256:<hex>"``."""

    name: str                          # the name checked
    format: str                        # "openpgp-detached" | "simple-signing"
    signer: str                        # fingerprint of the (sub)key that signed
    primary: str                       # primary key fingerprint (== signer unless a subkey signed)
    entry: str                         # "root" or the prefix that matched
    layer: str                         # "config" | "vendor"
    key_expires: datetime | None       # earliest expiry of the primary and the signing subkey
    signed_at: datetime | None
    signature_expires: datetime | None
    image_digest: str                  # archive (detached) or manifest (simple signing) digest
    signature_digest: str
    generation: str                    # trust store generation it was decided under
    identity: str | None = None        # docker-reference claimed (simple signing)
    uids: tuple[str, ...] = ()
    cached: bool = False

    @property
    def by_subkey(self) -> bool:
        return self.signer != self.primary

    def as_dict(self) -> dict:
        """JSON-ready form (times as ISO 8601), for audit records and --json."""
        d = asdict(self)
        for k in ("key_expires", "signed_at", "signature_expires"):
            d[k] = d[k].isoformat() if d[k] else None
        d["uids"] = list(self.uids)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Verification":
        d = dict(d)
        for k in ("key_expires", "signed_at", "signature_expires"):
            d[k] = datetime.fromisoformat(d[k]) if d[k] else None
        d["uids"] = tuple(d.get("uids") or ())
        return cls(**d)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


_ALGOS = ("sha256", "sha384", "sha512")


def _normalize_digest(d: str) -> str:
    """``"sha256:<hex>"`` or appc's ``"sha512-<hex>"`` -> ``"algo:<hex>"``.
    Raises `ValueError` for another algorithm or form (a caller's bug)."""
    algo, sep, hexpart = d.partition(":")
    if not sep:
        algo, sep, hexpart = d.partition("-")
    if algo not in _ALGOS or not hexpart or not all(c in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"unsupported archive digest {d!r}; expected sha256:<hex> or sha512:<hex>")
    return f"{algo}:{hexpart}"


def _short(fpr: str | None) -> str:
    return fpr or "(unknown key)"


# --------------------------------------------------------------------------
# verification cache

class _Cache:
    """Good verifications by (name, format, image digest, signature digest),
    one folder per trust store generation under ``<state>/trust/cache``.
    A new generation's first write removes the folders of older ones."""

    def __init__(self, paths: Paths, generation: str):
        self.base = paths.state / "trust" / "cache"
        self.folder = self.base / generation
        self.paths = paths

    @staticmethod
    def _key(name, fmt, image_digest, sig_digest) -> str:
        raw = "\0".join(("v1", name, fmt, image_digest, sig_digest)).encode()
        return hashlib.sha256(raw).hexdigest()

    def get(self, name, fmt, image_digest, sig_digest) -> Verification | None:
        try:
            text = (self.folder / (self._key(name, fmt, image_digest, sig_digest)
                                   + ".json")).read_text()
            v = Verification.from_dict(json.loads(text))
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if (v.name, v.format, v.image_digest, v.signature_digest) != \
                (name, fmt, image_digest, sig_digest):
            return None
        now = datetime.now(timezone.utc)
        for t in (v.key_expires, v.signature_expires):
            if t is not None and t <= now:
                return None  # expired since: decide again (and refuse)
        return replace(v, cached=True)

    def put(self, v: Verification) -> None:
        try:
            self.paths.ensure("state")
            self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.folder.is_dir():
                import shutil
                for old in self.base.iterdir():
                    if old.name != self.folder.name:
                        shutil.rmtree(old, ignore_errors=True)
                self.folder.mkdir(exist_ok=True, mode=0o700)
            target = self.folder / (self._key(v.name, v.format, v.image_digest,
                                              v.signature_digest) + ".json")
            tmp = self.folder / f".{target.name}.{os.getpid()}"
            tmp.write_text(json.dumps(v.as_dict()))
            os.replace(tmp, target)
        except OSError:
            pass  # a cache: failing to write it only costs time


# --------------------------------------------------------------------------
# the decision

class _Check:
    """One verification in progress (steps 2-6), shared by both formats."""

    def __init__(self, paths: Paths, name: str, fmt: str, image_digest: str,
                 signature: bytes, store: TrustStore | None):
        if not signature:
            raise VerificationError(f"image {name} is not signed (empty signature)",
                                    reason="unsigned", hint=_HINT_UNSIGNED)
        if len(signature) > _MAX_SIGNATURE:
            raise VerificationError(
                f"signature for image {name} is larger than 1 MiB; refusing to parse it",
                reason="bad-signature", hint=_HINT_BAD)
        self.paths = paths
        self.name = name
        self.fmt = fmt
        self.image_digest = image_digest
        self.signature = signature
        self.sig_digest = _sha256(signature)
        self.store = store or TrustStore(paths)
        names.name_components(name)                     # an invalid name is a usage error
        self.generation = self.store.generation()
        self._entries = None
        self.cache = _Cache(paths, self.generation)

    @property
    def entries(self) -> list[Entry]:                    # step 2
        if self._entries is None:
            self._entries = self.store.entries_for(self.name)
        return self._entries

    def cached(self) -> Verification | None:             # step 3
        return self.cache.get(self.name, self.fmt, self.image_digest, self.sig_digest)

    def blobs(self, entries) -> list[bytes]:
        """The binary key blobs of ``entries``, one per fingerprint. An
        unreadable file or broken armor leaves that key out: it then
        simply signs nothing (fail closed), and does not stop other keys."""
        from ._gpg import dearmor
        seen, out = set(), []
        for e in entries:
            if e.fingerprint in seen:
                continue
            try:
                out.append(dearmor(e.read()))
                seen.add(e.fingerprint)
            except (OSError, ArtifactError, ValueError):
                continue
        return out

    def run(self, op):
        """Step 4: run ``op(home)`` in a throw-away home with the applicable
        keys; returns the `GpgResult`."""
        from . import _gpg
        with _gpg.ThrowAwayHome(self.blobs(self.entries)) as home:
            return op(home)

    def refuse(self, res, op) -> None:
        """Classify a gpg result that is not a single good signature and
        raise the matching `VerificationError` (step 4-5). Returns only when
        the result IS one good signature."""
        n = self.name
        if "ENC_TO" in res.keywords or "BEGIN_DECRYPTION" in res.keywords:
            raise VerificationError(f"signature for image {n} is an encrypted message, not a signature",
                                    reason="bad-signature", hint=_HINT_BAD)
        if not res.sigs:
            raise VerificationError(f"signature for image {n} is not an OpenPGP signature",
                                    reason="bad-signature", hint=_HINT_BAD)
        if len(res.sigs) > 1:
            raise VerificationError(
                f"signature for image {n} holds {len(res.sigs)} signatures; exactly one is accepted",
                reason="bad-signature", hint=_HINT_BAD)
        s = res.sigs[0]
        fpr = s.primary or s.fingerprint or s.keyid
        if s.kind == "GOODSIG" and s.validsig and res.returncode == 0:
            return
        if s.kind == "EXPKEYSIG":
            raise VerificationError(f"key {_short(fpr)} that signed image {n} has expired",
                                    reason="expired-key",
                                    hint="ask the signer for the key with a later expiry, "
                                         "`sandbox trust add` it, or have the image signed again")
        if s.kind == "REVKEYSIG":
            raise VerificationError(f"key {_short(fpr)} that signed image {n} has been revoked",
                                    reason="revoked-key",
                                    hint="the signer withdrew this key; get the image signed with a valid key")
        if s.kind == "EXPSIG":
            when = f" on {s.sig_expires:%Y-%m-%d %H:%M} UTC" if s.sig_expires else ""
            raise VerificationError(f"signature on image {n} by key {_short(fpr)} expired{when}",
                                    reason="expired-signature",
                                    hint="get the image signed again")
        if s.kind == "BADSIG":
            raise VerificationError(
                f"signature on image {n} by key {_short(s.keyid)} does not match the image (BAD signature)",
                reason="bad-signature", hint=_HINT_BAD)
        if s.kind == "ERRSIG" and s.errsig_rc == 9:
            self._refuse_missing_key(s, op)
        if s.kind == "ERRSIG":
            raise VerificationError(
                f"signature on image {n} by key {_short(s.keyid)} cannot be checked "
                f"(gpg error {s.errsig_rc}: unsupported algorithm or corrupt)",
                reason="bad-signature", hint=_HINT_BAD)
        raise VerificationError(f"signature on image {n} is not valid (gpg exit {res.returncode})",
                                reason="bad-signature", hint=_HINT_BAD)

    def _refuse_missing_key(self, s, op) -> None:
        """Step 5: the key is not among the applicable ones. Is it in the
        store for another prefix?"""
        n = self.name
        applicable = {e.fingerprint for e in self.entries}
        others = [e for e in self.store.entries() if e.fingerprint not in applicable]
        owner = None
        if others:
            from . import _gpg
            with _gpg.ThrowAwayHome(self.blobs(others)) as home:
                res = op(home)
            if len(res.sigs) == 1 and res.sigs[0].validsig:
                owner = res.sigs[0].primary
        if owner:
            scopes = sorted({e.scope for e in others if e.fingerprint == owner})
            where = ", ".join("every name" if sc == ROOT else sc for sc in scopes)
            suggested = "/".join(names.name_components(n))
            raise VerificationError(
                f"key {owner} that signed image {n} is trusted for {where}, not for {n}",
                reason="wrong-prefix",
                hint=f"if it may sign this name: sandbox trust add KEYFILE --prefix {suggested}")
        keyid = s.errsig_fpr or s.keyid
        raise VerificationError(
            f"image {n} is signed by key {_short(keyid)}, which is not in the trust store",
            reason="unknown-key",
            hint="if you trust that key: sandbox trust add KEYFILE --prefix "
                 + "/".join(names.name_components(n)))

    def accept(self, res, *, identity: str | None = None) -> Verification:
        """Steps 6 and 8: map the signer to its entry and build the value."""
        s = res.sigs[0]
        primary = s.primary or s.fingerprint
        matching = [e for e in self.entries if e.fingerprint == primary]
        if not matching:
            raise VerificationError(
                f"image {self.name} is signed by key {primary}, which no trust store file is named for",
                reason="unknown-key",
                hint="trust store files must be named by the key's own fingerprint; re-add it with `sandbox trust add`")
        best = _best_entry(matching)
        expires, uids = self._key_expiry(best, s.fingerprint)
        v = Verification(
            name=self.name, format=self.fmt, signer=s.fingerprint, primary=primary,
            entry=best.scope, layer=best.layer, key_expires=expires,
            signed_at=s.sig_time, signature_expires=s.sig_expires,
            image_digest=self.image_digest, signature_digest=self.sig_digest,
            generation=self.generation, identity=identity, uids=uids)
        self.cache.put(v)
        return v

    def _key_expiry(self, entry: Entry, signer: str):
        from .keys import key_info
        try:
            info = key_info(self.paths, entry.read())
        except (OSError, ArtifactError):
            info = None
        if info is None:
            return None, ()
        times = [info.expires] + [e for f, e, _r, _c in info.subkeys if f == signer]
        times = [t for t in times if t is not None]
        return (min(times) if times else None), info.uids


def _best_entry(entries: list[Entry]) -> Entry:
    def rank(e: Entry):
        depth = -1 if e.scope == ROOT else e.scope.count("/") + 1
        return (depth, e.layer == "config")
    return max(entries, key=rank)


_HINT_UNSIGNED = ("sign it, or run it with --insecure-options=image to accept it unsigned "
                  "(recorded in the audit log)")
_HINT_BAD = "the image or its signature was altered or damaged; import it again from a trusted source"


# --------------------------------------------------------------------------
# public API

def verify_detached(paths: Paths, name: str, data_path: Path, signature: bytes, *,
                    data_digest: str | None = None,
                    store: TrustStore | None = None) -> Verification:
    """Verify an OpenPGP detached signature (RFC 4880 §11.4; armored or
    binary, rkt style) over the bytes of the file ``data_path`` for image
    ``name``.

    ``data_digest`` (``"sha256:<hex>"``, ``"sha512:<hex>"`` or appc's
    ``"sha512-<hex>"``) is the file's digest when the
    caller already knows it (the content-addressed store does); it keys the
    cache and spares hashing the archive at every launch. A cold check
    streams the file to gpg and hashes the very bytes it streams: if they
    do not have this digest the image is refused (``digest-mismatch``) and
    nothing is cached. Without it the file is hashed at every call.

    Returns a `Verification`; raises `VerificationError` (reasons in the
    module docstring) or `UsageError` for an invalid name."""
    image_digest = _normalize_digest(data_digest) if data_digest else _file_sha256(Path(data_path))
    algo = image_digest.partition(":")[0]
    chk = _Check(paths, name, DETACHED, image_digest, signature, store)
    hit = chk.cached()
    if hit is not None:
        return hit
    from . import _gpg
    streamed: list[str | None] = []

    def op(home):
        res, digest = _gpg.verify_detached_file(home, signature, Path(data_path), algo)
        streamed.append(digest)
        return res
    res = chk.run(op)
    if res.plaintext:
        raise VerificationError(
            f"signature for image {name} is a signed message, not a detached signature",
            reason="bad-signature", hint=_HINT_BAD)
    chk.refuse(res, op)
    # The bytes gpg verified must be the bytes the cache entry is keyed by.
    if streamed[0] != image_digest:
        raise VerificationError(
            f"archive of image {name} is {streamed[0] or 'unreadable'}, "
            f"not {image_digest} as recorded",
            reason="digest-mismatch",
            hint="the archive changed in the store; import the image again")
    return chk.accept(res)


def _reject_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def parse_claim(payload: bytes) -> tuple[str, str, dict]:
    """Parse a simple-signing payload strictly, as containers/image's
    ``untrustedSignature.strictUnmarshalJSON`` does: an object with exactly
    ``critical`` and ``optional``; ``critical`` with exactly ``type``,
    ``image`` and ``identity``; ``image`` with exactly
    ``docker-manifest-digest``; ``identity`` with exactly
    ``docker-reference``; no duplicate keys. Returns (digest, reference,
    optional). Raises `ValueError`."""
    try:
        obj = json.loads(payload.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"not JSON ({e})") from None

    def exact(o, keys, what):
        if not isinstance(o, dict) or set(o) != set(keys):
            raise ValueError(f"{what} must be an object with exactly {sorted(keys)}")
    exact(obj, ("critical", "optional"), "the claim")
    crit = obj["critical"]
    exact(crit, ("type", "image", "identity"), "critical")
    if crit["type"] != _CONTAINER_SIGNATURE_TYPE:
        raise ValueError(f"critical.type is {crit['type']!r}, not {_CONTAINER_SIGNATURE_TYPE!r}")
    exact(crit["image"], ("docker-manifest-digest",), "critical.image")
    exact(crit["identity"], ("docker-reference",), "critical.identity")
    digest = crit["image"]["docker-manifest-digest"]
    ref = crit["identity"]["docker-reference"]
    if not isinstance(digest, str) or not isinstance(ref, str):
        raise ValueError("digest and reference must be strings")
    if not isinstance(obj["optional"], dict):
        raise ValueError("optional must be an object")
    return digest, ref, obj["optional"]


def _manifest_digest(algo: str, manifest: bytes) -> str | None:
    if algo in ("sha256", "sha384", "sha512"):
        return f"{algo}:" + hashlib.new(algo, manifest).hexdigest()
    return None


def verify_simple_signing(paths: Paths, name: str, manifest: bytes, signature: bytes, *,
                          store: TrustStore | None = None) -> Verification:
    """Verify a containers/image "simple signing" signature
    (docs/containers-signature.5.md) over ``manifest`` (the exact manifest
    bytes) for image ``name`` (a docker reference, optionally with
    ``:tag`` or ``@digest``).

    The signature is an OpenPGP signed message (binary or armored, not
    cleartext); its payload must be a valid claim (`parse_claim`) whose
    digest equals the manifest's and whose identity matches ``name`` under
    `reference.identity_matches` (exact with docker's default ``:latest``
    tag, or by repository for ``@digest`` names). Returns a `Verification`; raises `VerificationError` or
    `UsageError` for an invalid name."""
    if len(manifest) > _MAX_MANIFEST:
        raise VerificationError(f"manifest of image {name} is larger than 4 MiB",
                                reason="digest-mismatch", hint=_HINT_BAD)
    image_digest = _sha256(manifest)
    chk = _Check(paths, name, SIMPLE_SIGNING, image_digest, signature, store)
    hit = chk.cached()
    if hit is not None:
        return hit
    if signature.lstrip().startswith(b"-----BEGIN PGP SIGNED MESSAGE"):
        raise VerificationError(
            f"signature for image {name} is a cleartext signature; simple signing uses signed messages",
            reason="bad-signature", hint=_HINT_BAD)
    from . import _gpg

    def op(home):
        return _gpg.open_signed_message(home, signature)
    res = chk.run(op)
    chk.refuse(res, op)
    fpr = res.sigs[0].primary
    if not res.plaintext:
        raise VerificationError(f"signature for image {name} carries no signed payload",
                                reason="bad-signature", hint=_HINT_BAD)
    # Step 7: only now, with the signature good, is the payload looked at.
    try:
        claimed_digest, ref, _optional = parse_claim(res.data)
    except ValueError as e:
        raise VerificationError(
            f"signature on image {name} by key {fpr} is not a container signature claim: {e}",
            reason="bad-signature", hint=_HINT_BAD) from None
    algo = claimed_digest.partition(":")[0]
    actual = _manifest_digest(algo, manifest)
    if actual is None or actual != claimed_digest:  # exact: lower-case hex, as digest.Parse wants
        raise VerificationError(
            f"signature by key {fpr} is for manifest {claimed_digest}, "
            f"but image {name} has manifest {image_digest}",
            reason="digest-mismatch",
            hint="the manifest was changed after signing; import the image again from a trusted source")
    _path, _tag, name_digest = names.split_name(name)
    if name_digest is not None:
        nalgo = name_digest.partition(":")[0]
        if _manifest_digest(nalgo, manifest) != name_digest:
            raise VerificationError(
                f"image {name} names digest {name_digest}, but its manifest is {image_digest}",
                reason="digest-mismatch", hint="the store holds another manifest under this name")
    from .reference import identity_matches
    ok, why = identity_matches(ref, name)
    if not ok:
        raise VerificationError(
            f"signature by key {fpr} does not match image {name}: {why}",
            reason="identity-mismatch",
            hint="run the image under the name it was signed for, or have it signed for this name")
    return chk.accept(res, identity=ref)


def _is_signed_message(signature: bytes) -> bool:
    """True when the signature is a signed message (one-pass signature,
    compressed or literal data first), False for a detached signature."""
    from . import _gpg
    try:
        blob = _gpg.dearmor(signature)
    except ValueError:
        return False
    if not blob or not blob[0] & 0x80:
        return False
    tag = blob[0] & 0x3F if blob[0] & 0x40 else (blob[0] >> 2) & 0x0F
    return tag in (4, 8, 11)  # one-pass signature, compressed data, literal data


def verify_any(paths: Paths, name: str, *, manifest: bytes | None = None,
               archive_path: Path | None = None, archive_digest: str | None = None,
               signatures: list[bytes], store: TrustStore | None = None) -> Verification:
    """Try each signature in order; return the first good `Verification`.

    With ``manifest`` the signatures are simple-signing claims over it; with
    ``archive_path`` detached signatures over the archive; with both, each
    signature is routed by its form (signed message -> simple signing,
    detached -> archive). No signatures: `unsigned`. All refused: the
    `VerificationError` that got furthest (``identity-mismatch`` >
    ``digest-mismatch`` > ``revoked-key`` > ``expired-key`` >
    ``expired-signature`` > ``wrong-prefix`` > ``bad-signature`` >
    ``unknown-key``), its message prefixed with the count when there were
    several."""
    if manifest is None and archive_path is None:
        raise ValueError("verify_any needs a manifest or an archive_path")
    names.name_components(name)  # an invalid name is a usage error, even unsigned
    if not signatures:
        raise VerificationError(f"image {name} is not signed", reason="unsigned",
                                hint=_HINT_UNSIGNED)
    store = store or TrustStore(paths)
    errors: list[VerificationError] = []
    for sig in signatures:
        try:
            if manifest is not None and (archive_path is None or _is_signed_message(sig)):
                return verify_simple_signing(paths, name, manifest, sig, store=store)
            return verify_detached(paths, name, archive_path, sig,
                                   data_digest=archive_digest, store=store)
        except VerificationError as e:
            if manifest is None and e.reason == "bad-signature" and _is_signed_message(sig):
                # A simple-signing claim names a manifest digest; an image
                # without a manifest (docker-archive, ACI) cannot match it,
                # and gpg only says "not an OpenPGP signature". Checked after
                # the refusal so that the warm path does not load _gpg.
                e = VerificationError(
                    f"signature for image {name} is a simple-signing claim over a "
                    "manifest, but the image has no manifest (only its archive can "
                    "be signed)", reason="bad-signature",
                    hint="sign the archive itself: gpg --detach-sign ARCHIVE, and "
                         "import it with --signature ARCHIVE.sig")
            errors.append(e)
    best = max(errors, key=lambda e: _RANK.get(e.reason, 0))
    if len(errors) > 1:
        raise VerificationError(f"none of {len(errors)} signatures is acceptable; "
                                f"{best.message}", reason=best.reason, hint=best.hint)
    raise best
