"""ACI isolators are honoured or refused by name, never ignored (issue 12).

Attack this closes: an image asking for two capabilities ran with the
default fourteen; an image asking for a CPU limit ran without one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import image_fixtures as fx  # noqa: E402
from helpers import run_sandbox  # noqa: E402

pytestmark = pytest.mark.skipif(not fx.have_busybox(), reason="busybox-static not installed")


def sb(sroot, *args):
    return run_sandbox(sroot, *args, timeout=60)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return fx.busybox_rootfs(tmp_path_factory.mktemp("iso") / "rootfs")


def aci(sroot, tmp_path, rootfs, version, isolators):
    man = fx.aci_manifest(name="example.com/iso", version=version)
    man["app"]["isolators"] = isolators
    fx.write_aci(tmp_path / f"{version}.aci", rootfs, man)
    r = sb(sroot, "image", "import", "--insecure-options=image", str(tmp_path / f"{version}.aci"))
    assert r.returncode == 0, r.stderr
    return f"example.com/iso:{version}"


def test_capability_and_memory_isolators_give_exactly_those(sroot, tmp_path, rootfs):
    name = aci(sroot, tmp_path, rootfs, "caps", [
        {"name": "os/linux/capabilities-retain-set",
         "value": {"set": ["CAP_CHOWN", "CAP_KILL"]}},
        {"name": "resource/memory", "value": {"request": "32Mi", "limit": "64Mi"}}])
    r = sb(sroot, "run", "--insecure-options=image", name, "--", "/bin/sh", "-c",
           "grep -E '^Cap(Eff|Bnd|Prm):' /proc/self/status")
    assert r.returncode == 0, r.stderr
    want = (1 << 0) | (1 << 5)          # CAP_CHOWN, CAP_KILL
    for line in r.stdout.splitlines():
        assert int(line.split()[1], 16) == want, r.stdout
    plan = json.loads(sb(sroot, "run", "--dry-run", "--json", "--insecure-options=image",
                         name, "--", "true").stdout)
    text = json.dumps(plan)
    assert str(64 << 20) in text
    assert "image isolator resource/memory" in text or "limits" in text


def test_remove_set_narrows_the_profile(sroot, tmp_path, rootfs):
    name = aci(sroot, tmp_path, rootfs, "rm", [
        {"name": "os/linux/capabilities-remove-set", "value": {"set": ["CAP_CHOWN"]}}])
    r = sb(sroot, "run", "--insecure-options=image", name, "--", "/bin/sh", "-c",
           "grep '^CapEff:' /proc/self/status")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[1], 16) & 1 == 0


@pytest.mark.parametrize("isolator,words", [
    ({"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}},
     ["resource/cpu", "not supported"]),
    ({"name": "os/linux/capabilities-retain-set", "value": {"set": ["CAP_SYS_ADMIN"]}},
     ["capabilities-retain-set", "CAP_SYS_ADMIN"]),
    ({"name": "os/linux/seccomp-retain-set", "value": {"set": ["read"]}},
     ["os/linux/seccomp-retain-set"]),
])
def test_isolator_that_cannot_be_honoured_refuses_the_launch_by_name(sroot, tmp_path, rootfs,
                                                                     isolator, words):
    name = aci(sroot, tmp_path, rootfs, "bad", [isolator])
    r = sb(sroot, "run", "--insecure-options=image", name, "--", "/bin/echo", "RAN")
    assert r.returncode == 125 and "RAN" not in r.stdout and "Traceback" not in r.stderr
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("sandbox: ")
            and "WARNING" not in ln][0]
    for w in words:
        assert w in line, line
