"""Controls are data: every bundled file loads, and bad files are refused
with a message naming the file, the control and the key."""

from __future__ import annotations

import re

import pytest

from sandbox._resources import data_dir
from sandbox.audit.checks import REGISTRY
from sandbox.audit.controls import ControlError, load_controls, load_file

BUNDLED = sorted((data_dir("audit") / "controls").glob("*.toml"))


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_bundled_control_file_loads(path):
    controls = load_file(path)
    assert controls
    for c in controls:
        assert c.check in REGISTRY
        assert c.rationale and c.title and c.references
        assert c.remediation, f"{c.id} has no remediation"


def test_the_catalogue():
    controls = load_controls()
    ids = [c.id for c in controls]
    assert len(ids) == len(set(ids)) >= 25
    refs = {r for c in controls for r in c.references}
    # CIS Docker Benchmark section 5 checks this catalogue maps
    for cis in ("5.2", "5.3", "5.4", "5.5", "5.6", "5.10", "5.11", "5.13", "5.16", "5.17",
                "5.19", "5.21", "5.22", "5.25", "5.26", "5.29", "5.31", "5.32"):
        assert f"CIS-DI {cis}" in refs, cis
    assert any(r.startswith("NIST 800-190 ") for r in refs)
    by_check = {}
    for c in controls:
        by_check.setdefault(c.check, []).append(c)
    # one control per host namespace
    ns = {c.param_dict()["field"] for c in by_check["equals"]
          if c.param_dict()["field"].startswith("namespaces.")}
    assert {"namespaces.pid", "namespaces.ipc", "namespaces.uts", "namespaces.net",
            "namespaces.user"} <= ns
    sens = by_check["no_sensitive_mounts"][0].param_dict()
    assert set(sens["exact"]) | set(sens["under"]) == {
        "/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr"}
    assert "docker.sock" in by_check["no_socket_mounts"][0].param_dict()["names"]
    assert by_check["key_expiry"][0].param_dict()["min_days"] == 30
    for name in ("chain_intact", "no_events", "image_signed", "subset"):
        assert name in by_check, name


def test_every_registered_check_is_used_and_documented():
    used = {c.check for c in load_controls()}
    assert used == set(REGISTRY)
    for spec in REGISTRY.values():
        assert spec.doc


def _bad(tmp_path, text):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ControlError) as ei:
        load_file(p)
    return ei.value.message


GOOD = """
[[control]]
id = "X-01"
title = "t"
severity = "low"
rationale = "r"
references = ["CIS-DI 5.4"]
[control.check]
name = "equals"
field = "namespaces.pid"
value = true
"""


@pytest.mark.parametrize("change,expect", [
    (('severity = "low"', 'severity = "urgent"'), "severity"),
    (('references = ["CIS-DI 5.4"]', 'references = ["CIS 5.4"]'), "references"),
    (('references = ["CIS-DI 5.4"]', 'references = []'), "references"),
    (('name = "equals"', 'name = "nope"'), "unknown check"),
    (('field = "namespaces.pid"\n', ''), "check.field"),
    (('value = true', 'value = true\nextra = 1'), "check.extra"),
    (('id = "X-01"', 'id = "x 01"'), "id"),
    (('title = "t"', 'title = "t"\ncolour = "red"'), "colour"),
    (('rationale = "r"', 'rationale = 5'), "rationale"),
])
def test_bad_controls_are_refused_naming_the_key(tmp_path, change, expect):
    msg = _bad(tmp_path, GOOD.replace(*change))
    assert "bad.toml" in msg and expect in msg


def test_bad_toml_is_refused(tmp_path):
    assert "not valid TOML" in _bad(tmp_path, "[[control]\n")


def test_a_site_control_replaces_a_bundled_one(tmp_path):
    (tmp_path / "site.toml").write_text(GOOD.replace('id = "X-01"', 'id = "SBX-NS-PID"')
                                        .replace('severity = "low"', 'severity = "critical"'))
    controls = {c.id: c for c in load_controls(tmp_path)}
    assert controls["SBX-NS-PID"].severity == "critical"
    assert len(controls) == len(load_controls())


def test_controls_readme_lists_every_check():
    readme = (data_dir("audit") / "controls" / "README.md").read_text()
    for name in REGISTRY:
        assert re.search(rf"`{name}`", readme), name
