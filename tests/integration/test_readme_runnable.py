"""Every shell block of the README marked runnable runs as written.

The marker is an HTML comment on the line before the block, invisible on
GitHub::

    <!-- runnable -->
    ```sh
    sandbox profile list
    ```

Each block runs in ``bash -euo pipefail`` (so every line must succeed) in an
empty temporary folder, with ``SANDBOX_ROOT`` in a temporary folder, ``HOME``
there too, and this checkout's ``sandbox`` first on PATH. Blocks that are not
marked (the quick start, images and trust, ``--rootfs ./root``) need files
the README only names; the quick start has its own test."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

import helpers

REPO = helpers.REPO
README = (REPO / "README.md").read_text()
MARKER = "<!-- runnable -->"


def runnable_blocks() -> list[tuple[int, str]]:
    """(line number, body) of every marked block."""
    out = []
    for m in re.finditer(rf"^{re.escape(MARKER)}\n```sh\n(.*?)^```", README, flags=re.S | re.M):
        out.append((README.count("\n", 0, m.start()) + 1, m.group(1)))
    return out


def test_every_marker_is_followed_by_a_shell_block():
    assert README.count(MARKER) == len(runnable_blocks()) >= 5


def test_the_readme_sections_a_newcomer_tries_first_are_marked():
    bodies = "".join(b for _, b in runnable_blocks())
    for cmd in ("sandbox run -- python3", "sandbox profile list", "sandbox profile validate",
                "sandbox audit verify", "sandbox ps", "sandbox label set"):
        assert cmd in bodies, cmd


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="the README's blocks launch sandboxes as root "
                                               "(their id range comes from /etc/subuid)")
@pytest.mark.parametrize("line,body", runnable_blocks(),
                         ids=[f"README.md:{n}" for n, _ in runnable_blocks()])
def test_readme_block_runs(line, body, tmp_path):
    sandbox = Path(helpers.SANDBOX)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": f"{sandbox.parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
           "HOME": str(tmp_path), "SANDBOX_ROOT": str(tmp_path / "root")}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"README.md:{line} failed ({r.returncode}):\n{body}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    assert helpers.runtime_leftovers(tmp_path / "root") in ([], ["sandboxes"])
    sandboxes = tmp_path / "root" / "run" / "sandboxes"
    assert not sandboxes.exists() or list(sandboxes.iterdir()) == []
