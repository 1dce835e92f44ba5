"""Which subnet a bridge uses.

In order: the environment variable ``SANDBOX_NET_SUBNET`` (for whatever
bridge is named), then ``<config>/network.toml``::

    [bridge.sandbox0]
    subnet = "10.207.0.0/20"

    [bridge.lab]
    subnet = "10.207.64.0/24"

then, for the default bridge ``sandbox0`` only, `DEFAULT_SUBNET`. The
default is off the ranges Docker (172.17-31/16, 192.168/16 pools), Podman
(10.88/16, 10.89.x/24), libvirt (192.168.122/24), LXD, Kubernetes
(10.96/12, 10.244/16, 10.42/16) and ZeroTier usually take; a clash with the
host's routes is still checked at every launch.
"""

from __future__ import annotations

import ipaddress
import os

from ..errors import UsageError
from .model import DEFAULT_BRIDGE

DEFAULT_SUBNET = "10.207.0.0/20"
ENV = "SANDBOX_NET_SUBNET"


def _check(text: str, where: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(str(text).strip(), strict=True)
    except ValueError as e:
        raise UsageError(f"bad subnet {text!r} in {where}: {e}") from None
    if net.version != 4:
        raise UsageError(f"bad subnet {text!r} in {where}: only IPv4 subnets are supported")
    if not 8 <= net.prefixlen <= 29:
        raise UsageError(f"bad subnet {text!r} in {where}: the prefix length must be 8 to 29")
    if net.is_loopback or net.is_multicast or net.is_link_local:
        raise UsageError(f"bad subnet {text!r} in {where}: not a usable unicast range")
    return net


def config_file(paths) -> str:
    return os.path.join(str(paths.config), "network.toml")


def subnet_for(paths, bridge: str) -> tuple[ipaddress.IPv4Network, str]:
    """(subnet, where it was set) for ``bridge``; `UsageError` when the
    configured value is bad or a non-default bridge has none."""
    env = os.environ.get(ENV)
    if env:
        return _check(env, f"${ENV}"), f"${ENV}"
    path = config_file(paths)
    if os.path.exists(path):
        import tomllib
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise UsageError(f"cannot read {path}: {e}") from None
        entry = (data.get("bridge") or {}).get(bridge)
        if isinstance(entry, dict) and "subnet" in entry:
            return _check(entry["subnet"], path), path
    if bridge == DEFAULT_BRIDGE:
        return ipaddress.ip_network(DEFAULT_SUBNET), "default"
    raise UsageError(f"no subnet configured for bridge {bridge!r}: add [bridge.{bridge}] "
                     f"subnet = \"A.B.C.D/N\" to {path}, or set ${ENV}")
