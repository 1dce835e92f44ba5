"""Profile loading without privilege: bundled profiles, extends, _add/_remove,
cycles and misspelt keys (DESIGN §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.errors import NotFound, ProfileError
from sandbox.profile.load import available, load

BUNDLED = sorted(f.name for f in available() if f.bundled)


def test_bundled_profiles_include_default_strict_unconfined():
    assert {"default", "strict", "unconfined"} <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_profile_loads(name):
    p = load(name)
    assert p.name == name
    assert p.digest().startswith("sha256:") if isinstance(p.digest(), str) else p.digest()


def test_strict_extends_default_and_drops_everything():
    s, d = load("strict"), load("default")
    assert set(s.capabilities) == set()
    assert set(d.capabilities) and "CAP_SYS_ADMIN" not in d.capabilities
    assert s.filesystem.read_only_root and s.process.no_new_privs
    assert s.namespaces == d.namespaces                  # inherited from default
    assert dict(s.origins)["namespaces.user"] != dict(s.origins)["capabilities.retain"]


def _w(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text)
    return p


def test_extends_add_and_remove(tmp_path):
    p = _w(tmp_path, "child", 'extends = "default"\n[capabilities]\n'
           'retain_add = ["CAP_SYS_PTRACE"]\nretain_remove = ["CAP_CHOWN", "CAP_KILL"]\n')
    prof = load(str(p))
    caps = set(prof.capabilities)
    assert "CAP_SYS_PTRACE" in caps and "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    assert caps - {"CAP_SYS_PTRACE"} == set(load("default").capabilities) - {"CAP_CHOWN",
                                                                            "CAP_KILL"}
    assert str(p) in dict(prof.origins)["capabilities.retain"]


def test_extends_parent_beside_child(tmp_path):
    _w(tmp_path, "parent", 'extends = "strict"\n[process]\nhostname = "parent-host"\n')
    p = _w(tmp_path, "child", 'extends = "parent"\n')
    prof = load(str(p))
    assert prof.process.hostname == "parent-host"
    assert set(prof.capabilities) == set()


def test_extends_cycle_is_refused(tmp_path):
    _w(tmp_path, "a", 'extends = "b"\n')
    _w(tmp_path, "b", 'extends = "a"\n')
    with pytest.raises(ProfileError, match="cycle"):
        load(str(tmp_path / "a.toml"))


def test_self_extends_is_a_cycle(tmp_path):
    p = _w(tmp_path, "self", 'extends = "self"\n')
    with pytest.raises(ProfileError, match="cycle"):
        load(str(p))


def test_misspelt_key_names_file_key_and_suggestion(tmp_path):
    p = _w(tmp_path, "typo", 'extends = "default"\n[filesystem]\nread_only_rot = true\n')
    with pytest.raises(ProfileError) as e:
        load(str(p))
    text = str(e.value) + " " + str(getattr(e.value, "hint", "") or "")
    assert str(p) in text and "read_only_rot" in text and "read_only_root" in text


def test_wrong_type_names_file_and_key(tmp_path):
    p = _w(tmp_path, "bad", 'extends = "default"\n[limits]\npids = "many"\n')
    with pytest.raises(ProfileError) as e:
        load(str(p))
    assert str(p) in str(e.value) and "limits.pids" in str(e.value)


def test_unknown_capability_is_refused(tmp_path):
    p = _w(tmp_path, "cap", 'extends = "default"\n[capabilities]\nretain = ["CAP_FLY"]\n')
    with pytest.raises(ProfileError, match="CAP_FLY"):
        load(str(p))


def test_broken_toml_is_refused(tmp_path):
    p = _w(tmp_path, "broken", 'extends = "default"\n[capabilities\n')
    with pytest.raises(ProfileError, match="TOML"):
        load(str(p))


def test_unknown_profile_suggests_close_name():
    with pytest.raises(NotFound) as e:
        load("defualt")
    assert "defualt" in str(e.value)
    assert "default" in (str(e.value) + str(getattr(e.value, "hint", "")))
