"""The network object the runtime wires a sandbox with.

The runtime imports no networking code (DESIGN §11: `sandbox.runtime` is
the executor only); it is handed an object with ``attach(pid)`` and
``detach() -> list[str]`` (`sandbox.runtime.spawn.launch`'s ``network``).
`BridgeNetwork` is that object for ``--net bridge``: it calls
`sandbox.net` (pyroute2, nftables), loaded only when a bridge is used.
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


def build_network(plan):
    """The network object for ``plan``, or None when it needs none."""
    return BridgeNetwork(plan.net) if plan.net is not None else None
