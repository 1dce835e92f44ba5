"""Immutable value types, cheaply: helpers for the `typing.NamedTuple`
classes the launch pipeline hands from stage to stage.

A NamedTuple class costs ~0.1 ms to define; a frozen dataclass ~1 ms (it
generates its methods with ``exec``) plus ``import dataclasses`` (~10 ms:
inspect, ast, dis, tokenize). The launch path defines a few dozen of these
types, so they are NamedTuples. Remember that their instances ARE tuples:
they iterate, unpack, have a ``len`` and compare as tuples.
"""

from __future__ import annotations


def asdict(value):
    """``value`` with every NamedTuple in it turned into a dict, recursively
    (as `dataclasses.asdict` does for dataclasses); other tuples stay
    tuples, lists and dicts are copied, everything else is returned as is."""
    if isinstance(value, tuple):
        fields = getattr(value, "_fields", None)
        if fields is not None:
            return {k: asdict(v) for k, v in zip(fields, value)}
        return tuple(asdict(v) for v in value)
    if isinstance(value, list):
        return [asdict(v) for v in value]
    if isinstance(value, dict):
        return {asdict(k): asdict(v) for k, v in value.items()}
    return value


def ignore_last_field_in_eq(cls):
    """Class decorator: equality and hash of a NamedTuple ``cls`` leave out
    its last field (what `dataclasses.field(compare=False)` did), e.g. where
    a value came from, or whether it was read from a cache."""
    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self[:-1] == other[:-1]

    def __ne__(self, other):
        eq = __eq__(self, other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self):
        return hash(self[:-1])

    cls.__eq__, cls.__ne__, cls.__hash__ = __eq__, __ne__, __hash__
    return cls


def checked(cls):
    """Class decorator for a NamedTuple subclass whose ``__new__`` validates:
    makes ``_replace`` (which builds through ``_make``) validate too."""
    cls._make = classmethod(lambda c, iterable: c(*iterable))
    return cls
