"""``--user NAME[:GROUP]`` resolved in the sandbox's own root (issue 15):
the host view's /etc files, a ``--rootfs`` folder's own, never a file a
symbolic link in that root points at outside it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
    pytest.mark.skipif(helpers.SANDBOX is None, reason="the sandbox CLI is not installed"),
]


def run(root, *args):
    return helpers.run_sandbox(root, "run", *args)


def test_names_on_the_host_view(sroot):
    r = run(sroot, "-u", "nobody", "--", "sh", "-c", "id -u; id -g")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["65534", "65534"]
    r = run(sroot, "-u", "nobody:root", "--", "sh", "-c", "id -u; id -g")
    assert r.stdout.split() == ["65534", "0"]
    r = helpers.run_sandbox(sroot, "audit", "log", "--json")
    launch = [json.loads(x)["data"] for x in r.stdout.splitlines()
              if json.loads(x)["kind"] == "launch"][-1]
    assert launch["overrides"]["user.uid"] == "flag --user"


def test_names_in_a_rootfs_are_the_rootfs_own(sroot, busybox_root, world):
    root = world / f"named-{os.urandom(3).hex()}"
    shutil.copytree(busybox_root, root, symlinks=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\nbuilder:x:3131:3232::/:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\ntools:x:3333:\n")
    try:
        r = run(sroot, "--rootfs", str(root), "-u", "builder", "--", "sh", "-c", "id -u; id -g")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["3131", "3232"]
        r = run(sroot, "--rootfs", str(root), "-u", "builder:tools", "--", "id", "-g")
        assert r.stdout.split() == ["3333"]
        r = run(sroot, "--rootfs", str(root), "-u", "nobody", "--", "true")   # host has one
        assert r.returncode == 125 and "no user 'nobody'" in r.stderr, r.stderr
    finally:
        shutil.rmtree(root)


def test_passwd_symlink_out_of_the_rootfs_is_resolved_inside_it(sroot, busybox_root, world,
                                                                tmp_path):
    # the attack: the root's maker links etc/passwd to a host file naming a
    # user the host defines; RESOLVE_IN_ROOT keeps the link inside the root
    secret = tmp_path / "host-passwd"
    secret.write_text("evil:x:4242:4242::/:/bin/sh\n")
    root = world / f"linked-{os.urandom(3).hex()}"
    shutil.copytree(busybox_root, root, symlinks=True)
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(str(secret))
    try:
        r = run(sroot, "--rootfs", str(root), "-u", "evil", "--", "id", "-u")
        assert r.returncode == 125, (r.stdout, r.stderr)
        assert "no user 'evil'" in r.stderr and "Traceback" not in r.stderr
    finally:
        shutil.rmtree(root)


@pytest.mark.parametrize("spec", ["nosuch", "nobody:nosuchgroup", "a:", ":b", "x/y"])
def test_unknown_or_malformed_names_get_one_line_and_125(sroot, spec):
    r = run(sroot, "-u", spec, "--", "true")
    assert r.returncode == 125, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr
