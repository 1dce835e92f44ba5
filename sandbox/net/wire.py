"""Stage 8 and 10 for ``--net bridge``: `attach`, `detach`, and `gc`.

Changes to host-wide objects (the bridge, the nftables table) happen under
one host-wide flock, ``/run/lock/sandbox-net.lock``: a launch that makes
the bridge, a teardown or gc that deletes it once it is unused, and the
check for a conflicting port forward cannot interleave.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field

from ..errors import SandboxError, SetupError
from . import leases
from .model import NetPlan

HOST_LOCK_DIRS = ("/run/lock", "/run", "/tmp")
HOST_LOCK = "sandbox-net.lock"


class host_lock:
    def __enter__(self):
        for d in HOST_LOCK_DIRS:
            if os.path.isdir(d):
                path = os.path.join(d, HOST_LOCK)
                break
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


@dataclass
class Handle:
    """What `attach` made for one sandbox (for `detach`)."""

    plan: NetPlan
    made: list = field(default_factory=list)    # "veth", "rules"
    sockets: list = field(default_factory=list)  # the held host ports


def _owner(np: NetPlan) -> str:
    return f"{np.tag}:{np.sandbox_id}"


def attach(np: NetPlan, pid: int) -> Handle:
    """Wire the sandbox whose network namespace is ``/proc/<pid>/ns/net``.

    Raises `SetupError` (step ``network``) or `UsageError`; on error
    whatever was made is removed again.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    from . import hostguard, link, nft
    handle = Handle(np)
    if np.address is None:
        raise SetupError("no address leased for the sandbox", step="network")
    try:
        nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise SetupError(f"cannot open the sandbox's network namespace: {e.strerror}",
                         step="network", errno=e.errno) from None
    try:
        from .plan import write_etc_layer
        write_etc_layer(np)
        with host_lock():
            from pyroute2 import IPRoute
            # the host guard before the bridge can carry anything (hostguard)
            handle.made.append("guard")
            hostguard.ensure_guard(np.bridge)
            if np.allow_host:
                handle.made.append("allow-host")
                hostguard.add_allows(np.tag, np.sandbox_id, np.bridge, np.address,
                                     np.allow_host)
            with IPRoute() as ip:
                br = link.ensure_bridge(ip, np.bridge, np.gateway, np.prefixlen, np.tag)
                handle.made.append("veth")
                link.add_veth(ip, np.host_if, nsfd, br, link.veth_alias(np.tag, np.sandbox_id))
            if np.ports:
                from .plan import hold_port
                for f in np.ports:
                    handle.sockets.append(hold_port(f, np.gateway))
                _check_forwards(np)
                handle.made.append("rules")
                nft.add_forwards(np.tag, np.sandbox_id, np.address, np.ports)
        link.configure_inside(nsfd, np.address, np.prefixlen, np.gateway)
    except BaseException as e:
        detach(handle)
        if isinstance(e, SandboxError):
            raise
        if isinstance(e, (OSError, NetlinkError)):
            text = getattr(e, "strerror", None) or str(e)
            raise SetupError(f"bridge network setup failed: {text}", step="network",
                             errno=getattr(e, "errno", None) or getattr(e, "code", None)) \
                from None
        raise
    finally:
        os.close(nsfd)
    return handle


def _check_forwards(np: NetPlan) -> None:
    """Under the host lock: a forward of the same host port by another
    sandbox is refused, or removed first when that sandbox is dead (its
    lease in our state folder has no living owner, or no row at all)."""
    from ..errors import UsageError
    from . import nft
    want = {nft.port_key(f.proto, f.host_ip, f.host_port) for f in np.ports}
    stale = []
    for r in nft.rules():
        if r["key"] not in want or r["owner"] == _owner(np):
            continue
        tag, _, sid = (r["owner"] or ":").partition(":")
        if tag == np.tag and sid and not _live_in(np.state, sid):
            stale.append(r)
            continue
        proto, _, where = r["key"].partition("/")
        raise UsageError(f"--port {where}/{proto} is already forwarded to sandbox "
                         f"{sid or '?'} (run `sandbox gc` if it has ended)")
    nft.delete_handles(stale)


def _live_in(state_db: str, sid: str) -> bool:
    return any(r["sandbox_id"] == sid and r["live"] for r in leases.rows(state_db))


def detach(handle: Handle) -> list[str]:
    """Remove the sandbox's veth (if its namespace has not taken it along
    already), its nftables rules, and the bridge and table once unused.
    Returns what could not be removed."""
    np = handle.plan
    left: list[str] = []
    try:
        lock = host_lock().__enter__()
    except OSError as e:
        return [f"network: cannot take the host lock: {e.strerror}"]
    try:
        if "veth" in handle.made:
            try:
                from pyroute2 import IPRoute

                from . import link
                with IPRoute() as ip:
                    link.delete_link(ip, np.host_if)
                    link.remove_bridge_if_unused(ip, np.bridge, np.tag)
            except Exception as e:  # noqa: BLE001 - reported as a leftover
                left.append(f"veth {np.host_if} / bridge {np.bridge}: {e}")
        if "allow-host" in handle.made:
            from . import hostguard
            try:
                hostguard.delete_allows(np.tag, lambda sid: sid == np.sandbox_id)
            except Exception as e:  # noqa: BLE001
                left.append(f"nftables allow-host rules of sandbox {np.sandbox_id}: {e}")
        if "guard" in handle.made and not _bridge_in_use(np.bridge):
            from . import hostguard
            try:
                hostguard.remove_guard(np.bridge)
            except Exception as e:  # noqa: BLE001
                left.append(f"nftables host guard of bridge {np.bridge}: {e}")
        if "rules" in handle.made:
            from . import nft
            try:
                nft.delete_owned(_owner(np))
                nft.delete_table_if_empty()
            except Exception as e:  # noqa: BLE001
                left.append(f"nftables rules of sandbox {np.sandbox_id}: {e}")
    finally:
        lock.__exit__()
        for sock in handle.sockets:     # the host ports, once no rule points them in
            sock.close()
        handle.sockets = []
    return left


def _bridge_in_use(bridge: str) -> bool:
    """The bridge exists and has a member (a sandbox's veth): its guard stays."""
    try:
        return bool(os.listdir(f"/sys/class/net/{bridge}/brif"))
    except OSError:
        return False


def gc(paths) -> list[str]:
    """Remove everything of dead bridge sandboxes of this state folder: host
    veths, nftables rules and lease rows, and our bridges and table once
    nothing uses them. Sandboxes whose supervisor runs are left alone.
    Returns one line per object removed (empty when there was nothing)."""
    if os.geteuid() != 0:
        # Only root can have made links and rules; still drop dead rows.
        return _gc_rows(paths, leases.rows(paths))
    from . import nft
    tag = leases.state_tag(paths)
    removed: list[str] = []
    with host_lock():
        rows = leases.rows(paths)
        live = {r["sandbox_id"] for r in rows if r["live"]}
        aliases = _scan()
        veths = {name for name, a in aliases.items()
                 if a.startswith(f"sandbox:{tag}:") and a.split(":", 2)[2] not in live}
        veths |= {r["host_if"] for r in rows if r["sandbox_id"] not in live
                  and os.path.exists(f"/sys/class/net/{r['host_if']}")}
        bridges = {name for name, a in aliases.items() if a == f"sandbox:{tag}"}
        if veths or bridges:
            from pyroute2 import IPRoute

            from . import link
            with IPRoute() as ip:
                for name in sorted(veths):
                    if link.delete_link(ip, name):
                        removed.append(f"veth {name}")
                busy = {r["bridge"] for r in rows if r["sandbox_id"] in live}
                for name in sorted(bridges - busy):
                    if link.remove_bridge_if_unused(ip, name, tag):
                        removed.append(f"bridge {name}")
        stale = [r for r in nft.rules() if r["owner"] and r["owner"].startswith(tag + ":")
                 and r["owner"].split(":", 1)[1] not in live]
        nft.delete_handles(stale)
        removed += [f"nftables rule {r['chain']} {r['key']} of sandbox "
                    f"{r['owner'].split(':', 1)[1]}" for r in stale]
        if nft.delete_table_if_empty():
            removed.append(f"nftables table {nft.FAMILY} {nft.TABLE}")
        from . import hostguard
        gone = hostguard.delete_allows(tag, lambda sid: sid not in live)
        removed += [f"nftables {r['comment'].split(' ', 1)[1]} rule of a dead sandbox"
                    for r in gone]
        for name in sorted(hostguard.guarded_bridges()):
            if not _bridge_in_use(name) and hostguard.remove_guard(name):
                removed.append(f"nftables host guard of bridge {name}")
        removed += _gc_rows(paths, rows)
    return removed


def _gc_rows(paths, rows) -> list[str]:
    out = []
    for r in rows:
        if r["live"]:
            continue
        leases.delete_row(paths, r["sandbox_id"])
        out.append(f"lease {r['address']} on {r['bridge']} of sandbox {r['sandbox_id']}")
    return out


def _scan() -> dict[str, str]:
    """{interface: alias} of host interfaces whose alias marks them as ours
    (read from sysfs: no pyroute2 import when there is nothing to do)."""
    from .model import ALIAS
    out = {}
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return out
    for name in names:
        try:
            with open(f"/sys/class/net/{name}/ifalias") as f:
                a = f.read().strip()
        except OSError:
            continue
        if a.startswith(ALIAS):
            out[name] = a
    return out
