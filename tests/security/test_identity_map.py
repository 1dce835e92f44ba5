"""A user map that gives the sandbox host root is refused (issue 13 item 1).

The attack: a profile with ``[user] map = "identity"``, run by root, maps
the sandbox's uid 0 to host uid 0; through a ``:rw,Z`` volume the payload
leaves a setuid-root program that any host user can run."""

from __future__ import annotations

import json
import os

import pytest

import helpers
from sandbox.runtime.idmap import IdMap, build_privileged_host_ids

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def _profile(d, body='map = "identity"'):
    p = d / "ident.toml"
    p.write_text(f'name = "ident"\nextends = "default"\n\n[user]\n{body}\n')
    return p


@needs_root
def test_identity_map_run_by_root_refused(tmp_path, sroot):
    prof = _profile(tmp_path)
    r = helpers.run_sandbox(sroot, "run", "--profile", str(prof), "--", "/bin/true")
    assert r.returncode == 125, r
    assert r.stderr == (
        f"sandbox: {prof}: user.map: user.map 'identity' maps the sandbox to host uid 0 "
        "(host root); refused: the sandbox would own host files (a setuid copy left in a "
        "volume runs as that id on the host)\n"
        'sandbox: set map = "auto" (a subordinate range), or pass --insecure-options=userns '
        "to accept it (recorded in the audit log)\n")
    assert helpers.runtime_leftovers(sroot) == []


def test_identity_map_profile_validate_reports_error(tmp_path, sroot):
    prof = _profile(tmp_path)
    r = helpers.run_sandbox(sroot, "profile", "validate", str(prof))
    assert r.returncode == 1, r      # an invalid profile (2 is for usage errors)
    assert r.stderr == (
        f'sandbox: {prof}: user.map: "identity" run by root maps the sandbox to host uid 0 '
        "(host root)\n"
        "sandbox: use map = \"auto\" (a subordinate range as root, the caller's own id "
        "otherwise), or the unconfined profile for debugging\n")
    r = helpers.run_sandbox(sroot, "profile", "validate", str(_profile(tmp_path, 'map = "auto"')))
    assert r.returncode == 0, r.stderr


@needs_root
def test_identity_map_with_insecure_userns_warned_recorded_volume_nosuid(tmp_path, sroot, world):
    vol = world / f"vol-{os.urandom(4).hex()}"
    vol.mkdir()
    prof = _profile(tmp_path)
    r = helpers.run_sandbox(sroot, "run", "--profile", str(prof), "--insecure-options=userns",
                            "-v", f"{vol}:/x:rw,Z", "--", "/bin/cat", "/proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("sandbox: WARNING: insecure options in use: userns")
    line = next(m for m in r.stdout.splitlines() if m.split()[4] == "/x")
    opts = line.split()[5].split(",")
    assert "nosuid" in opts and "nodev" in opts, line
    r = helpers.run_sandbox(sroot, "audit", "log", "--json", "--kind", "insecure-option")
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["data"]["option"] for x in recs] == ["userns"]


@needs_root
def test_auto_map_volume_mounted_nosuid_nodev(sroot, world):
    vol = world / f"vol-{os.urandom(4).hex()}"
    vol.mkdir()
    r = helpers.run_sandbox(sroot, "run", "-v", f"{vol}:/x:rw,Z", "--",
                            "/bin/cat", "/proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    line = next(m for m in r.stdout.splitlines() if m.split()[4] == "/x")
    assert {"nosuid", "nodev"} <= set(line.split()[5].split(",")), line


def test_identity_map_rootless_allowed(tmp_path, nobody_root):
    prof = nobody_root / "ident.toml"
    prof.write_text('name = "ident"\nextends = "default"\n\n[user]\nmap = "identity"\n')
    os.chown(prof, helpers.NOBODY, helpers.NOBODY)
    r = helpers.run_sandbox(nobody_root / "sb", "run", "--profile", str(prof), "--",
                            "/bin/cat", "/proc/self/uid_map", as_nobody=True, home=nobody_root)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:3] == ["0", str(helpers.NOBODY), "1"]


def test_privileged_host_ids_decided_per_caller():
    root_id = IdMap("0 0 1\n", "0 0 1\n", True, 0, 0)
    assert build_privileged_host_ids(root_id, euid=0) == \
        "maps the sandbox to host uid 0 (host root)"
    user = IdMap("0 1000 1\n", "0 1000 1\n", True, 1000, 1000)
    assert build_privileged_host_ids(user, euid=1000) is None
    assert build_privileged_host_ids(user, euid=0).startswith(
        "maps the sandbox to host uids 1000-1000, outside root's subordinate ranges")
