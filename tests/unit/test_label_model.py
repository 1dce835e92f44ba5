"""Label algebra: parse, format, dominance (no privileges)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from sandbox.errors import UsageError
from sandbox.labels.model import (Context, LabelError, Level, LevelRange,
                                  format_categories)


@pytest.mark.parametrize("text, canonical", [
    ("s0", "s0"),
    ("s0:c1,c2", "s0:c1,c2"),
    ("s0:c2,c1", "s0:c1,c2"),
    ("s0:c1,c2,c3", "s0:c1.c3"),
    ("s0:c0.c5", "s0:c0.c5"),
    ("s0:c0.c1", "s0:c0,c1"),
    ("s0:c0.c5,c7,c8", "s0:c0.c5,c7,c8"),
    ("s0:c3,c0.c2", "s0:c0.c3"),
    ("s0:c1,c1", "s0:c1"),
    ("s15:c1023", "s15:c1023"),
    ("s0:c0.c1023", "s0:c0.c1023"),
])
def test_level_canonical_form(text, canonical):
    assert str(Level.parse(text)) == canonical
    assert Level.parse(canonical) == Level.parse(text)


@pytest.mark.parametrize("text, canonical", [
    ("s0-s0:c0.c1023", "s0-s0:c0.c1023"),
    ("s0:c1,c2-s0:c1,c2", "s0:c1,c2"),
    ("s0", "s0"),
    ("s0:c5-s2:c1.c9", "s0:c5-s2:c1.c9"),
])
def test_range_canonical_form(text, canonical):
    assert str(LevelRange.parse(text)) == canonical


def test_context_parse_and_format():
    c = Context.parse("system_u:system_r:sandbox_t:s0-s0:c0.c1023")
    assert (c.user, c.role, c.type) == ("system_u", "system_r", "sandbox_t")
    assert c.range.low == Level(0) and c.range.high == Level(0, frozenset(range(1024)))
    assert str(c) == "system_u:system_r:sandbox_t:s0-s0:c0.c1023"
    assert str(c.with_level(Level.parse("s0:c1,c9"))) == "system_u:system_r:sandbox_t:s0:c1,c9"


@pytest.mark.parametrize("text, bad_part", [
    ("", "''"),
    ("x0", "'x0'"),
    ("s16", "'s16'"),
    ("s01", "'s01'"),
    ("s0:", "empty category"),
    ("s0:c1024", "'c1024'"),
    ("s0:c01", "'c01'"),
    ("s0:c5.c2", "'c5.c2'"),
    ("s0:c5.c5", "'c5.c5'"),
    ("s0:c1,,c2", "''"),
    ("s0:cx", "'cx'"),
    ("s0-s0-s0", "more than one '-'"),
    ("s0:c1-s0", "high does not dominate low"),
    ("s1-s0", "high does not dominate low"),
])
def test_bad_levels_name_the_bad_part(text, bad_part):
    with pytest.raises(LabelError) as ei:
        LevelRange.parse(text)
    assert bad_part in str(ei.value)
    assert "\n" not in ei.value.message


@pytest.mark.parametrize("text, bad_part", [
    ("system_u:system_r:s0", "expected user:role:type:level"),
    ("system_u:system_r:bad-type:s0", "bad type 'bad-type'"),
    (":r:t:s0", "bad user ''"),
    ("u:r:t:s0:c9999", "'c9999'"),
])
def test_bad_contexts_name_the_bad_part(text, bad_part):
    with pytest.raises(LabelError) as ei:
        Context.parse(text)
    assert bad_part in str(ei.value)


def test_level_refuses_a_range_where_one_level_is_expected():
    with pytest.raises(LabelError, match="range"):
        Level.parse("s0-s0:c1")


def test_label_error_is_a_usage_error():
    assert issubclass(LabelError, UsageError)


def test_dominance():
    a = Level.parse("s0:c1,c2")
    assert a.dominates(a)
    assert a.dominates(Level.parse("s0:c1"))
    assert a.dominates(Level.parse("s0"))
    assert not a.dominates(Level.parse("s0:c1,c3"))
    assert not Level.parse("s0:c1").dominates(a)
    assert Level.parse("s1:c1,c2").dominates(a)
    assert not a.dominates(Level.parse("s1"))
    # incomparable levels: neither dominates
    b = Level.parse("s0:c3,c4")
    assert not a.dominates(b) and not b.dominates(a)


def test_equality_ignores_spelling():
    assert Level.parse("s0:c0.c3") == Level.parse("s0:c3,c2,c1,c0")
    assert hash(Level.parse("s0:c0.c3")) == hash(Level.parse("s0:c0,c1,c2,c3"))
    assert Level.parse("s0:c1") != Level.parse("s1:c1")


def test_shared_level():
    assert Level.parse("s0").shared
    assert not Level.parse("s0:c1").shared


def test_range_contains_and_dominates():
    r = LevelRange.parse("s0-s0:c0.c1023")
    assert r.contains(Level.parse("s0:c5,c9"))
    assert r.dominates(Level.parse("s0:c5,c9"))
    assert not LevelRange.parse("s0:c1").contains(Level.parse("s0"))


def test_format_categories_runs():
    assert format_categories({1, 2, 3, 7}) == "c1.c3,c7"
    assert format_categories({1, 2, 7, 8, 9, 10}) == "c1,c2,c7.c10"
    assert format_categories(set()) == ""


# -- properties ---------------------------------------------------------------

@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_raises_only_label_error(text):
    for parse in (Level.parse, LevelRange.parse, Context.parse):
        try:
            parse(text)
        except LabelError:
            pass


_grammarish = st.text(alphabet="sc0123456789.,:-_urt ", max_size=40)


@settings(max_examples=500)
@given(_grammarish)
def test_label_like_text_raises_only_label_error_and_round_trips(text):
    for parse in (Level.parse, LevelRange.parse, Context.parse):
        try:
            v = parse(text)
        except LabelError:
            continue
        assert parse(str(v)) == v
        assert str(parse(str(v))) == str(v)


levels = st.builds(Level, st.integers(0, 15),
                   st.frozensets(st.integers(0, 1023), max_size=40))


@given(levels)
def test_level_round_trip(level):
    text = str(level)
    assert Level.parse(text) == level
    assert str(Level.parse(text)) == text


@given(levels, levels)
def test_range_round_trip(a, b):
    hi = Level(max(a.sensitivity, b.sensitivity), a.categories | b.categories)
    r = LevelRange(a, hi)
    assert LevelRange.parse(str(r)) == r


@given(levels, levels, levels)
def test_dominance_is_a_partial_order(a, b, c):
    assert a.dominates(a)
    if a.dominates(b) and b.dominates(a):
        assert a == b
    if a.dominates(b) and b.dominates(c):
        assert a.dominates(c)
