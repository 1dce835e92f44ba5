"""Port forwards through nftables, driven by ``nft -j`` (JSON in and out).

Why the ``nft`` command with JSON rather than a binding: libnftables' JSON
schema (libnftables-json(5)) is the interface the nftables project keeps
stable for programs; the ``nft`` binary is on every host that has nftables
at all; one ``nft -j -f -`` call applies a whole batch as one atomic
transaction; and nothing has to match the venv's Python (Debian's
``python3-nftables`` is built for the system interpreter only, and is
itself a thin ctypes layer over the same libnftables the command uses). A
call costs a few milliseconds, outside the payload's run.

One table belongs to sandbox: ``ip sandbox``, with two NAT chains,
``prerouting`` (traffic arriving from other hosts or sandboxes) and
``output`` (traffic the host itself sends to the bridge's address), both
at the DNAT priority. Every rule carries the comment ``sandbox:<state
tag>:<sandbox id> <proto>/<host ip>:<host port>``, so teardown and gc
delete exactly one sandbox's rules by handle, and a gc of one state folder
never touches another's. The table is deleted once it holds no rule.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ..errors import HostSupportError, SetupError

FAMILY = "ip"
TABLE = "sandbox"
CHAINS = (("prerouting", "prerouting"), ("output", "output"))
PREFIX = "sandbox:"


class NftError(SetupError):
    pass


def _nft_bin() -> str:
    path = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None)
    if path is None:
        raise HostSupportError("--port needs nftables: the 'nft' command is not installed "
                               "(apt-get install nftables)")
    return path


def run(commands: list[dict]) -> None:
    """Apply ``commands`` (libnftables-json objects) as one transaction."""
    p = subprocess.run([_nft_bin(), "-j", "-f", "-"],
                       input=json.dumps({"nftables": commands}), capture_output=True,
                       text=True)
    if p.returncode != 0:
        msg = " ".join(p.stderr.split())[:300]
        raise NftError(f"nftables refused the port forward rules: {msg}", step="nftables")


def rules() -> list[dict]:
    """The rules of our table: dicts with chain, handle, comment, owner
    (``tag:sid``), key (``proto/ip:port``). Empty when the table is absent."""
    if shutil.which("nft") is None and not os.path.exists("/usr/sbin/nft"):
        return []
    p = subprocess.run([_nft_bin(), "-j", "list", "table", FAMILY, TABLE],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return []   # no such table
    out = []
    for item in json.loads(p.stdout).get("nftables", []):
        r = item.get("rule")
        if not r:
            continue
        comment = r.get("comment") or ""
        owner, key = None, None
        if comment.startswith(PREFIX):
            head, _, key = comment[len(PREFIX):].partition(" ")
            owner = head
        out.append({"chain": r.get("chain"), "handle": r.get("handle"),
                    "comment": comment, "owner": owner, "key": key or None})
    return out


def table_exists() -> bool:
    p = subprocess.run([_nft_bin(), "-j", "list", "table", FAMILY, TABLE],
                       capture_output=True, text=True)
    return p.returncode == 0


def _ensure() -> list[dict]:
    cmds = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    for name, hook in CHAINS:
        cmds.append({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name,
                                       "type": "nat", "hook": hook, "prio": -100,
                                       "policy": "accept"}}})
    return cmds


def port_key(proto: str, host_ip: str, host_port: int) -> str:
    return f"{proto}/{host_ip}:{host_port}"


def add_forwards(tag: str, sandbox_id: str, address: str, forwards) -> None:
    """DNAT ``host_ip:host_port`` to ``address:port`` for each forward, in
    the prerouting and output chains, as one transaction."""
    cmds = _ensure()
    for f in forwards:
        comment = f"{PREFIX}{tag}:{sandbox_id} {port_key(f.proto, f.host_ip, f.host_port)}"
        expr = [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": f.host_ip}},
            {"match": {"op": "==", "left": {"payload": {"protocol": f.proto, "field": "dport"}},
                       "right": f.host_port}},
            {"counter": None},
            {"dnat": {"addr": address, "port": f.port}},
        ]
        for chain, _hook in CHAINS:
            cmds.append({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain,
                                          "comment": comment, "expr": expr}}})
    run(cmds)


def delete_handles(found: list[dict]) -> None:
    if found:
        run([{"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": r["chain"],
                                  "handle": r["handle"]}}} for r in found])


def delete_owned(owner: str) -> list[dict]:
    """Delete the rules of ``tag:sid``; the rules deleted."""
    found = [r for r in rules() if r["owner"] == owner]
    delete_handles(found)
    return found


def delete_table_if_empty() -> bool:
    """Drop our table when no rule is left in it (ours or anyone's)."""
    if not table_exists() or rules():
        return False
    try:
        run([{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
    except NftError:
        return False
    return True
