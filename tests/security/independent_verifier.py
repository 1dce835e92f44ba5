"""An audit log verifier written from docs/audit-format.md alone.

It imports nothing from `sandbox`: only hashlib, json, cryptography and the
RFC 8785 canonicalizer. `verify` returns ``(ok, reason)``.

Inputs: the export (JSON Lines, section 7), the public key (PEM), and, when
at hand, the private key file (for seals), the anchor file (section 5), the
high-water mark (section 6) and witnesses (section 6).
"""

from __future__ import annotations

import hashlib
import json

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (Encoding, PublicFormat,
                                                          load_pem_public_key)

ZERO = "0" * 64


def canonical(body: dict) -> bytes:                               # section 2
    if body["v"] == 2:
        return rfc8785.dumps(body)
    if body["v"] == 1:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    raise ValueError(f"unknown record version {body['v']}")


def seal_key(private_key_file: bytes) -> bytes:                   # section 3
    return hashlib.blake2b(b"sandbox audit seal v1" + b"\0" + private_key_file,
                           digest_size=32).digest()


def seal(k: bytes, domain: bytes, message: bytes) -> str:
    return hashlib.blake2b(domain + b"\0" + message, key=k, digest_size=32).hexdigest()


def fingerprint(pub: Ed25519PublicKey) -> str:
    return "sha256:" + hashlib.sha256(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def signed_ok(pub, domain: bytes, doc: dict, fields) -> bool:
    try:
        msg = domain + rfc8785.dumps({f: doc[f] for f in fields})
        pub.verify(bytes.fromhex(doc["sig"]), msg)
        return doc["key"] == fingerprint(pub)
    except (KeyError, ValueError, TypeError, InvalidSignature):
        return False


def verify(export_lines, public_pem: bytes, *, private_key_file: bytes | None = None,
           anchor: bytes | None = None, hwm: dict | None = None, witnesses=()):
    pub = load_pem_public_key(public_pem)
    k = seal_key(private_key_file) if private_key_file is not None else None
    hashes = {}
    prev = ZERO
    n = 0
    for line in export_lines:                                     # section 4
        if not line.strip():
            continue
        rec = json.loads(line)
        n += 1
        if rec.get("seq") != n:
            return False, f"record {n}: missing or out of order (found seq {rec.get('seq')})"
        body = {f: rec[f] for f in ("v", "seq", "time", "kind", "data", "prev")}
        try:
            h = hashlib.sha256(canonical(body)).hexdigest()
        except (ValueError, TypeError) as e:
            return False, f"record {n}: cannot be canonicalized ({e})"
        if h != rec["hash"]:
            return False, f"record {n}: content does not match its hash"
        if rec["prev"] != prev:
            return False, f"record {n}: does not follow record {n - 1}"
        if k is not None and rec.get("mac") != seal(k, b"record", h.encode()):
            return False, f"record {n}: seal does not match the key"
        if rec["kind"] == "audit.gap":
            return False, f"record {n}: a writer recorded a gap: {rec['data'].get('reason')}"
        hashes[n] = h
        prev = h

    def on_log(seq, h):
        return seq == 0 and h == ZERO or hashes.get(seq) == h

    if anchor is not None:                                        # section 5
        if len(anchor) != 4096:
            return False, "anchor: not 4096 bytes"
        slots = [json.loads(anchor[i * 2048:(i + 1) * 2048]) for i in (0, 1)]
        if any(s["gen"] % 2 != i for i, s in enumerate(slots)) or \
                abs(slots[0]["gen"] - slots[1]["gen"]) != 1:
            return False, "anchor: slots out of step"
        a = max(slots, key=lambda s: s["gen"])
        if k is not None and a["seal"] != seal(k, b"anchor", rfc8785.dumps(
                {"seq": a["seq"], "hash": a["hash"], "gen": a["gen"]})):
            return False, "anchor: seal does not match the key"
        if a["seq"] > n:
            return False, f"anchor names record {a['seq']} but the log ends at {n}"
        if not on_log(a["seq"], a["hash"]):
            return False, f"anchor: record {a['seq']} does not match"
        if a["seq"] < n and k is None:
            return False, f"records {a['seq'] + 1}..{n} are not covered by the anchor"
        s = a.get("signed")
        if s is not None:
            if not signed_ok(pub, b"sandbox audit anchor v1\n", s,
                             ("seq", "hash", "time", "unix", "key")):
                return False, "anchor: signature does not verify"
            if s["seq"] > n or not on_log(s["seq"], s["hash"]):
                return False, f"anchor: the signed head (record {s['seq']}) is not on the log"
    if hwm is not None:                                           # section 6
        if not signed_ok(pub, b"sandbox audit high-water v1\n", hwm, ("seq", "hash", "time", "key")):
            return False, "high-water mark: signature does not verify"
        if hwm["seq"] > n:
            return False, f"the key has signed up to record {hwm['seq']} but the log ends at {n}"
        if not on_log(hwm["seq"], hwm["hash"]):
            return False, f"high-water mark: record {hwm['seq']} does not match"
    for name, w in witnesses:
        if not signed_ok(pub, b"sandbox audit anchor v1\n", w, ("seq", "hash", "time", "unix", "key")):
            return False, f"witness {name}: signature does not verify"
        if w["seq"] > n:
            return False, f"the log is behind witness {name}"
        if not on_log(w["seq"], w["hash"]):
            return False, f"the log forks from witness {name}"
    return True, f"{n} record(s) verified"
