"""``sandbox version [--verbose] [--json]`` (issue 13, item 11): what is
installed and what the host offers, for bug reports."""

from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata

import pytest
from click.testing import CliRunner

import sandbox
from sandbox.cli import cli
from sandbox.hostinfo import collect
from sandbox.runtime._landlock import landlock_abi
from sandbox.seccomp import libseccomp_version


def _run(*args):
    r = CliRunner().invoke(cli, ["version", *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_package_version_matches_the_installed_distribution():
    assert sandbox.__version__ == metadata.version("sandbox")


def test_version_prints_the_package_version():
    assert _run() == f"sandbox {metadata.version('sandbox')}\n"


def test_version_json_names_dependencies_libraries_kernel_and_protections():
    d = json.loads(_run("--json"))
    assert d["version"] == metadata.version("sandbox")
    want = {"click", "pyseccomp", "python-prctl", "cryptography", "python-gnupg", "pyroute2"}
    assert want <= set(d["dependencies"])
    assert d["dependencies"]["click"] == metadata.version("click")
    assert d["libseccomp"] == libseccomp_version()
    assert d["kernel"]["release"] == os.uname().release
    h = d["host"]
    assert h["landlock_abi"] == landlock_abi()
    assert h["cgroup"] in ("2", "1 (hybrid)", "1", "none")
    assert h["selinux"] in ("enforcing", "permissive", "inactive")
    assert isinstance(h["user_namespaces"]["unprivileged"], bool)


def test_version_verbose_text_has_one_line_each():
    out = _run("--verbose").splitlines()
    d = collect()
    assert out[0] == f"sandbox {d['version']}"
    for name, v in d["dependencies"].items():
        assert f"  {name} {v}" in out
    assert f"libseccomp {d['libseccomp']}" in out and f"gpg {d['gpg']}" in out
    assert any(ln.startswith("kernel " + os.uname().release) for ln in out)
    assert any(ln.startswith("landlock ABI ") for ln in out)
    assert any(ln.startswith("cgroup ") for ln in out)
    assert any(ln.startswith("selinux ") for ln in out)
    assert any(ln.startswith("user namespaces ") for ln in out)


def test_gpg_version_is_the_one_on_path():
    gpg = subprocess.run(["gpg", "--version"], capture_output=True, text=True)
    if gpg.returncode != 0:
        pytest.skip("gpg is not installed")
    assert collect()["gpg"] == gpg.stdout.split()[2]
