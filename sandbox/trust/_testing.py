"""Test helpers: a signer with its own gpg home, for making keys and
signatures at test time. Not used by the library itself.

The signer's home is a short folder under /tmp (gpg-agent's socket path
must stay under 108 bytes); `Signer.close` stops its agent (by that home,
never by name) and removes it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

GPG = "/usr/bin/gpg"


class Signer:
    """A throw-away gpg home that holds secret keys and signs with them."""

    def __init__(self, home: str | os.PathLike | None = None):
        """A new home under /tmp, or ``home`` (kept, only its agent stopped)."""
        self._own = home is None
        self.home = str(home) if home else tempfile.mkdtemp(prefix="sg-", dir="/tmp")
        os.chmod(self.home, 0o700)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", self.home, "--kill", "all"],
                       capture_output=True, check=False)
        if self._own:
            shutil.rmtree(self.home, ignore_errors=True)

    def gpg(self, *args: str, input: bytes | None = None, check: bool = True,
            at: int | None = None) -> subprocess.CompletedProcess:
        cmd = [GPG, "--homedir", self.home, "--batch", "--yes", "--no-tty",
               "--pinentry-mode", "loopback", "--passphrase", ""]
        if at is not None:
            cmd += ["--faked-system-time", str(int(at))]
        cmd += list(args)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "GNUPGHOME": self.home}
        p = subprocess.run(cmd, input=input, capture_output=True, env=env)
        if check and p.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
        return p

    def import_(self, path: str | Path) -> None:
        self.gpg("--import", str(path))

    def gen_key(self, uid: str, *, expire: str = "never", at: int | None = None,
                algo: str = "ed25519") -> str:
        """Make a signing key (no passphrase); returns its fingerprint."""
        self.gpg("--quick-gen-key", uid, algo, "sign", expire, at=at)
        out = self.gpg("--with-colons", "--list-keys", uid).stdout.decode()
        fprs = [l.split(":")[9] for l in out.splitlines() if l.startswith("fpr:")]
        return fprs[0]

    def export(self, fpr: str, *, armor: bool = True) -> bytes:
        return self.gpg("--export", *(["--armor"] if armor else []), fpr).stdout

    def revoke(self, fpr: str) -> None:
        """Import the revocation certificate gpg made at key generation."""
        rev = Path(self.home, "openpgp-revocs.d", f"{fpr}.rev").read_text()
        rev = rev.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----",
                          "-----BEGIN PGP PUBLIC KEY BLOCK-----")
        self.gpg("--import", input=rev.encode())

    def sign_detached(self, fpr: str, data: bytes, *, armor: bool = True,
                      at: int | None = None, extra: tuple[str, ...] = ()) -> bytes:
        args = ["--local-user", fpr + "!", "--detach-sign", "--output", "-"]
        if armor:
            args.insert(0, "--armor")
        return self.gpg(*extra, *args, input=data, at=at).stdout

    def sign_message(self, fpr: str, payload: bytes, *, armor: bool = False,
                     at: int | None = None, extra: tuple[str, ...] = ()) -> bytes:
        args = ["--local-user", fpr + "!", "--sign", "--output", "-"]
        if armor:
            args.insert(0, "--armor")
        return self.gpg(*extra, *args, input=payload, at=at).stdout


def now() -> int:
    return int(time.time())


def simple_signing_payload(digest: str, reference: str, **optional) -> bytes:
    """A containers/image claim (docs/containers-signature.5.md)."""
    import json
    return json.dumps({"critical": {"type": "atomic container signature",
                                    "image": {"docker-manifest-digest": digest},
                                    "identity": {"docker-reference": reference}},
                       "optional": optional}).encode()
