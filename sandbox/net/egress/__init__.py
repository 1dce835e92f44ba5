"""Outbound network by allow-list (``--net allow:HOST[,HOST...]``, profile
``[network] allow``/``deny``): the sandbox has only ``lo``; an HTTP/CONNECT
proxy and a SOCKS5 proxy outside it, listening inside it, resolve and
connect for it and record every connection (issue 16).

- `policy`: the rules, the matcher, the address (anti-rebinding) check.
- `proxy`: the proxy process (asyncio, standard library).
- `network`: `EgressPlan` (in the launch plan) and `EgressNetwork`, the
  runtime's network object that opens the sockets and runs the proxy.
"""

from __future__ import annotations

from .network import (HTTP_PORT, SOCKS_PORT, EgressNetwork, EgressPlan, proxy_env,
                      read_counts)
from .policy import Decision, Policy, Rule, build_policy, parse_rule, parse_rules

__all__ = ["HTTP_PORT", "SOCKS_PORT", "Decision", "EgressNetwork", "EgressPlan", "Policy",
           "Rule", "build_policy", "parse_rule", "parse_rules", "proxy_env", "read_counts"]
