"""The launch stages of `sandbox.launch` as functions over frozen values:
the request validated once, origins kept through resolve, dry leases that
hold nothing, a pure build, and refusals that carry their stage."""

from __future__ import annotations

import os

import pytest

from sandbox.errors import NotFound, ProfileError, UsageError, VerificationError
from sandbox.launch import record, resolve
from sandbox.launch.build import build_plan
from sandbox.launch.leases import take_leases
from sandbox.launch.request import build_request
from sandbox.launch.run import Refused, prepare_launch
from sandbox.paths import Paths

pytestmark = pytest.mark.filterwarnings("ignore")


def _resolved(paths, request, argv=("/bin/true",)):
    prof = resolve.resolve_profile(request, paths)
    root, _hp = resolve.resolve_root(request)
    ok, missing = resolve.check_host(prof)
    prof = resolve.apply_home(prof, root.kind)
    return resolve.Resolved(prof, root, tuple(argv), None,
                            resolve.compile_seccomp(prof, paths), missing, ok)


def test_request_is_one_validator_for_cli_and_library():
    for bad in (dict(env={"1X": "v"}), dict(user="root:"), dict(user="a/b"), dict(name="a b"),
                dict(insecure_options=("seccomp",)), dict(volumes=["nocolon"]),
                dict(rootfs="/r", image="x")):
        with pytest.raises(UsageError):
            build_request(**bad)
    r = build_request("strict", env={"A": "1"}, user=(1, 2), volumes=["/tmp:/t:rw,Z"])
    assert r.env == (("A", "1"),) and r.user == (1, 2)
    assert r.volumes[0].mode == "rw" and r.volumes[0].relabel == "Z"


def test_home_tmpfs_and_flags_keep_their_origin(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    request = build_request(env={"HOME": "/home/me"}, hostname="h1")
    res = _resolved(paths, request)
    o = dict(res.profile.origins)
    assert o["process.env"] == "flag --env" and o["process.hostname"] == "flag --hostname"
    assert o["filesystem.tmpfs"] == resolve.HOME_ORIGIN
    assert any(t.path == "/home/me" for t in res.profile.filesystem.tmpfs)


class _Rec:
    name, digest, format, layer_dirs = "example.com/app", "sha256:" + "0" * 64, "oci", ()
    config = {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["A=image", "B=image"],
              "WorkingDir": "/srv", "User": "7:8"}


def test_image_config_applied_through_the_profile_with_its_origin(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    request = build_request(image="example.com/app", env={"B": "flag"})
    prof = resolve.resolve_profile(request, paths)
    img = resolve.ImageInfo("example.com/app", _Rec(), None)
    argv, prof = resolve.apply_image_config(prof, img, (), request)
    assert argv == ("/bin/app", "--serve")
    env = dict(prof.process.env)
    assert env["A"] == "image" and env["B"] == "flag"      # the command line wins
    assert (prof.process.workdir, prof.user.uid, prof.user.gid) == ("/srv", 7, 8)
    assert prof.origin("process.workdir") == "image config"
    assert prof.origin("user.uid") == "image config"
    assert prof.origin("process.env") == "flag --env"


def test_dry_leases_hold_nothing_and_build_is_pure(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    request = build_request()
    res = _resolved(paths, request)
    a = take_leases(res, request, paths, "0123456789ab", dry=True)
    assert a.held == () or all(getattr(h, "_fd", None) is None for h in a.held)
    assert not (paths.runtime / "labels").exists() or not os.listdir(paths.runtime / "labels")
    p1 = build_plan(res, a, request, "/run/x")
    p2 = build_plan(res, a, request, "/run/x")
    assert p1 == p2 and p1.digest() == p2.digest()


def test_plan_does_not_relabel_a_volume(tmp_path):
    # :Z is decided with the level lease and written only by the run stage
    vol = tmp_path / "v"
    vol.mkdir()
    paths = Paths.resolve(tmp_path / "r")
    request = build_request(volumes=[f"{vol}:/v:rw,Z"])
    prep = prepare_launch(request, ["/bin/true"], paths, "0123456789ab", dry=True)
    assert any(m.target == "/v" for m in prep.plan.mounts)
    assert all(not n.startswith(("user.sandbox", "security.")) for n in os.listxattr(vol))


@pytest.mark.parametrize("kw,argv,stage,recorded", [
    (dict(profile="no-such-profile"), ["true"], "profile", "profile"),
    (dict(), "true", "request", "usage"),
    (dict(rootfs="/no/such/dir"), ["true"], "root", "usage"),
    (dict(image="example.com/not/there:1"), ["true"], "image", "image"),
])
def test_refusal_carries_its_stage_as_a_value(tmp_path, kw, argv, stage, recorded):
    paths = Paths.resolve(tmp_path / "r")
    with pytest.raises(Refused) as e:
        prepare_launch(build_request(**kw), argv, paths, "0123456789ab", dry=True)
    assert e.value.refusal.stage == stage
    assert record.record_stage(e.value.refusal) == recorded


def test_record_stage_from_stage_and_error():
    assert record.record_stage(record.Refusal("image", VerificationError(
        "x", reason="unsigned"))) == "verification"
    assert record.record_stage(record.Refusal("image", NotFound("x"))) == "image"
    assert record.record_stage(record.Refusal("build", ProfileError("x"))) == "profile"
    assert record.record_stage(record.Refusal("run", UsageError("x"))) == "setup"


def test_launch_records_never_sign_the_audit_head():
    calls = []

    class Log:
        def append(self, kind, data, sign=None):
            calls.append((kind, sign))

    for kind in ("launch", "exit", "insecure-option"):
        record.append_record(None, kind, {}, Log())
    record.append_record(None, "refusal", {}, Log())
    assert calls == [("launch", False), ("exit", False), ("insecure-option", False),
                     ("refusal", None)]
