"""Bridge networking as root (CI runs as root). All traffic stays on this
machine: between sandboxes on a test bridge, and between this test process
and the bridge's own address. Nothing is routed or NATed off the host.

Every test uses its own bridge name and /24 (set through
SANDBOX_NET_SUBNET), both derived from the test process's pid so that two
test sessions at once do not clash; a real ``sandbox0`` is never touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from conftest import needs_root
from helpers import SANDBOX, run_sandbox

pytestmark = [needs_root,
              pytest.mark.skipif(not os.path.exists("/usr/sbin/nft"), reason="needs nftables")]

PY = "/usr/bin/python3"


B = 208 + os.getpid() % 40      # second octet of this session's test subnets


def _net(n: int) -> tuple[str, str, str]:
    """(bridge, subnet, gateway) number ``n`` for one test."""
    return f"sbxt{os.getpid() % 1000}n{n}", f"10.{B}.{240 + n}.0/24", f"10.{B}.{240 + n}.1"


@pytest.fixture(autouse=True, scope="module")
def _no_stale_test_bridges():
    """Bridges an interrupted earlier run of these tests left (names sbxt*,
    marked as sandbox's) would clash with this run's subnets."""
    for name, alias in _links():
        if name.startswith("sbxt") and alias.startswith("sandbox:") and \
                not os.listdir(f"/sys/class/net/{name}/brif"):   # unused: no sandbox on it
            subprocess.run(["ip", "link", "del", name], check=False)
    yield


def _env(subnet: str) -> dict:
    return {"SANDBOX_NET_SUBNET": subnet}


def _paths(root):
    from sandbox.paths import Paths
    return Paths.resolve(root)


def _tag(root) -> str:
    from sandbox.net.leases import state_tag
    return state_tag(_paths(root))


def _links(root=None) -> set:
    """The host's links; those of other sandbox state folders (another test
    session running at the same time) left out."""
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True)
    links = {(l["ifname"], l.get("ifalias", "")) for l in json.loads(out.stdout)}
    if root is None:
        return links
    mine = f"sandbox:{_tag(root)}"
    own = f"sbxt{os.getpid() % 1000}n"

    def foreign(n, a):
        if a:
            return a.startswith("sandbox:") and not a.startswith(mine)
        # made by a concurrent session a moment before it sets the alias
        return bool(re.fullmatch(r"sbx[0-9a-f]{12}", n)) or \
            (n.startswith("sbxt") and not n.startswith(own))
    return {(n, a) for n, a in links if not foreign(n, a)}


def _ruleset(root=None) -> list:
    """The whole nftables ruleset; with ``root``, the objects of our table
    ``ip sandbox`` are reduced to the rules of that state folder (another
    test session may hold rules there meanwhile), and the table must not be
    left empty."""
    out = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                         check=True)
    items = [i for i in json.loads(out.stdout)["nftables"] if "metainfo" not in i]
    if root is None:
        return items

    def ours(i):
        obj = next(iter(i.values()))
        return obj.get("family") == "ip" and obj.get("table", obj.get("name")) == "sandbox"
    rest = [i for i in items if not ours(i)]
    rules = [i["rule"] for i in items if ours(i) and "rule" in i]
    if any(ours(i) for i in items):
        assert rules, "an empty 'ip sandbox' table was left behind"
    mine = f"sandbox:{_tag(root)}:"
    return rest + [r for r in rules if r.get("comment", "").startswith(mine)]


def _leases(root) -> list:
    from sandbox.net import list_leases
    return list_leases(_paths(root))


def _state(root):
    """Links, ruleset and leases, read under the host-wide network lock so
    that a concurrent session's launch or teardown is seen whole."""
    from sandbox.net.wire import host_lock
    with host_lock():
        return _links(root), _ruleset(root), _leases(root)


def _start(root, net, *args, ports=(), env=None):
    cmd = [SANDBOX, "--root", str(root), "run", "--net", f"bridge:{net[0]}"]
    for p in ports:
        cmd += ["--port", p]
    e = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **_env(net[1]), **(env or {})}
    return subprocess.Popen(cmd + ["--", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e)


def _wait_lease(root, sid_known=(), timeout=15.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for r in _leases(root):
            if r["live"] and r["sandbox_id"] not in sid_known and \
                    os.path.exists(f"/sys/class/net/{r['host_if']}"):
                return r
        time.sleep(0.05)
    raise AssertionError("no live lease with a veth appeared")


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000)); s.listen()
for _ in range(int(sys.argv[1])):
    c, a = s.accept(); c.sendall(b"pong from " + a[0].encode()); c.close()
"""

CLIENT = """
import socket, sys, time
end = time.monotonic() + float(sys.argv[3])
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
        print(c.recv(100).decode()); break
    except OSError as e:
        if time.monotonic() > end:
            print("FAILED", e.errno, e.strerror); break
        time.sleep(0.1)
"""


def _connect_from_host(ip, port, timeout=10.0) -> str:
    end = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, port), timeout=2) as c:
                return c.recv(100).decode()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def test_two_sandboxes_talk_over_tcp_and_a_none_sandbox_cannot(sroot):
    net = _net(1)
    before = _state(sroot)
    server = _start(sroot, net, PY, "-c", SERVER, "1")
    try:
        lease = _wait_lease(sroot)
        # --net none: its own namespace with lo only; the bridge is unreachable
        r = run_sandbox(sroot, "run", "--", PY, "-c", CLIENT, net[2], "8000", "0")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("FAILED"), r.stdout
        r = run_sandbox(sroot, "run", "--", PY, "-c", CLIENT, lease["address"], "8000", "0")
        assert r.stdout.startswith("FAILED"), r.stdout
        # a second bridge sandbox reaches the first at its leased address
        r = run_sandbox(sroot, "run", "--net", f"bridge:{net[0]}", "--", PY, "-c", CLIENT,
                        lease["address"], "8000", "10", env=_env(net[1]))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"pong from 10.{B}.241."), r.stdout
        assert r.stdout.strip() != f"pong from {lease['address']}"
        assert server.wait(timeout=15) == 0
    finally:
        server.kill()
        server.wait()
    assert _state(sroot) == before


def test_port_forward_from_the_bridge_address_reaches_the_sandbox(sroot):
    net = _net(2)
    before = _state(sroot)
    hostport = 18000 + os.getpid() % 1000
    server = _start(sroot, net, PY, "-c", SERVER, "2", ports=[f"{hostport}:8000"])
    try:
        lease = _wait_lease(sroot)
        got = _connect_from_host(net[2], hostport)
        assert got == f"pong from {net[2]}"
        rules = [r for r in _ruleset() if "rule" in r]
        assert any(lease["sandbox_id"] in r["rule"].get("comment", "") for r in rules)
        # the port is held on the host while the forward exists
        s = socket.socket()
        with pytest.raises(OSError):
            s.bind(("0.0.0.0", hostport))
        s.close()
        r = run_sandbox(sroot, "run", "--net", f"bridge:{net[0]}", "--port",
                        f"{hostport}:80", "--", "true", env=_env(net[1]))
        assert r.returncode == 125 and "already in use" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert _connect_from_host(net[2], hostport) == f"pong from {net[2]}"
        assert server.wait(timeout=15) == 0
    finally:
        server.kill()
        server.wait()
    assert _state(sroot) == before


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _payload_running(pid: int, comm: str) -> bool:
    for t in _tree(pid):
        try:
            with open(f"/proc/{t}/comm") as f:
                if f.read().strip() == comm:
                    return True
        except OSError:
            pass
    return False


def test_twenty_kill9_cycles_then_gc_leave_nothing(sroot):
    """Kill -9 the supervisor (the `sandbox run` process) 20 times, then
    `sandbox gc` (the lifecycle command, which calls `sandbox.net.gc`; the
    function itself where the command is missing).

    Even cycles kill it in the middle of the network setup (as soon as the
    veth exists); odd cycles once the payload runs. Should a sandbox outlive
    its supervisor (it did, before the first child re-armed its
    parent-death signal after changing ids), its lease is dead all the
    same (the owner is the supervisor), so gc takes its veth, rules and
    lease; leftover processes are killed after gc, and nothing may reappear.
    """
    from sandbox.net import gc
    net = _net(3)
    before = _state(sroot)
    base = 19000 + os.getpid() % 1000
    orphans: list[int] = []
    seen: set[str] = set()
    try:
        for i in range(20):
            p = _start(sroot, net, "sleep", "60", ports=[f"{base + i}:80"])
            lease = _wait_lease(sroot, sid_known=seen)
            seen.add(lease["sandbox_id"])
            if i % 2:
                end = time.monotonic() + 15
                while not _payload_running(p.pid, "sleep"):
                    assert time.monotonic() < end and p.poll() is None, p.stderr.read()
                    time.sleep(0.02)
            tree = _tree(p.pid)
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            orphans += [t for t in tree if t != p.pid]
        time.sleep(0.3)
        rows = _leases(sroot)
        assert len(rows) == 20 and not any(r["live"] for r in rows)
        if run_sandbox(sroot, "gc", "--help").returncode == 0:
            r = run_sandbox(sroot, "gc", "--json", timeout=120)
            assert r.returncode == 0, r.stderr
            assert r.stdout.count("network: lease ") == 20, r.stdout
        else:
            removed = gc(_paths(sroot))
            assert sum(x.startswith("lease ") for x in removed) == 20, removed
        assert _state(sroot) == before
        assert gc(_paths(sroot)) == []
    finally:
        for t in orphans:
            try:
                os.kill(t, signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.3)
    assert _state(sroot) == before


def test_veth_vanishes_with_the_namespace_of_a_dead_sandbox(sroot):
    """When every process of a crashed sandbox is gone, the kernel destroys
    its network namespace and the veth pair with it: no gc needed for the
    link (gc still removes the lease and the rules)."""
    from sandbox.net import gc
    net = _net(9)
    before = _state(sroot)
    p = _start(sroot, net, "sleep", "60", ports=[f"{20000 + os.getpid() % 1000}:80"])
    lease = _wait_lease(sroot)
    while not _payload_running(p.pid, "sleep"):
        time.sleep(0.02)
    for t in reversed(_tree(p.pid)):
        os.kill(t, signal.SIGKILL)
    p.wait()
    end = time.monotonic() + 5
    while os.path.exists(f"/sys/class/net/{lease['host_if']}"):
        assert time.monotonic() < end, "veth outlived its namespace"
        time.sleep(0.05)
    removed = gc(_paths(sroot))
    assert not any(x.startswith("veth ") for x in removed)
    assert any(x.startswith("lease ") for x in removed)
    assert any(x.startswith("nftables rule") for x in removed)
    assert _state(sroot) == before


def test_concurrent_launches_get_distinct_addresses(sroot):
    net = _net(4)
    before = _state(sroot)
    code = ("import socket, sys, time; s = socket.socket(2, 2); s.connect((sys.argv[1], 9));"
            "print(s.getsockname()[0], flush=True); time.sleep(4)")
    procs = [_start(sroot, net, PY, "-c", code, net[2]) for _ in range(10)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(out.strip())
    assert len(set(outs)) == 10, outs
    assert all(o.startswith(f"10.{B}.244.") and o != net[2] for o in outs)
    assert _state(sroot) == before


@pytest.fixture
def clash_route():
    """A veth pair (no dummy module here) with a route in 10.B.250.0/24:
    both ends on this host, nothing leaves it."""
    name = f"sbxclash{os.getpid() % 100}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                   check=True)
    try:
        for n in (name, name + "p"):    # marked, so a concurrent session ignores it
            subprocess.run(["ip", "link", "set", n, "alias", "sandbox:test-clash"], check=True)
        subprocess.run(["ip", "addr", "add", f"10.{B}.250.1/24", "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        subprocess.run(["ip", "link", "set", name + "p", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)


def test_bad_port_taken_port_and_clashing_subnet_leave_nothing(sroot, clash_route):
    net = _net(5)
    before = _state(sroot)      # with the clashing route in place
    bridge = ["--net", f"bridge:{net[0]}"]
    r = run_sandbox(sroot, "run", *bridge, "--port", "80:80/icmp", "--", "true",
                    env=_env(net[1]))
    assert r.returncode == 125 and "bad --port" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        r = run_sandbox(sroot, "run", *bridge, "--port", f"{port}:80", "--", "true",
                        env=_env(net[1]))
        assert r.returncode == 125 and "already in use" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        taken.close()
    r = run_sandbox(sroot, "run", *bridge, "--", "true", env=_env(f"10.{B}.250.0/25"))
    assert r.returncode == 125 and f"clashes with the host route 10.{B}.250.0/24" in r.stderr
    assert clash_route in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _state(sroot) == before
    assert helpers.runtime_leftovers(sroot) == []


def test_etc_files_route_and_audit_record(sroot):
    net = _net(6)
    before = _state(sroot)
    r = run_sandbox(sroot, "run", "--net", f"bridge:{net[0]}", "--hostname", "web1",
                    "--dns", "192.0.2.53", "--dns", "192.0.2.54", "--", "/bin/sh", "-c",
                    "cat /etc/resolv.conf /etc/hosts /etc/hostname /proc/net/route",
                    env=_env(net[1]))
    assert r.returncode == 0, r.stderr
    assert "nameserver 192.0.2.53\nnameserver 192.0.2.54\n" in r.stdout
    assert "127.0.1.1\tweb1\n" in r.stdout and "\nweb1\n" in r.stdout
    # default route through the bridge (10.B.246.1, little-endian hex)
    gw = socket.inet_aton(net[2])[::-1].hex().upper()
    assert any(line.split()[:3] == ["eth0", "00000000", gw] for line in r.stdout.splitlines())
    assert _state(sroot) == before
    r = run_sandbox(sroot, "run", "--net", "host", "--", "true")
    assert r.returncode == 0, r.stderr
    r = run_sandbox(sroot, "audit", "export")
    assert r.returncode == 0, r.stderr
    nets = [json.loads(line)["data"]["network"] for line in r.stdout.splitlines()
            if json.loads(line)["kind"] == "launch"]
    assert nets[0]["mode"] == "bridge" and nets[0]["bridge"] == net[0]
    assert nets[0]["address"].startswith(f"10.{B}.246.") and nets[0]["gateway"] == net[2]
    assert nets[0]["dns"] == ["192.0.2.53", "192.0.2.54"]
    assert nets[1] == {"mode": "host", "shared_with_host": True}


def test_bridge_on_a_rootfs_writes_etc_into_the_upper_layer(sroot, busybox_root):
    net = _net(7)
    before = _state(sroot)
    hosts = (busybox_root / "etc" / "hosts")
    r = run_sandbox(sroot, "run", "--rootfs", str(busybox_root), "--net",
                    f"bridge:{net[0]}", "--dns", "192.0.2.53", "--", "/bin/sh", "-c",
                    "cat /etc/resolv.conf /etc/hostname; ip -4 -o addr show eth0",
                    env=_env(net[1]))
    assert r.returncode == 0, r.stderr
    assert "nameserver 192.0.2.53" in r.stdout and f"10.{B}.247." in r.stdout
    assert not hosts.exists() and not (busybox_root / "etc" / "resolv.conf").exists()
    assert _state(sroot) == before


def test_dry_run_shows_the_bridge_and_holds_nothing(sroot):
    net = _net(8)
    before = _state(sroot)
    r = run_sandbox(sroot, "run", "--net", f"bridge:{net[0]}", "--port", "8080:80",
                    "--dry-run", "--json", "--", "true", env=_env(net[1]))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["network"] == "bridge" and d["net"]["bridge"] == net[0]
    assert d["net"]["gateway"] == net[2] and d["net"]["ports"][0]["host_ip"] == net[2]
    assert any(m["target"] == "/etc/resolv.conf" and m["op"] == "file" for m in d["mounts"])
    assert _state(sroot) == before
    assert not (Path(sroot) / "state" / "network.db").exists()


def test_port_forwarded_by_another_state_folder_fails_in_attach_and_cleans_up(sroot):
    """The refusal comes from `attach` (after the fork, under the host lock):
    the half-made network (bridge, veth, lease) is taken down again."""
    from sandbox.net import nft
    from sandbox.net.model import PortForward
    net = _net(10)
    port = 21000 + os.getpid() % 1000
    nft.add_forwards("00000000", "otherstate01", "10.207.250.9",
                     [PortForward(net[2], port, 80, "tcp")])
    try:
        before = _state(sroot)
        r = run_sandbox(sroot, "run", "--net", f"bridge:{net[0]}", "--port", f"{port}:80",
                        "--", "true", env=_env(net[1]))
        assert r.returncode == 125 and "already forwarded to sandbox otherstate01" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert _state(sroot) == before
        assert helpers.runtime_leftovers(sroot) == []
    finally:
        nft.delete_owned("00000000:otherstate01")
        nft.delete_table_if_empty()
