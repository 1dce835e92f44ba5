"""The README's promises: exactly two quick-start commands, `.ci/run` runs the
second, and the Python API example works as written (it launches a real
sandbox, so that part needs root)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README, flags=re.S | re.M)


def _quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)


def _api_example() -> str:
    examples = [b for b in _blocks("python") if "from sandbox import Sandbox" in b]
    assert len(examples) == 1, "README needs exactly one Python API example"
    return examples[0]


def test_quick_start_is_two_single_line_commands():
    cmds = _quick_start()
    assert len(cmds) == 2, cmds
    for c in cmds:
        assert c.count("\n") == 1 and c.endswith("\n"), f"not a single line: {c!r}"
        assert c.startswith("./install.sh && "), c
    assert "sandbox run --profile default" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = _quick_start()[1].strip()
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines(), f".ci/run must run {test_cmd!r}"
    assert os.access(REPO / ".ci" / "run", os.X_OK)
    assert os.access(REPO / "install.sh", os.X_OK)


def test_api_example_is_the_documented_one():
    assert _api_example() == (
        'from sandbox import Sandbox\n'
        'r = Sandbox(profile="default").run(["/bin/sh", "-c", "exit 3"])\n'
        'assert r.status == 3\n')


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="the README example launches a real sandbox "
                                               "as root (its id range comes from /etc/subuid)")
def test_api_example_runs(tmp_path):
    code = _api_example()
    # A fresh process (the launch forks and unshares), with the state under tmp_path.
    env = dict(os.environ, SANDBOX_ROOT=str(tmp_path / "root"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
