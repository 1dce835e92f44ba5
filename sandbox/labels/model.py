"""SELinux-style security contexts: ``user:role:type:level`` (DESIGN §5).

Follows the MLS/MCS syntax of SELinux (SELinux Notebook, "MLS and MCS";
``libsepol``'s ``mls_to_string`` and the kernel's ``mls_sid_to_context``):

=========================  ==================================================
text                       meaning
=========================  ==================================================
``s0``                     sensitivity 0, no categories
``s0:c1,c2``               sensitivity 0, categories {1, 2}
``s0:c0.c5``               categories 0 to 5 inclusive (a category range)
``s0-s0:c0.c1023``         an MLS range: low level ``-`` high level
``u:r:t:s0:c1,c2``         a full context; the level part may hold ``:``
=========================  ==================================================

Limits: sensitivities ``s0``..``s15`` and categories ``c0``..``c1023``, the
defaults of the reference policy (``mls_num_sens = 16``,
``mls_num_cats = 1024``).

Canonical form (what `str` gives; parsing it again gives an equal value):
categories sorted ascending; a run of three or more consecutive categories
is written ``cA.cB``; a run of two is written ``cA,cB`` (as the kernel
does: ``c0,c1`` but ``c0.c2``); a range whose two ends are equal is written
as its single level.

Dominance (MLS): ``a`` dominates ``b`` when ``a``'s sensitivity is at least
``b``'s and ``a``'s categories are a superset of ``b``'s. It is a partial
order: two levels can be incomparable.

Every parse error is a `LabelError` whose message quotes the bad part.
"""

from __future__ import annotations

from .._values import checked

import re
from typing import NamedTuple

from ..errors import SetupError, UsageError

#: Highest sensitivity number (s15) and category number (c1023).
MAX_SENSITIVITY = 15
MAX_CATEGORY = 1023

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,254}\Z")
_SENS = re.compile(r"s([0-9]{1,2})\Z")
_CAT = re.compile(r"c([0-9]{1,4})\Z")


class LabelError(UsageError):
    """A label, level or context is malformed. The message quotes the bad part.

    A usage error: labels come from the command line (``sandbox label set``),
    a profile (``label.level``; the profile loader reports the key) or a
    volume's extended attribute (the message then names the path).
    """


class LabelRefused(SetupError):
    """The label policy refused a launch step: a volume whose label the
    sandbox's level does not permit, or a level that cannot be held.
    ``kind`` is ``"label"`` so the runtime reports it as such (exit 125)."""

    kind = "label"

    def __init__(self, message: str, *, hint: str | None = None,
                 step: str = "label"):
        super().__init__(message, step=step, hint=hint)


def _parse_sensitivity(text: str) -> int:
    m = _SENS.match(text)
    if not m or (len(m.group(1)) > 1 and m.group(1)[0] == "0"):
        raise LabelError(f"bad sensitivity {text!r}: expected s0..s{MAX_SENSITIVITY}")
    n = int(m.group(1))
    if n > MAX_SENSITIVITY:
        raise LabelError(f"bad sensitivity {text!r}: above s{MAX_SENSITIVITY}")
    return n


def _parse_category(text: str) -> int:
    m = _CAT.match(text)
    if not m or (len(m.group(1)) > 1 and m.group(1)[0] == "0"):
        raise LabelError(f"bad category {text!r}: expected c0..c{MAX_CATEGORY}")
    n = int(m.group(1))
    if n > MAX_CATEGORY:
        raise LabelError(f"bad category {text!r}: above c{MAX_CATEGORY}")
    return n


def _parse_categories(text: str) -> frozenset[int]:
    if not text:
        raise LabelError("empty category list after ':'")
    cats: set[int] = set()
    for item in text.split(","):
        if "." in item:
            lo_s, _, hi_s = item.partition(".")
            lo, hi = _parse_category(lo_s), _parse_category(hi_s)
            if lo >= hi:
                raise LabelError(f"bad category range {item!r}: low must be below high")
            cats.update(range(lo, hi + 1))
        else:
            cats.add(_parse_category(item))
    return frozenset(cats)


def format_categories(cats) -> str:
    """The canonical text of a category set, without the leading ``:``
    (``{1, 2, 3, 7}`` -> ``"c1.c3,c7"``); ``""`` when empty."""
    out: list[str] = []
    ordered = sorted(cats)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        run = j - i + 1
        if run >= 3:
            out.append(f"c{ordered[i]}.c{ordered[j]}")
        else:
            out.extend(f"c{c}" for c in ordered[i:j + 1])
        i = j + 1
    return ",".join(out)


class _LevelFields(NamedTuple):
    sensitivity: int = 0
    categories: frozenset[int] = frozenset()


@checked
class Level(_LevelFields):
    """One MLS/MCS level: a sensitivity and a set of categories.

    ``Level(0, frozenset({5, 9}))`` is ``s0:c5,c9``. Checked when made
    (also by ``_replace``); any iterable of categories becomes a frozenset.
    """

    __slots__ = ()

    def __new__(cls, sensitivity: int = 0, categories: frozenset[int] = frozenset()):
        if not isinstance(sensitivity, int) or not 0 <= sensitivity <= MAX_SENSITIVITY:
            raise LabelError(f"bad sensitivity {sensitivity!r}: expected 0..{MAX_SENSITIVITY}")
        if not isinstance(categories, frozenset):
            categories = frozenset(categories)
        for c in categories:
            if not isinstance(c, int) or not 0 <= c <= MAX_CATEGORY:
                raise LabelError(f"bad category {c!r}: expected 0..{MAX_CATEGORY}")
        return super().__new__(cls, sensitivity, categories)

    @classmethod
    def parse(cls, text: str) -> "Level":
        """Parse ``s0``, ``s0:c1,c2``, ``s0:c0.c5,c9``. Raises `LabelError`."""
        if not isinstance(text, str):
            raise LabelError(f"bad level {text!r}: not a string")
        if "-" in text:
            raise LabelError(f"bad level {text!r}: a range ('-') where one level is expected")
        sens, sep, cats = text.partition(":")
        s = _parse_sensitivity(sens)
        return cls(s, _parse_categories(cats) if sep else frozenset())

    def dominates(self, other: "Level") -> bool:
        """MLS dominance: sensitivity >= and categories a superset."""
        return (self.sensitivity >= other.sensitivity
                and self.categories >= other.categories)

    @property
    def shared(self) -> bool:
        """True for a level without categories (``s0``): the shared level."""
        return not self.categories

    def __str__(self) -> str:
        cats = format_categories(self.categories)
        return f"s{self.sensitivity}:{cats}" if cats else f"s{self.sensitivity}"


class _LevelRangeFields(NamedTuple):
    low: Level
    high: Level


@checked
class LevelRange(_LevelRangeFields):
    """An MLS range ``low-high`` (``s0-s0:c0.c1023``); ``high`` must
    dominate ``low``. A single level parses as a range with equal ends."""

    __slots__ = ()

    def __new__(cls, low: Level, high: Level):
        if not high.dominates(low):
            raise LabelError(f"bad range {low}-{high}: high does not dominate low")
        return super().__new__(cls, low, high)

    @classmethod
    def parse(cls, text: str) -> "LevelRange":
        """Parse ``LEVEL`` or ``LEVEL-LEVEL``. Raises `LabelError`."""
        if not isinstance(text, str):
            raise LabelError(f"bad range {text!r}: not a string")
        lo, sep, hi = text.partition("-")
        if sep and "-" in hi:
            raise LabelError(f"bad range {text!r}: more than one '-'")
        low = Level.parse(lo)
        return cls(low, Level.parse(hi) if sep else low)

    @classmethod
    def of(cls, level: Level) -> "LevelRange":
        return cls(level, level)

    @property
    def single(self) -> bool:
        return self.low == self.high

    def contains(self, level: Level) -> bool:
        """True when ``high`` dominates ``level`` and ``level`` dominates ``low``."""
        return self.high.dominates(level) and level.dominates(self.low)

    def dominates(self, other: "LevelRange | Level") -> bool:
        """Range dominance as SELinux constraints use it for ``h1 dom h2``:
        this range's high dominates the other's high."""
        o = other.high if isinstance(other, LevelRange) else other
        return self.high.dominates(o)

    def __str__(self) -> str:
        return str(self.low) if self.single else f"{self.low}-{self.high}"


class _ContextFields(NamedTuple):
    user: str
    role: str
    type: str
    range: LevelRange


@checked
class Context(_ContextFields):
    """A security context ``user:role:type:range`` (range as `LevelRange`)."""

    __slots__ = ()

    def __new__(cls, user: str, role: str, type: str, range: LevelRange):  # noqa: A002
        for what, v in (("user", user), ("role", role), ("type", type)):
            if not isinstance(v, str) or not _IDENT.match(v):
                raise LabelError(f"bad {what} {v!r} in context: expected an identifier "
                                 "([A-Za-z_][A-Za-z0-9_.]*)")
        return super().__new__(cls, user, role, type, range)

    @classmethod
    def parse(cls, text: str) -> "Context":
        """Parse ``user:role:type:level[-level]``. Raises `LabelError`."""
        if not isinstance(text, str):
            raise LabelError(f"bad context {text!r}: not a string")
        parts = text.split(":", 3)
        if len(parts) != 4:
            raise LabelError(f"bad context {text!r}: expected user:role:type:level")
        user, role, type_, rng = parts
        return cls(user, role, type_, LevelRange.parse(rng))

    @property
    def level(self) -> Level:
        """The current (low) level."""
        return self.range.low

    def with_level(self, level: "Level | LevelRange") -> "Context":
        rng = level if isinstance(level, LevelRange) else LevelRange.of(level)
        return Context(self.user, self.role, self.type, rng)

    def __str__(self) -> str:
        return f"{self.user}:{self.role}:{self.type}:{self.range}"


def parse_level(text: str) -> Level:
    """`Level.parse`, for symmetry with the other ``parse_*`` functions."""
    return Level.parse(text)


def parse_range(text: str) -> LevelRange:
    return LevelRange.parse(text)


def parse_context(text: str) -> Context:
    return Context.parse(text)
