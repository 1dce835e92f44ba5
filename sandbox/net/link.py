"""Links, addresses and routes through netlink (pyroute2's plain,
synchronous `IPRoute`; it starts no thread). Imported only on the bridge
path: pyroute2 costs about 100 ms to import.

Everything made here is marked in the interface alias (``ip link show``
prints it): the bridge ``sandbox:<state tag>``, each host-side veth
``sandbox:<state tag>:<sandbox id>``; `sandbox.net.wire` finds them through
sysfs without importing pyroute2.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import UsageError
from .model import ALIAS


def bridge_alias(tag: str) -> str:
    return f"{ALIAS}{tag}"


def veth_alias(tag: str, sandbox_id: str) -> str:
    return f"{ALIAS}{tag}:{sandbox_id}"


def _index(ip, name: str) -> int | None:
    found = ip.link_lookup(ifname=name)
    return found[0] if found else None


def _kind(msg) -> str | None:
    info = msg.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def check_host(bridge: str, subnet: ipaddress.IPv4Network, gateway: str, tag: str,
               where: str) -> None:
    """Refuse (one line, `UsageError`) a bridge name held by something else
    and a subnet that overlaps a host route not on our bridge."""
    with IPRoute() as ip:
        br = _index(ip, bridge)
        if br is not None:
            msg = ip.link("get", index=br)[0]
            alias = msg.get_attr("IFLA_IFALIAS") or ""
            if _kind(msg) != "bridge" or alias != bridge_alias(tag):
                if alias.startswith(ALIAS):
                    raise UsageError(f"bridge {bridge} belongs to another sandbox state folder "
                                     f"(alias {alias!r}); use --net bridge:OTHERNAME")
                raise UsageError(f"interface {bridge} exists and was not made by sandbox; "
                                 "use --net bridge:OTHERNAME")
            addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                     for a in ip.get_addr(index=br, family=socket.AF_INET)]
            if addrs and (gateway, subnet.prefixlen) not in addrs:
                have = ", ".join(f"{a}/{n}" for a, n in addrs)
                raise UsageError(f"bridge {bridge} has address {have}, not one of the configured "
                                 f"subnet {subnet} (from {where}); stop its sandboxes and run "
                                 "`sandbox gc`")
        names = {}
        for r in ip.route("dump", family=socket.AF_INET):
            table = r.get_attr("RTA_TABLE") or r["table"]
            if table == 255 or r["dst_len"] == 0:     # local table; default routes
                continue
            oif = r.get_attr("RTA_OIF")
            if br is not None and oif == br:
                continue
            net = ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}", strict=False)
            if net.overlaps(subnet):
                if oif is not None and oif not in names:
                    try:
                        found = ip.link("get", index=oif)[0]
                        names[oif] = (found.get_attr("IFLA_IFNAME"),
                                      found.get_attr("IFLA_IFALIAS"))
                    except (NetlinkError, IndexError):
                        names[oif] = (str(oif), None)
                if oif is not None and names[oif] == (bridge, bridge_alias(tag)):
                    continue        # our bridge, made by a concurrent launch meanwhile
                dev = f" dev {names[oif][0]}" if oif is not None else ""
                tbl = f" table {table}" if table != 254 else ""
                raise UsageError(f"subnet {subnet} for bridge {bridge} (from {where}) clashes "
                                 f"with the host route {net}{dev}{tbl}; configure another subnet "
                                 "(SANDBOX_NET_SUBNET or network.toml)")


def ensure_bridge(ip, bridge: str, gateway: str, prefixlen: int, tag: str) -> int:
    """The bridge's index; made (with its address, up) when absent."""
    br = _index(ip, bridge)
    if br is None:
        ip.link("add", ifname=bridge, kind="bridge")
        br = _index(ip, bridge)
        ip.link("set", index=br, ifalias=bridge_alias(tag))
        try:    # no IPv6 link-local address: the sandboxes reach the host over IPv4 only
            with open(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6", "w") as f:
                f.write("1")
        except OSError:
            pass
    have = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
            for a in ip.get_addr(index=br, family=socket.AF_INET)]
    if (gateway, prefixlen) not in have:
        ip.addr("add", index=br, address=gateway, prefixlen=prefixlen)
    ip.link("set", index=br, state="up")
    return br


def add_veth(ip, host_if: str, nsfd: int, bridge_index: int, alias: str) -> int:
    """A veth pair: ``host_if`` on the bridge, its peer made directly in the
    network namespace ``nsfd`` under the name ``eth0``."""
    ip.link("add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": nsfd})
    idx = _index(ip, host_if)
    ip.link("set", index=idx, ifalias=alias)
    ip.link("set", index=idx, master=bridge_index, state="up")
    return idx


def configure_inside(nsfd: int, address: str, prefixlen: int, gateway: str) -> None:
    """In the sandbox's network namespace: eth0 up with ``address``, and a
    default route through ``gateway``. The netlink socket is opened inside
    (setns there and straight back; the supervisor is single-threaded)."""
    netns.pushns(nsfd)
    try:
        ns = IPRoute()
        eth0 = ns.link_lookup(ifname="eth0")   # the first request opens the socket here
    finally:
        netns.popns()
    with ns:
        if not eth0:
            raise OSError(errno.ENODEV, "eth0 is missing in the sandbox")
        ns.addr("add", index=eth0[0], address=address, prefixlen=prefixlen)
        ns.link("set", index=eth0[0], state="up")
        ns.route("add", dst="0.0.0.0/0", gateway=gateway)


def delete_link(ip, name: str) -> bool:
    """Delete ``name`` when it exists; whether it did."""
    idx = _index(ip, name)
    if idx is None:
        return False
    try:
        ip.link("del", index=idx)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return False      # gone with its namespace meanwhile
        raise
    return True


def members(ip, bridge_index: int) -> list[str]:
    return [m.get_attr("IFLA_IFNAME") for m in ip.link("dump")
            if m.get_attr("IFLA_MASTER") == bridge_index]


def remove_bridge_if_unused(ip, bridge: str, tag: str) -> bool:
    """Delete our bridge when no interface is attached to it any more."""
    br = _index(ip, bridge)
    if br is None:
        return False
    msg = ip.link("get", index=br)[0]
    if msg.get_attr("IFLA_IFALIAS") != bridge_alias(tag) or members(ip, br):
        return False
    return delete_link(ip, bridge)
