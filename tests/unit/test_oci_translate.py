"""config.json -> LaunchPlan (sandbox.oci.translate): pure, no privilege."""

from __future__ import annotations

import json
import os

import pytest

from sandbox.oci.translate import BundleError, build_plan, load_bundle


def _config(**over):
    cfg = {
        "ociVersion": "1.0.2",
        "process": {"args": ["/bin/sh", "-c", "true"], "env": ["PATH=/bin", "A=b=c"],
                    "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "capabilities": {k: ["CAP_CHOWN", "CAP_KILL"] for k in
                                     ("bounding", "effective", "permitted")},
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "box",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
                   {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                   {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                    "options": ["nosuid", "noexec", "nodev", "mode=1777"]}],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                        "mount")],
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
    }
    for k, v in over.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


def _bundle(tmp_path, cfg=None, raw=None):
    (tmp_path / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(raw if raw is not None else json.dumps(cfg or _config()))
    return str(tmp_path)


def _plan(tmp_path, cfg=None):
    return build_plan(load_bundle(_bundle(tmp_path, cfg)), "c1", str(tmp_path / "base"),
                      seccomp_dir=str(tmp_path))


def test_plan_from_a_plain_config(tmp_path):
    p = _plan(tmp_path)
    assert p.argv == ("/bin/sh", "-c", "true")
    assert p.env == (("PATH", "/bin"), ("A", "b=c"))
    assert p.namespaces == ("mount", "pid", "net", "uts", "ipc")
    assert set(p.shared_namespaces) == {"user", "cgroup"}
    assert p.idmap is None and p.no_new_privs and p.hostname == "box"
    assert p.capability_sets[0] == ("CAP_CHOWN", "CAP_KILL")
    assert p.capability_sets[3:] == ((), ())
    ops = [(m.op, m.target) for m in p.mounts]
    assert ops[0] == ("root-bind", "/")
    assert ("tmpfs", "/dev/shm") in ops and ("bind", "/dev/null") in ops
    assert ops.index(("mask", "/proc/kcore")) < ops.index(("readonly", "/proc/sys")) \
        < ops.index(("remount-ro", "/"))
    shm = next(m for m in p.mounts if m.target == "/dev/shm")
    assert shm.source == "shm" and "strictatime" not in shm.options
    assert p.digest().startswith("sha256:")
    assert any("root-bind" in line for line in p.describe())


def test_missing_config_json_named(tmp_path):
    with pytest.raises(BundleError, match="config.json: no such file"):
        load_bundle(str(tmp_path))


def test_broken_json_named(tmp_path):
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(_bundle(tmp_path, raw="{"))


def test_unknown_major_version_refused(tmp_path):
    with pytest.raises(BundleError, match="ociVersion 2.0.0 is not supported"):
        load_bundle(_bundle(tmp_path, _config(ociVersion="2.0.0")))


def test_missing_root_named(tmp_path):
    cfg = _config(root={"path": "nope"})
    with pytest.raises(BundleError, match="root.path .*nope: no such folder"):
        _plan(tmp_path, cfg)


def test_mount_destination_escaping_through_symlink_refused(tmp_path):
    (tmp_path / "rootfs").mkdir()
    os.symlink("../../../etc", tmp_path / "rootfs" / "evil")
    cfg = _config()
    cfg["mounts"].append({"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"})
    with pytest.raises(BundleError, match=r"mounts\[3\].destination '/evil/x' goes through "
                                          r"the symlink /evil -> ../../../etc, which leaves "
                                          r"the root"):
        _plan(tmp_path, cfg)


def test_absolute_symlink_in_destination_resolved_inside_the_root(tmp_path):
    (tmp_path / "rootfs" / "run").mkdir(parents=True)
    (tmp_path / "rootfs" / "var").mkdir()
    os.symlink("/run", tmp_path / "rootfs" / "var" / "run")
    cfg = _config()
    cfg["mounts"].append({"destination": "/var/run/secrets", "type": "tmpfs"})
    p = _plan(tmp_path, cfg)
    assert ("tmpfs", "/run/secrets") in [(m.op, m.target) for m in p.mounts]


def test_non_namespaced_sysctl_refused(tmp_path):
    cfg = _config()
    cfg["linux"]["sysctl"] = {"vm.overcommit_memory": "1"}
    with pytest.raises(BundleError, match="vm.overcommit_memory.*not namespaced"):
        _plan(tmp_path, cfg)


def test_namespaced_sysctl_becomes_a_step(tmp_path):
    cfg = _config()
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "100"}
    p = _plan(tmp_path, cfg)
    assert set(p.sysctls) == {("net.ipv4.ip_forward", "1"), ("kernel.shmmax", "100")}


def test_terminal_without_console_socket_refused(tmp_path):
    cfg = _config()
    cfg["process"]["terminal"] = True
    with pytest.raises(BundleError, match="terminal is true but no --console-socket"):
        _plan(tmp_path, cfg)


def test_unsupported_fields_refused_not_ignored(tmp_path):
    for key, val, msg in (("apparmorProfile", "x", "process.apparmorProfile"),
                          ("selinuxLabel", "x", "process.selinuxLabel")):
        cfg = _config()
        cfg["process"][key] = val
        with pytest.raises(BundleError, match=msg):
            _plan(tmp_path, cfg)
    cfg = _config()
    cfg["linux"]["namespaces"].append({"type": "time"})
    with pytest.raises(BundleError, match="'time'"):
        _plan(tmp_path, cfg)
    cfg = _config()
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x"}
    with pytest.raises(BundleError, match="listenerPath"):
        _plan(tmp_path, cfg)


def test_no_mount_namespace_refused(tmp_path):
    cfg = _config()
    cfg["linux"]["namespaces"] = [{"type": "pid"}]
    with pytest.raises(BundleError, match="mount"):
        _plan(tmp_path, cfg)


def test_user_namespace_maps(tmp_path):
    cfg = _config()
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    p = _plan(tmp_path, cfg)
    assert p.idmap.uid_map == "0 100000 65536\n" and p.idmap.host_gid == 200000


def test_unknown_capability_refused(tmp_path):
    cfg = _config()
    cfg["process"]["capabilities"]["bounding"] = ["CAP_NOPE"]
    with pytest.raises(BundleError, match="unknown capability 'CAP_NOPE'"):
        _plan(tmp_path, cfg)


def test_default_plans_unchanged_by_the_oci_fields():
    from sandbox.runtime.plan import LaunchPlan
    p = LaunchPlan(*(["x"] * 4), (), (), "/", "h", 0, 0, (), (), None, "/b", "dir", (),
                   (), True, (), None, None)
    d = p.to_dict()
    for key in ("sysctls", "join_namespaces", "additional_gids", "umask", "oom_score_adj",
                "root_propagation", "controlling_tty", "capability_sets"):
        assert key not in d


# ------------------------------------------------------- the hardening floor

def _strict_config():
    from sandbox.profile.load import load
    prof = load("default")
    cfg = _config()
    caps = sorted(prof.capabilities)
    cfg["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    cfg["linux"]["namespaces"] = [{"type": t} for t in ("pid", "network", "ipc", "uts",
                                                         "mount", "user", "cgroup")]
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["maskedPaths"] = list(prof.filesystem.masked_paths)
    cfg["linux"]["readonlyPaths"] = list(prof.filesystem.read_only_paths)
    cfg["linux"]["resources"] = {"memory": {"limit": prof.limits.memory},
                                 "pids": {"limit": prof.limits.pids}}
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO",
                               "syscalls": [{"names": ["read", "write", "exit_group"],
                                             "action": "SCMP_ACT_ALLOW"}]}
    return prof, cfg


def test_floor_accepts_a_config_as_strong_as_the_profile(tmp_path):
    from sandbox.oci.policy import check_floor
    prof, cfg = _strict_config()
    check_floor(prof, _plan(tmp_path, cfg), cfg)


@pytest.mark.parametrize("weaken, field", [
    (lambda c: c["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN"),
     "process.capabilities.bounding has CAP_SYS_ADMIN"),
    (lambda c: c["process"]["capabilities"].update(ambient=["CAP_CHOWN"],
                                                   inheritable=["CAP_NET_RAW", "CAP_SYS_PTRACE"]),
     "process.capabilities.inheritable has CAP_SYS_PTRACE"),
    (lambda c: c["process"].update(noNewPrivileges=False), "process.noNewPrivileges"),
    (lambda c: c["linux"].pop("seccomp"), "linux.seccomp is missing"),
    (lambda c: c["linux"]["seccomp"].update(defaultAction="SCMP_ACT_ALLOW"),
     "linux.seccomp.defaultAction SCMP_ACT_ALLOW"),
    (lambda c: (c["linux"]["namespaces"].remove({"type": "user"}),
                c["linux"].pop("uidMappings"), c["linux"].pop("gidMappings")),
     "linux.namespaces lacks a new user namespace"),
    (lambda c: c["linux"]["maskedPaths"].remove("/proc/kcore"),
     "linux.maskedPaths lacks /proc/kcore"),
    (lambda c: c["root"].update(readonly=False), "root.readonly must be true"),
    (lambda c: c["linux"]["resources"].pop("pids"), "linux.resources.pids.limit"),
    (lambda c: c.update(hooks={"prestart": [{"path": "/bin/sh"}]}),
     "hooks.prestart runs a program on the host"),
])
def test_config_weaker_than_the_floor_refused_naming_the_field(tmp_path, weaken, field):
    from sandbox.oci.policy import PolicyRefusal, check_floor
    prof, cfg = _strict_config()
    weaken(cfg)
    with pytest.raises(PolicyRefusal) as e:
        check_floor(prof, _plan(tmp_path, cfg), cfg)
    assert str(e.value).startswith(f"refused by policy default: {field}")
    assert len(e.value.lines()) == 2


def test_annotation_adds_a_floor_never_replaces_the_operators(tmp_path):
    from sandbox.oci.policy import floors
    (tmp_path / "oci.toml").write_text('policy = "strict"\n')
    cfg = {"annotations": {"run.sandbox.policy": "unconfined"}}
    assert floors("default", cfg, tmp_path) == ["default", "strict", "unconfined"]
    assert floors(None, {}, tmp_path / "none") == []


@pytest.mark.parametrize("weaken, field", [
    (lambda c: c["linux"]["seccomp"]["syscalls"].append(
        {"names": ["mount", "bpf"], "action": "SCMP_ACT_ALLOW"}),
     "linux.seccomp.syscalls allows bpf, mount, which the profile's filter does not"),
    (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 0, "size": 65536}],
                                 gidMappings=[{"containerID": 0, "hostID": 100000,
                                               "size": 65536}]),
     "linux.uidMappings maps the host's root"),
    (lambda c: c["mounts"].append({"destination": "/host", "type": "bind", "source": "/",
                                   "options": ["rbind", "ro"]}),
     "mounts[3].source binds the host's /"),
    (lambda c: c["mounts"].append({"destination": "/hp", "type": "none", "source": "/proc/1",
                                   "options": ["bind"]}),
     "mounts[3].source binds the host's /proc/1"),
])
def test_floor_bypass_attempts_refused(tmp_path, weaken, field):
    from sandbox.oci.policy import PolicyRefusal, check_floor
    prof, cfg = _strict_config()
    weaken(cfg)
    with pytest.raises(PolicyRefusal) as e:
        check_floor(prof, _plan(tmp_path, cfg), cfg)
    assert str(e.value).startswith(f"refused by policy default: {field}")
