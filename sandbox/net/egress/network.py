"""``--net allow:``: the plan value and the network object of a sandbox
whose only way out is the egress proxy.

The sandbox keeps its own network namespace with only ``lo`` (no route
out, nothing of the host reachable). At `EgressNetwork.attach` (launch
stage 8, in the supervisor, once the first child has unshared and its id
maps are written):

1. a short-lived helper process (forked: the supervisor stays
   single-threaded) enters the sandbox's user namespace (so this works
   rootless: the supervisor's user owns it) and network namespace, makes
   the two listening TCP sockets there, 127.0.0.1:`HTTP_PORT` (HTTP and
   CONNECT) and 127.0.0.1:`SOCKS_PORT` (SOCKS5), and hands them back over
   a Unix socket pair. A socket keeps the namespace it was made in, so
   these listen inside the sandbox while whoever holds them is outside.
   ``IP_FREEBIND``: the child brings ``lo`` up only after "go".
2. the proxy process is forked with those two descriptors and nothing
   else (`sandbox.net.egress.proxy.run_proxy`): outside, in the host's
   network namespace, it resolves and connects for the sandbox.

`detach` stops the proxy (SIGTERM: it writes its last audit events) and
waits for it; a proxy still there after `STOP_TIMEOUT` is killed. The
proxy dies with the supervisor (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass

from ...errors import SetupError
from .policy import Policy

HTTP_PORT = 3128
SOCKS_PORT = 1080
STOP_TIMEOUT = 10.0
_IP_FREEBIND = 15
#: the running counts, in the sandbox's runtime folder (`read_counts`)
COUNTS_NAME = "egress.json"


def read_counts(base) -> dict | None:
    """The connection counts of a running sandbox whose runtime folder is
    ``base`` (allowed, denied, failed, bytes each way), as of the proxy's
    last batch; None when it has none. A few microseconds: ``sandbox
    status`` reads it instead of scanning the audit log."""
    import json
    try:
        with open(os.path.join(os.fspath(base), COUNTS_NAME)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


COUNTS_SIZE = 512


def _counting(write, box: list):
    """``write`` that also keeps the counts and writes them to the file
    open as ``box[0]`` (made by the supervisor, which may still traverse
    the runtime folder; the proxy, without capabilities, may not): one
    ``pwrite`` of a fixed-size blank-padded JSON at offset 0, so a reader
    never sees a shorter, half-written file."""
    import json
    counts = {"allowed": 0, "denied": 0, "failed": 0, "bytes_in": 0, "bytes_out": 0}

    def write_and_count(events):
        try:
            write(events)
        finally:
            for e in events:
                counts[e["decision"]] = counts.get(e["decision"], 0) + 1
                counts["bytes_in"] += e.get("bytes_in") or 0
                counts["bytes_out"] += e.get("bytes_out") or 0
            if box and box[0] is not None:
                raw = json.dumps(counts).encode()[:COUNTS_SIZE - 1]
                try:
                    os.pwrite(box[0], raw.ljust(COUNTS_SIZE - 1) + b"\n", 0)
                except OSError:
                    pass
    return write_and_count


def proxy_env(http_port: int = HTTP_PORT, socks_port: int = SOCKS_PORT) -> dict[str, str]:
    """The variables that point the payload's clients at the proxy."""
    http = f"http://127.0.0.1:{http_port}"
    env = {"HTTP_PROXY": http, "HTTPS_PROXY": http,
           "ALL_PROXY": f"socks5h://127.0.0.1:{socks_port}", "NO_PROXY": ""}
    env.update({k.lower(): v for k, v in env.items()})
    return env


@dataclass(frozen=True, slots=True)
class EgressPlan:
    """The allow-list network of one sandbox (``LaunchPlan.net``)."""

    policy: Policy
    sandbox_id: str = ""
    http_port: int = HTTP_PORT
    socks_port: int = SOCKS_PORT

    def to_dict(self) -> dict:
        return {"mode": "allow", **self.policy.to_dict(),
                "http_proxy": f"127.0.0.1:{self.http_port}",
                "socks5_proxy": f"127.0.0.1:{self.socks_port}"}

    def record(self) -> dict:
        """For the audit launch record's ``network`` field."""
        return self.to_dict()


def _open_listeners_in(pid: int, ports: tuple[int, ...], reply: socket.socket) -> None:
    """Body of the helper (step 1). Never returns."""
    from ...runtime.kernel import CLONE_NEWNET, CLONE_NEWUSER, setns
    code = 0
    try:
        user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        # the user namespace first: its owner (us) holds CAP_SYS_ADMIN over
        # the network namespace only from inside it (setns checks both)
        if os.fstat(user).st_ino != os.stat("/proc/self/ns/user").st_ino:
            setns(user, CLONE_NEWUSER)
        setns(net, CLONE_NEWNET)
        socks = []
        for port in ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
            s.bind(("127.0.0.1", port))
            s.listen(1024)
            socks.append(s)         # kept: a collected socket object closes its fd
        socket.send_fds(reply, [b"ok"], [s.fileno() for s in socks])
    except OSError as e:
        code = 1
        try:
            reply.sendall(f"{e}".encode()[:500])
        except OSError:
            pass
    finally:
        os._exit(code)


def open_listeners(pid: int, ports: tuple[int, ...]) -> list[int]:
    """The listening sockets, made inside ``pid``'s network namespace."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    child = os.fork()
    if child == 0:
        try:
            mine.close()
            _open_listeners_in(pid, ports, theirs)
        finally:
            os._exit(1)
    theirs.close()
    try:
        msg, fds, _, _ = socket.recv_fds(mine, 1024, len(ports))
    finally:
        mine.close()
        os.waitpid(child, 0)
    if msg != b"ok" or len(fds) != len(ports):
        for fd in fds:
            os.close(fd)
        raise SetupError(f"cannot open the egress proxy's sockets in the sandbox: "
                         f"{msg.decode(errors='replace') or 'the helper died'}",
                         step="egress proxy")
    return fds


class EgressNetwork:
    """The runtime's network object (``attach(pid)``, ``detach()``) for
    ``--net allow:``. ``write(events)`` runs in the proxy process with
    each batch of connection events (the audit log, given by the launch
    stage: this package is below the audit layer); ``counts_file``: where
    the proxy keeps its running counts (see `read_counts`)."""

    def __init__(self, plan: EgressPlan, write, counts_file: str | None = None):
        self.counts_file, self._counts_box = counts_file, []
        self.plan, self.write = plan, _counting(write, self._counts_box)
        self.proxy_pid: int | None = None

    def attach(self, pid: int) -> None:
        if self.counts_file:
            try:
                self._counts_box.append(os.open(self.counts_file, os.O_RDWR | os.O_CREAT |
                                                os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                                                0o600))
            except OSError:
                pass        # status shows no counts; the audit records are unaffected
        fds: list[int] = []
        try:
            fds = open_listeners(pid, (self.plan.http_port, self.plan.socks_port))
            child = os.fork()
        except BaseException:
            for fd in fds + self._counts_box:
                os.close(fd)
            self._counts_box.clear()
            raise
        if child == 0:
            code = 1
            try:
                code = _proxy_main(self.plan, fds, self.write, self._counts_box)
            except BaseException as e:  # noqa: BLE001 - said on stderr, never re-raised
                os.write(2, f"sandbox: the egress proxy stopped: {e!r}\n".encode())
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        for fd in self._counts_box:     # the proxy has its own copy
            os.close(fd)
        self._counts_box.clear()
        self.proxy_pid = child

    def detach(self) -> list[str]:
        pid, self.proxy_pid = self.proxy_pid, None
        if pid is None:
            return []
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return []
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return [f"egress proxy {pid} did not stop in {STOP_TIMEOUT:.0f} s: killed "
                "(its last audit events may be lost)"]


def _drop_privileges() -> None:
    """The proxy parses what the sandbox sends: it keeps no capability
    (its user still owns the audit log, so it can write it) and sets
    no_new_privs. For root: the bounding set emptied, then effective,
    permitted and inheritable cleared."""
    import prctl as _prctl

    from ...capabilities import last_cap
    every = list(range(last_cap() + 1))
    if os.geteuid() == 0:
        for n in every:
            _prctl.capbset_drop(n)
    _prctl.set_caps((every, [_prctl.CAP_EFFECTIVE, _prctl.CAP_PERMITTED,
                             _prctl.CAP_INHERITABLE], False))
    _prctl.set_no_new_privs(1)


def _proxy_main(plan: EgressPlan, fds: list[int], write, counts_box: list) -> int:
    """The proxy process. It keeps its listening sockets and stderr, and
    closes every other pipe, socket or terminal it inherited (the launch
    pipes, the payload's output pipe: holding one would delay its EOF).
    Regular files stay open: the supervisor's SQLite connection to the
    audit log, parked by `sandbox.audit` across the fork, still refers to
    them, and closing them under SQLite breaks its locks."""
    import stat

    from ...runtime.kernel import PR_SET_PDEATHSIG, prctl
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _drop_privileges()
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
              signal.SIGCHLD, signal.SIGWINCH):
        signal.signal(s, signal.SIG_DFL)
    os.setsid()                          # out of the terminal's process group
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    import fcntl
    http, socks = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000) for fd in fds)
    if counts_box:          # out of the way of 3 and 4 (a regular file: kept below)
        counts_box[0] = fcntl.fcntl(counts_box[0], fcntl.F_DUPFD_CLOEXEC, 1000)
    os.dup2(http, 3, inheritable=False)
    os.dup2(socks, 4, inheritable=False)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 4:
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
            except OSError:
                pass
    from .proxy import run_proxy
    run_proxy(plan.policy, plan.sandbox_id, 3, 4, write)
    return 0
