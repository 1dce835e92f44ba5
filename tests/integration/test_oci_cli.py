"""sandbox-oci's runc command line, end to end on a busybox bundle (root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import helpers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the OCI runtime tests run as root")

OCI = str(Path(sys.executable).parent / "sandbox-oci")


def oci(root, *args, timeout=30, input=None):
    return subprocess.run([OCI, "--root", str(root), *args], capture_output=True, text=True,
                          timeout=timeout, input=input)


def config(args, **linux):
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2",
        "process": {"args": args, "env": ["PATH=/bin"], "cwd": "/",
                    "user": {"uid": 0, "gid": 0}, "noNewPrivileges": True,
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")}},
        "root": {"path": "rootfs"},
        "hostname": "oci",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "mode=755"]},
                   {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}],
        "linux": dict({"namespaces": [{"type": t} for t in
                                      ("pid", "network", "ipc", "uts", "mount")],
                       "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
                      **linux),
    }


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    if helpers.BUSYBOX is None:
        pytest.skip("busybox-static is not installed")
    return helpers.make_busybox_root(tmp_path_factory.mktemp("ocirootfs") / "rootfs")


@pytest.fixture
def bundle(tmp_path, rootfs):
    b = tmp_path / "bundle"
    b.mkdir()
    os.symlink(rootfs, b / "rootfs")

    def make(args, **linux):
        (b / "config.json").write_text(json.dumps(config(args, **linux)))
        return b
    return make


_CREATED: list[tuple[str, str]] = []


@pytest.fixture(autouse=True)
def _delete_leftovers():
    """A test that fails between create and delete leaves no container
    behind (a created one would wait for `start` forever)."""
    yield
    while _CREATED:
        root, cid = _CREATED.pop()
        if os.path.isdir(os.path.join(root, cid)):
            oci(root, "delete", "--force", cid)


def create(root, b, cid, *extra, out=None):
    """``create``, its stdio on files: the container's process keeps the
    caller's stdout and stderr (as runc's does), so a pipe never ends."""
    _CREATED.append((str(root), cid))
    out = out or open(os.devnull, "w")
    err = open(Path(root).parent / f"{cid}.err", "w+")
    r = subprocess.run([OCI, "--root", str(root), "create", "--bundle", str(b), *extra, cid],
                       stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=30)
    err.seek(0)
    return r.returncode, err.read()


def _until(seconds):
    """Poll steps until a deadline (a loaded machine slows every step)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield
        time.sleep(0.02)


def _state(root, cid):
    r = oci(root, "state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


C1, C2, C3, C4 = (f"test-oci-{n}-{uuid.uuid4().hex[:8]}" for n in range(4))


def test_create_start_state_delete(tmp_path, bundle):
    b = bundle(["/bin/sh", "-c", "echo out-$(hostname) > /tmp/x; cat /tmp/x"])
    root = tmp_path / "state"
    out = open(tmp_path / "out", "w+")
    rc, err = create(root, b, C1, "--pid-file", str(tmp_path / "pid"), out=out)
    assert rc == 0, err
    st = _state(root, C1)
    assert st["status"] == "created" and st["bundle"] == str(b) and st["id"] == C1
    assert int((tmp_path / "pid").read_text()) == st["pid"] > 0
    assert oci(root, "start", C1).returncode == 0
    for _ in _until(15):
        if _state(root, C1)["status"] == "stopped":
            break
    assert _state(root, C1)["status"] == "stopped"
    out.seek(0)
    assert out.read() == "out-oci\n"
    assert oci(root, "delete", C1).returncode == 0
    assert not (root / C1).exists()
    assert not any(C1 in p for p in os.listdir("/sys/fs/cgroup/freezer/sandbox-oci")) \
        if os.path.isdir("/sys/fs/cgroup/freezer/sandbox-oci") else True


def test_kill_running_container_and_delete_rules(tmp_path, bundle):
    b = bundle(["/bin/sleep", "60"])
    root = tmp_path / "state"
    rc, err = create(root, b, C2)
    assert rc == 0, err
    assert oci(root, "start", C2).returncode == 0
    assert _state(root, C2)["status"] == "running"
    d = oci(root, "delete", C2)
    assert d.returncode == 1 and f"cannot delete container {C2}: it is running" in d.stderr
    ps = oci(root, "ps", "--format", "json", C2)
    assert json.loads(ps.stdout)
    lst = oci(root, "list", "-q")
    assert lst.stdout.split() == [C2]
    assert oci(root, "kill", C2, "KILL").returncode == 0
    for _ in _until(15):
        if _state(root, C2)["status"] == "stopped":
            break
    assert _state(root, C2)["status"] == "stopped"
    k = oci(root, "kill", C2)
    assert k.returncode == 1 and "it is stopped" in k.stderr
    assert oci(root, "delete", C2).returncode == 0


def test_delete_force_of_created_container(tmp_path, bundle):
    b = bundle(["/bin/true"])
    root = tmp_path / "state"
    rc, err = create(root, b, C3)
    assert rc == 0, err
    pid = _state(root, C3)["pid"]
    assert oci(root, "delete", "--force", C3).returncode == 0
    assert not (root / C3).exists()
    assert not os.path.exists(f"/proc/{pid}/status") or \
        "State:\tZ" in Path(f"/proc/{pid}/status").read_text()


def test_duplicate_id_refused(tmp_path, bundle):
    b = bundle(["/bin/true"])
    root = tmp_path / "state"
    assert create(root, b, C4)[0] == 0
    rc, err = create(root, b, C4)
    assert rc == 1 and f"container {C4} already exists" in err
    assert oci(root, "delete", "-f", C4).returncode == 0


@pytest.mark.parametrize("case", ["no-config", "broken-json", "major-2", "no-root",
                                  "escaping-mount"])
def test_bad_bundle_one_line_nothing_left(tmp_path, bundle, case):
    b = bundle(["/bin/true"])
    cfg = json.loads((b / "config.json").read_text())
    expect = {"no-config": "config.json: no such file", "broken-json": "not valid JSON",
              "major-2": "ociVersion 2.0 is not supported", "no-root": "no such folder",
              "escaping-mount": "which leaves the root"}[case]
    if case == "no-config":
        (b / "config.json").unlink()
    elif case == "broken-json":
        (b / "config.json").write_text('{"ociVersion": ')
    elif case == "major-2":
        cfg["ociVersion"] = "2.0"
    elif case == "no-root":
        cfg["root"]["path"] = "missing"
    else:
        os.symlink("../../../../../../tmp", b / "escape")
        cfg["root"]["path"] = str(b)        # a root holding the escaping link
        cfg["mounts"].append({"destination": "/escape/x", "type": "tmpfs"})
    if case in ("major-2", "no-root", "escaping-mount"):
        (b / "config.json").write_text(json.dumps(cfg))
    root = tmp_path / "state"
    r = oci(root, "create", "-b", str(b), "bad")
    assert r.returncode == 1
    assert expect in r.stderr and len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert "Traceback" not in r.stderr
    assert not (root / "bad").exists()


def test_global_options(tmp_path):
    v = subprocess.run([OCI, "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and "spec: 1." in v.stdout
    s = subprocess.run([OCI, "--systemd-cgroup", "list"], capture_output=True, text=True)
    assert s.returncode == 2 and len(s.stderr.strip().splitlines()) <= 2
    f = subprocess.run([OCI, "features"], capture_output=True, text=True)
    feat = json.loads(f.stdout)
    assert feat["ociVersionMax"].startswith("1.") and "pid" in feat["linux"]["namespaces"]
    log = tmp_path / "log.json"
    r = subprocess.run([OCI, "--root", str(tmp_path), "--log", str(log), "--log-format",
                        "json", "state", "nope"], capture_output=True, text=True)
    assert r.returncode == 1
    rec = json.loads(log.read_text().splitlines()[-1])
    assert rec["level"] == "error" and "container nope does not exist" in rec["msg"]


def _audit_kinds(sroot, cid):
    from sandbox.audit.log import AuditLog
    from sandbox.paths import Paths
    log = AuditLog(Paths.resolve(sroot))
    try:
        return [(r.kind, r.data) for r in log.records()
                if r.data.get("sandbox_id") == cid]
    finally:
        log.close()


def test_weak_config_refused_by_policy_and_recorded(tmp_path, bundle, monkeypatch):
    sroot = tmp_path / "sandbox-root"
    monkeypatch.setenv("SANDBOX_ROOT", str(sroot))
    b = bundle(["/bin/true"])
    root = tmp_path / "state"
    cid = f"test-oci-policy-{uuid.uuid4().hex[:8]}"
    rc, err = create(root, b, cid, "--policy", "strict")
    assert rc == 1
    assert err.splitlines()[0].startswith("refused by policy strict: ")
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
    assert not (root / cid).exists()
    recs = _audit_kinds(sroot, cid)
    assert [k for k, _ in recs] == ["refusal"]
    assert recs[0][1]["stage"] == "policy" and recs[0][1]["policy"] == "strict"


def test_policy_annotation_is_enforced(tmp_path, bundle, monkeypatch):
    monkeypatch.setenv("SANDBOX_ROOT", str(tmp_path / "sandbox-root"))
    b = bundle(["/bin/true"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["annotations"] = {"run.sandbox.policy": "default"}
    (b / "config.json").write_text(json.dumps(cfg))
    rc, err = create(tmp_path / "state", b, f"test-oci-ann-{uuid.uuid4().hex[:8]}")
    assert rc == 1 and err.startswith("refused by policy default: ")


def test_create_start_exit_recorded_in_the_audit_chain(tmp_path, bundle, monkeypatch):
    sroot = tmp_path / "sandbox-root"
    monkeypatch.setenv("SANDBOX_ROOT", str(sroot))
    b = bundle(["/bin/sh", "-c", "exit 3"])
    root = tmp_path / "state"
    cid = f"test-oci-audit-{uuid.uuid4().hex[:8]}"
    rc, err = create(root, b, cid)
    assert rc == 0, err
    assert oci(root, "start", cid).returncode == 0
    for _ in _until(15):
        if _state(root, cid)["status"] == "stopped" and \
                "exit" in [k for k, _ in _audit_kinds(sroot, cid)]:
            break
    recs = _audit_kinds(sroot, cid)
    assert [k for k, _ in recs] == ["launch", "oci.start", "exit"]
    launch = recs[0][1]
    assert launch["runtime"] == "sandbox-oci" and launch["no_new_privs"] is True
    assert launch["effective"]["NoNewPrivs"] == 1
    assert recs[2][1]["status"] == 3
    assert oci(root, "delete", cid).returncode == 0
    v = subprocess.run([str(Path(sys.executable).parent / "sandbox"), "--root", str(sroot),
                        "audit", "verify"], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr


def test_exec_runs_confined_in_the_running_container(tmp_path, bundle):
    b = bundle(["/bin/sleep", "60"])
    root = tmp_path / "state"
    cid = f"test-oci-exec-{uuid.uuid4().hex[:8]}"
    rc, err = create(root, b, cid)
    assert rc == 0, err
    try:
        assert oci(root, "start", cid).returncode == 0
        r = oci(root, "exec", cid, "/bin/sh", "-c",
                "hostname; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; exit 7")
        assert r.returncode == 7, r.stderr
        lines = r.stdout.split()
        assert lines[0] == "oci"
        st = dict(zip(lines[1::2], lines[2::2]))
        assert st["NoNewPrivs:"] == "1"
        from sandbox.capabilities import from_mask
        assert from_mask(int(st["CapEff:"], 16)) <= {"CAP_CHOWN", "CAP_KILL", "CAP_AUDIT_WRITE",
                                                     "CAP_NET_BIND_SERVICE"}
        d = oci(root, "exec", "--detach", cid, "/bin/true")
        assert d.returncode == 2 and "--detach is not supported yet" in d.stderr
    finally:
        oci(root, "delete", "--force", cid)


def test_runc_spec_default_config_runs(tmp_path, rootfs):
    """`runc spec`'s config lists ambient capabilities without inheritable
    ones: the kernel cannot raise those, and they are left out, not fatal."""
    import shutil
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    b = tmp_path / "bundle"
    b.mkdir()
    os.symlink(rootfs, b / "rootfs")
    subprocess.run(["runc", "spec"], cwd=b, check=True)
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"].update(terminal=False, args=["/bin/sh", "-c",
                                                "grep -E '^Cap(Amb|Eff):' /proc/self/status"])
    (b / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    r = subprocess.run([OCI, "--root", str(tmp_path / "state"), "run", "--bundle", str(b),
                        f"test-oci-spec-{uuid.uuid4().hex[:8]}"], stdout=open(out, "w"),
                       stderr=subprocess.PIPE, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    st = dict(line.split(":\t") for line in out.read_text().splitlines())
    from sandbox.capabilities import from_mask
    assert from_mask(int(st["CapEff"], 16)) == set(cfg["process"]["capabilities"]["effective"])
    assert int(st["CapAmb"], 16) == 0


def test_rootless_run_as_nobody(rootfs):
    """An unprivileged user runs a container in a user namespace mapping
    only its own id; no cgroup is needed."""
    import shutil
    w = helpers.world_dir("oci-rootless-")
    try:
        os.chmod(w, 0o777)
        shutil.copytree(rootfs, w / "rootfs", symlinks=True)
        subprocess.run(["chown", "-R", "-h", "65534:65534", str(w / "rootfs")], check=True)
        cfg = config(["/bin/sh", "-c", "cat /proc/self/uid_map"])
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 65534, "size": 1}]
        cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 65534, "size": 1}]
        (w / "config.json").write_text(json.dumps(cfg))
        os.chmod(w / "config.json", 0o644)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            "env", f"HOME={w}", OCI, "--root", str(w / "state"), "run",
                            "--bundle", str(w), "rootless1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=60, cwd=w)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["0", "65534", "1"]
        assert not (w / "state" / "rootless1").exists()
    finally:
        shutil.rmtree(w, ignore_errors=True)


def test_terminal_through_console_socket(tmp_path, bundle):
    """process.terminal with --console-socket: the master of a new pty comes
    over the socket; the process has it as its controlling terminal."""
    import socket
    b = bundle(["/bin/sh", "-c", "tty; test -t 0 && echo interactive"])
    cfg = json.loads((b / "config.json").read_text())
    cfg["process"]["terminal"] = True
    cfg["mounts"].append({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                          "options": ["newinstance", "ptmxmode=0666", "mode=0620"]})
    (b / "config.json").write_text(json.dumps(cfg))
    sock_path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    root = tmp_path / "state"
    cid = f"test-oci-tty-{uuid.uuid4().hex[:8]}"
    try:
        rc, err = create(root, b, cid, "--console-socket", sock_path)
        assert rc == 0, err
        conn, _ = srv.accept()
        msg, fds, _f, _a = socket.recv_fds(conn, 1024, 1)
        conn.close()
        assert msg.startswith(b"/dev/pts/") and len(fds) == 1
        assert oci(root, "start", cid).returncode == 0
        out = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and b"interactive" not in out:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(fds[0])
        assert b"interactive" in out, out
        bad = oci(root, "create", "-b", str(b), "--console-socket", str(tmp_path / "nope"),
                  cid + "x")
        assert bad.returncode == 2 and "--console-socket" in bad.stderr
        assert not (root / (cid + "x")).exists()
    finally:
        srv.close()
        oci(root, "delete", "--force", cid)


@pytest.mark.skipif(not os.path.exists("/sys/fs/cgroup/freezer/cgroup.procs"),
                    reason="no cgroup v1 freezer")
def test_pause_and_resume(tmp_path, bundle):
    b = bundle(["/bin/sleep", "60"])
    root = tmp_path / "state"
    cid = f"test-oci-pause-{uuid.uuid4().hex[:8]}"
    assert create(root, b, cid)[0] == 0
    try:
        assert oci(root, "start", cid).returncode == 0
        assert oci(root, "pause", cid).returncode == 0
        assert _state(root, cid)["status"] == "paused"
        pid = _state(root, cid)["pid"]
        assert Path(f"/proc/{pid}/status").read_text().split("State:\t")[1][0] in "DS"
        again = oci(root, "resume", cid)
        assert again.returncode == 0 and _state(root, cid)["status"] == "running"
        bad = oci(root, "resume", cid)
        assert bad.returncode == 1 and "not paused" in bad.stderr
        assert oci(root, "pause", cid).returncode == 0
        d = oci(root, "delete", "--force", cid)      # frozen: thawed to die
        assert d.returncode == 0, d.stderr
        assert not (root / cid).exists()
    finally:
        oci(root, "delete", "--force", cid)
