"""The network object the runtime wires a sandbox with.

The runtime imports no networking code (DESIGN §11: `sandbox.runtime` is
the executor only); it is handed an object with ``attach(pid)`` and
``detach() -> list[str]`` (`sandbox.runtime.spawn.launch`'s ``network``).
`BridgeNetwork` is that object for ``--net bridge``: it calls
`sandbox.net` (pyroute2, nftables), loaded only when a bridge is used.
For ``--net allow:`` it is `sandbox.net.egress.EgressNetwork`, given the
audit writer for its connection events here (the net layer is below the
audit layer).
"""

from __future__ import annotations


class BridgeNetwork:
    """Wires the sandbox of one `sandbox.net.NetPlan` to its bridge."""

    def __init__(self, netplan):
        self.netplan = netplan
        self._handle = None

    def attach(self, pid: int) -> None:
        """The veth into ``pid``'s network namespace, its address, default
        route and port forwards (`sandbox.net.attach`)."""
        from ..net import attach
        self._handle = attach(self.netplan, pid)

    def detach(self) -> list[str]:
        """Undo `attach`; what could not be removed (idempotent)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return []
        from ..net import detach
        return list(detach(handle))


def egress_writer(paths):
    """``write(events)`` for the egress proxy process: each connection one
    ``egress`` audit record (unsigned like launch records: the next signed
    record covers them). ``paths`` None (no audit): events are dropped."""
    def write(events):
        if paths is None:
            return
        from ..audit import prepare
        log = prepare(paths)
        for ev in events:
            log.append("egress", ev, sign=False)
    return write


def build_network(plan, paths=None):
    """The network object for ``plan``, or None when it needs none."""
    if plan.net is None:
        return None
    if plan.network == "allow":
        import os

        from ..net.egress import EgressNetwork
        from ..net.egress.network import COUNTS_NAME
        return EgressNetwork(plan.net, egress_writer(paths), os.path.join(plan.base, COUNTS_NAME))
    return BridgeNetwork(plan.net)
