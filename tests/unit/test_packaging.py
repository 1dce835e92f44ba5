"""The data folders profiles/, keys/ and audit/ ship inside the package, and
`sandbox._resources.data_dir` finds them the same way from a wheel and from
the editable install (DESIGN §9).

Building the wheel needs ``hatchling`` and ``build`` in the test
environment (``install.sh`` installs both); it runs without network access
(``--no-isolation``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

WANTED_IN_WHEEL = (
    "sandbox/_data/profiles/default.toml",
    "sandbox/_data/profiles/seccomp/default.json",
    "sandbox/_bin/sandbox-exec",        # the executor, compiled by hatch_build.py
)
WANTED_FOLDERS = ("sandbox/_data/keys/", "sandbox/_data/audit/")

PROBE = """
import json, sys
import sandbox, sandbox._resources as r
out = {"package": sandbox.__file__}
for kind in ("profiles", "keys", "audit"):
    out[kind] = str(r.data_dir(kind))
from sandbox.profile import load
out["default_profile"] = load("default").name
print(json.dumps(out))
"""


def _probe(python: str, *, cwd: Path, env: dict | None = None) -> dict:
    proc = subprocess.run([python, "-c", PROBE], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the 'build' package is not installed (pip install build)")
    pytest.importorskip("hatchling",
                        reason="hatchling is not installed in the test environment "
                               "(./install.sh installs it)")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                           "--outdir", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("sandbox-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_data_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in WANTED_IN_WHEEL:
        assert name in names, f"{name} missing from {wheel.name}"
    for folder in WANTED_FOLDERS:
        assert any(n.startswith(folder) for n in names), f"{folder} missing from {wheel.name}"
    # every file of the top-level folders is in the wheel, under sandbox/_data/
    for kind in ("profiles", "keys", "audit"):
        for f in (REPO / kind).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                rel = f"sandbox/_data/{f.relative_to(REPO).as_posix()}"
                assert rel in names, f"{rel} missing from {wheel.name}"


def test_installed_wheel_reads_data_from_site_packages(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    py = venv / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install",
                           "--no-deps", "--no-index", "-q", "--disable-pip-version-check",
                           str(wheel)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies come from the dev venv through PYTHONPATH; .pth files on
    # PYTHONPATH are not processed, so the editable checkout stays out of sight.
    env = dict(os.environ, PYTHONPATH=sysconfig.get_path("purelib"))
    env.pop("PYTHONHOME", None)
    got = _probe(str(py), cwd=tmp_path, env=env)
    assert Path(got["package"]).is_relative_to(site), got
    for kind in ("profiles", "keys", "audit"):
        assert Path(got[kind]) == site / "sandbox" / "_data" / kind, got
    assert (Path(got["profiles"]) / "default.toml").is_file()
    assert (Path(got["profiles"]) / "seccomp" / "default.json").is_file()
    assert got["default_profile"] == "default"
    exe = site / "sandbox" / "_bin" / "sandbox-exec"
    check = subprocess.run([str(exe), "--check"], input=b"", capture_output=True, timeout=30)
    assert check.returncode == 1 and b"plan: truncated header" in check.stderr


def test_editable_install_reads_the_checkout(tmp_path):
    assert not (REPO / "sandbox" / "_data").exists(), \
        "sandbox/_data must not exist in the checkout; the wheel makes it"
    got = _probe(sys.executable, cwd=tmp_path)
    assert Path(got["package"]).resolve() == REPO / "sandbox" / "__init__.py", got
    for kind in ("profiles", "keys", "audit"):
        assert Path(got[kind]) == REPO / kind, got
    assert (Path(got["profiles"]) / "default.toml").is_file()
    assert got["default_profile"] == "default"


def test_install_writes_an_isolated_entry_script_without_re():
    # install.sh replaces pip's console-script wrapper (which imports `re`)
    script = Path(sys.prefix) / "bin" / "sandbox"
    if not script.exists() or "install.sh" not in script.read_text():
        pytest.skip("not installed by install.sh")
    text = script.read_text()
    first = text.splitlines()[0]
    assert first.startswith("#!") and first.endswith(" -IS")
    assert "import re" not in text
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "sandbox" in r.stdout
