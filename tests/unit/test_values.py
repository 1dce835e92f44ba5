"""The launch pipeline's value types (typing.NamedTuple, not dataclasses) and
the lean import graph of ``sandbox run`` they are there for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import helpers
from sandbox._values import asdict

#: Modules the launch path must not import (each costs milliseconds).
HEAVY = ("dataclasses", "inspect", "hashlib", "_hashlib", "difflib", "click", "shutil")


def test_launch_path_modules_import_nothing_heavy():
    code = ("import sys\n"
            "import sandbox.cli, sandbox.cli._run_fast, sandbox.api, sandbox.runtime.spawn, "
            "sandbox.runtime.child, sandbox.runtime._landlock, sandbox.profile, sandbox.seccomp, "
            "sandbox.labels.plan, sandbox.labels.alloc, sandbox.audit\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_sandbox_run_imports_nothing_heavy(sroot):
    if not helpers.IS_ROOT:
        pytest.skip("launching needs root or a usable subordinate id range")
    # The first launch fills the seccomp cache (a miss parses the JSON and
    # imports pyseccomp) and makes the audit key; measure the second one.
    # main() ends a launch with os._exit, after running the atexit functions.
    warm = subprocess.run([helpers.SANDBOX, "--root", str(sroot), "run", "--", "true"],
                          capture_output=True, text=True, timeout=60)
    assert warm.returncode == 0, warm.stderr
    code = ("import sys, atexit\n"
            f"sys.argv = ['sandbox', '--root', {str(sroot)!r}, 'run', '--', 'true']\n"
            f"atexit.register(lambda: print('HEAVY', sorted(m for m in {HEAVY!r} "
            "if m in sys.modules)))\n"
            "from sandbox.cli import main\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


def test_replace_checks_like_the_constructor():
    from sandbox.errors import UsageError
    from sandbox.labels.model import LabelError, Level
    from sandbox.labels.plan import VolumeRequest
    from sandbox.runtime._landlock import LandlockRule

    r = LandlockRule("/data", "ro")
    assert r._replace(access="rw") == LandlockRule("/data", "rw")
    with pytest.raises(UsageError):
        r._replace(access="bad")
    with pytest.raises(UsageError):
        LandlockRule("data", "ro")
    lv = Level(0, [3, 1])
    assert lv.categories == frozenset({1, 3}) and str(lv) == "s0:c1,c3"
    with pytest.raises(LabelError):
        lv._replace(sensitivity=99)
    v = VolumeRequest("/src", "/dst")
    assert v.mode == "rw" and v._replace(mode="ro").mode == "ro"
    with pytest.raises(UsageError):
        v._replace(target="relative")


def test_profile_equality_ignores_origins():
    from sandbox.profile import load
    p = load("default")
    q = p._replace(origins=())
    assert p == q and not (p != q) and hash(p) == hash(q)
    assert p != p._replace(name="other")
    assert p.to_dict() == q.to_dict() and p.digest() == q.digest()
    d = p.to_dict()
    assert "origins" not in d and isinstance(d["namespaces"], dict)
    assert isinstance(d["filesystem"]["tmpfs"][0], dict)


def test_plan_to_dict_gives_landlock_rules_as_objects(tmp_path):
    from sandbox import Sandbox
    plan = Sandbox("default", root=tmp_path / "r").plan(["/bin/true"])
    d = plan.to_dict()
    if plan.landlock_abi:
        assert all(isinstance(r, dict) and "path" in r for r in d["landlock"]["rules"])
    assert all(isinstance(m, dict) and "op" in m for m in d["mounts"])
    plain = plan._replace(landlock=(("/", "rx"),), landlock_abi=1)
    assert plain.to_dict()["landlock"]["rules"] == [["/", "rx"]]
    assert "bpf" not in repr(plan.seccomp) and plan.seccomp.bpf


def test_asdict_is_recursive():
    from sandbox.profile.model import FilesystemSpec, Tmpfs
    fs = FilesystemSpec(tmpfs=(Tmpfs("/tmp", "mode=1777"),), masked_paths=("/proc/kcore",))
    assert asdict(fs) == {"read_only_root": True,
                          "tmpfs": ({"path": "/tmp", "options": "mode=1777"},),
                          "masked_paths": ("/proc/kcore",), "read_only_paths": (),
                          "allow_setuid": False}
    assert asdict([fs.tmpfs[0], {"k": fs.tmpfs[0]}]) == [
        {"path": "/tmp", "options": "mode=1777"}, {"k": {"path": "/tmp", "options": "mode=1777"}}]
