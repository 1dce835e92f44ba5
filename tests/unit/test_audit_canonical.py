"""Record bodies are RFC 8785 (issue 14, deliverable 6): the writer's fast
path (the standard library's sorted compact JSON, for values without floats
and with ASCII keys) gives exactly the bytes of the `rfc8785` canonicalizer,
and records with floats or huge integers take the canonicalizer's path or
stay version 1."""

from __future__ import annotations

import json

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.audit import samples
from sandbox.audit._canon import canonical
from sandbox.audit.log import _jcs_as_json, build_body, canonical_body, parse_body

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
_ints = st.integers(min_value=-(2 ** 53 - 1), max_value=2 ** 53 - 1)
_plain = st.recursive(
    st.none() | st.booleans() | _ints | _text,
    lambda kids: st.lists(kids, max_size=4) |
    st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127), max_size=6), kids,
                    max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_plain)
def test_fast_path_bytes_are_the_rfc8785_bytes(value):
    assert _jcs_as_json(value)
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), st.floats(allow_nan=False, allow_infinity=False)
                       | _ints | _text, max_size=4))
def test_every_new_body_is_canonical_by_its_version(data):
    body = build_body(7, "2026-12-02T00:00:00.000000Z", "exit", data, "0" * 64)
    doc = parse_body(body)
    assert canonical_body(doc) == body
    if doc["v"] == 2:
        assert rfc8785.dumps(json.loads(body)) == body


def test_a_launch_record_is_version_2_and_jcs():
    body = build_body(1, "2026-12-02T00:00:00.000000Z", "launch",
                      samples.launch("default", "sb-1"), "0" * 64)
    assert json.loads(body)["v"] == 2 and rfc8785.dumps(json.loads(body)) == body


def test_floats_take_the_canonicalizer_and_huge_integers_stay_version_1():
    body = build_body(1, "t", "exit", {"duration_ms": 100.0, "x": 1e-7}, "0" * 64)
    assert b'"duration_ms":100,' in body and b'"x":1e-7' in body
    assert json.loads(body)["v"] == 2
    big = build_body(1, "t", "exit", {"n": 2 ** 60}, "0" * 64)
    assert json.loads(big)["v"] == 1 and canonical_body(json.loads(big)) == big
