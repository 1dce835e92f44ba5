"""The egress proxy: HTTP (CONNECT and absolute-URI requests) and SOCKS5,
on listening sockets the supervisor made inside the sandbox's network
namespace (`sandbox.net.egress.network`), deciding each destination with
`sandbox.net.egress.policy`.

Why our own small asyncio server and not a library: the proxy protocols
are the easy part (one request head, or the SOCKS5 greeting and request),
while the part that matters, resolving the name outside once, checking
every address and then connecting to exactly those addresses, sits in the
middle of every library's connect path. proxy.py and mitmproxy bring TLS
interception, plugin frameworks, their own resolvers and threads or
workers (and large import costs) that would have to be disabled or hooked
for that check; pproxy and the SOCKS servers on PyPI are thinly kept. The
protocol code here is ~200 lines of standard library, tested by real
clients (curl, urllib) in ``tests/integration/test_egress.py``.

It runs in a process of its own, forked by the supervisor (which must stay
single-threaded until it has forked the sandbox); the name resolution runs
in asyncio's thread pool there. Each connection ends in one event
(``sink(dict)``): allowed or denied, rule, name, port, address, bytes each
way, duration. Events are batched by `Batcher` off the event loop.

Test hook (the only one): ``SANDBOX_TEST_EGRESS_HOSTS`` names a JSON file
``{"name": ["address", ...]}`` that replaces DNS for the names it lists
(others do not resolve), so tests map ``good.test`` to servers on
127.0.0.1 of the test machine. Inert when unset.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import struct
import threading
import time

from .policy import Decision, Policy

HEAD_LIMIT = 16384          # bytes of an HTTP request head
HEAD_TIMEOUT = 30.0         # seconds to send it (or the SOCKS request)
CONNECT_TIMEOUT = 30.0
CHUNK = 65536
TEST_HOSTS_ENV = "SANDBOX_TEST_EGRESS_HOSTS"


class Resolver:
    """getaddrinfo outside the sandbox, or the test table."""

    def __init__(self, table: dict | None = None):
        self.table = table

    @classmethod
    def from_env(cls) -> Resolver:
        path = os.environ.get(TEST_HOSTS_ENV)
        if not path:
            return cls()
        with open(path) as f:
            return cls({k.lower(): list(v) for k, v in json.load(f).items()})

    async def resolve(self, name: str, port: int) -> list[str]:
        if self.table is not None:
            return list(self.table.get(name, ()))
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            return []
        out = []
        for info in infos:
            a = info[4][0]
            if a not in out:
                out.append(a)
        return out


class Batcher:
    """Hands events to ``write(list)`` in batches from a thread of its own,
    every ``interval`` seconds or ``size`` events, so a busy sandbox never
    waits on the audit log; `close` writes what is left. Once a write
    fails, ``failed`` says why and the proxy refuses every new connection
    (fail closed: no connection without its record)."""

    def __init__(self, write, interval: float = 0.5, size: int = 256):
        self.write, self.interval, self.size = write, interval, size
        self.failed: str | None = None
        self.items: list[dict] = []
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="egress-audit", daemon=True)
        self.thread.start()

    def __call__(self, event: dict) -> None:
        with self.cond:
            self.items.append(event)
            if len(self.items) >= self.size:
                self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                if not self.closed and len(self.items) < self.size:
                    self.cond.wait(self.interval)
                batch, self.items = self.items, []
                closed = self.closed
            if batch:
                try:
                    self.write(batch)
                except Exception as e:  # noqa: BLE001 - new connections refused; stderr says why
                    self.failed = str(e).splitlines()[0] if str(e) else type(e).__name__
                    os.write(2, f"sandbox egress: audit write failed, refusing new "
                                f"connections: {e}\n".encode())
            if closed:
                return

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join(10)


class Proxy:
    def __init__(self, policy: Policy, sandbox_id: str, sink, resolver: Resolver | None = None):
        self.policy, self.sandbox_id, self.sink = policy, sandbox_id, sink
        self.resolver = resolver or Resolver()
        self.tasks: set = set()

    # -- the decision, shared by both protocols --------------------------------
    async def decide(self, host: str, port: int) -> Decision:
        failed = getattr(self.sink, "failed", None)
        if failed:
            return Decision(False, None, f"{host}:{port} refused: the audit log cannot be "
                                         f"written ({failed})")
        first = self.policy.check_name(host, port)
        if not first.allowed or first.addresses:
            return first
        name = host.lower().rstrip(".")
        return self.policy.check_addresses(name, port, first,
                                           await self.resolver.resolve(name, port))

    def event(self, proto, host, port, d: Decision, address, t0, up=0, down=0,
              error=None) -> None:
        self.sink({"sandbox_id": self.sandbox_id, "protocol": proto,
                   "decision": "allowed" if d.allowed and error is None else "denied"
                   if not d.allowed else "failed",
                   "host": host, "port": port, "address": address, "rule": d.rule,
                   "reason": error or d.reason, "bytes_out": up, "bytes_in": down,
                   "duration_ms": round((time.monotonic() - t0) * 1000, 3)})

    async def open(self, d: Decision, port: int):
        """Connect to the first address of ``d`` that answers."""
        err: Exception | None = None
        for a in d.addresses:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(a, port),
                                              CONNECT_TIMEOUT)
                return a, r, w
            except (OSError, asyncio.TimeoutError) as e:
                err = e
        raise OSError(f"cannot connect: {err}")

    @staticmethod
    async def pipe(r, w, counter: list, i: int) -> None:
        try:
            while True:
                data = await r.read(CHUNK)
                if not data:
                    break
                counter[i] += len(data)
                w.write(data)
                await w.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            try:
                if w.can_write_eof():
                    w.write_eof()
            except OSError:
                pass

    async def relay(self, proto, host, port, d, addr, t0, cr, cw, ur, uw,
                    first: bytes = b"") -> None:
        """Copy both ways until both sides end; the connection's event is
        recorded in every case, also when teardown cancels it midway (the
        sandbox ended with the connection open)."""
        counter = [len(first), 0]
        try:
            if first:
                uw.write(first)
            await asyncio.gather(self.pipe(cr, uw, counter, 0), self.pipe(ur, cw, counter, 1))
        finally:
            uw.close()
            cw.close()
            self.event(proto, host, port, d, addr, t0, counter[0], counter[1])

    # -- HTTP ------------------------------------------------------------------
    async def http(self, r, w) -> None:
        t0 = time.monotonic()
        try:
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                asyncio.TimeoutError, OSError):
            return await self._http_reply(w, 400, "bad request head")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return await self._http_reply(w, 400, "bad request line")
        method, target, version = parts
        first = b""
        if method == "CONNECT":
            host, port = _split_hostport(target, None)
            if host is None:
                return await self._http_reply(w, 400, f"bad CONNECT target {target!r}")
        else:
            if not target.lower().startswith("http://"):
                return await self._http_reply(
                    w, 400, "only absolute http:// requests and CONNECT are proxied")
            rest = target[7:]
            authority, slash, path = rest.partition("/")
            host, port = _split_hostport(authority, 80)
            if host is None:
                return await self._http_reply(w, 400, f"bad request target {target!r}")
            # origin-form, no proxy headers, one request per connection (a
            # second request on a kept-alive connection would bypass the
            # check), and the Host header is the checked authority (no
            # fronting another name hosted by the same server)
            keep = [ln for ln in lines[1:] if ln and ln.split(":", 1)[0].strip().lower()
                    not in ("proxy-connection", "proxy-authorization", "connection",
                            "keep-alive", "host")]
            first = ("\r\n".join([f"{method} /{path} {version}", f"Host: {authority}", *keep,
                                   "Connection: close"]) + "\r\n\r\n").encode("latin-1")
        d = await self.decide(host, port)
        if not d.allowed:
            self.event("http", host, port, d, None, t0)
            return await self._http_reply(w, 403, f"sandbox egress: {d.reason}")
        try:
            addr, ur, uw = await self.open(d, port)
        except OSError as e:
            self.event("http", host, port, d, None, t0, error=str(e))
            return await self._http_reply(w, 502, f"sandbox egress: {host}:{port}: {e}")
        if method == "CONNECT":
            w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await self.relay("http", host, port, d, addr, t0, r, w, ur, uw, first)

    @staticmethod
    async def _http_reply(w, code: int, text: str) -> None:
        reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[code]
        body = (text + "\n").encode()
        w.write(f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        try:
            await w.drain()
        except OSError:
            pass
        w.close()

    # -- SOCKS5 (RFC 1928), no authentication, CONNECT only --------------------
    async def socks(self, r, w) -> None:
        t0 = time.monotonic()
        try:
            ver, n = await asyncio.wait_for(r.readexactly(2), HEAD_TIMEOUT)
            methods = await r.readexactly(n)
            if ver != 5:
                return w.close()
            if 0 not in methods:
                w.write(b"\x05\xff")
                return w.close()
            w.write(b"\x05\x00")
            ver, cmd, _, atyp = await asyncio.wait_for(r.readexactly(4), HEAD_TIMEOUT)
            if atyp == 1:
                host = str(ipaddress.IPv4Address(await r.readexactly(4)))
            elif atyp == 4:
                host = str(ipaddress.IPv6Address(await r.readexactly(16)))
            elif atyp == 3:
                ln = (await r.readexactly(1))[0]
                host = (await r.readexactly(ln)).decode("latin-1")
            else:
                return await self._socks_reply(w, 8)
            port = struct.unpack("!H", await r.readexactly(2))[0]
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError):
            return w.close()
        if cmd != 1:
            return await self._socks_reply(w, 7)        # command not supported
        d = await self.decide(host, port)
        if not d.allowed:
            self.event("socks5", host, port, d, None, t0)
            return await self._socks_reply(w, 2)        # not allowed by ruleset
        try:
            addr, ur, uw = await self.open(d, port)
        except OSError as e:
            self.event("socks5", host, port, d, None, t0, error=str(e))
            return await self._socks_reply(w, 5)        # connection refused
        w.write(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        await self.relay("socks5", host, port, d, addr, t0, r, w, ur, uw)

    @staticmethod
    async def _socks_reply(w, code: int) -> None:
        w.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
        try:
            await w.drain()
        except OSError:
            pass
        w.close()

    # -- serving -----------------------------------------------------------------
    def _track(self, handler):
        async def run(r, w):
            task = asyncio.current_task()
            self.tasks.add(task)
            try:
                await handler(r, w)
            except Exception:  # noqa: BLE001 - one bad connection never stops the proxy
                w.close()
            finally:
                self.tasks.discard(task)
        return run

    async def serve(self, http_sock: socket.socket, socks_sock: socket.socket,
                    stop: asyncio.Event) -> None:
        servers = [await asyncio.start_server(self._track(self.http), sock=http_sock,
                                              limit=HEAD_LIMIT),
                   await asyncio.start_server(self._track(self.socks), sock=socks_sock)]
        await stop.wait()
        for s in servers:
            s.close()
        for t in list(self.tasks):      # the sandbox is gone: end what is open
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _split_hostport(text: str, default: int | None):
    """``host:port``, ``[v6]:port`` (or without the port when ``default``)
    to (host, port); (None, None) when malformed."""
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, None
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None, None
            port = rest[1:]
    elif ":" in text:
        host, _, port = text.rpartition(":")
    if port is None:
        if default is None:
            return None, None
        return (host or None), default
    if not port.isdigit() or not 1 <= int(port) <= 65535 or not host:
        return None, None
    return host, int(port)


def run_proxy(policy: Policy, sandbox_id: str, http_fd: int, socks_fd: int, write) -> None:
    """Body of the proxy process: serve until SIGTERM (the supervisor's
    teardown) or until the supervisor dies, then write the last events."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # ^C is the supervisor's to forward
    batcher = Batcher(write)
    proxy = Proxy(policy, sandbox_id, batcher, Resolver.from_env())

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await proxy.serve(socket.socket(fileno=http_fd), socket.socket(fileno=socks_fd), stop)

    try:
        asyncio.run(main())
    finally:
        batcher.close()
