"""``--net allow:`` end to end (issue 16): real clients inside a sandbox
(curl, Python's urllib) reach a name on the allow list through the egress
proxy, and nothing else.

Every server runs on 127.0.0.1 of this machine, in this test process.
Names reach them only through the proxy's test resolver table
(``SANDBOX_TEST_EGRESS_HOSTS``, see `sandbox.net.egress.proxy`); since
127.0.0.1 is a loopback address, the tests that must connect list
``127.0.0.1:PORT`` explicitly (the anti-rebinding rule), and the rebinding
test leaves it out.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import needs_root
from helpers import NOBODY, run_sandbox

pytestmark = [needs_root,
              pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]

PY = "/usr/bin/python3"
ANSWER = b"hello from good.test\n"
NAMES = ["good.test", "bad.test", "a.good.test", "good.test.evil", "evilgood.test",
         "rebind.test"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server name
        body = ANSWER if self.path != "/big" else b"x" * (5 << 20)
        if self.path == "/echo-host":
            body = f"host={self.headers['Host']}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def _serve(tls_files=None):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls_files:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls_files)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def net(world):
    """The servers, the CA file the sandbox trusts and the resolver table."""
    d = Path(world) / f"egress-{os.urandom(3).hex()}"
    d.mkdir(mode=0o755)
    cert, key = d / "cert.pem", d / "key.pem"
    san = ",".join(f"DNS:{n}" for n in NAMES)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=good.test", "-addext", f"subjectAltName={san}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    for p in (cert, key):
        os.chmod(p, 0o644)
    hosts = d / "hosts.json"
    hosts.write_text(json.dumps({n: ["127.0.0.1"] for n in NAMES}))
    os.chmod(hosts, 0o644)
    https, plain = _serve((str(cert), str(key))), _serve()
    yield {"https": https.server_address[1], "http": plain.server_address[1],
           "ca": "/egress/cert.pem", "dir": str(d),
           "env": {"SANDBOX_TEST_EGRESS_HOSTS": str(hosts)}}
    https.shutdown()
    plain.shutdown()


def _run(root, net, allow, script, *, nobody=False, timeout=60):
    home = None
    if nobody:
        home = root
    return run_sandbox(root, "run", "--net", f"allow:{allow}", "-v", f"{net['dir']}:/egress",
                       "--", "/bin/sh", "-c", script,
                       env=net["env"], as_nobody=nobody, home=home, timeout=timeout)


def _egress(root, nobody=False) -> list[dict]:
    cmd = ["audit", "log", "--kind", "egress", "--json"]
    r = run_sandbox(root, *cmd, as_nobody=nobody, home=root if nobody else None)
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["data"] for line in r.stdout.splitlines() if line.strip()]


def _https_ok_and_403(root, net, nobody=False):
    p = net["https"]
    script = (f"curl -sS --cacert {net['ca']} https://good.test:{p}/; "
              f"curl -sS --cacert {net['ca']} https://bad.test:{p}/ 2>&1; echo curl=$?")
    r = _run(root, net, f"good.test,127.0.0.1:{p}", script, nobody=nobody)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(ANSWER.decode())
    # curl's own words for a CONNECT the proxy answered with 403
    assert "CONNECT tunnel failed, response 403" in r.stdout
    assert r.stdout.rstrip().endswith("curl=56")
    recs = _egress(root, nobody)
    ok = [e for e in recs if e["host"] == "good.test"]
    bad = [e for e in recs if e["host"] == "bad.test"]
    assert len(ok) == 1 and len(bad) == 1, recs
    assert ok[0]["decision"] == "allowed" and ok[0]["rule"] == "good.test"
    assert ok[0]["address"] == "127.0.0.1" and ok[0]["port"] == p
    assert ok[0]["bytes_in"] > len(ANSWER) and ok[0]["bytes_out"] > 0   # TLS both ways
    assert bad[0]["decision"] == "denied" and bad[0]["rule"] is None
    assert bad[0]["reason"] == f"bad.test:{p} is not on the allow list"
    assert ok[0]["sandbox_id"] == bad[0]["sandbox_id"]


def test_curl_reaches_allowed_name_over_https_and_unlisted_name_gets_403(sroot, net):
    _https_ok_and_403(sroot, net)


def test_rootless_curl_reaches_allowed_name_and_unlisted_name_gets_403(nobody_root, net):
    _https_ok_and_403(nobody_root, net, nobody=True)


def test_python_urllib_uses_the_proxy_variables_for_https(sroot, net):
    p = net["https"]
    code = ("import ssl,urllib.request;"
            f"c=ssl.create_default_context(cafile={net['ca']!r});"
            f"print(urllib.request.urlopen('https://good.test:{p}/',context=c).read().decode())")
    r = _run(sroot, net, f"good.test,127.0.0.1:{p}", f"{PY} -c \"{code}\"")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ANSWER.decode() + "\n"


def test_plain_http_denied_gets_403_with_one_line_reason(sroot, net):
    p = net["http"]
    script = (f"curl -sS http://good.test:{p}/; "
              f"curl -sS -w 'status=%{{http_code}}\\n' http://bad.test:{p}/")
    r = _run(sroot, net, f"good.test,127.0.0.1:{p}", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (ANSWER.decode() +
                        f"sandbox egress: bad.test:{p} is not on the allow list\nstatus=403\n")


def test_socks5_allows_listed_name_and_refuses_unlisted_one(sroot, net):
    p = net["http"]
    proxy = "socks5h://127.0.0.1:1080"
    script = (f"curl -sS -x {proxy} http://good.test:{p}/; "
              f"curl -sS -x {proxy} http://bad.test:{p}/ 2>&1; echo curl=$?")
    r = _run(sroot, net, f"good.test,127.0.0.1:{p}", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(ANSWER.decode())
    # reply 2: "connection not allowed by ruleset" (RFC 1928)
    assert "Can't complete SOCKS5 connection to bad.test. (2)" in r.stdout
    recs = _egress(sroot)
    assert [(e["protocol"], e["host"], e["decision"]) for e in recs] == [
        ("socks5", "good.test", "allowed"), ("socks5", "bad.test", "denied")]


def test_wildcard_allows_subdomain_only_on_a_label_boundary(sroot, net):
    p = net["http"]
    script = "; ".join(f"curl -s -o /dev/null -w '{n}=%{{http_code}}\\n' http://{n}:{p}/"
                       for n in ("a.good.test", "good.test", "good.test.evil", "evilgood.test"))
    r = _run(sroot, net, f"*.good.test,127.0.0.1:{p}", script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["a.good.test=200", "good.test=403", "good.test.evil=403",
                                "evilgood.test=403"]


def test_dns_rebinding_of_an_allowed_name_to_loopback_refused(sroot, net):
    """rebind.test is on the list, but resolves to 127.0.0.1, which is not."""
    p = net["http"]
    r = _run(sroot, net, "rebind.test", f"curl -sS -w 'status=%{{http_code}}\\n' "
                                         f"http://rebind.test:{p}/")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"sandbox egress: rebind.test:{p} resolves to 127.0.0.1 (loopback), "
                        "which the allow list does not name\nstatus=403\n")
    (rec,) = _egress(sroot)
    assert (rec["decision"], rec["rule"], rec["address"]) == ("denied", "rebind.test", None)


def _host_address() -> str | None:
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True)
    for link in json.loads(out.stdout or "[]"):
        for a in link.get("addr_info", []):
            if not a["local"].startswith("127."):
                return a["local"]
    return None


def test_direct_connection_to_host_loopback_and_addresses_fails(sroot, net):
    """No route out: the host's 127.0.0.1 servers are not the sandbox's
    127.0.0.1, and the host's own addresses are unreachable."""
    targets = [("127.0.0.1", net["http"]), ("127.0.0.1", net["https"])]
    host = _host_address()
    if host:
        targets.append((host, net["http"]))
    code = ("import socket,sys\n"
            f"for h,p in {targets!r}:\n"
            "    s=socket.socket(); s.settimeout(5)\n"
            "    try: s.connect((h,p)); print(h,'connected')\n"
            "    except OSError as e: print(h,e.errno)\n")
    r = _run(sroot, net, f"good.test,127.0.0.1:{net['http']}", f"{PY} -c \"{code}\"")
    assert r.returncode == 0, r.stderr
    import errno
    want = [f"127.0.0.1 {errno.ECONNREFUSED}"] * 2 + \
        ([f"{host} {errno.ENETUNREACH}"] if host else [])
    assert r.stdout.splitlines() == want


def test_profile_allow_and_deny_sections(sroot, net, world):
    p = net["http"]
    prof = Path(world) / f"egress-{os.urandom(3).hex()}.toml"
    prof.write_text('extends = "default"\n[network]\n'
                    f'allow = ["*.good.test", "127.0.0.1:{p}"]\ndeny = ["a.good.test"]\n')
    os.chmod(prof, 0o644)
    r = run_sandbox(sroot, "run", "--profile", str(prof), "--", "/bin/sh", "-c",
                    f"curl -s -o /dev/null -w '%{{http_code}}\\n' http://a.good.test:{p}/",
                    env=net["env"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "403\n"
    (rec,) = _egress(sroot)
    assert rec["rule"] == "a.good.test" and rec["decision"] == "denied"


@pytest.mark.parametrize("bad", ["good..test", "*.test.*", "evil.test:99999", "a_b.test"])
def test_malformed_allow_name_is_a_usage_error_naming_it(sroot, bad):
    r = run_sandbox(sroot, "run", "--net", f"allow:good.test,{bad}", "--", "/bin/true")
    assert r.returncode == 125
    assert f"bad --net allow: entry {bad!r}" in r.stderr
    assert "Traceback" not in r.stderr


def test_dry_run_shows_the_allow_list(sroot):
    r = run_sandbox(sroot, "run", "--dry-run", "--json", "--net", "allow:*.good.test",
                    "--", "/bin/true")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    net = plan.get("net") or plan.get("plan", {}).get("net")
    assert net["mode"] == "allow" and net["allow"] == ["*.good.test"]


def test_nobody_owns_the_proxy_of_a_rootless_sandbox(nobody_root, net):
    """The rootless proxy runs as the caller (nobody), never as root."""
    script = "sleep 1"
    proc = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "--inh-caps=-all", *_sandbox_cmd(nobody_root), "run", "--net", "allow:good.test",
         "--", "/bin/sh", "-c", script],
        env={"PATH": "/usr/bin:/bin", "HOME": str(nobody_root), **net["env"]},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time
        deadline = time.monotonic() + 20
        owners = None
        while time.monotonic() < deadline and not owners:
            owners = _listener_owners(proc.pid)
            time.sleep(0.05)
        assert owners and owners == {NOBODY}, owners
    finally:
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def _sandbox_cmd(root):
    from helpers import SANDBOX
    return [SANDBOX, "--root", str(root)]


def _listener_owners(top: int) -> set[int]:
    """Uids of the descendants of ``top`` that hold a socket (the proxy)."""
    kids, todo = set(), [top]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                new = [int(x) for x in f.read().split()]
        except OSError:
            continue
        kids.update(new)
        todo += new
    owners = set()
    for pid in kids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"sandbox-init" in f.read():
                    continue
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in fds
                   if fd in ("3", "4")):
                owners.add(os.stat(f"/proc/{pid}").st_uid)
        except OSError:
            continue
    return owners


def test_twenty_parallel_5mb_downloads_all_complete_and_are_counted_exactly(sroot, net):
    p = net["http"]
    script = ("for i in $(seq 20); do "
              f"curl -sS -o /dev/null -w '%{{size_download}}\\n' http://good.test:{p}/big & "
              "done; wait")
    r = _run(sroot, net, f"good.test,127.0.0.1:{p}", script, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(5 << 20)] * 20
    recs = _egress(sroot)
    assert len(recs) == 20
    assert all(e["decision"] == "allowed" and e["host"] == "good.test" for e in recs)
    # the response head on top of the 5 MiB body, exactly once each
    assert all(5 << 20 < e["bytes_in"] < (5 << 20) + 1024 for e in recs), \
        [e["bytes_in"] for e in recs]
    assert len({e["bytes_in"] for e in recs}) == 1


def test_status_of_a_detached_sandbox_counts_its_connections(sroot, net):
    import time
    p = net["http"]
    script = (f"curl -s -o /dev/null http://good.test:{p}/; "
              f"curl -s -o /dev/null http://bad.test:{p}/; sleep 30")
    r = run_sandbox(sroot, "run", "-d", "--net", f"allow:good.test,127.0.0.1:{p}", "--",
                    "/bin/sh", "-c", script, env=net["env"])
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    try:
        deadline, eg = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            s = run_sandbox(sroot, "status", "--json", sid)
            eg = json.loads(s.stdout).get("egress")
            if eg and eg["allowed"] + eg["denied"] == 2:
                break
            time.sleep(0.2)
        assert eg is not None and (eg["allowed"], eg["denied"], eg["failed"]) == (1, 1, 0), eg
        assert eg["bytes_in"] > len(ANSWER)
        text = run_sandbox(sroot, "status", sid).stdout
        assert "egress:         1 allowed, 1 denied, 0 failed;" in text
    finally:
        run_sandbox(sroot, "stop", "-t", "1", sid)



HOLDER = """
import socket, sys
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(b"CONNECT good.test:%s HTTP/1.1\\r\\n\\r\\n" % sys.argv[1].encode())
print(s.recv(100).split(b"\\r\\n")[0].decode(), flush=True)
s.sendall(b"0123456789")
"""


def test_connection_open_when_the_sandbox_ends_is_still_recorded(sroot, net, world):
    """The payload exits while its upstream server keeps the tunnel open:
    the proxy's teardown cancels the connection, and its record (with the
    bytes so far) is still written."""
    held, done = [], threading.Event()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)

    def hold():
        try:
            c, _ = srv.accept()
            held.append(c.recv(100))
            done.wait(30)          # never closes while the sandbox runs
            c.close()
        except OSError:
            pass
    t = threading.Thread(target=hold, daemon=True)
    t.start()
    port = srv.getsockname()[1]
    script = Path(net["dir"]) / "holder.py"
    script.write_text(HOLDER)
    os.chmod(script, 0o644)
    try:
        r = _run(sroot, net, f"good.test,127.0.0.1:{port}",
                 f"{PY} /egress/holder.py {port}; sleep 0.5")
    finally:
        done.set()
        t.join(5)
        srv.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "HTTP/1.1 200 Connection established\n"
    assert held == [b"0123456789"]
    (rec,) = _egress(sroot)
    assert (rec["decision"], rec["bytes_out"], rec["bytes_in"]) == ("allowed", 10, 0)


def test_root_sandbox_proxy_holds_no_capability_and_no_new_privs(sroot, net):
    """The proxy of a root-launched sandbox keeps uid 0 (it owns the audit
    log) but no capability, and cannot gain any."""
    import time
    r = run_sandbox(sroot, "run", "-d", "--net", "allow:good.test", "--", "/bin/sleep", "30",
                    env=net["env"])
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    try:
        sup = json.loads(run_sandbox(sroot, "status", "--json", sid).stdout)["supervisor_pid"]
        deadline, found = time.monotonic() + 20, {}
        while time.monotonic() < deadline and not found:
            found = _proxy_status(sup)
            time.sleep(0.05)
        assert found, "no proxy process found"
        for st in found.values():
            assert st["CapEff"] == st["CapPrm"] == st["CapBnd"] == "0000000000000000", st
            assert st["NoNewPrivs"] == "1"
    finally:
        run_sandbox(sroot, "stop", "-t", "1", sid)


def _proxy_status(top: int) -> dict:
    """/proc status fields of the descendants of ``top`` whose fds 3 and 4
    are sockets and which are not in the sandbox (the proxy)."""
    out, todo = {}, [top]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        todo += kids
        for k in kids:
            try:
                if os.readlink(f"/proc/{k}/ns/net") != os.readlink("/proc/self/ns/net"):
                    continue
                if not all(os.readlink(f"/proc/{k}/fd/{fd}").startswith("socket:")
                           for fd in (3, 4)):
                    continue
                with open(f"/proc/{k}/status") as f:
                    out[k] = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
            except OSError:
                continue
    return out


def test_plain_http_host_header_is_the_checked_name(sroot, net):
    """A request for an allowed name carrying another Host header (fronting
    a name the same server hosts) reaches the server as the allowed name."""
    p = net["http"]
    r = _run(sroot, net, f"good.test,127.0.0.1:{p}",
             f"curl -sS -H 'Host: evil.test' http://good.test:{p}/echo-host")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"host=good.test:{p}\n"
