"""From inside a sandbox, the payload can neither read nor write the audit
log, its anchor or the host key (issue 4 acceptance; DESIGN §6).

Real launches as root: the sandbox's root is host uid 100000, the state
folder is root's (0700, files 0600). Each test is one attack, run through
``sandbox run``; the probe is the host's python3 (host view), printing the
errno name of each attempt, so the refusal asserted is the exact one. After
every attack ``sandbox audit verify`` still passes and the log holds only
what the launches themselves wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
    pytest.mark.skipif(helpers.SANDBOX is None, reason="the sandbox CLI is not installed"),
    pytest.mark.skipif(not os.path.exists("/usr/bin/python3"),
                       reason="the host view's python3 is the probe"),
]

FILES = ("audit.db", "audit-key", "audit.anchor", "audit.lock", "audit.db-wal", "audit.db-shm")
OPS = ("read", "append", "truncate", "unlink", "rename", "chmod", "chown")

PROBE = r"""
import errno, os, sys
base = sys.argv[1]
def tr(name, fn):
    try:
        fn(); res = "OK"
    except OSError as e:
        res = errno.errorcode[e.errno]
    print(f"{name} {res}")
for f in sys.argv[2].split(","):
    p = os.path.join(base, f)
    tr(f"read {f}", lambda: print(len(open(p, "rb").read(64)), file=sys.stderr))
    tr(f"append {f}", lambda: os.write(os.open(p, os.O_WRONLY | os.O_APPEND), b"x"))
    tr(f"truncate {f}", lambda: os.truncate(p, 0))
    tr(f"unlink {f}", lambda: os.unlink(p))
    tr(f"rename {f}", lambda: os.rename(p, p + ".moved"))
    tr(f"chmod {f}", lambda: os.chmod(p, 0o666))
    tr(f"chown {f}", lambda: os.chown(p, 0, 0))
tr("create new", lambda: os.close(os.open(os.path.join(base, "forged"),
                                          os.O_WRONLY | os.O_CREAT, 0o600)))
tr("list", lambda: os.listdir(base))
"""


@pytest.fixture
def world():
    d = helpers.world_dir("sandbox-audit-reach-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def logged(world):
    """A --root whose audit log exists (one real launch): (root, state)."""
    root = world / "root"
    r = helpers.run_sandbox(root, "run", "--", "true")
    assert r.returncode == 0, r.stderr
    state = root / "state"
    assert (state / "audit.db").exists() and (state / "audit-key").exists()
    return root, state


def snapshot(state: Path) -> dict:
    """Content hash, mode and owner of every audit file."""
    import hashlib
    out = {}
    for f in FILES:
        p = state / f
        if p.exists():
            st = p.stat()
            out[f] = (st.st_mode, st.st_uid, st.st_gid,
                      hashlib.sha256(p.read_bytes()).hexdigest() if f != "audit.db-shm" else None)
    return out


def attack(root, profile: str, spec: str, files=FILES) -> dict[str, str]:
    """Run the probe against the state folder bound at /s with ``spec``
    (e.g. ``ro``, ``rw,Z``); return {"read audit.db": "EACCES", ...}."""
    state = Path(root) / "state"
    r = helpers.run_sandbox(root, "run", "-p", profile, "--volume", f"{state}:/s:{spec}",
                            "--", "/usr/bin/python3", "-c", PROBE, "/s", ",".join(files))
    assert r.returncode == 0, (r.returncode, r.stderr)
    return dict(line.rsplit(" ", 1) for line in r.stdout.splitlines())


def attack_rw(root, base: str) -> dict[str, str]:
    """As `attack`, with the state folder bound read-write. ``:Z`` of
    sandbox's own folders is refused (tests/security/test_relabel_protected.py),
    so the folder is labelled here by hand with the level of a profile
    derived from ``base``: the strongest access an operator could give."""
    state = Path(root) / "state"
    prof = Path(root) / f"{base}-fixed-level.toml"
    prof.write_text(f'name = "{base}-fixed"\nextends = "{base}"\n[label]\nlevel = "s0:c11,c12"\n')
    os.setxattr(state, "user.sandbox.label", b"s0:c11,c12")
    try:
        return attack(root, str(prof), "rw")
    finally:
        os.removexattr(state, "user.sandbox.label")
        prof.unlink()


def assert_log_untouched(root, before: dict, launches: int):
    state = Path(root) / "state"
    after = snapshot(state)
    for f in ("audit-key", "audit.anchor"):
        assert after[f][:3] == before[f][:3], f          # mode and owner unchanged
    assert after["audit-key"] == before["audit-key"]     # the key is not even touched
    for f in after:
        assert after[f][0] & 0o077 == 0 or f.endswith(".pub"), (f, oct(after[f][0]))
    assert not any(p.name.endswith(".moved") or p.name == "forged" for p in state.iterdir())
    v = helpers.run_sandbox(root, "audit", "verify")
    assert v.returncode == 0, (v.stdout, v.stderr)
    recs = [json.loads(x) for x in
            helpers.run_sandbox(root, "audit", "log", "--json").stdout.splitlines()]
    kinds = [r["kind"] for r in recs]
    assert kinds == ["launch", "exit"] * launches, kinds


def test_state_folder_is_0700_root_with_0600_files_after_a_real_launch(logged):
    root, state = logged
    st = state.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o700)
    for f in ("audit.db", "audit-key", "audit.anchor", "audit.lock"):
        st = (state / f).stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), f


def test_cat_db_cat_key_append_anchor_through_ro_volume_is_permission_denied(logged):
    """The brief's attack verbatim: sh, cat and a shell redirection."""
    root, state = logged
    before = snapshot(state)
    r = helpers.run_sandbox(root, "run", "--volume", f"{state}:/s:ro", "--", "sh", "-c",
                            "cat /s/audit.db; cat /s/audit-key; echo x >> /s/audit.anchor; "
                            "ls /s")
    assert r.returncode == 2, r.stderr
    err = r.stderr.splitlines()
    assert "cat: /s/audit.db: Permission denied" in err
    assert "cat: /s/audit-key: Permission denied" in err
    assert any(line.endswith("cannot create /s/audit.anchor: Permission denied") for line in err)
    assert any("/s" in line and "Permission denied" in line and line.startswith("ls:")
               for line in err)
    assert r.stdout == ""
    assert_log_untouched(root, before, launches=2)


def test_read_or_tamper_every_audit_file_through_ro_volume_is_eacces(logged):
    root, state = logged
    before = snapshot(state)
    res = attack(root, "default", "ro")
    expected = {f"{op} {f}": "EACCES" for f in FILES for op in OPS}
    expected.update({"create new": "EACCES", "list": "EACCES"})
    assert res == expected
    assert_log_untouched(root, before, launches=2)


def test_tamper_through_private_rw_volume_is_eacces(logged):
    """Even bound read-write (``:Z``, the only writable form the label
    policy allows), the files and the folder belong to an id the sandbox's
    user namespace does not map."""
    root, state = logged
    before = snapshot(state)
    res = attack_rw(root, "default")
    expected = {f"{op} {f}": "EACCES" for f in FILES for op in OPS}
    expected.update({"create new": "EACCES", "list": "EACCES"})
    assert res == expected
    assert_log_untouched(root, before, launches=2)


def test_dac_override_and_fowner_of_unconfined_root_cannot_reach_the_log(logged):
    """``unconfined`` holds every capability (CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_CHOWN) -- in its user namespace
    only: they do not apply to inodes owned by an unmapped id (host root)."""
    root, state = logged
    before = snapshot(state)
    res = attack_rw(root, "unconfined")
    expected = {f"{op} {f}": "EACCES" for f in FILES for op in OPS}
    expected.update({"create new": "EACCES", "list": "EACCES"})
    assert res == expected
    assert_log_untouched(root, before, launches=2)


def test_reopened_state_folder_is_closed_again_before_the_payload_runs(logged):
    """Someone (or an older version: the seccomp cache used to create the
    state folder with the umask's 0755) opened the folder up: the
    supervisor makes it 0700 again while the child sets up, before the
    payload runs, so even listing it is refused."""
    root, state = logged
    before = snapshot(state)
    os.chmod(state, 0o755)
    res = attack(root, "default", "ro")      # unlabelled, read-only (:z of it is refused)
    expected = {f"{op} {f}": "EACCES" for f in FILES for op in OPS}
    expected.update({"create new": "EACCES", "list": "EACCES"})
    assert res == expected
    assert state.stat().st_mode & 0o777 == 0o700
    assert_log_untouched(root, before, launches=2)


NO_AUDIT = r"""
import sys
from sandbox import Sandbox
root, state, probe, files = sys.argv[1:5]
r = Sandbox(root=root, audit=False, volumes=[f"{state}:/s:ro"]).run(
    ["/usr/bin/python3", "-c", probe, "/s", files])
sys.exit(r.status)
"""


def test_ro_bind_alone_refuses_changes_with_erofs_when_the_folder_is_searchable(logged):
    """Defence in depth, each layer on its own: a launch that does not
    open the log (``audit=False``) leaves a 0755 state folder as it is;
    then the files' 0600 still refuses reading and writing them (EACCES),
    and the read-only bind refuses every change to the folder (EROFS)."""
    root, state = logged
    before = snapshot(state)
    os.chmod(state, 0o755)
    try:
        r = subprocess.run([sys.executable, "-c", NO_AUDIT, str(root), str(state), PROBE,
                            ",".join(FILES)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        res = dict(line.rsplit(" ", 1) for line in r.stdout.splitlines())
    finally:
        os.chmod(state, 0o700)
    for f in FILES:
        assert res[f"read {f}"] == "EACCES", f
        assert res[f"append {f}"] == "EACCES", f
        assert res[f"truncate {f}"] == "EACCES", f
        assert res[f"unlink {f}"] == "EROFS", f
        assert res[f"rename {f}"] == "EROFS", f
        assert (res[f"chmod {f}"], res[f"chown {f}"]) == ("EROFS", "EROFS"), f
    assert res["create new"] == "EROFS"
    assert res["list"] == "OK"
    assert_log_untouched(root, before, launches=1)


@pytest.mark.parametrize("profile", ["default", "strict", "unconfined"])
def test_host_view_without_volume_shows_nothing_of_the_state_folder(logged, profile):
    root, state = logged
    before = snapshot(state)
    script = ("import os, sys\n"
              "for p in sys.argv[1:]:\n"
              "    print(p, os.path.exists(p))\n"
              "m = open('/proc/self/mountinfo').read()\n"
              "print('mountinfo', any(a in m for a in sys.argv[1:3]))\n")
    targets = [str(state), str(root), str(state / "audit.db"), str(state / "audit-key"),
               str(state / "audit.anchor"), "/var/lib/sandbox", str(Path(root).parent)]
    r = helpers.run_sandbox(root, "run", "-p", profile, "--", "/usr/bin/python3", "-c", script,
                            *targets)
    assert r.returncode == 0, r.stderr
    seen = dict(line.rsplit(" ", 1) for line in r.stdout.splitlines())
    assert seen == {**{t: "False" for t in targets}, "mountinfo": "False"}
    assert_log_untouched(root, before, launches=2)


LIBRARY = r"""
import os, sys
from sandbox import Sandbox
root = sys.argv[1]
box = Sandbox(root=root)
box.run(["true"])                      # opens the log in this process and keeps it open
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass
assert any("audit.db" in t for t in fds.values()), fds
print("supervisor-has-log", flush=True)
r = box.run(["/usr/bin/python3", "-c",
             "import os\n"
             "for fd in sorted(os.listdir('/proc/self/fd'), key=int):\n"
             "    try: print('fd', fd, os.readlink('/proc/self/fd/' + fd))\n"
             "    except OSError as e: print('fd', fd, 'unreadable')\n"])
sys.exit(r.status)
"""


def test_payload_inherits_no_descriptor_of_the_open_audit_log(logged):
    """A library caller keeps the log open between launches: the payload
    must not inherit any of its descriptors (it could write through one
    whatever the file's mode)."""
    root, state = logged
    before = snapshot(state)
    r = subprocess.run([sys.executable, "-c", LIBRARY, str(root)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "supervisor-has-log"
    fds = [line.split(" ", 2) for line in lines[1:]]
    assert [fd for _, fd, _ in fds][:3] == ["0", "1", "2"]
    assert all("audit" not in target and str(state) not in target for _, _, target in fds), fds
    assert len(fds) <= 4            # 0-2 and the listing's own descriptor
    assert_log_untouched(root, before, launches=3)
