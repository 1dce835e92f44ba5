"""From inside a real sandbox: Landlock denies what the mounts alone allow.

The label decision grants a volume only read-only (and the runtime mounts
it read-only too); here the mount is made read-write on purpose, as a bug
in the mount layer would, and the payload's write is still refused by
Landlock (and succeeds without it, which shows that Landlock, not the
mount, refused it).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

from sandbox.runtime._landlock import landlock_abi

pytestmark = [pytest.mark.skipif(landlock_abi() < 1, reason="Landlock is not available"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a full sandbox")]


@pytest.fixture
def tmp_path():
    # Volume sources must be reachable by the sandbox's mapped root user:
    # pytest's own folder is 0700, so use a 0755 one under /tmp.
    d = tempfile.mkdtemp(prefix="sandbox-ll-")
    os.chmod(d, 0o755)
    from pathlib import Path
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _run(tmp_path, with_landlock):
    try:
        from sandbox.api import Sandbox
        from sandbox.runtime.spawn import launch
    except ImportError as e:  # pragma: no cover - runtime not in this build
        pytest.skip(f"runtime not available: {e}")
    from sandbox.labels.alloc import allocate_level
    from sandbox.labels.model import Level
    from sandbox.labels.plan import VolumeRequest, build_label_plan
    from sandbox.labels.volumes import apply_volume_label

    ro, rw = tmp_path / "shared", tmp_path / "own"
    for d in (ro, rw):
        d.mkdir()
        os.chmod(d, 0o777)          # DAC allows the mapped ids; only labels decide
    (ro / "f").write_text("shared")
    sb = Sandbox("default", root=str(tmp_path / "root"),
                 volumes=[f"{ro}:/shared:ro", f"{rw}:/own:rw"])
    base = sb.resolve_profile()
    with allocate_level(sb.paths, owner="t") as lease:
        # the sandbox runs at the lease's level (planned without a second lease)
        prof = base._replace(optional=base.optional | {"landlock"},
                             label=base.label._replace(level=str(lease.level)))
        sb.resolve_profile = lambda: prof
        apply_volume_label(ro, Level(0), selinux=False)
        apply_volume_label(rw, lease.level, selinux=False)
        lp = build_label_plan(prof, lease.level, [
            VolumeRequest(str(ro), "/shared", "ro"), VolumeRequest(str(rw), "/own", "rw")])
        probe = ("echo x > /shared/g 2>/dev/null; echo shared=$? > /own/out; "
                 "cat /shared/f >/dev/null; echo read=$? >> /own/out; "
                 "exec 3>/own/via-fd && echo ok >&3; echo own=$? >> /own/out")
        plan = sb.plan(["/bin/sh", "-c", probe])
        # The label grants /shared read-only and the runtime mounts it so;
        # to show Landlock refuses on its own, mount it read-write here, as
        # a mistake in the mount layer would.
        plan = plan._replace(mounts=tuple(
            m._replace(options="rw") if m.op == "bind" and m.target == "/shared"
            else m for m in plan.mounts))
        assert any(m.target == "/shared" and m.options == "rw" for m in plan.mounts)
        if with_landlock:
            plan = plan._replace(landlock=lp.landlock,
                                 landlock_abi=lp.landlock_abi, missing=())
        else:
            plan = plan._replace(landlock=(), landlock_abi=0)
        from sandbox.errors import HostSupportError
        try:
            res = launch(plan)
        except HostSupportError as e:  # pragma: no cover - host limits
            pytest.skip(f"cannot launch a sandbox here: {e}")
    assert res.status == 0
    return dict(line.split("=") for line in (rw / "out").read_text().split())


def test_write_into_volume_granted_read_only_is_denied_by_landlock_inside(tmp_path):
    assert _run(tmp_path, True) == {"shared": "2", "read": "0", "own": "0"}
    assert not (tmp_path / "shared" / "g").exists()


def test_same_write_succeeds_without_landlock_so_landlock_is_what_refuses(tmp_path):
    assert _run(tmp_path, False)["shared"] == "0"
