"""`audit report -o` / `audit export -o` as root: the output never replaces
a device, a fifo or a symlink's target, and a link planted at a temporary
name never makes root write elsewhere (issue 13 items 7 and 9)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from sandbox import safefs
from sandbox.errors import UsageError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a device node")


def _sandbox(root, *args):
    env = dict(os.environ)
    env.pop("SANDBOX_ROOT", None)
    return subprocess.run([sys.executable, "-m", "sandbox", "--root", str(root), "audit", *args],
                          capture_output=True, text=True, env=env, timeout=60)


@needs_root
@pytest.mark.parametrize("cmd", [["report", "--no-records"], ["export"]])
def test_report_output_does_not_replace_device_node(tmp_path, cmd):
    dev = tmp_path / "null"
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    r = _sandbox(tmp_path / "sb", *cmd, "-o", str(dev))
    assert r.returncode == 2, r
    assert r.stderr == (f"sandbox: {dev}: is a device; refusing to replace it: "
                        "write to a regular file or a new path\n")
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert sorted(set(os.listdir(tmp_path)) - {"sb"}) == ["null"]


@pytest.mark.parametrize("cmd", [["report", "--no-records"], ["export"]])
def test_report_output_does_not_follow_final_symlink(tmp_path, cmd):
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    link = tmp_path / "out.txt"
    link.symlink_to(victim)
    r = _sandbox(tmp_path / "sb", *cmd, "-o", str(link))
    assert r.returncode == 2, r
    assert r.stderr == (f"sandbox: {link}: is a symlink; refusing to replace it: "
                        "write to a regular file or a new path\n")
    assert victim.read_text() == "keep\n" and link.is_symlink()


def test_report_output_refuses_fifo_and_folder(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = _sandbox(tmp_path / "sb", "report", "--no-records", "-o", str(fifo))
    assert r.returncode == 2
    assert r.stderr.endswith("is a fifo; refusing to replace it: "
                             "write to a regular file or a new path\n")
    r = _sandbox(tmp_path / "sb", "export", "-o", str(tmp_path) + "/")
    assert r.returncode == 2
    assert r.stderr == (f"sandbox: {tmp_path}/: is a folder; refusing to replace it: "
                        "write to a regular file or a new path\n")


def test_report_output_symlink_in_folder_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "via").symlink_to(tmp_path / "real")
    out = tmp_path / "via" / "r.json"
    r = _sandbox(tmp_path / "sb", "export", "-o", str(out))
    assert r.returncode == 2
    assert r.stderr == (f"sandbox: {out}: {tmp_path}/via is a symlink; refusing to follow "
                        "it: give the path with no symlink in it\n")
    assert os.listdir(tmp_path / "real") == []


def test_report_output_written_to_new_and_regular_file(tmp_path):
    out = tmp_path / "r.md"
    r = _sandbox(tmp_path / "sb", "report", "--no-records", "--format", "markdown", "-o", str(out))
    assert r.returncode == 0, r.stderr
    first = out.read_text()
    assert first.startswith("#")
    os.chmod(out, 0o640)
    r = _sandbox(tmp_path / "sb", "report", "--no-records", "--format", "json", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text().lstrip().startswith("{")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    assert sorted(set(os.listdir(tmp_path)) - {"sb"}) == ["r.md"]


def test_hardlink_at_output_name_not_written_through(tmp_path):
    victim = tmp_path / "shadow"
    victim.write_text("root:x\n")
    os.link(victim, tmp_path / "out.jsonl")
    safefs.write_output(tmp_path / "out.jsonl", "new\n")
    assert victim.read_text() == "root:x\n"
    assert (tmp_path / "out.jsonl").read_text() == "new\n"


def test_planted_symlink_at_temporary_name_does_not_redirect_write(tmp_path, monkeypatch):
    """The old writer used `.NAME.PID.tmp`, opened following symlinks: a link
    planted there made root write into a 0700 folder. Plant links at the old
    name and at the first random name the writer will draw."""
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o1777)
    (shared / f".report.html.{os.getpid()}.tmp").symlink_to(secret / "planted-old")
    names = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(safefs.secrets, "token_hex", lambda n: next(names))
    (shared / ".report.html.aaaa.tmp").symlink_to(secret / "planted-new")
    from sandbox.cli import main
    try:
        main(["--root", str(tmp_path / "sb"), "audit", "report", "--no-records",
              "-o", str(shared / "report.html")])
    except SystemExit as e:
        assert e.code in (0, None)
    assert os.listdir(secret) == []
    assert (shared / "report.html").read_text()
    assert (shared / ".report.html.aaaa.tmp").is_symlink()


def test_open_nofollow_refuses_symlink_component(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "l").symlink_to(tmp_path / "d")
    with pytest.raises(UsageError) as e:
        safefs.open_nofollow(tmp_path / "l", os.O_RDONLY | os.O_DIRECTORY)
    assert e.value.message == (f"{tmp_path}/l: {tmp_path}/l is a symlink; refusing to "
                               "follow it: give the path with no symlink in it")
    fd = safefs.open_nofollow(tmp_path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert safefs.fd_path(fd) == f"{tmp_path}/d"
    finally:
        os.close(fd)
