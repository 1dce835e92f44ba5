"""The layer unpacker on its own: entry kinds, whiteouts, duplicates,
compression, limits, names. Runs unprivileged where it can (ownership and
trusted xattrs are checked only as root)."""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import image_fixtures as fx  # noqa: E402

from sandbox.errors import ArtifactError  # noqa: E402
from sandbox.image._unpack import (Limits, LayerStream, normalise_name,  # noqa: E402
                                   unpack_layer)

ROOT = os.geteuid() == 0


def unpack(tmp: Path, blob: bytes, *, limits=None, **kw):
    out = tmp / "out"
    out.mkdir()
    limits = limits or Limits()
    stream = LayerStream(io.BytesIO(blob), limits=limits, label="layer")
    return out, unpack_layer(stream, str(out), label="layer", limits=limits, **kw)


def test_entry_kinds_modes_and_times(tmp_path):
    blob = fx.build_tar([
        fx.entry("d", "dir", mode=0o750), fx.entry("d/f", data=b"hello", mode=0o640),
        fx.entry("d/l", "symlink", linkname="f"), fx.entry("d/h", "hardlink", linkname="d/f"),
        fx.entry("d/p", "fifo", mode=0o600), fx.entry("ro", "dir", mode=0o555),
        fx.entry("ro/inside", data=b"x", mode=0o444)])
    out, rep = unpack(tmp_path, blob)
    assert (out / "d/f").read_bytes() == b"hello"
    assert stat.S_IMODE(os.lstat(out / "d").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(out / "d/f").st_mode) == 0o640
    assert os.readlink(out / "d/l") == "f"
    assert os.lstat(out / "d/h").st_ino == os.lstat(out / "d/f").st_ino
    assert stat.S_ISFIFO(os.lstat(out / "d/p").st_mode)
    assert stat.S_IMODE(os.lstat(out / "ro").st_mode) == 0o555
    assert (out / "ro/inside").read_bytes() == b"x"
    assert os.lstat(out / "d/f").st_mtime == 0
    assert rep.entries == 7 and rep.bytes == 6


@pytest.mark.skipif(not ROOT, reason="chown needs root")
def test_ownership_kept_as_root(tmp_path):
    out, _ = unpack(tmp_path, fx.build_tar([fx.entry("f", data=b"", uid=1000, gid=2000),
                                            fx.entry("l", "symlink", linkname="/x", uid=7, gid=8),
                                            fx.entry("d", "dir", uid=3, gid=4)]))
    assert (os.lstat(out / "f").st_uid, os.lstat(out / "f").st_gid) == (1000, 2000)
    assert (os.lstat(out / "l").st_uid, os.lstat(out / "l").st_gid) == (7, 8)
    assert (os.lstat(out / "d").st_uid, os.lstat(out / "d").st_gid) == (3, 4)


def test_missing_parents_are_created(tmp_path):
    out, _ = unpack(tmp_path, fx.build_tar([fx.entry("a/b/c/f", data=b"x")]))
    assert (out / "a/b/c/f").read_bytes() == b"x"
    assert stat.S_IMODE(os.lstat(out / "a/b").st_mode) == 0o755


def test_leading_dot_slash_names(tmp_path):
    out, _ = unpack(tmp_path, fx.build_tar([fx.entry("./", "dir", mode=0o755),
                                            fx.entry("./etc/", "dir"),
                                            fx.entry("./etc/x", data=b"1")]))
    assert (out / "etc/x").read_bytes() == b"1"


@pytest.mark.skipif(not ROOT, reason="whiteout char devices and trusted xattrs need root")
def test_whiteouts_and_opaque(tmp_path):
    out, rep = unpack(tmp_path, fx.build_tar([
        fx.entry("etc/.wh.passwd", data=b""), fx.entry("var/.wh..wh..opq", data=b""),
        fx.entry("var/new", data=b"n"), fx.entry(".wh..wh.plnk", data=b"")]))
    st = os.lstat(out / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(out / "var", "trusted.overlay.opaque") == b"y"
    assert (out / "var/new").read_bytes() == b"n"
    assert not (out / ".wh..wh.plnk").exists()
    assert rep.whiteouts == 1 and rep.opaque == 1


@pytest.mark.skipif(not ROOT, reason="whiteout char devices need root")
def test_whiteout_never_hides_own_layer(tmp_path):
    out, _ = unpack(tmp_path, fx.build_tar([
        fx.entry("f", data=b"mine"), fx.entry(".wh.f", data=b""),
        fx.entry("d/x", data=b"x"), fx.entry(".wh.d", data=b"")]))
    assert (out / "f").read_bytes() == b"mine"
    assert (out / "d/x").read_bytes() == b"x"
    # the lower d is gone, this layer's d stays: d becomes opaque
    assert os.getxattr(out / "d", "trusted.overlay.opaque") == b"y"


@pytest.mark.skipif(not ROOT, reason="whiteout char devices need root")
def test_whiteout_then_directory_of_same_name_is_opaque(tmp_path):
    out, _ = unpack(tmp_path, fx.build_tar([fx.entry(".wh.d", data=b""),
                                            fx.entry("d/new", data=b"n")]))
    assert (out / "d").is_dir() and (out / "d/new").read_bytes() == b"n"
    assert os.getxattr(out / "d", "trusted.overlay.opaque") == b"y"


def test_aci_mode_keeps_wh_names_as_files(tmp_path):
    out, rep = unpack(tmp_path, fx.build_tar([
        fx.entry("manifest", data=b"{}"), fx.entry("rootfs", "dir"),
        fx.entry("rootfs/.wh.x", data=b"plain"), fx.entry("other", data=b"ignored")]),
        whiteouts=False, prefix="rootfs", capture={"manifest": 100})
    assert (out / ".wh.x").read_bytes() == b"plain"
    assert not (out / "other").exists() and not (out / "manifest").exists()
    assert rep.captured == {"manifest": b"{}"}
    assert ("other", "outside rootfs/") in rep.skipped


def test_aci_hardlink_outside_rootfs_refused(tmp_path):
    with pytest.raises(ArtifactError, match="rootfs/h"):
        unpack(tmp_path, fx.build_tar([fx.entry("manifest", data=b"{}"),
                                       fx.entry("rootfs/h", "hardlink", linkname="manifest")]),
               whiteouts=False, prefix="rootfs", capture={"manifest": 100})


def test_duplicates_last_one_wins(tmp_path):
    out, _ = unpack(tmp_path, fx.build_tar([
        fx.entry("f", data=b"one"), fx.entry("f", data=b"two"),
        fx.entry("d/x", data=b"x"), fx.entry("d", data=b"now a file"),
        fx.entry("g", data=b"file"), fx.entry("g", "dir"), fx.entry("g/y", data=b"y"),
        fx.entry("k", "dir", mode=0o700), fx.entry("k", "dir", mode=0o755)]))
    assert (out / "f").read_bytes() == b"two"
    assert (out / "d").read_bytes() == b"now a file"
    assert (out / "g/y").read_bytes() == b"y"
    assert stat.S_IMODE(os.lstat(out / "k").st_mode) == 0o755


def test_hardlink_to_unknown_target_refused(tmp_path):
    with pytest.raises(ArtifactError, match="'h'.*not a file of this layer"):
        unpack(tmp_path, fx.build_tar([fx.entry("h", "hardlink", linkname="nope")]))


def test_hardlink_to_directory_refused(tmp_path):
    with pytest.raises(ArtifactError, match="is a directory"):
        unpack(tmp_path, fx.build_tar([fx.entry("d", "dir"),
                                       fx.entry("h", "hardlink", linkname="d")]))


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", None])
def test_compressions_give_same_tree_and_diff_id(tmp_path, kind):
    tar = fx.build_tar([fx.entry("a", data=os.urandom(1 << 19) + bytes((3 << 20) - (1 << 19))), fx.entry("b", data=b"b")])
    out, rep = unpack(tmp_path, fx.compress(tar, kind))
    assert rep.diff_digest == fx.sha256(tar)
    assert rep.blob_digest == fx.sha256(fx.compress(tar, kind))
    assert rep.compression == (kind or "none")
    assert (out / "b").read_bytes() == b"b" and (out / "a").stat().st_size == 3 << 20


def test_concatenated_gzip_members(tmp_path):
    tar = fx.build_tar([fx.entry("a", data=b"a" * 5000), fx.entry("b", data=b"b")])
    blob = gzip.compress(tar[:2048]) + gzip.compress(tar[2048:])
    out, rep = unpack(tmp_path, blob)
    assert (out / "b").read_bytes() == b"b" and rep.diff_digest == fx.sha256(tar)


def test_truncated_gzip_refused(tmp_path):
    blob = gzip.compress(fx.build_tar([fx.entry("a", data=os.urandom(100_000))]))
    with pytest.raises(ArtifactError, match="truncated|corrupt"):
        unpack(tmp_path, blob[: len(blob) // 2])


def test_corrupt_gzip_refused(tmp_path):
    blob = bytearray(gzip.compress(fx.build_tar([fx.entry("a", data=os.urandom(10_000))])))
    blob[40:60] = bytes(20)
    with pytest.raises(ArtifactError, match="corrupt|truncated|tar"):
        unpack(tmp_path, bytes(blob))


@pytest.mark.parametrize("blob", [b"", bytes(1024), gzip.compress(bytes(1024))])
def test_empty_layers(tmp_path, blob):
    out, rep = unpack(tmp_path, blob)
    assert os.listdir(out) == [] and rep.entries == 0


def test_layer_byte_limit(tmp_path):
    with pytest.raises(ArtifactError, match="max_layer_bytes|exceeds"):
        unpack(tmp_path, fx.build_tar([fx.entry("a", data=b"x" * 100_000)]),
               limits=Limits(max_layer_bytes=50_000))


def test_ratio_limit_applies_past_the_floor_only(tmp_path):
    small = gzip.compress(fx.build_tar([fx.entry("z", data=bytes(1 << 20))]))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    unpack(tmp_path / "a", small, limits=Limits(ratio_floor=4 << 20))
    with pytest.raises(ArtifactError, match="decompression ratio"):
        unpack(tmp_path / "b", small, limits=Limits(ratio_floor=64 << 10, max_ratio=10))


@pytest.mark.parametrize("name,ok", [
    ("a/b", "a/b"), ("./a//b/", "a/b"), (".", ""), ("./", ""),
    ("/etc/passwd", None), ("../x", None), ("a/../../x", None), ("a/..", None),
    ("a\x00b", None), ("x" * 256, None),
])
def test_normalise_name(name, ok):
    if ok is None:
        with pytest.raises(ArtifactError):
            normalise_name(name, label="l")
    else:
        assert normalise_name(name, label="l") == ok


def test_unsupported_entries_are_recorded_not_created(tmp_path):
    import tarfile
    ti = tarfile.TarInfo("weird")
    ti.type = b"7"  # contiguous file: tarfile reads it as a regular file
    out, rep = unpack(tmp_path, fx.build_tar([(ti, None)]))
    assert (out / "weird").is_file()


def test_stream_seek_is_forward_only():
    s = LayerStream(io.BytesIO(b"abcdef" * 1000), limits=Limits(), label="l")
    assert s.read(3) == b"abc"
    s.seek(10)
    assert s.read(2) == b"ef"
    with pytest.raises(OSError):
        s.seek(0)


def test_root_of_tree_is_0755_without_a_dot_entry(tmp_path):
    out, _ = unpack(tmp_path, fx.build_tar([fx.entry("f", data=b"x")]))
    assert stat.S_IMODE(os.lstat(out).st_mode) == 0o755


def test_directory_replaced_by_symlink_then_written_under_is_refused(tmp_path):
    # "d/" is cached as a parent fd; replacing d with a symlink must not
    # leave the old fd in use, and writing under the link is refused.
    with pytest.raises(ArtifactError, match="'d/y'.*symlink"):
        unpack(tmp_path, fx.build_tar([fx.entry("d/x", data=b"x"),
                                       fx.entry("d", "symlink", linkname="/etc"),
                                       fx.entry("d/y", data=b"y")]))
