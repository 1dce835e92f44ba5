"""The profile commands a newcomer reaches for first: `profile show` prints a
profile file that `profile validate -` accepts and that resolves to the same
profile; `validate` exits 1 for an invalid profile and 2 for usage errors;
bundled seccomp filters are named ``builtin:NAME`` from any profile, and a
relative filter path is read next to the profile file that names it; the
README's profile example validates and runs as written."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

import helpers
from helpers import run_sandbox
from sandbox.profile import available, load, loads

REPO = helpers.REPO
BUNDLED = [f.name for f in available(None)]


def _same(a, b) -> bool:
    da, db = a.to_dict(), b.to_dict()
    da.pop("source"), db.pop("source")
    return da == db


@pytest.mark.parametrize("name", BUNDLED)
def test_profile_show_output_is_a_profile_that_resolves_to_the_same(name):
    from sandbox.profile.render import render_toml
    p = load(name)
    for origins in (True, False):
        text = render_toml(p, origins=origins)
        assert "null" not in text and "None" not in text
        again = loads(text, base_dir=Path("/nonexistent"))   # nothing read beside it
        assert _same(p, again), name


def test_profile_show_default_pipes_into_validate(sroot):
    shown = run_sandbox(sroot, "profile", "show", "default")
    assert shown.returncode == 0, shown.stderr
    assert "null" not in shown.stdout
    assert 'profile = "builtin:default"' in shown.stdout
    assert "default.toml" in shown.stdout          # origins, as comments
    # `sandbox profile show default | sandbox profile validate -`, through a shell pipe
    r = helpers.subprocess.run(
        f"{helpers.SANDBOX} --root {sroot} profile show default | "
        f"{helpers.SANDBOX} --root {sroot} profile validate -",
        shell=True, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "valid profile 'default'" in r.stdout


def test_profile_show_lines_fit_80_columns_without_origins(sroot):
    r = run_sandbox(sroot, "profile", "show", "default", "--no-origins")
    assert r.returncode == 0, r.stderr
    long = [line for line in r.stdout.splitlines()
            if len(line) > 80 and not line.startswith(("#", "description"))]
    assert long == []
    assert "#" not in "".join(r.stdout.splitlines()[2:])


def test_profile_validate_invalid_profile_exits_1(sroot, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[capabilities]\nretian = []\n')
    r = run_sandbox(sroot, "profile", "validate", str(bad))
    assert r.returncode == 1, r.stderr
    assert str(bad) in r.stderr and "retian" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2
    r = run_sandbox(sroot, "profile", "validate", "-", input="not = [toml\n")
    assert r.returncode == 1 and "<stdin>: is not valid TOML" in r.stderr, r.stderr
    r = run_sandbox(sroot, "profile", "validate", "-",
                    input='[seccomp]\nprofile = "builtin:nope"\n')
    assert r.returncode == 1, r.stderr
    assert "builtin:default" in r.stderr and "builtin:strict" in r.stderr


def test_profile_validate_usage_errors_exit_2(sroot, tmp_path):
    r = run_sandbox(sroot, "profile", "validate", str(tmp_path / "missing.toml"))
    assert r.returncode == 2, r.stderr
    assert "missing.toml" in r.stderr and "Traceback" not in r.stderr
    r = run_sandbox(sroot, "profile", "validate")
    assert r.returncode == 2 and "Missing argument" in r.stderr
    r = run_sandbox(sroot, "profile", "validate", "no-such-profile")
    assert r.returncode == 2 and "unknown profile" in r.stderr


def test_builtin_seccomp_filters_named_from_a_user_profile(tmp_path):
    for name in ("default", "strict"):
        f = tmp_path / f"{name}-user.toml"
        f.write_text(f'extends = "default"\n[seccomp]\nprofile = "builtin:{name}"\n')
        p = load(str(f))
        assert p.seccomp.profile == str(REPO / "profiles" / "seccomp" / f"{name}.json")


def test_relative_seccomp_path_is_read_next_to_the_profile_file(tmp_path, monkeypatch):
    (tmp_path / "conf" / "filters").mkdir(parents=True)
    shutil.copy(REPO / "profiles" / "seccomp" / "strict.json",
                tmp_path / "conf" / "filters" / "mine.json")
    f = tmp_path / "conf" / "mine.toml"
    f.write_text('extends = "default"\n[seccomp]\nprofile = "filters/mine.json"\n')
    monkeypatch.chdir("/")
    assert load(str(f)).seccomp.profile == str(tmp_path / "conf" / "filters" / "mine.json")
    f.write_text('extends = "default"\n[seccomp]\nprofile = "seccomp/default.json"\n')
    from sandbox.errors import ProfileError
    with pytest.raises(ProfileError, match="builtin:default") as e:
        load(str(f))
    assert str(tmp_path / "conf" / "seccomp" / "default.json") in e.value.message


def test_limit_zero_is_a_limit_not_unlimited():
    p = loads("[limits]\ncore = 0\nfsize = 0\n")
    assert p.limits.core == 0 and p.limits.fsize == 0
    from sandbox.errors import ProfileError
    with pytest.raises(ProfileError, match="limits.pids"):
        loads("[limits]\npids = 0\n")
    assert loads('[limits]\npids = "unlimited"\n').limits.pids is None


def _readme_profile_example() -> str:
    readme = (REPO / "README.md").read_text()
    blocks = [b for b in re.findall(r"^```toml\n(.*?)^```", readme, flags=re.S | re.M)
              if 'extends = "default"' in b]
    assert len(blocks) == 1, "README needs exactly one profile example"
    return blocks[0]


def test_readme_profile_example_validates(sroot, tmp_path):
    f = tmp_path / "my.toml"
    f.write_text(_readme_profile_example())
    r = run_sandbox(sroot, "profile", "validate", str(f), cwd="/")
    assert r.returncode == 0, r.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="launches a real sandbox as root")
def test_readme_profile_example_runs(sroot, tmp_path):
    f = tmp_path / "my.toml"
    f.write_text(_readme_profile_example())
    r = run_sandbox(sroot, "run", "--profile", str(f), "--", "sh", "-c",
                    "grep -E '^(CapEff|Seccomp):' /proc/self/status", cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Seccomp:\t2" in r.stdout


# --- [limits] cpus: in the schema, shown with its origin ------------------------

def test_limits_cpus_is_validated():
    assert loads("[limits]\ncpus = 0.5\n").limits.cpus == 0.5
    assert loads("[limits]\ncpus = 2\n").limits.cpus == 2.0
    assert loads('[limits]\ncpus = "1.5"\n').limits.cpus == 1.5
    assert loads('[limits]\ncpus = "unlimited"\n').limits.cpus is None
    assert loads("").limits.cpus is None
    from sandbox.errors import ProfileError
    for bad in ("0", "-1", "0.001", "true", '"half"', "10000", "nan"):
        with pytest.raises(ProfileError, match="limits.cpus"):
            loads(f"[limits]\ncpus = {bad}\n")


def test_limits_cpus_unset_leaves_profile_digests_as_they_were():
    p = load("default")
    assert "cpus" not in p.to_dict()["limits"]
    q = loads('extends = "default"\n[limits]\ncpus = 0.5\n', base_dir=REPO / "profiles")
    assert q.to_dict()["limits"]["cpus"] == 0.5 and q.digest() != p.digest()


def test_limits_cpus_is_shown_with_its_origin(tmp_path):
    from sandbox.profile.render import render_toml
    f = tmp_path / "half.toml"
    f.write_text('extends = "default"\n[limits]\ncpus = 0.5\n')
    text = render_toml(load(str(f)))
    assert f"cpus = 0.5    # {f}" in text
    assert _same(loads(text, base_dir=Path("/nonexistent")), load(str(f)))
    assert 'cpus = "unlimited"    # built-in default' in render_toml(load("default"))


def test_limits_cpus_is_a_cgroup_limit_not_an_rlimit(sroot, tmp_path):
    # issue 15: [limits] cpus goes to the cgroup cpu controller (the CFS
    # quota), never to an rlimit; validate says nothing more about it
    from sandbox.runtime.plan import build_rlimits
    p = loads('[limits]\ncpus = 0.5\nnofile = 64\n')
    assert build_rlimits(p.limits) == (("RLIMIT_NOFILE", 64, 64), ("RLIMIT_CORE", 0, 0))
    f = tmp_path / "half.toml"
    f.write_text('extends = "default"\n[limits]\ncpus = 0.5\n')
    r = run_sandbox(sroot, "profile", "validate", str(f))
    assert r.returncode == 0 and "cpus" not in r.stderr, r.stderr


def test_profile_show_and_validate_work_rootless(nobody_root):
    shown = run_sandbox(nobody_root, "profile", "show", "strict", as_nobody=True)
    assert shown.returncode == 0, shown.stderr
    r = run_sandbox(nobody_root, "profile", "validate", "-", input=shown.stdout,
                    as_nobody=True, cwd=nobody_root)
    assert r.returncode == 0 and "valid profile 'strict'" in r.stdout, r.stderr
