"""Prefix and docker-reference matching (sandbox.trust.names): pure, no gpg."""

import pytest

from sandbox.errors import UsageError
from sandbox.trust import names, reference


@pytest.mark.parametrize("prefix,name,covered", [
    ("example.com/app", "example.com/app", True),
    ("example.com/app", "example.com/app/web", True),
    ("example.com/app", "example.com/app/web:1.0", True),
    ("example.com/app", "example.com/app:latest", True),
    ("example.com/app", "example.com/app@sha256:" + "a" * 64, True),
    ("example.com/app", "example.com/appx", False),
    ("example.com/app", "example.com.evil/app", False),
    ("example.com/app", "example.com", False),
    ("example.com/app", "other.com/example.com/app", False),
    ("example.com", "example.com/app", True),
    ("example.com:5000/app", "example.com:5000/app/x:tag", True),
    ("example.com/app", "example.com:5000/app", False),
])
def test_prefix_covers_on_whole_components(prefix, name, covered):
    assert names.prefix_covers(prefix, name) is covered


@pytest.mark.parametrize("bad", [
    "", "/abs", "a//b", "a/../b", "..", ".", "a/.", "a/b/", "./a", "a/.hidden",
    "a/b:tag", "a@sha256:00", "-flag", "a/b\\c", "a/\x00", "a b",
])
def test_parse_prefix_refuses(bad):
    with pytest.raises(UsageError):
        names.parse_prefix(bad)


def test_parse_prefix_accepts_registry_port():
    assert names.parse_prefix("localhost:5000/team") == ("localhost:5000", "team")


@pytest.mark.parametrize("bad", ["example.com/app/../x", "a//b", "/a", "a/./b"])
def test_name_with_dot_components_is_refused(bad):
    with pytest.raises(UsageError):
        names.name_components(bad)


def test_split_name_port_is_not_tag():
    assert names.split_name("example.com:5000/app") == ("example.com:5000/app", None, None)
    assert names.split_name("example.com:5000/app:1") == ("example.com:5000/app", "1", None)
    assert names.split_name("a/b:t@sha256:ff") == ("a/b", "t", "sha256:ff")


def test_normalize_fingerprint():
    f = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
    assert names.normalize_fingerprint("0x" + f.lower()) == f
    assert names.normalize_fingerprint("08CD 26E4 46E2 E952 49B7  A405 E932 F44B 23E8 DD43") == f
    with pytest.raises(UsageError):
        names.normalize_fingerprint("E932F44B23E8DD43")  # short key id


@pytest.mark.parametrize("text,expected", [
    ("busybox", "docker.io/library/busybox"),
    ("testing/manifest", "docker.io/testing/manifest"),
    ("testing/manifest:latest", "docker.io/testing/manifest:latest"),
    ("index.docker.io/x/y", "docker.io/x/y"),
    ("localhost/x", "localhost/x"),
    ("example.com:5000/a/b:v1", "example.com:5000/a/b:v1"),
])
def test_parse_docker_reference_normalizes_like_containers_image(text, expected):
    assert str(reference.parse_docker_reference(text)) == expected


@pytest.mark.parametrize("bad", ["UPPERCASEISINVALID", "a/B", "a:b:c", "", "a/b:" + "t" * 200,
                                 "example.com/-x"])
def test_parse_docker_reference_refuses(bad):
    with pytest.raises(ValueError):
        reference.parse_docker_reference(bad)


D = "sha256:" + "20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"


@pytest.mark.parametrize("signed,name,ok", [
    # matchRepoDigestOrExact (issue 12): a claim naming only the
    # repository matches no tagged name; the name run gets ":latest"
    ("testing/manifest", "testing/manifest", False),
    ("testing/manifest", "docker.io/testing/manifest", False),
    ("testing/manifest:latest", "testing/manifest:latest", True),
    ("testing/manifest:latest", "docker.io/testing/manifest:latest", True),
    ("testing/manifest:latest", "testing/manifest", True),
    ("testing/manifest", "testing/manifest:latest", False),
    ("example.com/app", "example.com/app:latest", False),
    ("testing/manifest", "testing/manifest:v1", False),
    ("testing/manifest:v1", "testing/manifest", False),
    ("testing/manifest:v1", "testing/manifest:v2", False),
    ("testing/manifest", "testing/other", False),
    # by digest: repository must match, tag does not matter
    ("testing/manifest:latest", "testing/manifest@" + D, True),
    ("testing/other:latest", "testing/manifest@" + D, False),
    ("UPPERCASEISINVALID", "UPPERCASEISINVALID", False),
])
def test_identity_matches(signed, name, ok):
    assert reference.identity_matches(signed, name)[0] is ok
