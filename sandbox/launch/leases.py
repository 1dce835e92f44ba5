"""Stage 3 of a launch: the leases (DESIGN §2 step 7).

What one sandbox holds on the host while it runs, taken and released in
this one place, as one object: the id range of its user namespace, its
MCS level (and the volume decisions made against it), and for ``--net
bridge`` its address and host ports. `take_leases` takes them in a fixed
order and, if one cannot be had, releases those already taken before it
raises; `Leases.release` gives them all back (idempotent).

``dry=True`` (``--dry-run``) goes through the very same code and holds
nothing: the id range is chosen but not locked, the level drawn but not
reserved, the address computed but not leased. So the printed plan is
the executed one, up to the values drawn at random.

Nothing here writes a label: the ``:z``/``:Z`` relabels are decided here
and applied by the run stage (`sandbox.launch.run`).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import UsageError
from .build import build_namespaces
from .request import Request
from .resolve import Resolved


class Leases(NamedTuple):
    """What one launch holds; ``held`` are the handles `release` frees."""

    sandbox_id: str
    idmap: object | None            # sandbox.runtime.idmap.IdMap
    label_plan: object              # sandbox.labels.plan.LabelPlan, at the leased level
    net: object | None              # sandbox.net.NetPlan for --net bridge
    held: tuple = ()
    dry: bool = False

    def release(self) -> None:
        for h in reversed(self.held):
            h.release()


def take_leases(resolved: Resolved, request: Request, paths, sandbox_id: str, *,
                dry: bool = False) -> Leases:
    """Take every lease the launch needs (nothing held with ``dry``).
    Raises what the first refused lease raises; nothing is held then."""
    held: list = []
    try:
        return _take(resolved, request, paths, sandbox_id, dry, held)
    except BaseException:
        for h in reversed(held):
            h.release()
        raise


def _take(resolved, request, paths, sid, dry, held) -> Leases:
    profile = resolved.profile
    new, _shared = build_namespaces(profile)
    # network: an address on the bridge and the forwarded host ports
    netplan = None
    if profile.network.mode == "bridge":
        from ..net import plan_bridge
        netplan, h = plan_bridge(paths, sid, bridge=request.bridge, ports=request.ports,
                                 dns=request.dns, hostname=profile.process.hostname,
                                 allow_host=request.allow_host,
                                 root=resolved.root, hold=not dry)
        if h is not None:
            held.append(h)
    elif request.ports or request.dns or request.allow_host:
        raise UsageError(f"--port, --dns and --allow-host need --net bridge (network is "
                         f"{profile.network.mode!r})")
    # id range for the user namespace
    idm = None
    if "user" in new:
        from ..runtime import idmap
        res = idmap.reserve(profile.user.map, paths.runtime,
                            inside_uid=0 if os.geteuid() == 0 else profile.user.uid,
                            inside_gid=0 if os.geteuid() == 0 else profile.user.gid,
                            hold=not dry)
        held.append(res)
        idm = res.idmap
        check_ids_mapped(idm, profile.user.uid, profile.user.gid)
        check_host_ids(idm, profile, request.insecure_options)
    # the MCS level, and every volume decided against it: on the fds the
    # sources were opened as (/proc/self/fd/N reaches that very inode)
    from ..labels.plan import build_label_plan
    vols = tuple(v._replace(source=hp.fdpath) for v, hp in zip(request.volumes,
                                                               resolved.volumes)) \
        if len(resolved.volumes) == len(request.volumes) else request.volumes
    if dry:
        import random
        from ..labels.model import Level
        level = profile.label.level
        if level == "auto":
            i, j = sorted(random.SystemRandom().sample(range(1024), 2))
            level = f"s0:c{i},c{j}"
        lp = _label_plan(build_label_plan, resolved, request, profile, Level.parse(level), vols,
                         own_folders=tuple(paths))
    else:
        from ..labels.alloc import allocate_level, labels_in_use
        lease = allocate_level(paths, profile.label.level, owner=sid)
        held.append(lease)
        others = [h.level for h in labels_in_use(paths)]
        lp = _label_plan(build_label_plan, resolved, request, profile, lease.level, vols,
                         held_by_others=others, own_folders=tuple(paths))
    return Leases(sid, idm, lp, netplan, tuple(held), dry)


def _label_plan(build, resolved, request, profile, level, vols, **kw):
    """`build_label_plan` over the fd paths, with the caller's spelling put
    back: in the plan's volumes (mounts, records) and in any refusal."""
    from ..errors import SandboxError
    try:
        lp = build(profile, level, vols, **kw)
    except SandboxError as e:
        for hp in resolved.volumes:
            e.message = e.message.replace(hp.fdpath, hp.path)
            if e.hint:
                e.hint = e.hint.replace(hp.fdpath, hp.path)
        e.args = (e.message,)
        raise
    if vols is request.volumes:
        return lp
    return lp._replace(volumes=tuple(pv._replace(request=v) for pv, v in
                                     zip(lp.volumes, request.volumes)))


def check_ids_mapped(idm, uid: int, gid: int) -> None:
    """`UsageError` unless ``uid``/``gid`` lie inside the sandbox's id maps
    (an unmapped id would fail deep in setup with EINVAL)."""
    def inside(map_text: str, n: int) -> bool:
        for line in map_text.strip().splitlines():
            first, _, count = (int(x) for x in line.split())
            if first <= n < first + count:
                return True
        return False
    if not inside(idm.uid_map, uid) or not inside(idm.gid_map, gid):
        spans = ", ".join(f"{a}-{int(a) + int(c) - 1}" for a, _, c in
                          (line.split() for line in idm.uid_map.strip().splitlines()))
        raise UsageError(f"user {uid}:{gid} is not mapped in this sandbox (ids {spans} are)",
                         hint="pick --user inside that range")


def check_host_ids(idm, profile, insecure_options) -> None:
    """Refuse a map that gives the sandbox host root (or another host id
    below the subordinate ranges) unless the profile is the unconfined kind
    or the user named ``--insecure-options=userns`` (recorded, warned):
    issue 13 item 1."""
    from ..errors import ProfileError
    from ..runtime.idmap import build_privileged_host_ids
    why = build_privileged_host_ids(idm)
    if why is None or profile.unconfined or "userns" in insecure_options:
        return
    raise ProfileError(
        f"user.map {profile.user.map!r} {why}; refused: the sandbox would own host files "
        "(a setuid copy left in a volume runs as that id on the host)",
        source=profile.source, key="user.map",
        hint='set map = "auto" (a subordinate range), or pass --insecure-options=userns '
             "to accept it (recorded in the audit log)")
