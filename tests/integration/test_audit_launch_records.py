"""The audit records of real launches where they differed from the synthetic
ones (`sandbox.audit.samples`), and the fixes made for them.

- the runtime's id-map readback is one line (``" ".join(split())``): a
  second mapping line must still be judged (SBX-PRIV-05);
- a payload that exited before the readback has ``effective: null``: the
  kernel-state controls say *unknown*, never pass on it;
- a refused launch says at which stage (an image not in the store is
  ``image``, not ``profile``) and names the refused image's digest;
- a log that cannot be written fails the launch closed, and a refusal
  keeps its own reason;
- the state folder is 0700 once the log is opened, even when planning
  created it first with the umask's mode.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

from sandbox.audit.checks import FAIL, NA, PASS, REGISTRY, Subject  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
    pytest.mark.skipif(helpers.SANDBOX is None, reason="the sandbox CLI is not installed"),
]


def sbx(root, *args, ok=None):
    r = helpers.run_sandbox(root, *args, timeout=60)
    if ok is not None:
        assert r.returncode == ok, (args, r.returncode, r.stdout, r.stderr)
    return r


def records(root) -> list[dict]:
    return [json.loads(x) for x in sbx(root, "audit", "log", "--json", ok=0).stdout.splitlines()]


@pytest.fixture(scope="module")
def real_launch(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-rec") / "root"
    sbx(root, "run", "--", "sleep", "0.2", ok=0)
    [rec] = [r for r in records(root) if r["kind"] == "launch"]
    assert rec["data"]["effective"] is not None
    return root, rec


def _check(name, data, **params):
    return REGISTRY[name].fn(Subject("launch", "record 1", data, 1), **params)


def test_real_uid_map_readback_is_one_line_and_passes_priv_05(real_launch):
    _, rec = real_launch
    m = rec["data"]["effective"]["uid_map"]
    assert "\n" not in m and len(m.split()) == 3
    assert _check("no_host_root_mapping", rec["data"], field="effective.uid_map").status == PASS


@pytest.mark.parametrize("uid_map", [
    "0 100000 65536 65536 0 1",          # two lines, joined as the readback does
    "0 100000 65536\n65536 0 1",         # the same as /proc shows it
    "0 0 4294967295",                    # the host's own map: no user namespace
])
def test_second_id_map_line_mapping_host_root_fails_priv_05(real_launch, uid_map):
    _, rec = real_launch
    d = copy.deepcopy(rec["data"])
    d["effective"]["uid_map"] = uid_map
    o = _check("no_host_root_mapping", d, field="effective.uid_map")
    assert o.status == FAIL and "host root" in o.message


def test_unparseable_id_map_fails_rather_than_passes(real_launch):
    _, rec = real_launch
    d = copy.deepcopy(rec["data"])
    d["effective"]["uid_map"] = "0 100000"
    assert _check("no_host_root_mapping", d, field="effective.uid_map").status == FAIL


def test_null_readback_makes_the_kernel_controls_unknown_not_passed(real_launch):
    _, rec = real_launch
    d = copy.deepcopy(rec["data"])
    d["effective"] = None
    for name, params in (("effective_matches", dict(field="effective.Seccomp", value=2,
                                                    when_field="seccomp.enabled",
                                                    when_value=True)),
                         ("effective_caps_within", dict(field="effective.CapEff")),
                         ("mask_zero", dict(field="effective.CapAmb")),
                         ("no_host_root_mapping", dict(field="effective.uid_map"))):
        o = _check(name, d, **params)
        assert o.status == NA and "not read back" in o.message, (name, o)


def test_image_not_in_store_is_a_typo_not_a_refusal(tmp_path):
    # issue 14: a misspelt name is a usage error; refusals are decisions
    root = tmp_path / "root"
    r = sbx(root, "run", "example.com/not/there:1", "--", "true", ok=125)
    assert "is not in the store" in r.stderr
    assert [x for x in records(root) if x["kind"] == "refusal"] == []


def test_unwritable_log_fails_the_launch_closed_and_keeps_the_refusal_reason(tmp_path):
    root = tmp_path / "root"
    (root / "state" / "audit.db").mkdir(parents=True)     # the log cannot be opened
    r = sbx(root, "run", "--", "sh", "-c", f"touch {tmp_path}/ran")
    assert r.returncode == 125 and "audit log" in r.stderr
    assert not (tmp_path / "ran").exists()                 # the payload never ran
    assert helpers.runtime_leftovers(root) == []
    r = sbx(root, "run", "-p", "no-such-profile", "--", "true", ok=125)
    assert "unknown profile 'no-such-profile'" in r.stderr  # not the audit error
    # a typo is not recorded (issue 14), so no audit error either
    assert "audit" not in r.stderr


def test_state_folder_is_0700_after_the_first_launch(tmp_path):
    """Planning makes state/cache/seccomp with os.makedirs (intermediate
    folders 0755) before the log is first opened."""
    root = tmp_path / "root"
    old = os.umask(0o022)          # the common umask; the CLI inherits it
    try:
        sbx(root, "run", "--", "true", ok=0)
    finally:
        os.umask(old)
    assert (root / "state" / "cache").stat().st_mode & 0o777 == 0o755   # made by planning
    assert (root / "state").stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed")
@pytest.mark.parametrize("expire,img02", [("never", "pass"), ("10d", "fail")])
def test_signed_image_launch_records_its_verification(tmp_path, expire, img02):
    """A real launch of a signed, verified image: the record carries the
    key fingerprint, the matched prefix and the key's expiry; SBX-IMG-01
    passes, SBX-IMG-02 fails for a key expiring within 30 days."""
    import image_fixtures as fx
    if not fx.have_busybox():
        pytest.skip("busybox-static is not installed")
    from sandbox.paths import Paths
    from sandbox.trust import TrustStore, _gpg
    from sandbox.trust._testing import Signer
    root = tmp_path / "root"
    rootfs = fx.busybox_rootfs(tmp_path / "rootfs")
    src = tmp_path / "busybox.aci"
    fx.write_aci(src, rootfs, fx.aci_manifest(version="signed"), compression="gzip")
    with Signer() as s:
        fpr = s.gen_key("Audit Test <audit@example.com>", expire=expire)
        (tmp_path / "busybox.aci.asc").write_bytes(s.sign_detached(fpr, src.read_bytes()))
        pub = s.export(fpr)
    TrustStore(Paths.resolve(root), vendor=None).add(_gpg.dearmor(pub), fpr,
                                                     "example.com/busybox")
    sbx(root, "image", "import", str(src), "--signature", str(tmp_path / "busybox.aci.asc"),
        ok=0)
    sbx(root, "run", "example.com/busybox:signed", "--", "true", ok=0)
    [rec] = [r for r in records(root) if r["kind"] == "launch"]
    img = rec["data"]["image"]
    assert img["ref"] == "example.com/busybox:signed" and img["digest"]
    v = img["verification"]
    assert v["fingerprint"] == fpr and v["prefix"] == "example.com/busybox"
    assert (v["key_expires"] is None) == (expire == "never")
    assert rec["data"]["insecure_options"] == []
    rep = json.loads(sbx(root, "audit", "report", "--format", "json").stdout)
    st = {c["id"]: c["status"] for c in rep["controls"]}
    assert st["SBX-IMG-01"] == "pass"
    assert st["SBX-IMG-02"] == img02
    assert [c["id"] for c in rep["controls"] if c["status"] == "fail"] == (
        ["SBX-IMG-02"] if img02 == "fail" else [])


def test_launch_record_carries_the_package_version_and_io_uring_state(real_launch):
    # issue 13: which release made the record, and control SBX-SECCOMP-04's field
    from importlib import metadata
    _, rec = real_launch
    assert rec["data"]["sandbox_version"] == metadata.version("sandbox")
    assert rec["data"]["seccomp"]["io_uring_allowed"] is False
