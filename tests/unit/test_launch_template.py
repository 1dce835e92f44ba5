"""The resolved profile kept as a template (`sandbox.launch._template`):
used again only while nothing it was made from changed."""

from __future__ import annotations

import os
import time

from sandbox.launch import _template
from sandbox.launch.request import build_request
from sandbox.launch.resolve import resolve_profile
from sandbox.paths import Paths


def _touch_later(p):
    t = time.time() + 5
    os.utime(p, (t, t))


def test_second_resolve_is_a_hit_with_the_same_profile(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    req = build_request("strict", hostname="h")
    first = resolve_profile(req, paths)
    assert _template.load(paths, req) == first
    assert resolve_profile(req, paths) == first
    assert dict(resolve_profile(req, paths).origins) == dict(first.origins)


def test_overrides_are_part_of_the_key(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    a = resolve_profile(build_request("default", hostname="a"), paths)
    b = resolve_profile(build_request("default", hostname="b"), paths)
    assert (a.process.hostname, b.process.hostname) == ("a", "b")


def test_an_edited_parent_profile_is_a_miss(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "base.toml").write_text('name = "base"\ndescription = "b"\nextends = "default"\n'
                                 '[process]\nhostname = "one"\n')
    (d / "child.toml").write_text('name = "child"\ndescription = "c"\nextends = "base"\n')
    req = build_request(str(d / "child.toml"))
    assert resolve_profile(req, paths).process.hostname == "one"
    (d / "base.toml").write_text('name = "base"\ndescription = "b"\nextends = "default"\n'
                                 '[process]\nhostname = "two"\n')
    _touch_later(d / "base.toml")
    assert _template.load(paths, req) is None
    assert resolve_profile(req, paths).process.hostname == "two"


def test_a_user_profile_that_hides_a_bundled_one_is_a_miss(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    req = build_request("strict")
    assert resolve_profile(req, paths).process.hostname != "mine"
    paths.user_profiles.mkdir(parents=True, exist_ok=True)
    _template.store(paths, req, resolve_profile(req, paths, cached=False))
    (paths.user_profiles / "strict.toml").write_text(
        'name = "strict"\ndescription = "mine"\nextends = "default"\n'
        '[process]\nhostname = "mine"\n')
    _touch_later(paths.user_profiles)
    assert _template.load(paths, req) is None
    assert resolve_profile(req, paths).process.hostname == "mine"


def test_a_corrupt_entry_is_a_miss(tmp_path):
    paths = Paths.resolve(tmp_path / "r")
    req = build_request("default")
    good = resolve_profile(req, paths)
    folder = paths.state / "cache" / "launch"
    for f in folder.iterdir():
        f.write_bytes(b"not a pickle")
    assert _template.load(paths, req) is None
    assert resolve_profile(req, paths) == good
