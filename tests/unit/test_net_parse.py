"""Networking without privilege: flag parsing, the lease database under
concurrency, the fast parser in step with click, and the ``--net none``
path never importing pyroute2."""

from __future__ import annotations

import ipaddress
import json
import multiprocessing
import os
import subprocess
import sys

import pytest

import helpers
from helpers import run_sandbox
from sandbox.errors import UsageError
from sandbox.net import leases
from sandbox.net.model import PortForward, parse_dns, parse_network, parse_port
from sandbox.paths import Paths


@pytest.mark.parametrize("text, want", [
    ("8080:80", PortForward(None, 8080, 80, "tcp")),
    ("8080:80/udp", PortForward(None, 8080, 80, "udp")),
    ("10.1.2.3:53:53/UDP", PortForward("10.1.2.3", 53, 53, "udp")),
    ("1:65535/tcp", PortForward(None, 1, 65535, "tcp")),
])
def test_port_forms(text, want):
    assert parse_port(text) == want


@pytest.mark.parametrize("text", [
    "80", "0:80", "80:0", "70000:80", "80:80/sctp", "a:b", "127.0.0.1:80:80",
    "::1:80:80", "10.0.0.300:80:80", "0.0.0.0:80:80", "80:80/", ":80:80", "",
])
def test_bad_ports_are_one_line_usage_errors(text):
    with pytest.raises(UsageError) as e:
        parse_port(text)
    assert "\n" not in str(e.value) and e.value.hint is None


def test_network_and_dns_forms():
    assert parse_network("bridge") == ("bridge", None)
    assert parse_network("bridge:lab-1") == ("bridge", "lab-1")
    assert parse_network("host") == ("host", None)
    for bad in ("bridge:", "bridge:a/b", "bridge:" + "x" * 16, "host:x", "nat"):
        with pytest.raises(UsageError):
            parse_network(bad)
    assert parse_dns(" 192.0.2.53 ") == "192.0.2.53"
    with pytest.raises(UsageError):
        parse_dns("dns.example")


def _allocate(args):
    root, i = args
    paths = Paths.resolve(root)
    lease = leases.allocate(paths, f"sbx{i:09d}", "t0", ipaddress.ip_network("10.99.0.0/24"),
                            "10.99.0.1", f"sbx{i}", [])
    return lease.address


def test_concurrent_allocations_draw_distinct_addresses(tmp_path):
    with multiprocessing.get_context("fork").Pool(10) as pool:
        got = pool.map(_allocate, [(str(tmp_path), i) for i in range(30)])
    assert len(set(got)) == 30 and "10.99.0.1" not in got
    rows = leases.rows(Paths.resolve(tmp_path))
    assert sorted(r["address"] for r in rows) == sorted(got)
    # the pool's workers have exited: every lease is dead, and gc drops them
    assert not any(r["live"] for r in rows)
    from sandbox.net.wire import _gc_rows
    assert len(_gc_rows(Paths.resolve(tmp_path), rows)) == 30
    assert leases.rows(Paths.resolve(tmp_path)) == []


def test_lease_of_a_living_owner_is_live_and_release_deletes_it(tmp_path):
    paths = Paths.resolve(tmp_path)
    lease = leases.allocate(paths, "abc", "t0", ipaddress.ip_network("10.99.0.0/29"),
                            "10.99.0.1", "sbxabc", [])
    assert lease.address == "10.99.0.2"
    assert [r["live"] for r in leases.rows(paths)] == [True]
    lease.release()
    lease.release()
    assert leases.rows(paths) == []


def test_fast_parser_and_click_declare_the_same_options():
    from sandbox.cli._run_fast import OPTIONS
    from sandbox.cli.run import run
    declared = {o for p in run.params for o in getattr(p, "opts", ()) if o.startswith("-")}
    declared.discard("-h")
    declared.discard("--help")
    assert declared == set(OPTIONS)
    from sandbox.cli._run_fast import parse_fast
    got = parse_fast(["run", "--net", "bridge:lab", "--port", "80:80", "--port", "53:53/udp",
                      "--dns", "192.0.2.53", "--", "true"])
    assert got["network"] == "bridge:lab" and got["ports"] == ("80:80", "53:53/udp")
    assert got["dns"] == ("192.0.2.53",)


def test_port_without_bridge_is_refused(sroot):
    r = run_sandbox(sroot, "run", "--port", "8080:80", "--", "true")
    assert r.returncode == 125 and "--net bridge" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_sandbox(sroot, "run", "--net", "bridge", "--port", "8080:99999", "--", "true")
    assert r.returncode == 125 and "99999" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_host_network_is_visible_in_the_plan(sroot):
    r = run_sandbox(sroot, "run", "--net", "host", "--dry-run", "--json", "--", "true")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["network"] == "host" and "net" in d["namespaces"]["host"]
    assert "net" not in d["namespaces"]["new"] and d["net"] is None
    r = run_sandbox(sroot, "run", "--net", "host", "--dry-run", "--", "true")
    assert "SHARED with host: net" in r.stdout and "network host" in r.stdout


def test_net_none_launch_does_not_import_pyroute2(sroot):
    if not helpers.IS_ROOT:
        pytest.skip("launching needs root or a usable subordinate id range")
    code = ("import sys; sys.argv = ['sandbox', '--root', %r, 'run', '--', 'true'];\n"
            "from sandbox.cli import main\n"
            "import atexit\n"
            "atexit.register(lambda: print('MODS', sorted(m for m in sys.modules "
            "if m.startswith(('pyroute2', 'sandbox.net')))))\n"
            "main()\n") % str(sroot)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert "MODS []" in r.stdout
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                       text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and "pyroute2" not in r.stderr and "sandbox.net" not in r.stderr


def test_bridge_refused_for_an_ordinary_user_none_works(nobody_root):
    root = home = nobody_root
    r = run_sandbox(root, "run", "--net", "bridge", "--", "true", as_nobody=True, home=home)
    assert r.returncode == 125 and "needs root" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_sandbox(root, "run", "--net", "none", "--", "true", as_nobody=True, home=home)
    assert r.returncode == 0, r.stderr


def test_pyroute2_iproute_starts_no_thread():
    import threading
    if not helpers.IS_ROOT:
        pytest.skip("netlink dumps work unprivileged, but keep to the CI setup")
    from pyroute2 import IPRoute
    before = threading.active_count()
    with IPRoute() as ip:
        assert ip.link_lookup(ifname="lo")
        assert list(ip.route("dump", family=2)) is not None
        assert threading.active_count() == before
    assert threading.active_count() == before == 1
    assert os.getpid()  # single-threaded: a fork here would be safe
