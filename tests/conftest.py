"""Fixtures shared by the launch tests (see tests/helpers.py)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A world-searchable folder under /var/tmp for the whole session."""
    d = helpers.world_dir("sandbox-tests-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def probe(world):
    """The static C probe, in its own folder (bound as a volume on the host view)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the probe")
    d = world / "probe"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    return helpers.compile_probe(d / "probe")


@pytest.fixture(scope="session")
def busybox_root(world, probe):
    """A busybox-static root file system with the probe at /bin/probe."""
    if helpers.BUSYBOX is None:
        pytest.skip("busybox-static is not installed")
    root = helpers.make_busybox_root(world / "rootfs")
    shutil.copy2(probe, root / "bin" / "probe")
    os.chmod(root / "bin" / "probe", 0o755)
    return root


@pytest.fixture
def sroot(tmp_path):
    """A --root state folder for one test."""
    return tmp_path / "sbroot"


@pytest.fixture
def nobody_root(world):
    """A --root and HOME owned by user nobody, for rootless runs."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to user nobody")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    d = Path(os.path.join(world, f"nobody-{os.urandom(4).hex()}"))
    d.mkdir(mode=0o700)
    os.chown(d, helpers.NOBODY, helpers.NOBODY)
    return d


@pytest.fixture(params=["host", "busybox"])
def where(request, busybox_root, probe):
    """Run on the host view (probe bound at /probe) or on the busybox root
    (probe at /bin/probe): a tuple of (CLI args, probe path inside)."""
    if request.param == "host":
        return (["--volume", f"{probe.parent}:/probe:ro,z"], "/probe/probe")
    return (["--rootfs", str(busybox_root)], "/bin/probe")
