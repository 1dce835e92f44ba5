"""The one door to gpg: throw-away homes, python-gnupg calls, status lines.

Every gpg call in `sandbox.trust` goes through here. Each check runs in a
fresh GNUPGHOME (mode 0700, removed afterwards whatever happens) whose
``pubring.gpg`` is the concatenation of exactly the key blobs the caller
chose; gpg reads such a file as a legacy keyring, as ``gpgv`` reads
``trustedkeys.gpg``. The user's own keyring, agent and configuration are
never seen: ``--homedir`` is always passed, the environment handed to gpg
is built from scratch (no ``GNUPGHOME``, no ``GPG_AGENT_INFO``), and
``--no-auto-key-retrieve`` keeps gpg off the network.

The decision is made from gpg's machine-readable status lines (GnuPG
doc/DETAILS, "Format of the --status-fd output"), which python-gnupg
collects in ``result.stderr``; python-gnupg's own summary fields
(``valid``, ``status``) are not relied on because they overwrite one
another (an ``EXPSIG`` followed by ``VALIDSIG`` reads as "signature
valid").

python-gnupg is imported lazily: a launch that hits the verification cache
never pays for it (about 40 ms).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Iterable
from pathlib import Path

GPG_BINARY = "/usr/bin/gpg"

#: Options for every call. ``--trust-model always`` because the trust
#: decision is ours (the key set), not the web of trust: it also spares gpg
#: from building a trustdb. It does not hide expired or revoked keys or
#: expired signatures: those are still reported as EXPKEYSIG, REVKEYSIG and
#: EXPSIG.
_OPTIONS = ["--no-options", "--no-autostart", "--no-auto-key-retrieve",
            "--trust-model", "always", "--no-permission-warning",
            "--max-output", str(8 << 20)]

_gnupg = None
_version = None


def _module():
    global _gnupg
    if _gnupg is None:
        import logging

        import gnupg  # lazy: ~40 ms, only on the cold path
        # python-gnupg logs a WARNING for every non-zero gpg exit; with no
        # logging configured Python would print it on stderr, under our
        # one-line error. The status lines carry everything we need.
        logging.getLogger("gnupg").addHandler(logging.NullHandler())
        _gnupg = gnupg
    return _gnupg


def _env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C",
            "GNUPGHOME": home, "HOME": home}


def _make_gpg(home: str):
    """A python-gnupg `GPG` bound to ``home``.

    python-gnupg's constructor runs ``gpg --list-config`` to learn the
    version; that costs a process per check, so it runs once per process
    and later instances are copies with another home."""
    global _version
    gnupg = _module()
    if _version is None:
        g = gnupg.GPG(gpgbinary=GPG_BINARY, gnupghome=home, env=_env(home),
                      options=list(_OPTIONS))
        _version = g
        return g
    import copy
    g = copy.copy(_version)
    g.gnupghome = home
    g.env = _env(home)
    g.options = list(_OPTIONS)
    g.keyring = None
    g.secret_keyring = None
    return g


class ThrowAwayHome:
    """A temporary GNUPGHOME holding only the given key blobs.

    Use as a context manager; the folder is removed on exit, also on error.
    ``keys`` are OpenPGP transferable public keys, binary or armored."""

    def __init__(self, keys: Iterable[bytes] = (), *, tmp_dir: str | None = None):
        self._keys = list(keys)
        self._tmp_dir = tmp_dir
        self.path: str | None = None

    def __enter__(self) -> "ThrowAwayHome":
        self.path = tempfile.mkdtemp(prefix="sandbox-gpg-", dir=self._tmp_dir)
        os.chmod(self.path, 0o700)
        blob = b"".join(dearmor(k) for k in self._keys)
        fd = os.open(os.path.join(self.path, "pubring.gpg"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        self.gpg = _make_gpg(self.path)
        return self

    def __exit__(self, *exc) -> None:
        if self.path:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def dearmor(data: bytes) -> bytes:
    """ASCII-armored OpenPGP data (RFC 4880 §6.2) -> binary; binary data is
    returned unchanged. Several armored blocks are concatenated. Raises
    `ValueError` for broken armor."""
    if not data.lstrip().startswith(b"-----BEGIN PGP "):
        return data
    out = []
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    i = 0
    while i < len(lines):
        if not lines[i].strip().startswith(b"-----BEGIN PGP "):
            i += 1
            continue
        i += 1
        # armor headers up to the first blank line
        while i < len(lines) and lines[i].strip():
            if b":" not in lines[i]:
                break  # no headers at all
            i += 1
        body = []
        while i < len(lines) and not lines[i].startswith(b"-----END PGP "):
            line = lines[i].strip()
            if line.startswith(b"=") and len(line) == 5:
                pass  # CRC-24 checksum line
            elif line:
                body.append(line)
            i += 1
        if i >= len(lines):
            raise ValueError("armor has no END line")
        try:
            out.append(base64.b64decode(b"".join(body), validate=True))
        except binascii.Error as e:
            raise ValueError(f"bad base64 in armor: {e}") from None
        i += 1
    if not out:
        raise ValueError("no armored block found")
    return b"".join(out)


# --------------------------------------------------------------------------
# status lines

@dataclass
class SigStatus:
    """What gpg said about one signature (between two NEWSIG lines)."""

    kind: str | None = None          # GOODSIG EXPSIG EXPKEYSIG REVKEYSIG BADSIG ERRSIG
    keyid: str | None = None         # long key id or fingerprint from that line
    username: str | None = None
    errsig_rc: int | None = None     # ERRSIG return code (9: no public key, 4: unknown algo)
    errsig_fpr: str | None = None
    validsig: bool = False
    fingerprint: str | None = None   # signing (sub)key fingerprint (VALIDSIG)
    primary: str | None = None       # primary key fingerprint (VALIDSIG field 10)
    sig_time: datetime | None = None
    sig_expires: datetime | None = None


@dataclass
class GpgResult:
    """Status lines of one gpg run, split per signature."""

    returncode: int | None
    sigs: list[SigStatus] = field(default_factory=list)
    keywords: set[str] = field(default_factory=set)
    plaintext: bool = False
    data: bytes = b""
    raw: str = ""


def _time(text: str) -> datetime | None:
    """A status-line time: seconds since the epoch or ISO 8601 (``20250623T101010``)."""
    if not text or text == "0":
        return None
    if "T" in text:
        return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(int(text), tz=timezone.utc)


def parse_status(stderr: str, returncode: int | None, data: bytes = b"") -> GpgResult:
    """Parse gpg's ``[GNUPG:]`` lines (doc/DETAILS) into a `GpgResult`."""
    res = GpgResult(returncode=returncode, data=data, raw=stderr)
    cur: SigStatus | None = None
    for line in stderr.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        parts = line[9:].split()
        if not parts:
            continue
        kw, args = parts[0], parts[1:]
        res.keywords.add(kw)
        if kw == "NEWSIG":
            cur = SigStatus()
            res.sigs.append(cur)
            continue
        if kw == "PLAINTEXT":
            res.plaintext = True
        if kw in ("GOODSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "ERRSIG", "VALIDSIG"):
            if cur is None:  # gpg before NEWSIG existed; be strict anyway
                cur = SigStatus()
                res.sigs.append(cur)
        if kw in ("GOODSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG"):
            if cur.kind is not None:  # two verdicts for one signature: treat as a new one
                cur = SigStatus()
                res.sigs.append(cur)
            cur.kind = kw
            cur.keyid = args[0] if args else None
            cur.username = line[9:].split(None, 2)[2] if len(args) > 1 else None
        elif kw == "ERRSIG":
            if cur.kind is not None:
                cur = SigStatus()
                res.sigs.append(cur)
            cur.kind = kw
            cur.keyid = args[0] if args else None
            if len(args) >= 6 and args[5].isdigit():
                cur.errsig_rc = int(args[5])
            if len(args) >= 7 and args[6] != "-":
                cur.errsig_fpr = args[6].upper()
        elif kw == "VALIDSIG":
            cur.validsig = True
            cur.fingerprint = args[0].upper() if args else None
            cur.primary = args[9].upper() if len(args) >= 10 else cur.fingerprint
            try:
                cur.sig_time = _time(args[2]) if len(args) > 2 else None
                cur.sig_expires = _time(args[3]) if len(args) > 3 else None
            except ValueError:
                cur.sig_time = cur.sig_expires = None
    return res


def _run(gpg, method: str, *args, **kwargs) -> GpgResult:
    result = getattr(gpg, method)(*args, **kwargs)
    data = getattr(result, "data", b"") or b""
    return parse_status(result.stderr or "", getattr(result, "returncode", None), data)


class _HashingReader:
    """Reads a file for gpg and hashes exactly the bytes handed over."""

    def __init__(self, f, algo: str = "sha256"):
        self._f = f
        self._h = hashlib.new(algo)
        self._algo = algo
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        b = self._f.read(n)
        if b:
            self._h.update(b)
        else:
            self.eof = True
        return b

    def digest(self) -> str:
        return f"{self._algo}:{self._h.hexdigest()}"


def verify_detached_file(home: ThrowAwayHome, signature: bytes, data_path: Path,
                         algo: str = "sha256") -> tuple[GpgResult, str | None]:
    """``gpg --verify SIG -`` in ``home``, the data streamed from
    ``data_path`` on stdin. Returns the result and the ``algo`` digest
    (``"sha256:<hex>"``) of exactly the bytes gpg was given (``None`` if it stopped reading early), so the
    verified bytes and the digest recorded for them cannot differ even if
    the file changes while it is checked."""
    sig_path = os.path.join(home.path, "signature")
    with open(sig_path, "wb") as f:
        f.write(signature)
    g = home.gpg
    result = g.result_map["verify"](g)
    with open(data_path, "rb") as f:
        reader = _HashingReader(f, algo)
        try:
            # python-gnupg's verify_data() streams bytes from memory; this is
            # the same call with a file object, so large archives stream.
            g._handle_io(["--verify", sig_path, "-"], reader, result, binary=True)
        except OSError:
            pass  # gpg closed stdin early (refused); its status lines decide
    res = parse_status(result.stderr or "", getattr(result, "returncode", None))
    return res, (reader.digest() if reader.eof else None)


def open_signed_message(home: ThrowAwayHome, message: bytes) -> GpgResult:
    """``gpg --decrypt MESSAGE`` in ``home``: verifies an OpenPGP signed
    message and returns its literal data in ``.data``. The data must not be
    trusted unless the status says the signature is good."""
    return _run(home.gpg, "decrypt", message)


# --------------------------------------------------------------------------
# key inspection

@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One OpenPGP certificate as gpg lists it (``--with-colons``)."""

    fingerprint: str
    uids: tuple[str, ...]
    created: datetime | None
    expires: datetime | None           # primary key expiry; None = never
    revoked: bool
    expired: bool
    capabilities: str                  # field 12, e.g. "scESC"
    subkeys: tuple[tuple[str, datetime | None, bool, str], ...]  # (fpr, expires, revoked, caps)

    def signing_fingerprints(self) -> tuple[str, ...]:
        return (self.fingerprint,) + tuple(s[0] for s in self.subkeys)

    def as_dict(self) -> dict:
        iso = lambda d: d.isoformat() if d else None  # noqa: E731
        return {"fingerprint": self.fingerprint, "uids": list(self.uids),
                "created": iso(self.created), "expires": iso(self.expires),
                "revoked": self.revoked, "expired": self.expired,
                "capabilities": self.capabilities,
                "subkeys": [{"fingerprint": f, "expires": iso(e), "revoked": r,
                             "capabilities": c} for f, e, r, c in self.subkeys]}


def parse_colons(text: str) -> list[KeyInfo]:
    """Parse ``gpg --list-keys --with-colons --fixed-list-mode`` output
    (doc/DETAILS, "Format of the colon listings")."""
    keys: list[dict] = []
    cur = None
    last = None  # "pub" or "sub": which record the next fpr belongs to
    for line in text.splitlines():
        f = line.split(":")
        rec = f[0]
        if rec == "pub":
            cur = {"validity": f[1], "created": _time(f[5]), "expires": _time(f[6]),
                   "caps": f[11] if len(f) > 11 else "", "uids": [], "subs": [],
                   "fpr": None}
            keys.append(cur)
            last = "pub"
        elif rec == "sub" and cur is not None:
            cur["subs"].append({"validity": f[1], "expires": _time(f[6]),
                                "caps": f[11] if len(f) > 11 else "", "fpr": None})
            last = "sub"
        elif rec == "fpr" and cur is not None:
            fpr = f[9].upper()
            if last == "pub" and cur["fpr"] is None:
                cur["fpr"] = fpr
            elif last == "sub" and cur["subs"] and cur["subs"][-1]["fpr"] is None:
                cur["subs"][-1]["fpr"] = fpr
        elif rec == "uid" and cur is not None:
            cur["uids"].append(_unescape(f[9]))
            last = "uid"
    out = []
    for k in keys:
        out.append(KeyInfo(
            fingerprint=k["fpr"], uids=tuple(k["uids"]), created=k["created"],
            expires=k["expires"], revoked=k["validity"] == "r",
            expired=k["validity"] == "e", capabilities=k["caps"],
            subkeys=tuple((s["fpr"], s["expires"], s["validity"] == "r", s["caps"])
                          for s in k["subs"] if s["fpr"])))
    return out


def _unescape(s: str) -> str:
    # colon listings escape ':' and control characters as \xNN
    import re
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), s)


def packet_tags(blob: bytes) -> list[int]:
    """The packet tags of binary OpenPGP data (RFC 4880 §4.2, old and new
    packet formats), without interpreting any packet. Raises `ValueError`
    for data that is not a well-formed packet sequence."""
    tags = []
    i, n = 0, len(blob)
    while i < n:
        hdr = blob[i]
        if not hdr & 0x80:
            raise ValueError(f"not OpenPGP data (bad packet header at byte {i})")
        if hdr & 0x40:  # new format
            tag = hdr & 0x3F
            i += 1
            while True:  # partial body lengths chain until a definite one
                if i >= n:
                    raise ValueError("truncated packet length")
                b0 = blob[i]
                if b0 < 192:
                    length, i = b0, i + 1
                elif b0 < 224:
                    if i + 1 >= n:
                        raise ValueError("truncated packet length")
                    length, i = ((b0 - 192) << 8) + blob[i + 1] + 192, i + 2
                elif b0 == 255:
                    if i + 4 >= n:
                        raise ValueError("truncated packet length")
                    length, i = int.from_bytes(blob[i + 1:i + 5], "big"), i + 5
                else:
                    i += 1 + (1 << (b0 & 0x1F))
                    continue
                break
        else:
            tag = (hdr >> 2) & 0x0F
            ltype = hdr & 0x03
            i += 1
            if ltype == 3:
                raise ValueError("indeterminate-length packet in key data")
            size = (1, 2, 4)[ltype]
            if i + size > n:
                raise ValueError("truncated packet length")
            length, i = int.from_bytes(blob[i:i + size], "big"), i + size
        if i + length > n:
            raise ValueError("truncated packet")
        tags.append(tag)
        i += length
    return tags


def inspect_keys(blob: bytes) -> tuple[list[KeyInfo], bytes]:
    """Import ``blob`` (public keys, binary or armored) into a throw-away
    home; return what gpg accepted and its binary export.

    Importing (rather than reading a raw keyring) makes gpg check the
    self-signatures and drop what is broken, as it would at use. Raises
    `ValueError` when there is no usable public key."""
    with ThrowAwayHome() as home:
        os.unlink(os.path.join(home.path, "pubring.gpg"))
        g = home.gpg
        imp = g.import_keys(blob, extra_args=["--import-options", "import-clean"])
        if not imp.fingerprints:
            raise ValueError("gpg found no usable OpenPGP public key in it")
        p = g._open_subprocess(["--list-keys", "--with-subkey-fingerprints"])
        out, _err = p.communicate()
        infos = parse_colons(out.decode("utf-8", "replace"))
        exported = g.export_keys([k.fingerprint for k in infos], armor=False)
        return infos, exported
