"""The toolkit's own supply chain (issue 13, item 11): requirements.lock agrees
with pyproject.toml.

install.sh installs every Python dependency from requirements.lock with
``--require-hashes``, then the project with ``--no-deps``; so every runtime
dependency, every test-extra dependency and every build-system requirement
must be pinned there, by a version its specifier accepts, with hashes. A
dependency added to pyproject.toml without re-locking fails here, naming the
command that fixes it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

packaging = pytest.importorskip("packaging.requirements")
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402
from packaging.version import Version  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RELOCK = ".venv/bin/pip-compile pyproject.toml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _lock() -> dict[str, tuple[str, list[str]]]:
    """Canonical name -> (pinned version, its hashes)."""
    text = (REPO / "requirements.lock").read_text()
    out: dict[str, tuple[str, list[str]]] = {}
    # one requirement: "name==version \" then "--hash=sha256:..." lines
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = block.split("\n", 1)[0].rstrip(" \\")
        if not head or head.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", head)
        assert m, f"requirements.lock: {head!r} is not pinned with ==; regenerate: {RELOCK}"
        out[canonicalize_name(m.group(1))] = (m.group(2),
                                              re.findall(r"--hash=(sha256:[0-9a-f]{64})", block))
    return out


def _required() -> list[tuple[str, Requirement]]:
    proj = PYPROJECT["project"]
    reqs = [("dependencies", r) for r in proj["dependencies"]]
    reqs += [("test extra", r) for r in proj["optional-dependencies"]["test"]]
    reqs += [("build-system", r) for r in PYPROJECT["build-system"]["requires"]]
    return [(where, Requirement(r)) for where, r in reqs]


def test_every_locked_package_is_pinned_with_hashes():
    lock = _lock()
    assert lock, "requirements.lock is empty"
    for name, (version, hashes) in lock.items():
        assert hashes, f"requirements.lock: {name}=={version} has no --hash; regenerate: {RELOCK}"


@pytest.mark.parametrize("where, req", _required(), ids=lambda v: str(v))
def test_lock_satisfies_pyproject_requirement(where, req):
    lock = _lock()
    if req.marker is not None and not req.marker.evaluate({"extra": "test"}):
        pytest.skip(f"{req} does not apply on this platform")
    name = canonicalize_name(req.name)
    assert name in lock, (f"{req} ({where} in pyproject.toml) is not in requirements.lock; "
                          f"regenerate it: {RELOCK}")
    version = lock[name][0]
    assert req.specifier.contains(Version(version), prereleases=True), (
        f"requirements.lock pins {name}=={version}, which {req} ({where}) refuses; "
        f"regenerate it: {RELOCK}")


def test_install_sh_installs_from_the_lock_with_hashes_then_the_project_without_deps():
    text = (REPO / "install.sh").read_text()
    lines = [ln for ln in text.splitlines() if "pip install" in ln and not ln.lstrip().startswith("#")]
    assert len(lines) == 2, lines
    assert "--require-hashes" in lines[0] and "-r requirements.lock" in lines[0]
    assert "--no-deps" in lines[1] and lines[1].rstrip().endswith("-e .")


def test_pip_tools_is_configured_to_write_the_lock():
    # The one-line relock command relies on [tool.pip-tools] in pyproject.toml.
    cfg = PYPROJECT["tool"]["pip-tools"]
    assert cfg["generate-hashes"] and cfg["allow-unsafe"] and cfg["all-build-deps"]
    assert cfg["extra"] == ["test"] and cfg["output-file"] == "requirements.lock"
