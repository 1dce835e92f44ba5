"""Reports: the mixed-run acceptance test of issue 4, profiles, --fail-on."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sandbox.audit import AuditLog, record_event, samples
from sandbox.audit.controls import load_controls
from sandbox.audit.report import build_report, evaluate
from sandbox.cli import cli
from sandbox.paths import Paths


@pytest.fixture
def mixed(tmp_path):
    """default, strict (image key expiring soon), unconfined, an insecure
    option (unsigned image), and a refused launch. Returns (paths, seqs)."""
    p = Paths.resolve(tmp_path)
    seqs = {}
    seqs["default"] = record_event(p, "launch", samples.launch("default", "sb-default"))
    record_event(p, "exit", samples.exit_("sb-default"))
    seqs["strict"] = record_event(p, "launch", samples.launch(
        "strict", "sb-strict",
        image=samples.image(expires=samples.days_from_now(10))))
    record_event(p, "exit", samples.exit_("sb-strict"))
    seqs["unconfined"] = record_event(p, "launch", samples.launch("unconfined", "sb-unconf"))
    record_event(p, "exit", samples.exit_("sb-unconf", status=137, signal=9))
    seqs["insecure-event"] = record_event(p, "insecure-option",
                                          {"sandbox_id": "sb-insecure", "option": "image"})
    seqs["insecure"] = record_event(p, "launch", samples.launch(
        "default", "sb-insecure", insecure_options=["image"],
        image=samples.image("example.com/tool:2", signed=False)))
    record_event(p, "exit", samples.exit_("sb-insecure"))
    seqs["refusal"] = record_event(p, "refusal", samples.refusal("sb-refused"))
    return p, seqs


EXPECTED_UNCONFINED = {
    "SBX-CAP-01", "SBX-PRIV-01", "SBX-PRIV-03", "SBX-SECCOMP-01", "SBX-FS-01",
    "SBX-LANDLOCK-01", "SBX-LIMIT-01", "SBX-LIMIT-02", "SBX-LIMIT-03", "SBX-CGROUP-01",
}


def test_mixed_run_fails_exactly_the_expected_controls_with_evidence(mixed):
    p, seqs = mixed
    log = AuditLog(p)
    rep = build_report(log)
    log.close()
    failed = {r.control.id: r for r in rep.results if r.status == "fail"}
    # the insecure-option event belongs to a recorded launch: SBX-PRIV-02
    # fails on the launch and SBX-PRIV-06 does not fire for the same act
    expected = EXPECTED_UNCONFINED | {"SBX-PRIV-02", "SBX-IMG-01", "SBX-IMG-02", "SBX-LOG-02"}
    assert set(failed) == expected

    def seqs_of(cid):
        return sorted(e.seq for e in failed[cid].failures)

    for cid in EXPECTED_UNCONFINED:
        assert seqs_of(cid) == [seqs["unconfined"]], cid
    assert seqs_of("SBX-PRIV-02") == [seqs["insecure"]]
    assert seqs_of("SBX-IMG-01") == [seqs["insecure"]]
    assert seqs_of("SBX-IMG-02") == [seqs["strict"]]
    assert seqs_of("SBX-LOG-02") == [seqs["refusal"]]
    assert failed["SBX-PRIV-02"].failures[0].sandbox_id == "sb-insecure"

    passed = {r.control.id: r for r in rep.results if r.status == "pass"}
    # every launch was checked by a launch control, the chain verified
    assert {e.seq for e in passed["SBX-NS-PID"].evidence} == {
        seqs["default"], seqs["strict"], seqs["unconfined"], seqs["insecure"]}
    assert "SBX-LOG-01" in passed and "SBX-LOG-03" in passed
    assert rep.launches == 4 and rep.records == 10 and rep.head == 10


def test_the_default_launch_alone_passes_every_control(tmp_path):
    p = Paths.resolve(tmp_path)
    record_event(p, "launch", samples.launch("default", "sb-1"))
    record_event(p, "exit", samples.exit_("sb-1"))
    log = AuditLog(p)
    rep = build_report(log)
    log.close()
    assert [r.control.id for r in rep.results if r.status == "fail"] == []
    assert rep.counts()["pass"] >= 30


def test_since_limits_the_launches_judged(mixed):
    p, seqs = mixed
    log = AuditLog(p)
    recs = list(log.records())
    cut = recs[seqs["insecure"] - 1].time
    rep = build_report(log, since=cut)
    log.close()
    failed = {r.control.id for r in rep.results if r.status == "fail"}
    assert failed == {"SBX-PRIV-02", "SBX-IMG-01", "SBX-LOG-02"}   # the event came just before


def test_unknown_keys_make_a_control_not_applicable(tmp_path):
    controls = load_controls()
    from sandbox.audit.log import Record
    rec = Record(1, "2026-11-29T00:00:00.000000Z", "launch", {"sandbox_id": "x"}, "0" * 64, "a" * 64)
    rep = evaluate(controls, records=[rec])
    subject_controls = [r for r in rep.results if r.control.scope == "subject"]
    assert all(r.status == "not-applicable" for r in subject_controls)


def test_key_expiry_control_boundaries():
    from sandbox.audit.checks import Subject, key_expiry
    def s(exp, at="2026-11-01T00:00:00Z"):
        return Subject("launch", "record 1", {"image": samples.image(expires=exp)}, 1, None, at)
    assert key_expiry(s("2026-11-29T00:00:00Z"), 30).status == "fail"      # 28 days
    assert key_expiry(s("2026-12-02T00:00:00Z"), 30).status == "pass"      # 31 days
    assert key_expiry(s("2026-10-01T00:00:00Z"), 30).status == "fail"      # expired
    assert key_expiry(s(None), 30).status == "pass"                        # never expires
    no_img = Subject("launch", "record 1", {"image": None}, 1)
    assert key_expiry(no_img, 30).status == "not-applicable"


def test_sensitive_mounts_follow_docker_bench():
    from sandbox.audit.checks import Subject, no_sensitive_mounts, no_socket_mounts
    exact, under = ["/"], ["/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"]

    def vol(src):
        return Subject("launch", "record 1", {"volumes": [{"source": src, "target": "/x", "mode": "ro"}]}, 1)
    for bad in ("/", "/etc", "/etc/shadow", "/usr/", "/proc/1", "/boot", "/dev/sda", "/sys", "/lib"):
        assert no_sensitive_mounts(vol(bad), exact, under).status == "fail", bad
    for ok in ("/srv/data", "/etcetera", "/home/u", "/var/lib/x", "/libx"):
        assert no_sensitive_mounts(vol(ok), exact, under).status == "pass", ok
    assert no_socket_mounts(vol("/var/run/docker.sock"), ["docker.sock"]).status == "fail"
    assert no_socket_mounts(vol("/run"), ["docker.sock"]).status == "fail"
    assert no_socket_mounts(vol("/srv/app.sock"), ["docker.sock"]).status == "pass"


def test_effective_state_mismatch_is_a_failure():
    from sandbox.audit.checks import Subject, effective_caps_within, effective_matches
    d = samples.launch("strict")
    d["effective"]["CapEff"] = "0000000000200000"  # CAP_SYS_ADMIN leaked
    d["effective"]["NoNewPrivs"] = 0
    s = Subject("launch", "record 1", d, 1)
    o = effective_caps_within(s, "effective.CapEff")
    assert o.status == "fail" and "CAP_SYS_ADMIN" in o.message
    assert effective_matches(s, "effective.NoNewPrivs", 1, "no_new_privs", True).status == "fail"


def _write_profile(dir_, name, body):
    dir_.mkdir(parents=True, exist_ok=True)
    seccomp = dir_ / "allow.json"
    seccomp.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}))
    (dir_ / f"{name}.toml").write_text(body.replace("@SECCOMP@", str(seccomp)))


def test_profiles_are_judged_by_their_fields(tmp_path):
    from sandbox.profile import load
    p = Paths.resolve(tmp_path)
    _write_profile(p.user_profiles, "loose", """
name = "loose"
description = "test"
[namespaces]
pid = false
net = false
[capabilities]
retain = ["CAP_SYS_ADMIN", "CAP_CHOWN"]
[seccomp]
profile = "@SECCOMP@"
[filesystem]
read_only_root = false
[network]
mode = "host"
""")
    loose = load("loose", user_dir=p.user_profiles)
    unconfined = load("unconfined", user_dir=p.user_profiles)
    rep = evaluate(load_controls(), records=[], profiles=[loose, unconfined])
    by_id = {r.control.id: r for r in rep.results}
    fails = {cid for cid, r in by_id.items() if r.status == "fail"}
    for cid in ("SBX-NS-PID", "SBX-NS-NET", "SBX-CAP-01", "SBX-SECCOMP-02", "SBX-FS-01",
                "SBX-NET-01", "SBX-PRIV-01", "SBX-SECCOMP-01", "SBX-PRIV-03"):
        assert cid in fails, cid
    assert {e.subject for e in by_id["SBX-NS-PID"].failures} == {"profile loose"}
    assert {e.subject for e in by_id["SBX-PRIV-01"].failures} == {"profile unconfined"}
    assert {e.subject for e in by_id["SBX-SECCOMP-02"].failures} == {"profile loose"}
    # launch-only controls say nothing about a profile
    assert by_id["SBX-IMG-01"].status == "not-applicable"
    assert by_id["SBX-CAP-03"].status == "not-applicable"


def _run(paths, *args):
    return CliRunner().invoke(cli, ["--root", str(paths.state.parent), "audit", *args],
                              catch_exceptions=False)


def test_cli_report_fail_on(mixed):
    p, _ = mixed
    assert _run(p, "report").exit_code == 0
    res = _run(p, "report", "--fail-on", "critical")
    assert res.exit_code == 1                   # unconfined: critical
    assert "SBX-PRIV-01" in res.output


def test_cli_report_fail_on_passes_when_only_lower_controls_fail(tmp_path):
    p = Paths.resolve(tmp_path)
    record_event(p, "launch", samples.launch("default", "sb-1"))
    record_event(p, "exit", samples.exit_("sb-1"))
    record_event(p, "refusal", samples.refusal())           # low
    assert _run(p, "report", "--fail-on", "medium").exit_code == 0
    assert _run(p, "report", "--fail-on", "low").exit_code == 1


def test_cli_report_writes_every_format_to_a_file(mixed, tmp_path):
    p, _ = mixed
    for fmt in ("table", "markdown", "html", "json", "sarif", "junit"):
        out = tmp_path / f"report.{fmt}"
        res = _run(p, "report", "--format", fmt, "-o", str(out))
        assert res.exit_code == 0, res.output
        assert out.stat().st_size > 500, fmt


def test_cli_report_with_a_profile(tmp_path):
    p = Paths.resolve(tmp_path)
    res = _run(p, "report", "--no-records", "--profile", "unconfined", "--format", "json",
               "--fail-on", "critical")
    assert res.exit_code == 1
    doc = json.loads(res.output[:res.output.rindex("}") + 1])
    assert doc["profiles"] == ["unconfined"]
    failed = {c["id"] for c in doc["controls"] if c["status"] == "fail"}
    assert "SBX-PRIV-01" in failed


def test_cli_log_filters_and_json(mixed):
    p, seqs = mixed
    res = _run(p, "log", "--json", "--kind", "launch")
    lines = [json.loads(x) for x in res.output.splitlines()]
    assert [x["seq"] for x in lines] == sorted(
        seqs[k] for k in ("default", "strict", "unconfined", "insecure"))
    res = _run(p, "log", "--sandbox", "sb-insecure")
    assert len(res.output.splitlines()) == 3     # option, launch, exit
    res = _run(p, "log", "--since", "1h")
    assert len(res.output.splitlines()) == 10
    res = _run(p, "log", "--since", "2999-01-01")
    assert res.output == ""


def test_cli_export_jsonl_and_verify_offline(mixed, tmp_path):
    p, _ = mixed
    out = tmp_path / "audit.jsonl"
    assert _run(p, "export", "--format", "jsonl", "-o", str(out)).exit_code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 10
    recs = [json.loads(x) for x in lines]
    assert recs[0]["prev"] == "0" * 64
    assert all(b["prev"] == a["hash"] for a, b in zip(recs, recs[1:]))
    res = _run(p, "verify", "--public-key", str(p.state / "audit-key.pub"))
    assert res.exit_code == 0 and "10 record(s)" in res.output


def test_cli_bad_since_is_a_usage_error(mixed):
    p, _ = mixed
    from sandbox.errors import UsageError
    with pytest.raises(UsageError):
        _run(p, "log", "--since", "yesterday-ish")


@pytest.mark.parametrize("name", ["default", "strict", "network-client"])
def test_bundled_confined_profiles_pass_every_profile_control(tmp_path, name):
    from sandbox.errors import ProfileError
    from sandbox.profile import load
    try:
        prof = load(name, user_dir=Paths.resolve(tmp_path).user_profiles)
    except ProfileError as e:   # its seccomp JSON not bundled in this checkout
        pytest.skip(str(e))
    rep = evaluate(load_controls(), records=None, profiles=[prof])
    assert [r.control.id for r in rep.results if r.status == "fail"] == []
    assert rep.counts()["pass"] >= 15
    assert all(r.status == "not-applicable" for r in rep.results if r.control.scope == "log")


def test_break_glass_outside_a_launch_fails_priv06_and_not_priv02(tmp_path):
    """issue 14: PRIV-02 and PRIV-06 never fire for the same act."""
    p = Paths.resolve(tmp_path)
    record_event(p, "launch", samples.launch("default", "sb-1"))
    record_event(p, "exit", samples.exit_("sb-1"))
    alone = record_event(p, "insecure-option", {"sandbox_id": "sb-refused", "option": "image"})
    log = AuditLog(p)
    rep = build_report(log)
    log.close()
    st = {r.control.id: r for r in rep.results}
    assert st["SBX-PRIV-02"].status == "pass"
    assert st["SBX-PRIV-06"].status == "fail"
    assert [e.seq for e in st["SBX-PRIV-06"].failures] == [alone]


def _egress(sid, host, decision, rule):
    return {"sandbox_id": sid, "protocol": "http", "decision": decision, "host": host,
            "port": 443, "address": "93.184.216.34" if decision == "allowed" else None,
            "rule": rule, "reason": f"{host}:443 ...", "bytes_out": 10, "bytes_in": 20,
            "duration_ms": 1.0}


def test_egress_controls_fail_on_unrestricted_network_and_denied_egress(tmp_path):
    """SBX-NET-01 fails a launch on the host's network or a bridge and
    passes one with an allow-list; SBX-NET-02 fails each denied connection."""
    p = Paths.resolve(tmp_path)
    allow = samples.launch("default", "sb-allow")
    allow["network"] = {"mode": "allow", "allow": ["good.test"], "deny": []}
    seqs = {"allow": record_event(p, "launch", allow)}
    record_event(p, "egress", _egress("sb-allow", "good.test", "allowed", "good.test"))
    seqs["denied"] = record_event(p, "egress", _egress("sb-allow", "bad.test", "denied", None))
    record_event(p, "exit", samples.exit_("sb-allow"))
    host = samples.launch("default", "sb-host")
    host["network"] = {"mode": "host", "shared_with_host": True}
    seqs["host"] = record_event(p, "launch", host)
    record_event(p, "exit", samples.exit_("sb-host"))
    log = AuditLog(p)
    rep = build_report(log)
    log.close()
    res = {r.control.id: r for r in rep.results}
    assert res["SBX-NET-01"].status == "fail"
    assert [e.seq for e in res["SBX-NET-01"].failures] == [seqs["host"]]
    assert res["SBX-NET-02"].status == "fail"
    (f,) = res["SBX-NET-02"].failures
    assert f.seq == seqs["denied"] and f.sandbox_id == "sb-allow"
    assert f.message == "egress denied: bad.test:443 ..."


def test_egress_controls_pass_with_only_allowed_egress(tmp_path):
    p = Paths.resolve(tmp_path)
    allow = samples.launch("default", "sb-allow")
    allow["network"] = {"mode": "allow", "allow": ["good.test"], "deny": []}
    record_event(p, "launch", allow)
    record_event(p, "egress", _egress("sb-allow", "good.test", "allowed", "good.test"))
    record_event(p, "exit", samples.exit_("sb-allow"))
    log = AuditLog(p)
    rep = build_report(log)
    log.close()
    res = {r.control.id: r for r in rep.results}
    assert res["SBX-NET-01"].status == "pass" and res["SBX-NET-02"].status == "pass"
    assert "1 connection(s) allowed" in res["SBX-NET-02"].evidence[0].message
