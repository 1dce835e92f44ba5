"""A bridged sandbox cannot reach the host's own services (issue 16 item
5) unless ``--allow-host PORT`` names the port. The servers run in this
test process on all addresses of the host; nothing leaves the machine.
Bridge names and subnets follow tests/integration/test_net_bridge.py's
scheme, with numbers that file does not use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import pytest

from conftest import needs_root
from helpers import run_sandbox

pytestmark = [needs_root,
              pytest.mark.skipif(not os.path.exists("/usr/sbin/nft"), reason="needs nftables")]

PY = "/usr/bin/python3"
B = 208 + os.getpid() % 40


def _net(n: int):
    return f"sbxt{os.getpid() % 1000}n{n}", f"10.{B}.{240 + n}.0/24", f"10.{B}.{240 + n}.1"


@pytest.fixture
def servers():
    """Two TCP servers on all addresses that answer "hi <port>"."""
    socks, stop = [], threading.Event()
    for _ in range(2):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 0))
        s.listen(16)
        s.settimeout(0.2)
        socks.append(s)

    def serve(s):
        while not stop.is_set():
            try:
                c, _ = s.accept()
            except OSError:
                continue
            with c:
                c.sendall(f"hi {s.getsockname()[1]}\n".encode())
    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    yield [s.getsockname()[1] for s in socks]
    stop.set()
    for t in threads:
        t.join(2)
    for s in socks:
        s.close()


PROBE = """
import socket, sys
for where in sys.argv[1:]:
    h, p = where.rsplit(":", 1)
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((h, int(p))); print(where, s.recv(64).decode().strip())
    except OSError as e:
        print(where, type(e).__name__)
"""


def _host_address():
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True)
    for link in json.loads(out.stdout or "[]"):
        if link["ifname"].startswith(("sbx", "lo")):
            continue
        for a in link.get("addr_info", []):
            return a["local"]
    return None


def _guard_rules(bridge: str) -> list[str]:
    from sandbox.net import hostguard
    return [r["comment"] for r in hostguard.rules() if bridge in r["comment"]
            or "allow-host" in r["comment"]]


def _run(root, net, *args):
    return run_sandbox(root, "run", "--net", f"bridge:{net[0]}", *args,
                       env={"SANDBOX_NET_SUBNET": net[1]}, timeout=60)


def test_bridged_sandbox_cannot_reach_host_services_on_the_bridge_address(sroot, servers):
    net = _net(10)
    targets = [f"{net[2]}:{p}" for p in servers]
    host = _host_address()
    if host:
        targets.append(f"{host}:{servers[0]}")
    r = _run(sroot, net, "--", PY, "-c", PROBE, *targets)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{t} TimeoutError" for t in targets]
    assert _guard_rules(net[0]) == []          # removed with the bridge


def test_allow_host_opens_only_the_named_port_for_that_sandbox(sroot, servers):
    net = _net(11)
    ok, shut = servers
    r = _run(sroot, net, "--allow-host", str(ok), "--", PY, "-c", PROBE,
             f"{net[2]}:{ok}", f"{net[2]}:{shut}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{net[2]}:{ok} hi {ok}", f"{net[2]}:{shut} TimeoutError"]
    assert _guard_rules(net[0]) == []
    log = run_sandbox(sroot, "audit", "log", "--kind", "launch", "--json")
    rec = json.loads(log.stdout.splitlines()[-1])["data"]["network"]
    assert rec["host_guard"] is True and rec["allow_host"] == [f"{ok}/tcp"]


@pytest.mark.parametrize("bad", ["0", "65536", "http", "22/icmp", "-1"])
def test_bad_allow_host_is_a_usage_error(sroot, bad):
    r = _run(sroot, _net(12), "--allow-host", bad, "--", "/bin/true")
    assert r.returncode == 125
    assert f"bad --allow-host {bad!r}" in r.stderr


def test_allow_host_without_bridge_is_a_usage_error(sroot):
    r = run_sandbox(sroot, "run", "--allow-host", "22", "--", "/bin/true")
    assert r.returncode == 125
    assert "--allow-host need --net bridge" in r.stderr
