"""Stage 4 of a launch: build the `LaunchPlan` (DESIGN §2 step 6).

`build_plan` is pure: the same resolved values and leases give the same
plan (`LaunchPlan.digest` equal), it takes nothing, writes nothing and
reads nothing but the host facts the cgroup layout depends on. What it
refuses (a profile without a mount namespace) it refuses before any
kernel work. ``--dry-run`` prints exactly what this returns.
"""

from __future__ import annotations

from ..errors import ProfileError
from ..runtime.plan import LaunchPlan, MountOp, build_limit_rlimits, build_mounts
from ..runtime.spec import RunSpec

#: the order namespaces are unshared in
NAMESPACE_ORDER = ("user", "mount", "pid", "net", "uts", "ipc", "cgroup")


def build_namespaces(profile) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(new, shared with the host)`` namespaces, in unshare order."""
    ns = profile.namespaces
    new = tuple(n for n in NAMESPACE_ORDER if getattr(ns, n))
    shared = tuple(n for n in NAMESPACE_ORDER if not getattr(ns, n))
    if profile.network.mode == "host" and "net" in new:
        new = tuple(n for n in new if n != "net")
        shared += ("net",)
    if profile.network.mode == "allow" and "net" not in new:
        raise ProfileError("network mode 'allow' needs the sandbox's own network namespace",
                           source=profile.source, key="namespaces.net")
    if "mount" not in new:
        raise ProfileError("a sandbox needs its own mount namespace",
                           source=profile.source, key="namespaces.mount")
    return new, shared


def build_plan(resolved, leases, request, base: str) -> LaunchPlan:
    """The plan for ``resolved`` under ``leases`` (``base``: the sandbox's
    runtime folder). Pure."""
    from ..runtime import cgroups
    profile = resolved.profile
    sid = leases.sandbox_id
    new, shared = build_namespaces(profile)
    missing = list(resolved.missing)
    spec = RunSpec(resolved.argv, resolved.root, request.volumes, request.name,
                   request.insecure_options)
    lim = profile.limits
    cg = cgroups.build(sid, lim.memory, lim.pids, getattr(lim, "cpus", None)) \
        if resolved.cgroups_ok else None
    rlimits, not_applied = build_limit_rlimits(lim, resolved.cgroups_ok)
    lp = leases.label_plan
    fds = [hp.fd for hp in resolved.volumes] or [None] * len(lp.volumes)
    volume_ops = tuple(
        MountOp("bind", pv.request.target, pv.request.source, pv.grant.mode,
                f"volume, label {pv.grant.label or 'none'}", fd=fd)
        for pv, fd in zip(lp.volumes, fds))
    mounts = build_mounts(profile, spec, volume_ops)
    if resolved.root_path is not None:     # the --rootfs folder: mounted from its fd
        mounts = tuple(m._replace(fd=resolved.root_path.fd) if m.op == "overlay" else m
                       for m in mounts)
    if leases.net is not None:     # /etc/hosts, hostname, resolv.conf for the bridge
        from ..net import etc_mounts
        mounts = etc_mounts(mounts, leases.net, profile.process.hostname, spec.root)
    net = leases.net
    if profile.network.mode == "allow":    # the egress proxy (issue 16)
        from ..net.egress import EgressPlan, build_policy
        if not profile.network.allow:
            raise ProfileError("network mode 'allow' with nothing allowed: name the "
                               "destinations in [network] allow, or use mode 'none'",
                               source=profile.source, key="network.allow")
        net = EgressPlan(build_policy(profile.network.allow, profile.network.deny), sid)
    landlock_rules, landlock_abi = (), 0
    if lp.landlock is not None:
        landlock_rules, landlock_abi = tuple(lp.landlock), lp.landlock_abi
    elif profile.landlock.enabled:
        missing.append("landlock")
    return LaunchPlan(
        sandbox_id=sid, name=request.name, profile=profile.name,
        profile_digest=profile.digest(), argv=resolved.argv, env=profile.process.env,
        workdir=profile.process.workdir, hostname=profile.process.hostname,
        uid=profile.user.uid, gid=profile.user.gid, namespaces=new,
        shared_namespaces=shared, idmap=leases.idmap,
        base=base, root_kind=spec.root.kind, mounts=mounts,
        capabilities=tuple(sorted(profile.capabilities)),
        no_new_privs=profile.process.no_new_privs,
        rlimits=rlimits, cgroup=cg, seccomp=resolved.seccomp,
        landlock=landlock_rules, landlock_abi=landlock_abi, label=str(lp.context),
        network=profile.network.mode if "net" in new or profile.network.mode == "host"
        else "host",
        missing=tuple(missing), insecure_options=request.insecure_options, net=net,
        timeout=lim.timeout, not_applied=not_applied,
        # the exec label is a step only where SELinux is active (issue 10)
        exec_label=lp.selinux.exec_context if lp.selinux.active else None)
