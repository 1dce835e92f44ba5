"""Image names and trust prefixes: parsing and matching.

Pure functions over strings; no file system, no gpg.

Two different notions of "name" meet here:

* the **trust path** of an image name: the name with any ``:tag`` and
  ``@digest`` suffix removed, split on ``/`` into path components. Trust
  prefixes (DESIGN §4, after rkt's ``trust --prefix``) match on whole
  components, literally: ``example.com/app`` covers ``example.com/app`` and
  ``example.com/app/web``, never ``example.com/appx`` nor
  ``example.com.evil/app``. No docker normalisation is applied here: a
  prefix is matched against the name exactly as the image was named.

* the **docker reference** of a containers/image "simple signing" claim:
  see `sandbox.trust.reference`.
"""

from __future__ import annotations

import re

from ..errors import UsageError

#: A prefix or name component: starts with a letter or digit (so never
#: ``.``, ``..``, a hidden file or something that looks like a flag), then
#: letters, digits, ``.``, ``_``, ``-`` and ``:`` (a registry port).
_COMPONENT_RE = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}\Z"
_MAX_PREFIX = 1024

#: Full OpenPGP fingerprints: v4 (40 hex digits) or v5/v6 (64).
_HEX = frozenset("0123456789ABCDEF")


class _Component:
    # re.match uses re's own compiled-pattern cache: nothing is compiled
    # at import, which keeps the warm launch path cheap.
    @staticmethod
    def match(text: str):
        return re.match(_COMPONENT_RE, text)


_COMPONENT = _Component()


class _Fpr:
    @staticmethod
    def match(text: str) -> bool:
        return len(text) in (40, 64) and _HEX.issuperset(text)


_FPR = _Fpr()


def normalize_fingerprint(text: str) -> str:
    """A fingerprint as typed (spaces, lower case, ``0x``) -> 40 or 64
    upper-case hex digits. Raises `UsageError` for anything else (short key
    ids are refused: they are not unique)."""
    t = text.strip().replace(" ", "").upper()
    if t.startswith("0X"):
        t = t[2:]
    if not _FPR.match(t):
        raise UsageError(
            f"{text!r} is not a full key fingerprint (40 or 64 hex digits)",
            hint="see `sandbox trust list` for the fingerprints in the trust store")
    return t


def is_fingerprint(name: str) -> bool:
    """True when ``name`` is already a normalised fingerprint (a trust store
    file name)."""
    return bool(_FPR.match(name))


def split_name(name: str) -> tuple[str, str | None, str | None]:
    """``"example.com:5000/app:1.0@sha256:ab.."`` -> (path, tag, digest).

    The tag is what follows the last ``:`` after the last ``/`` (so a
    registry port is not a tag); the digest what follows ``@``."""
    digest = None
    if "@" in name:
        name, digest = name.split("@", 1)
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def name_components(name: str) -> tuple[str, ...]:
    """The trust path of an image name as components, tag and digest removed.

    Raises `UsageError` when a component is empty, ``.``, ``..`` or holds
    characters no image name has: such a name could otherwise be made to
    match a prefix it does not belong to (``example.com/app/../x``)."""
    path, _tag, _digest = split_name(name)
    comps = tuple(path.split("/"))
    for c in comps:
        if not _COMPONENT.match(c):
            raise UsageError(
                f"invalid image name {name!r}: bad path component {c!r}",
                hint="names are slash-separated components of letters, digits, '.', '_', '-'")
    return comps


def parse_prefix(prefix: str) -> tuple[str, ...]:
    """Validate a trust prefix and return its components.

    A prefix is a relative path of components (see ``_COMPONENT``): no
    leading ``/``, no empty component, no ``.`` or ``..``, no tag or digest.
    This is what keeps ``trust add --prefix`` from ever writing outside
    ``prefix.d``. Raises `UsageError`."""
    if not isinstance(prefix, str) or not prefix:
        raise UsageError("empty trust prefix", hint="give a name prefix such as example.com/app")
    if len(prefix) > _MAX_PREFIX:
        raise UsageError(f"trust prefix is longer than {_MAX_PREFIX} characters")
    if prefix.startswith("/"):
        raise UsageError(f"trust prefix {prefix!r} must not be an absolute path",
                         hint="give a name prefix such as example.com/app")
    if "@" in prefix:
        raise UsageError(f"trust prefix {prefix!r} must not contain a digest")
    comps = tuple(prefix.split("/"))
    for c in comps:
        if not _COMPONENT.match(c):
            raise UsageError(
                f"invalid trust prefix {prefix!r}: bad path component {c!r}",
                hint="components are letters, digits, '.', '_', '-', never empty, '.' or '..'")
    # A ':' is a registry port only in the first component; elsewhere it
    # would be a tag, which is not part of a trust path.
    if any(":" in c for c in comps[1:]):
        raise UsageError(f"trust prefix {prefix!r} must not contain a tag",
                         hint="tags are not part of the trust path: drop ':TAG'")
    return comps


def prefix_covers(prefix: str | tuple[str, ...], name: str) -> bool:
    """True when trust ``prefix`` covers image ``name`` on whole components.

    >>> prefix_covers("example.com/app", "example.com/app/web:1.0")
    True
    >>> prefix_covers("example.com/app", "example.com/appx")
    False
    """
    p = parse_prefix(prefix) if isinstance(prefix, str) else prefix
    n = name_components(name)
    return len(n) >= len(p) and n[:len(p)] == p


def ancestor_prefixes(name: str) -> list[tuple[str, ...]]:
    """Every prefix that could cover ``name``, shortest first."""
    n = name_components(name)
    return [n[:k] for k in range(1, len(n) + 1)]
