"""Stage 6 for ``--net bridge``: the `NetPlan`, the lease and the held
ports, and the /etc files written for the sandbox."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

from ..errors import HostSupportError, UsageError
from ..runtime.plan import MountOp
from . import config, leases
from .model import DEFAULT_BRIDGE, NetPlan, PortForward

IP_FREEBIND = 15


class NetReservation:
    """What a bridge launch holds from the plan until the sandbox is gone:
    the address lease. (The forwarded host ports are probed here and held,
    as bound sockets, by `attach`: after the fork, so that no process of
    the sandbox inherits them.)"""

    def __init__(self, lease):
        self.lease = lease

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()


def host_nameservers(path: str = "/etc/resolv.conf") -> tuple[list[str], list[str]]:
    """(non-loopback nameservers, search/domain/options lines) of the host."""
    servers, extra = [], []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return servers, extra
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            try:
                a = ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if not a.is_loopback and not a.is_unspecified:
                servers.append(parts[1])
        elif parts[0] in ("search", "domain", "options"):
            extra.append(" ".join(parts))
    return servers, extra


def resolv_conf(np: NetPlan, extra: tuple[str, ...] = ()) -> str:
    out = ["# written by sandbox for this sandbox (--net bridge)"]
    if not np.dns:
        out.append("# no name server: the host's are loopback addresses; pass --dns IP")
    out += [f"nameserver {s}" for s in np.dns]
    out += list(extra)
    return "\n".join(out) + "\n"


def hosts_file(hostname: str) -> str:
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{hostname}\n"


def hold_port(f: PortForward, gateway: str) -> socket.socket:
    """A socket bound to the forward's host address and port (no other
    program can bind it while this is open); `UsageError` when taken."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if f.proto == "tcp"
                      else socket.SOCK_DGRAM)
    try:
        if f.host_ip == gateway:
            # the bridge (and its address) may not exist before attach
            s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        s.bind((f.host_ip, f.host_port))
    except OSError as e:
        s.close()
        what = f"--port {f.host_ip}:{f.host_port}/{f.proto}"
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"{what}: the port is already in use on the host") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"{what}: {f.host_ip} is not an address of this host") from None
        raise UsageError(f"{what}: cannot hold the port: {e.strerror}") from None
    return s


def plan_bridge(paths, sandbox_id: str, *, bridge: str | None, ports=(), dns=(),
                hostname: str = "sandbox", root=None,
                hold: bool = True, allow_host=()) -> tuple[NetPlan, NetReservation | None]:
    """Check and reserve a bridge network for ``sandbox_id``.

    ``ports``: `PortForward` values; ``dns``: name server addresses (empty:
    the host's, unless they are loopback). With ``hold`` false (``--dry-run``)
    nothing is leased or bound. Raises `HostSupportError` for an ordinary
    user, `UsageError` for a clashing subnet, a taken or duplicated port;
    on error nothing is held.
    """
    if os.geteuid() != 0:
        raise HostSupportError("--net bridge needs root (bridges, veth pairs and nftables "
                               "rules are host-wide); as an ordinary user use --net none "
                               "or --net host")
    bridge = bridge or DEFAULT_BRIDGE
    subnet, where = config.subnet_for(paths, bridge)
    gateway = str(next(subnet.hosts()))
    tag = leases.state_tag(paths)
    from . import link
    from .wire import host_lock
    with host_lock():       # a concurrent attach makes and marks a bridge under it
        link.check_host(bridge, subnet, gateway, tag, where)

    fwd: list[PortForward] = []
    seen = set()
    for p in ports:
        f = PortForward(p.host_ip or gateway, p.host_port, p.port, p.proto)
        key = (f.proto, f.host_ip, f.host_port)
        if key in seen:
            raise UsageError(f"--port {f.host_ip}:{f.host_port}/{f.proto} is given twice")
        seen.add(key)
        fwd.append(f)
    if dns:
        servers, source = list(dns), "flag --dns"
    else:
        servers, _extra = host_nameservers()
        source = "host" if servers else "none"
    host_if = "sbx" + sandbox_id[:12]
    np = NetPlan(bridge=bridge, subnet=str(subnet), gateway=gateway, ports=tuple(fwd),
                 dns=tuple(servers), dns_source=source, sandbox_id=sandbox_id,
                 host_if=host_if, tag=tag, state=str(leases.db_path(paths)),
                 allow_host=tuple(allow_host))
    if root is not None and root.kind in ("dir", "layers"):
        mode = _etc_mode(root)
        if mode is not None:
            np = _with_etc(np, os.path.join(str(paths.runtime), sandbox_id, ETC_LAYER),
                           hostname, mode)
    if not hold:
        return np, None
    for f in fwd:               # taken now: refused before anything exists
        hold_port(f, gateway).close()
    lease = leases.allocate(paths, sandbox_id, bridge, subnet, gateway, host_if,
                            [f.to_dict() for f in fwd])
    from dataclasses import replace
    return replace(np, address=lease.address), NetReservation(lease)


#: the /etc layer's folder inside the sandbox's runtime folder. The overlay
#: step names it relative to that folder (the child's working folder while
#: it mounts), so the plan and its digest stay the same from launch to launch.
ETC_LAYER = "net-etc"


def _lowers(root) -> list[str]:
    if root.kind == "dir":
        return [root.path]
    return list(root.layers or ())[::-1]     # stored bottom first; the top wins


def _etc_mode(root) -> tuple[int, int, int] | None:
    """(uid, gid, mode) of the image's /etc (0, 0, 0o755 when it has none);
    None when its /etc is a symbolic link (then no layer is added)."""
    import stat
    for d in _lowers(root):
        p = os.path.join(d, "etc")
        if os.path.lexists(p):
            st = os.lstat(p)
            if not stat.S_ISDIR(st.st_mode):
                return None
            return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return (0, 0, 0o755)


def _with_etc(np: NetPlan, etc_dir: str, hostname: str, mode) -> NetPlan:
    from dataclasses import replace
    extra = tuple(host_nameservers()[1]) if np.dns_source == "host" else ()
    files = (("hostname", hostname + "\n"), ("hosts", hosts_file(hostname)),
             ("resolv.conf", resolv_conf(np, extra)))
    return replace(np, etc_dir=etc_dir, etc_files=files, etc_mode=tuple(mode))


def write_etc_layer(np: NetPlan) -> None:
    """Write the /etc layer (`attach`, after the runtime folder exists)."""
    if not np.etc_dir:
        return
    etc = os.path.join(np.etc_dir, "etc")
    os.mkdir(np.etc_dir, 0o755)
    os.mkdir(etc, 0o755)
    for name, text in np.etc_files:
        fd = os.open(os.path.join(etc, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    uid, gid, mode = np.etc_mode
    os.chown(etc, uid, gid)
    os.chmod(etc, mode)


def etc_mounts(mounts: tuple[MountOp, ...], np: NetPlan, hostname: str,
               root) -> tuple[MountOp, ...]:
    """``mounts`` with /etc/hosts, /etc/hostname and /etc/resolv.conf
    written for a bridge sandbox. On the host view (a tmpfs root) the
    host's resolv.conf, bound read-only there, is replaced by a written
    file. On an image or ``--rootfs`` root the sandbox's root user cannot
    create files in an /etc it does not own, so the three files come as
    one more, top-most, lower layer of the overlay (`write_etc_layer`);
    the image itself is never modified."""
    m = list(mounts)
    if root.kind == "host":
        extra = tuple(host_nameservers()[1]) if np.dns_source == "host" else ()
        resolv = MountOp("file", "/etc/resolv.conf", resolv_conf(np, extra),
                         why="written for the bridge network")
        for i, op in enumerate(m):
            if op.target == "/etc/resolv.conf":
                m[i] = resolv
                break
        else:
            at = next((i + 1 for i, op in enumerate(m) if op.target == "/etc/hosts"), len(m))
            m.insert(at, resolv)
        return tuple(m)
    if not np.etc_dir:
        return tuple(m)
    for i, op in enumerate(m):
        if op.op == "overlay":
            m[i] = MountOp(op.op, op.target, f"{ETC_LAYER}:{op.source}", op.options,
                           op.why + "; top layer: /etc/hosts, hostname, resolv.conf "
                           "for the bridge network")
            break
    return tuple(m)
