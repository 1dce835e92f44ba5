"""`:Z`/`:z` and `sandbox label set` never relabel people's or services'
data folders, nor the product's own, nor anything containing them
(issue 13 item 4)."""

from __future__ import annotations

import errno
import os

import pytest

import helpers
from sandbox.labels import volumes
from sandbox.labels.model import Level, LabelRefused
from sandbox.labels.volumes import XATTR, apply_volume_label

ME = Level.parse("s0:c1,c2")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def _label(p):
    try:
        return os.getxattr(p, XATTR)
    except OSError as e:
        assert e.errno in (errno.ENODATA, errno.ENOTSUP)
        return None


@pytest.mark.parametrize("folder", ["/var/log", "/var/spool"])
def test_relabel_of_data_folder_refused(tmp_path, folder):
    if not os.path.isdir(folder):
        pytest.skip(f"{folder} does not exist here")
    before = _label(folder)
    r = helpers.run_sandbox(tmp_path, "label", "set", folder, "s0:c1,c2")
    assert r.returncode == 1, r
    assert r.stderr == (f"sandbox: volume {folder}: relabelling a host data folder is refused; "
                        f"use a sub-folder of its own, e.g. {folder}/volume\n")
    assert _label(folder) == before


@needs_root
@pytest.mark.parametrize("folder", ["/home", "/root", "/var/lib"])
def test_relabel_of_home_refused(tmp_path, sroot, folder):
    before = _label(folder)
    r = helpers.run_sandbox(sroot, "run", "-v", f"{folder}:/x:rw,Z", "--", "/bin/true")
    assert r.returncode == 125, r
    assert r.stderr == (f"sandbox: volume {folder}: relabelling a host system folder is "
                        "refused; use a folder of its own\n")
    r = helpers.run_sandbox(sroot, "label", "set", folder, "s0:c1,c2")
    assert r.returncode == 1 and r.stderr.startswith(f"sandbox: volume {folder}: relabelling")
    assert _label(folder) == before


@needs_root
def test_relabel_of_folder_holding_var_log_refused(tmp_path, sroot):
    r = helpers.run_sandbox(sroot, "run", "-v", "/var:/x:ro,z", "--", "/bin/true")
    assert r.returncode == 125, r
    assert "relabelling a host system folder is refused" in r.stderr


def test_relabel_of_users_home_and_what_contains_it_refused(tmp_path, monkeypatch):
    users = tmp_path / "users"
    home = users / "alice"
    (home / "project").mkdir(parents=True)
    monkeypatch.setattr(volumes, "_home_folders", lambda: [str(home)])
    with pytest.raises(LabelRefused) as e:
        apply_volume_label(home, ME, selinux=False)
    assert e.value.message == (f"volume {home}: relabelling a user's home folder is refused; "
                               f"use a sub-folder of its own, e.g. {home}/volume")
    with pytest.raises(LabelRefused) as e:
        apply_volume_label(users, ME, selinux=False)
    assert e.value.message == (f"volume {users}: relabelling a folder that holds a user's home "
                               f"folder ({home}) is refused; use a sub-folder of its own that "
                               "holds only the volume's files")
    assert _label(home) is None and _label(users) is None
    apply_volume_label(home / "project", ME, selinux=False)
    assert _label(home / "project") == b"s0:c1,c2"


def test_relabel_of_home_through_bind_alias_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    alias = tmp_path / "alias"
    monkeypatch.setattr(volumes, "_home_folders", lambda: [str(home)])
    st = os.stat(home)
    from sandbox import safefs
    monkeypatch.setattr(safefs, "fd_path", lambda fd: str(alias))
    with pytest.raises(LabelRefused, match="a user's home folder"):
        apply_volume_label(home, ME, selinux=False)
    assert st.st_ino == os.stat(home).st_ino and _label(home) is None


def test_relabel_of_own_state_folder_refused(tmp_path):
    root = tmp_path / "sb"
    (root / "state" / "images").mkdir(parents=True)
    for target, why in ((root / "state", f"{root}/state"), (root, f"{root}/config"),
                        (root / "state" / "images", f"{root}/state")):
        r = helpers.run_sandbox(root, "label", "set", str(target), "s0:c1,c2")
        assert r.returncode == 1, r
        assert r.stderr == (f"sandbox: volume {target}: relabelling sandbox's own folder "
                            f"{why} (or a folder holding it) is refused; use a folder "
                            "outside it\n")
        assert _label(target) is None


@needs_root
def test_relabel_of_own_state_folder_at_launch_refused(tmp_path, sroot):
    (sroot / "state").mkdir(parents=True)
    r = helpers.run_sandbox(sroot, "run", "-v", f"{sroot}/state:/x:rw,Z", "--", "/bin/true")
    assert r.returncode == 125, r
    assert r.stderr == (f"sandbox: volume {sroot}/state: relabelling sandbox's own folder "
                        f"{sroot}/state (or a folder holding it) is refused; use a folder "
                        "outside it\n")
    assert _label(sroot / "state") is None


def test_relabel_of_var_log_at_launch_refused(tmp_path):
    with pytest.raises(LabelRefused) as e:
        volumes.decide_volume("/var/log", ME, "ro", relabel="z")
    assert e.value.message == ("volume /var/log: relabelling a host data folder is refused; "
                               "use a sub-folder of its own, e.g. /var/log/volume")
