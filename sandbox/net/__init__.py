"""Sandbox networking: ``none``, ``host`` and ``bridge`` (DESIGN §2 step 8).

``none`` and ``host`` need nothing from this package: the child brings its
own ``lo`` up, or shares the host's network namespace. ``bridge`` is built
here, in three stages that follow the launch path:

- `plan_bridge` (stage 6, in the parent, before the fork): parse ``--port``
  and ``--dns``, read the bridge's subnet (`config`), refuse a subnet that
  overlaps a host route, check the forwarded host ports are free, and
  lease an address (`leases`: a row in ``<state>/network.db``, live while
  the supervisor that wrote it runs). Returns a frozen `NetPlan` and a
  reservation the caller releases.
- `attach` (stage 8, in the supervisor, after the fork and the id maps):
  the bridge, a veth pair whose peer is made inside the sandbox's network
  namespace as ``eth0``, its address and default route, the host ports
  held (bound sockets) and the nftables DNAT rules for them (`nft`), and
  for an image or ``--rootfs`` root the /etc layer (`plan.write_etc_layer`).
- `detach` (stage 10) and `gc` (after a crash): remove exactly what one
  sandbox (or every dead one) left.

This module is imported on the bridge path only; pyroute2 is imported
inside `sandbox.net.link`, which only `attach`, `detach` and `gc` load.
"""

from __future__ import annotations

from .model import NetPlan, PortForward, parse_dns, parse_network, parse_port

__all__ = ["NetPlan", "PortForward", "parse_dns", "parse_network", "parse_port",
           "plan_bridge", "attach", "detach", "gc", "list_leases", "etc_mounts"]


def plan_bridge(*args, **kwargs):
    from .plan import plan_bridge as f
    return f(*args, **kwargs)


def etc_mounts(*args, **kwargs):
    from .plan import etc_mounts as f
    return f(*args, **kwargs)


def attach(netplan, pid: int):
    """Wire the sandbox whose first child is ``pid`` (see `sandbox.net.wire`)."""
    from .wire import attach as f
    return f(netplan, pid)


def detach(handle) -> list[str]:
    """Undo `attach`; a list of what could not be removed."""
    from .wire import detach as f
    return f(handle)


def gc(paths) -> list[str]:
    """Remove what dead bridge sandboxes left (veths, nftables rules,
    leases, empty bridges of ours); a list describing what was removed."""
    from .wire import gc as f
    return f(paths)


def list_leases(paths) -> list[dict]:
    """The address leases in ``paths``' state folder, each with ``live``."""
    from .leases import list_leases as f
    return f(paths)
