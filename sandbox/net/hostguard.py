"""``--net bridge`` keeps a sandbox off the host's own services (issue 16
item 5).

Without this, a bridged sandbox reaches anything on the host that listens
on all addresses (sshd, databases) through the bridge's address, or
through any other address of the host. The guard is one nftables rule per
bridge in a table of its own, ``ip sandbox_host``, chain ``input`` (the
filter hook for traffic addressed to the host itself)::

    iifname "<bridge>" ct state new drop    comment "sandbox-host:<bridge>"

New connections from the bridge to the host are dropped; replies to
connections the host opened (a ``--port`` forward, the host connecting to
a sandbox) are not new and pass; traffic routed beyond the host does not
reach the input hook. ``--allow-host PORT[/tcp|udp]`` inserts, ahead of
it, an accept for that sandbox's own address and port only::

    iifname "<bridge>" ip saddr <address> tcp dport <port> accept
        comment "sandbox:<state tag>:<sandbox id> allow-host tcp/<port>"

The bridge rule is made with the sandbox that first uses the bridge and
removed with the last one (when the bridge has no member left, or is
removed); a sandbox's accept rules are removed at its teardown, and by
``sandbox gc`` for a dead one. All changes happen under the host-wide
network lock (`sandbox.net.wire.host_lock`).
"""

from __future__ import annotations

from . import nft

TABLE = "sandbox_host"
CHAIN = "input"
GUARD = "sandbox-host:"


def _base() -> list[dict]:
    return [{"add": {"table": {"family": nft.FAMILY, "name": TABLE}}},
            {"add": {"chain": {"family": nft.FAMILY, "table": TABLE, "name": CHAIN,
                               "type": "filter", "hook": "input", "prio": 0,
                               "policy": "accept"}}}]


def rules() -> list[dict]:
    """The rules of our table: chain, handle, comment; empty when absent."""
    import json
    import subprocess
    p = subprocess.run([nft._nft_bin(), "-j", "list", "table", nft.FAMILY, TABLE],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return []
    return [{"chain": r.get("chain"), "handle": r.get("handle"),
             "comment": r.get("comment") or ""}
            for item in json.loads(p.stdout).get("nftables", []) if (r := item.get("rule"))]


def ensure_guard(bridge: str) -> bool:
    """The drop rule of ``bridge`` (added when absent); True when added."""
    if any(r["comment"] == GUARD + bridge for r in rules()):
        return False
    nft.run(_base() + [{"add": {"rule": {
        "family": nft.FAMILY, "table": TABLE, "chain": CHAIN, "comment": GUARD + bridge,
        "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": bridge}},
                 {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
                 {"counter": None}, {"drop": None}]}}}])
    return True


def allow_comment(tag: str, sandbox_id: str) -> str:
    return f"{nft.PREFIX}{tag}:{sandbox_id} allow-host"


def add_allows(tag: str, sandbox_id: str, bridge: str, address: str, ports) -> None:
    """Accept new connections from ``address`` on ``bridge`` to the host's
    ``ports`` (`HostPort` values), ahead of the drop rule."""
    cmds = _base()
    for p in ports:
        cmds.append({"insert": {"rule": {
            "family": nft.FAMILY, "table": TABLE, "chain": CHAIN,
            "comment": f"{allow_comment(tag, sandbox_id)} {p.proto}/{p.port}",
            "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": bridge}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip",
                                                            "field": "saddr"}},
                           "right": address}},
                {"match": {"op": "==", "left": {"payload": {"protocol": p.proto,
                                                            "field": "dport"}},
                           "right": p.port}},
                {"counter": None}, {"accept": None}]}}})
    nft.run(cmds)


def _delete(found: list[dict]) -> None:
    if found:
        nft.run([{"delete": {"rule": {"family": nft.FAMILY, "table": TABLE, "chain": r["chain"],
                                      "handle": r["handle"]}}} for r in found])


def delete_allows(tag: str, drop) -> list[dict]:
    """Delete the accept rules of state folder ``tag`` whose sandbox id
    ``drop(sid)`` is true for; the rules deleted."""
    head = f"{nft.PREFIX}{tag}:"
    found = []
    for r in rules():
        c = r["comment"]
        if c.startswith(head) and " allow-host " in c:
            sid = c[len(head):].split(" ", 1)[0]
            if drop(sid):
                found.append(r)
    _delete(found)
    return found


def remove_guard(bridge: str) -> bool:
    """Drop the bridge's rule, and the table once it holds no rule."""
    found = [r for r in rules() if r["comment"] == GUARD + bridge]
    _delete(found)
    if not rules():
        try:
            nft.run([{"delete": {"table": {"family": nft.FAMILY, "name": TABLE}}}])
        except nft.NftError:
            pass
    return bool(found)


def guarded_bridges() -> set[str]:
    return {r["comment"][len(GUARD):] for r in rules() if r["comment"].startswith(GUARD)}
