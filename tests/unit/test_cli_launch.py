"""The CLI's launch-side commands without privilege: usage errors, profile
list/show/validate, and --dry-run output."""

from __future__ import annotations

import json

import helpers
from helpers import run_sandbox


def test_json_without_dry_run_is_a_usage_error(sroot):
    r = run_sandbox(sroot, "run", "--json", "--", "true")
    assert r.returncode == 125 and "--dry-run" in r.stderr and "Traceback" not in r.stderr


def test_run_without_command_is_refused(sroot):
    r = run_sandbox(sroot, "run")
    assert r.returncode == 125 and "no command" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def test_profile_list_json_has_bundled_profiles(sroot):
    r = run_sandbox(sroot, "profile", "list", "--json")
    assert r.returncode == 0, r.stderr
    names = {p["name"]: p for p in json.loads(r.stdout)}
    assert {"default", "strict", "unconfined"} <= set(names)
    assert names["default"]["bundled"] is True


def test_profile_show_names_where_each_field_came_from(sroot):
    r = run_sandbox(sroot, "profile", "show", "strict")
    assert r.returncode == 0, r.stderr
    assert "strict.toml" in r.stdout and "default.toml" in r.stdout


def test_profile_validate_bundled_and_broken(sroot, tmp_path):
    r = run_sandbox(sroot, "profile", "validate", str(helpers.REPO / "profiles" / "strict.toml"))
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[capabilities]\nretian = []\n')
    r = run_sandbox(sroot, "profile", "validate", str(bad))
    assert r.returncode != 0 and str(bad) in r.stderr and "retian" in r.stderr
    assert "Traceback" not in r.stderr


def test_dry_run_json_is_stable_for_same_input(sroot):
    a = json.loads(run_sandbox(sroot, "run", "--profile", "strict",
                               "--dry-run", "--json", "--", "true").stdout)
    b = json.loads(run_sandbox(sroot, "run", "--profile", "strict",
                               "--dry-run", "--json", "--", "true").stdout)
    assert a["capabilities"] == [] and a["seccomp"]["default_action"]
    assert a["mounts"] == b["mounts"]
