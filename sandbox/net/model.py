"""Plain values of the network plan, and the parsers of ``--net``,
``--port`` and ``--dns``. Standard library only."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_BRIDGE = "sandbox0"
#: prefix of the aliases of our links and the comments of our nftables rules
ALIAS = "sandbox:"
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_PORT = re.compile(r"^(?:(?P<ip>[^:/]+):)?(?P<hp>[0-9]{1,5}):(?P<p>[0-9]{1,5})"
                   r"(?:/(?P<proto>[A-Za-z]+))?$")


@dataclass(frozen=True, slots=True)
class PortForward:
    """``host_ip:host_port`` on the host forwarded to ``port`` in the sandbox.
    ``host_ip`` None: the bridge's own address (filled in by the plan)."""

    host_ip: str | None
    host_port: int
    port: int
    proto: str = "tcp"

    def to_dict(self) -> dict:
        return {"host_ip": self.host_ip, "host_port": self.host_port,
                "port": self.port, "proto": self.proto}

    def __str__(self) -> str:
        return f"{self.host_ip or '<bridge>'}:{self.host_port}->{self.port}/{self.proto}"


def parse_port(text: str) -> PortForward:
    """``[HOSTIP:]HOSTPORT:PORT[/tcp|udp]`` to a `PortForward`; `UsageError`
    (one line) otherwise."""
    m = _PORT.match(text.strip())
    if not m:
        raise UsageError(f"bad --port {text!r}: write it as [HOSTIP:]HOSTPORT:PORT[/tcp|udp]")
    proto = (m.group("proto") or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise UsageError(f"bad --port {text!r}: protocol {m.group('proto')!r} is not tcp or udp")
    hp, p = int(m.group("hp")), int(m.group("p"))
    for v in (hp, p):
        if not 1 <= v <= 65535:
            raise UsageError(f"bad --port {text!r}: port {v} is not between 1 and 65535")
    ip = m.group("ip")
    if ip is not None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise UsageError(f"bad --port {text!r}: {ip!r} is not an IPv4 address") from None
        if addr.version != 4:
            raise UsageError(f"bad --port {text!r}: only IPv4 host addresses are supported")
        if addr.is_loopback:
            raise UsageError(f"bad --port {text!r}: a loopback host address cannot be "
                             "forwarded; leave HOSTIP out to use the bridge's address")
        if addr.is_unspecified or addr.is_multicast:
            raise UsageError(f"bad --port {text!r}: {ip} is not a host address")
        ip = str(addr)
    return PortForward(ip, hp, p, proto)


@dataclass(frozen=True, slots=True)
class HostPort:
    """A port of the host a bridged sandbox may connect to (``--allow-host``)."""

    port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}"


def parse_allow_host(text) -> HostPort:
    """``PORT[/tcp|udp]`` to a `HostPort`; `UsageError` (one line) otherwise."""
    if isinstance(text, HostPort):
        return text
    port, _, proto = str(text).strip().partition("/")
    proto = (proto or "tcp").lower()
    if not port.isdigit() or not 1 <= int(port) <= 65535 or proto not in ("tcp", "udp"):
        raise UsageError(f"bad --allow-host {text!r}: write it as PORT[/tcp|udp], "
                         "a port between 1 and 65535")
    return HostPort(int(port), proto)


def parse_dns(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise UsageError(f"bad --dns {text!r}: give a name server's IP address") from None


def parse_network(text: str | None) -> tuple[str | None, str | None]:
    """``none``, ``host``, ``bridge`` or ``bridge:NAME`` to (mode, bridge name)."""
    if text is None:
        return None, None
    mode, sep, name = text.partition(":")
    if mode not in ("none", "host", "bridge") or (sep and mode != "bridge"):
        raise UsageError(f"bad --net {text!r}: use none, host, bridge or bridge:NAME")
    if not sep:
        return mode, None
    if not _IFNAME.match(name):
        raise UsageError(f"bad --net {text!r}: a bridge name is 1-15 letters, digits, "
                         "'_', '.' or '-'")
    return mode, name


@dataclass(frozen=True, slots=True)
class NetPlan:
    """The bridge network of one sandbox.

    `to_dict` (part of the plan and its digest) holds what is the same at
    every launch of one configuration; the leased ``address`` and the
    host-side interface ``host_if`` differ per launch and are reported by
    `record` (the audit launch record) instead.
    """

    bridge: str
    subnet: str                 # e.g. 10.207.0.0/20
    gateway: str                # the bridge's address, the default route
    ports: tuple[PortForward, ...] = ()
    dns: tuple[str, ...] = ()
    dns_source: str = "host"    # "flag --dns" | "host" | "none"
    sandbox_id: str = ""
    address: str | None = None  # None in --dry-run: nothing is leased
    host_if: str = ""
    tag: str = ""               # identifies the state folder owning the lease
    state: str = ""             # that state folder's lease database
    #: image or --rootfs roots: the /etc files, written by `attach` into
    #: ``etc_dir`` (in the sandbox's runtime folder), which becomes the top
    #: lower layer of the overlay; ``etc_mode`` (uid, gid, mode) copies the
    #: image's own /etc so the merged folder keeps its owner
    etc_dir: str = ""
    etc_files: tuple = ()
    etc_mode: tuple = ()
    #: host ports this sandbox may reach through the bridge (`sandbox.net.hostguard`)
    allow_host: tuple[HostPort, ...] = ()

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1])

    def to_dict(self) -> dict:
        return {"mode": "bridge", "bridge": self.bridge, "subnet": self.subnet,
                "gateway": self.gateway, "ports": [p.to_dict() for p in self.ports],
                "dns": list(self.dns), "dns_source": self.dns_source, "interface": "eth0",
                "host_guard": True, "allow_host": [str(p) for p in self.allow_host]}

    def record(self) -> dict:
        """For the audit launch record's ``network`` field."""
        return {"mode": "bridge", "bridge": self.bridge, "subnet": self.subnet,
                "address": self.address, "gateway": self.gateway,
                "host_interface": self.host_if,
                "ports": [p.to_dict() for p in self.ports], "dns": list(self.dns),
                "host_guard": True, "allow_host": [str(p) for p in self.allow_host]}
