"""The egress allow-list: rules, the matcher and the address check.

Pure and standard-library only: everything here is a decision over
values, tested without privilege (``tests/unit/test_egress_policy.py``).

A rule is one of::

    pypi.org                an exact name, any port
    api.example.com:443     an exact name, one port
    *.pythonhosted.org      any name strictly below pythonhosted.org (on a
                            label boundary: not pythonhosted.org itself, not
                            evilpythonhosted.org)
    203.0.113.7[:PORT]      an address: destinations given as this address,
    [2001:db8::1][:PORT]    and names resolving to it even when it is
                            loopback, link-local, private or a metadata
                            address (the only way to reach those)

A destination is allowed when a rule of ``allow`` matches it and no rule
of ``deny`` does (deny wins), and every address its name resolves to is a
global unicast address or is named by an address rule of ``allow`` (no DNS
rebinding into the host's own networks: a public name that a hostile
resolver points at 127.0.0.1 or 169.254.169.254 is refused). The proxy
connects to exactly the addresses checked here, never resolving twice.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ...errors import UsageError

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Rule:
    """One allow or deny entry: ``host`` is a lower-case name, ``*.suffix``
    or an address; ``port`` None matches every port."""

    host: str
    port: int | None = None

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    @property
    def address(self):
        """The `ipaddress` value of an address rule, else None."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def matches(self, name: str, port: int) -> bool:
        """``name`` (normalised by `normalize_name`) and ``port`` fall under
        this rule. A wildcard needs at least one more label: ``*.a.b``
        matches ``x.a.b`` and ``x.y.a.b``, never ``a.b``."""
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            suffix = self.host[1:]              # ".a.b": the dot is the label boundary
            return name.endswith(suffix) and len(name) > len(suffix)
        return name == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def _bad(text: str, why: str, where: str) -> UsageError:
    return UsageError(f"bad {where} entry {text!r}: {why}",
                      hint="write NAME, *.DOMAIN or an IP address, each optionally with :PORT")


def normalize_name(name: str) -> str | None:
    """A DNS name as the matcher compares it (lower case, no final dot), or
    None when it is not a valid host name (labels of letters, digits and
    inner hyphens, at most 63 bytes each, 253 in all)."""
    name = name.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253 or not name.isascii():
        return None
    if not all(_LABEL.match(label) for label in name.split(".")):
        return None
    return name


def parse_rule(text: str, where: str = "--net allow:") -> Rule:
    """One entry to a `Rule`; `UsageError` naming the entry otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise _bad(str(text), "it is empty", where)
    raw = text.strip()
    host, port = raw, None
    if raw.startswith("["):                       # [v6] or [v6]:port
        end = raw.find("]")
        if end < 0:
            raise _bad(text, "an IPv6 address needs its closing ']'", where)
        host, rest = raw[1:end], raw[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise _bad(text, "only :PORT may follow ']'", where)
            port = rest[1:]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise _bad(text, f"{host!r} is not an IPv6 address", where) from None
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    elif raw.count(":") > 1:
        raise _bad(text, "write an IPv6 address in brackets, [ADDRESS]:PORT", where)
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _bad(text, f"port {port!r} is not between 1 and 65535", where)
        port = int(port)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    if addr is not None:
        if addr.is_unspecified or addr.is_multicast:
            raise _bad(text, f"{host} is not a host address", where)
        return Rule(str(addr), port)
    wildcard = host.startswith("*.")
    name = normalize_name(host[2:] if wildcard else host)
    if name is None or "*" in host[2 if wildcard else 0:]:
        raise _bad(text, "not a valid host name (a '*' may only stand as the whole "
                   "first label, as in *.example.com)", where)
    if wildcard and "." not in name:
        raise _bad(text, "a wildcard needs a domain of at least two labels "
                   "(*.example.com, not *.com)", where)
    return Rule(("*." if wildcard else "") + name, port)


def parse_rules(entries, where: str = "--net allow:") -> tuple[Rule, ...]:
    """A comma-separated string or a list of entries to rules (duplicates
    dropped, order kept)."""
    if isinstance(entries, str):
        entries = entries.split(",")
    out: list[Rule] = []
    for e in entries:
        r = parse_rule(e, where)
        if r not in out:
            out.append(r)
    return tuple(out)


def address_kind(addr) -> str | None:
    """Why ``addr`` is not an ordinary public destination ("loopback",
    "link-local", "private", "metadata", ...), or None when it is global.
    IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry."""
    if isinstance(addr, str):
        addr = ipaddress.ip_address(addr)
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if str(addr) in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16"):
        return "metadata"
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(addr, f"is_{kind}"):
            return kind.replace("_", "-")
    if not addr.is_global:
        return "non-global"
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one destination: ``rule`` is the rule that decided
    (str, or None when nothing matched), ``reason`` one line for the
    payload and the audit record, ``addresses`` what may be connected to."""

    allowed: bool
    rule: str | None
    reason: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Policy:
    allow: tuple[Rule, ...]
    deny: tuple[Rule, ...] = ()

    def to_dict(self) -> dict:
        return {"allow": [str(r) for r in self.allow], "deny": [str(r) for r in self.deny]}

    def check_name(self, host: str, port: int) -> Decision:
        """The name (or address literal) and port alone, before resolution.
        An allowed result carries no addresses yet (see `check_addresses`);
        an address literal is checked for its address rules here."""
        try:
            lit = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            lit = None
        name = str(lit) if lit is not None else normalize_name(host)
        if name is None:
            return Decision(False, None, f"{host!r} is not a valid host name")
        dest = f"{name}:{port}"
        for r in self.deny:
            if r.matches(name, port):
                return Decision(False, str(r), f"{dest} denied by rule {r}")
        for r in self.allow:
            if r.matches(name, port):
                if lit is not None:
                    return Decision(True, str(r), f"{dest} allowed by rule {r}", (name,))
                return Decision(True, str(r), f"{dest} allowed by rule {r}")
        return Decision(False, None, f"{dest} is not on the allow list")

    def check_addresses(self, name: str, port: int, first: Decision,
                        addresses) -> Decision:
        """``first`` (an allowed `check_name` result for a name) with the
        addresses the name resolved to: refused when any of them is not a
        global address and no address rule of ``allow`` names it, or when
        a deny address rule names it."""
        addrs = []
        for a in addresses:
            a = str(ipaddress.ip_address(a))
            if a not in addrs:
                addrs.append(a)
        if not addrs:
            return Decision(False, first.rule, f"{name}:{port} did not resolve")
        for a in addrs:
            for r in self.deny:
                if r.address is not None and r.matches(a, port):
                    return Decision(False, str(r), f"{name}:{port} resolves to {a}, "
                                                   f"denied by rule {r}")
            kind = address_kind(a)
            if kind is None:
                continue
            if not any(r.address is not None and r.matches(a, port) for r in self.allow):
                return Decision(False, first.rule,
                                f"{name}:{port} resolves to {a} ({kind}), which the allow "
                                "list does not name")
        return Decision(True, first.rule, first.reason, tuple(addrs))


def build_policy(allow, deny=()) -> Policy:
    """The `Policy` of profile or flag entries; `UsageError` on a bad one."""
    return Policy(parse_rules(allow, "network.allow"), parse_rules(deny, "network.deny"))
