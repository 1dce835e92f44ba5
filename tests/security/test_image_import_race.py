"""Issue 13 item 9, `image import` case: an archive swapped under its name
while it is imported never pairs one archive's signature with another's
layers. The store reads the file through one open file into a private copy
and does everything (detection, index, layers, the signed bytes) from that.

A second process swaps V/app.tar (signed, layer says "good") with V/evil.tar
(unsigned, layer says "evil") with renameat2(RENAME_EXCHANGE) in a loop
while 200 imports run: every import either is refused or keeps the good
layer.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import image_fixtures as fx  # noqa: E402

from sandbox.errors import SandboxError  # noqa: E402
from sandbox.image import ImageStore  # noqa: E402
from sandbox.paths import Paths  # noqa: E402
from sandbox.trust import TrustStore, _gpg  # noqa: E402
from sandbox.trust._testing import Signer  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")

NAME = "example.com/app:1"
ATTEMPTS = 200


def _swapper(a: Path, b: Path) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            ba, bb = bytes(a), bytes(b)
            while True:
                libc.renameat2(-100, ba, -100, bb, 2)   # AT_FDCWD, RENAME_EXCHANGE
        finally:
            os._exit(0)
    return pid


def test_archive_swapped_during_import_never_runs_unsigned_layers(tmp_path):
    good = fx.build_tar([fx.entry("etc", "dir"), fx.entry("etc/hello", data=b"good\n")])
    evil = fx.build_tar([fx.entry("etc", "dir"), fx.entry("etc/hello", data=b"evil\n")])
    v = tmp_path / "V"
    v.mkdir()
    fx.write_docker_archive(v / "app.tar", [good], tags=[NAME])
    fx.write_docker_archive(v / "evil.tar", [evil], tags=[NAME])
    with Signer() as s:
        fpr = s.gen_key("Race <race@example.com>")
        sig = s.sign_detached(fpr, (v / "app.tar").read_bytes())
        pub = s.export(fpr)
    paths = Paths.resolve(tmp_path / "root")
    TrustStore(paths, vendor=None).add(_gpg.dearmor(pub), fpr, "example.com/app")
    store = ImageStore(paths)
    pid = _swapper(v / "app.tar", v / "evil.tar")
    imported = refused = 0
    try:
        for _ in range(ATTEMPTS):
            try:
                store.import_image(v / "app.tar", name=NAME, signatures=[sig])
            except SandboxError:
                refused += 1
                continue
            imported += 1
            rec = store.resolve(NAME)
            store.verify(rec)
            assert Path(rec.layer_dirs[0], "etc", "hello").read_bytes() == b"good\n"
            store.check_on_disk(rec)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert imported + refused == ATTEMPTS
    # the race was real: both outcomes happened (else the swapper did nothing)
    assert imported > 0 and refused > 0, (imported, refused)
