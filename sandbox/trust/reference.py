"""Docker references in containers/image "simple signing" claims.

Parsed and normalised the way containers/image's ``docker/reference``
``ParseNormalizedNamed`` does (distribution's reference grammar:
``busybox`` -> ``docker.io/library/busybox``), and compared with the name
being run by `identity_matches`. Pure functions; imported only when a
simple-signing signature is checked cold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .names import split_name


_DOCKER_DOMAIN = "docker.io"
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN_COMPONENT = re.compile(r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])\Z")
_PORT = re.compile(r"[0-9]+\Z")
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z")


@dataclass(frozen=True, slots=True)
class DockerReference:
    """A normalised docker reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s


def parse_docker_reference(text: str) -> DockerReference:
    """Parse and normalise like containers/image ``reference.ParseNormalizedNamed``.

    No default tag is added. Raises `ValueError` for an invalid reference
    (for example upper case in the repository path)."""
    if not text or len(text) > 255 + 200:
        raise ValueError("empty or overlong reference")
    rest, tag, digest = split_name(text)
    if digest is not None and not _DIGEST.match(digest):
        raise ValueError(f"invalid digest {digest!r}")
    if tag is not None and not _TAG.match(tag):
        raise ValueError(f"invalid tag {tag!r}")
    # splitDockerDomain: the first component is a domain when it contains
    # '.' or ':', is "localhost", or has upper case letters.
    first, sep, remainder = rest.partition("/")
    if sep and (any(ch in first for ch in ".:") or first == "localhost"
                or first.lower() != first):
        domain, path = first, remainder
    else:
        domain, path = _DOCKER_DOMAIN, rest
    if domain == "index.docker.io":
        domain = _DOCKER_DOMAIN
    if domain == _DOCKER_DOMAIN and "/" not in path:
        path = "library/" + path
    host, colon, port = domain.partition(":")
    if not all(_DOMAIN_COMPONENT.match(c) for c in host.split(".")) or \
            (colon and not _PORT.match(port)):
        raise ValueError(f"invalid domain {domain!r}")
    if len(domain) + 1 + len(path) > 255:
        raise ValueError("repository name is longer than 255 characters")
    for c in path.split("/"):
        if not _PATH_COMPONENT.match(c):
            raise ValueError(f"invalid repository path component {c!r}"
                             + (" (must be lower case)" if c.lower() != c else ""))
    return DockerReference(domain, path, tag, digest)


def _with_default_tag(r: DockerReference) -> DockerReference:
    # docker's convention, and the image store's: "name" means "name:latest".
    if r.tag is None and r.digest is None:
        return DockerReference(r.domain, r.path, "latest", None)
    return r


def identity_matches(signed: str, name: str) -> tuple[bool, str]:
    """Does the identity claimed in a simple-signing signature match the
    name being run? Returns (matches, why-not).

    The rule: containers/image's default ``matchRepoDigestOrExact``
    (docs/containers-policy.json.5.md, signature/policy_reference_match.go):

    1. Both sides are normalised with `parse_docker_reference`; an invalid
       reference on either side never matches (``UPPERCASEISINVALID``).
    2. The name being run gets docker's default tag ``latest`` when it has
       neither tag nor digest (``TagNameOnly``: the image store holds
       ``name`` as ``name:latest``). The claim gets nothing added.
    3. If ``name`` carries a digest (``repo@sha256:...``): the repositories
       must be equal, the signature's tag does not matter (the caller
       checks that the name's digest is the manifest's digest).
    4. Otherwise the two must be equal exactly, tag included: ``:v1`` never
       matches a claim of ``:v2``, and a claim naming only the repository
       (``example.com/app``) matches no tagged name, ``:latest`` included,
       as containers/image and skopeo refuse it.
    """
    try:
        s = parse_docker_reference(signed)
    except ValueError as e:
        return False, f"the signature claims an invalid reference {signed!r} ({e})"
    try:
        n = parse_docker_reference(name)
    except ValueError as e:
        return False, f"{name!r} is not a valid docker reference ({e})"
    if n.digest is not None:
        if s.repository == n.repository:
            return True, ""
        return False, f"the signature is for {signed!r}, not for repository {n.repository}"
    n = _with_default_tag(n)
    if s.tag is None and s.digest is None:
        return False, (f"the signature names only the repository {signed!r}, "
                       f"which does not match the tagged name {n}")
    if s == n:
        return True, ""
    return False, f"the signature is for {signed!r}, not for {str(n)!r}"
