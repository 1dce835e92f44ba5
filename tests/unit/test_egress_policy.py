"""The egress allow-list matcher and address check (issue 16), without
privilege: every attack a hostile payload or resolver can try on the
policy, each asserting the exact verdict."""

from __future__ import annotations

import pytest

from sandbox.errors import UsageError
from sandbox.net.egress.policy import (Policy, Rule, address_kind, build_policy, normalize_name,
                                       parse_rule, parse_rules)


def allows(policy: Policy, host: str, port: int = 443, addrs=("93.184.216.34",)) -> bool:
    d = policy.check_name(host, port)
    if d.allowed and not d.addresses:
        d = policy.check_addresses(normalize_name(host), port, d, addrs)
    return d.allowed


WILD = build_policy(["*.good.test"])


@pytest.mark.parametrize("host", ["a.good.test", "x.y.good.test", "A.Good.Test", "a.good.test."])
def test_wildcard_allows_names_below_it(host):
    assert allows(WILD, host)


@pytest.mark.parametrize("host", [
    "good.test",                 # the wildcard needs one more label
    "good.test.evil",            # suffix appended
    "evilgood.test",             # not on a label boundary
    "a.good.test.evil",
    "agood.test",
    "a.good.testx",
    "good.test..",
    "a..good.test",              # empty label
    "a.good.test:443",           # a port is never part of a name
    "a_b.good.test",
    "-a.good.test",
])
def test_wildcard_refuses_lookalikes(host):
    assert not allows(WILD, host)


def test_exact_name_allows_only_itself():
    p = build_policy(["good.test"])
    assert allows(p, "good.test") and allows(p, "GOOD.TEST.")
    for h in ("a.good.test", "good.test.evil", "evilgood.test", "good.tes", "good.test2"):
        assert not allows(p, h), h


def test_port_rule_allows_only_that_port():
    p = build_policy(["api.good.test:443"])
    assert allows(p, "api.good.test", 443)
    assert not allows(p, "api.good.test", 80)


def test_deny_wins_over_allow():
    p = build_policy(["*.good.test"], ["secret.good.test"])
    assert allows(p, "a.good.test")
    d = p.check_name("secret.good.test", 443)
    assert not d.allowed and d.rule == "secret.good.test"
    assert d.reason == "secret.good.test:443 denied by rule secret.good.test"


def test_unlisted_name_denied_with_reason():
    d = WILD.check_name("bad.test", 443)
    assert (d.allowed, d.rule, d.reason) == (False, None, "bad.test:443 is not on the allow list")


@pytest.mark.parametrize("addr,kind", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "metadata"), ("169.254.1.1", "link-local"), ("fe80::1", "link-local"),
    ("fd00:ec2::254", "metadata"), ("fc00::1", "private"), ("0.0.0.0", "private"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("100.64.0.1", "non-global"), ("224.0.0.1", "multicast"),
])
def test_dns_rebinding_to_internal_address_refused(addr, kind):
    assert address_kind(addr) == kind
    p = build_policy(["good.test"])
    first = p.check_name("good.test", 443)
    d = p.check_addresses("good.test", 443, first, [addr])
    assert not d.allowed
    assert d.reason.endswith(f"({kind}), which the allow list does not name")
    assert d.reason.startswith("good.test:443 resolves to ")


def test_rebinding_mixed_answer_refused_whole():
    """One public and one loopback address: refused, not filtered (a
    resolver that mixes them is hostile)."""
    p = build_policy(["good.test"])
    d = p.check_addresses("good.test", 443, p.check_name("good.test", 443),
                          ["93.184.216.34", "127.0.0.1"])
    assert not d.allowed and "127.0.0.1 (loopback)" in d.reason


def test_listed_internal_address_allowed_on_its_port_only():
    p = build_policy(["good.test", "127.0.0.1:8443"])
    first = p.check_name("good.test", 8443)
    assert p.check_addresses("good.test", 8443, first, ["127.0.0.1"]).allowed
    first = p.check_name("good.test", 22)
    assert not p.check_addresses("good.test", 22, first, ["127.0.0.1"]).allowed


def test_public_addresses_allowed_and_kept_in_order():
    p = build_policy(["good.test"])
    d = p.check_addresses("good.test", 443, p.check_name("good.test", 443),
                          ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"])
    assert d.allowed and d.addresses == ("93.184.216.34", "2606:2800:220:1::1")


def test_unresolved_name_denied():
    p = build_policy(["good.test"])
    d = p.check_addresses("good.test", 443, p.check_name("good.test", 443), [])
    assert not d.allowed and d.reason == "good.test:443 did not resolve"


def test_address_literal_needs_an_address_rule():
    p = build_policy(["good.test"])
    assert not p.check_name("127.0.0.1", 80).allowed
    assert not p.check_name("93.184.216.34", 443).allowed
    p = build_policy(["93.184.216.34:443"])
    d = p.check_name("93.184.216.34", 443)
    assert d.allowed and d.addresses == ("93.184.216.34",)
    assert not p.check_name("93.184.216.34", 80).allowed


def test_deny_address_rule_refuses_a_name_resolving_to_it():
    p = build_policy(["*.good.test"], ["203.0.113.9"])
    d = p.check_addresses("a.good.test", 443, p.check_name("a.good.test", 443), ["203.0.113.9"])
    assert not d.allowed and d.rule == "203.0.113.9"


@pytest.mark.parametrize("text,rule", [
    ("pypi.org", Rule("pypi.org")), ("PyPI.org.", Rule("pypi.org")),
    ("api.example.com:443", Rule("api.example.com", 443)),
    ("*.pythonhosted.org", Rule("*.pythonhosted.org")),
    ("10.0.0.1", Rule("10.0.0.1")), ("[::1]:8080", Rule("::1", 8080)),
    ("[2001:db8::1]", Rule("2001:db8::1")),
])
def test_rules_parse(text, rule):
    assert parse_rule(text) == rule


@pytest.mark.parametrize("text", [
    "", " ", "*", "*.", "*.com", "a.*.com", "*a.com", "**.a.com", "a..com", "-a.com", "a-.com",
    "a_b.com", "a.com:0", "a.com:65536", "a.com:http", "a.com:", "::1", "[::1", "[10.0.0.1]",
    "[::1]x", "0.0.0.0", "224.0.0.1", "a.com/path", "http://a.com", "ä.com", "a" * 64 + ".com",
])
def test_malformed_rule_is_usage_error_naming_it(text):
    with pytest.raises(UsageError) as e:
        parse_rule(text)
    assert str(e.value).startswith(f"bad --net allow: entry {text!r}: ")


def test_rules_from_a_comma_list_drop_duplicates():
    assert parse_rules("a.test,b.test,a.test") == (Rule("a.test"), Rule("b.test"))


def test_policy_to_dict_round_trips_the_rules():
    p = build_policy(["*.good.test", "a.test:443", "[::1]:80"], ["x.good.test"])
    assert p.to_dict() == {"allow": ["*.good.test", "a.test:443", "[::1]:80"],
                           "deny": ["x.good.test"]}
    assert build_policy(p.to_dict()["allow"], p.to_dict()["deny"]) == p


def test_proxy_refuses_new_connections_once_the_audit_log_cannot_be_written():
    """Fail closed: no allowed connection without its audit record."""
    import asyncio

    from sandbox.net.egress.proxy import Batcher, Proxy, Resolver

    def broken(events):
        raise OSError("disk full")
    batcher = Batcher(broken, interval=0.01)
    proxy = Proxy(build_policy(["good.test"]), "sb1", batcher,
                  Resolver({"good.test": ["93.184.216.34"]}))
    assert asyncio.run(proxy.decide("good.test", 443)).allowed
    batcher({"decision": "allowed"})
    batcher.close()
    d = asyncio.run(proxy.decide("good.test", 443))
    assert not d.allowed
    assert d.reason == "good.test:443 refused: the audit log cannot be written (disk full)"


def test_batcher_writes_in_batches_and_everything_on_close():
    from sandbox.net.egress.proxy import Batcher
    batches = []
    b = Batcher(batches.append, interval=30, size=5)
    for i in range(12):
        b({"n": i})
    b.close()
    assert [e["n"] for x in batches for e in x] == list(range(12))
    assert max(len(x) for x in batches) >= 5      # batched, not one write per event
