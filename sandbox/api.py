"""The library entry point: ``Sandbox(...).run([...])``, which the CLI uses too.

    >>> from sandbox import Sandbox
    >>> result = Sandbox(profile="default").run(["/bin/sh", "-c", "exit 3"])
    >>> result.status
    3

`Sandbox` walks the pipeline of DESIGN §2: resolve the profile, resolve
and verify the image (if any), compile the seccomp filter, allocate the
label, build the `LaunchPlan`, spawn, and record the launch and its exit in
the audit log. Each stage hands a frozen value to the next.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

from .errors import HostSupportError, ProfileError, UsageError
from .paths import Paths
from .runtime.plan import (LaunchPlan, MountOp, SeccompPlan, build_mounts, build_rlimits,
                           with_home)
from .runtime.spec import RootFS, RunSpec, Volume


class RunResult(NamedTuple):
    """How a sandboxed command ended: ``status`` is its exit status (128+N
    after signal N); ``effective`` the kernel state read back after start."""

    sandbox_id: str
    status: int
    signal: int | None
    duration_ms: float
    plan_digest: str
    effective: dict | None = None
    missing: tuple[str, ...] = ()


def parse_volume(text: str) -> Volume:
    """``SRC:DST[:ro|rw][,z|Z]`` (also ``:z``/``:Z`` alone) to a `Volume`;
    `UsageError` naming the volume otherwise."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"bad --volume {text!r}", hint="write it as SRC:DST[:ro|rw]")
    src, dst = parts[0], parts[1]
    mode, relabel = "ro", None
    if len(parts) == 3:
        for opt in parts[2].split(","):
            if opt in ("ro", "rw"):
                mode = opt
            elif opt in ("z", "Z"):
                relabel = opt
            else:
                raise UsageError(f"bad --volume {text!r}: unknown option {opt!r}",
                                 hint="options are ro, rw, z and Z")
    if not dst.startswith("/") or ".." in dst.split("/"):
        raise UsageError(f"bad --volume {text!r}: the target must be an absolute path "
                         "without '..'")
    top = "/" + dst.strip("/").split("/")[0] if dst.strip("/") else "/"
    if top in ("/", "/proc", "/dev", "/sys"):
        raise UsageError(f"bad --volume {text!r}: a volume cannot cover {top}",
                         hint="mount it somewhere else, e.g. /mnt/NAME")
    if any(c in src for c in ",\0") or any(c in dst for c in ",\0"):
        raise UsageError(f"bad --volume {text!r}: paths may not contain ',' or NUL")
    if not os.path.exists(src):
        raise UsageError(f"--volume source {src!r} does not exist")
    return Volume(os.path.realpath(src), os.path.normpath(dst), mode, relabel)


def _volume(v) -> Volume:
    """A `Volume`, ``"SRC:DST[:ro|rw]"``, or ``(SRC, DST[, MODE])``."""
    if isinstance(v, Volume):
        return v
    if isinstance(v, (tuple, list)) and 2 <= len(v) <= 3 and all(isinstance(x, str) for x in v):
        return parse_volume(":".join(v))
    if isinstance(v, str):
        return parse_volume(v)
    raise UsageError(f"bad volume {v!r}", hint="give 'SRC:DST[:ro|rw]' or (SRC, DST[, MODE])")


def _env(env) -> dict[str, str]:
    import re
    out = {}
    for k, v in dict(env or {}).items():
        if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise UsageError(f"bad environment variable name {k!r}")
        if not isinstance(v, str) or "\0" in v:
            raise UsageError(f"the value of {k} must be a string without NUL")
        out[k] = v
    return out


def _user(user) -> tuple[int, int] | None:
    if user is None:
        return None
    if isinstance(user, str):
        return parse_user(user)
    if isinstance(user, int) and not isinstance(user, bool):
        return parse_user(str(user))
    if isinstance(user, (tuple, list)) and len(user) == 2 and \
            all(isinstance(x, int) and not isinstance(x, bool) for x in user):
        return parse_user(f"{user[0]}:{user[1]}")
    raise UsageError(f"bad user {user!r}", hint="give UID, (UID, GID) or 'UID:GID'")


def _argv(argv) -> tuple[str, ...]:
    if isinstance(argv, (str, bytes)) or not all(isinstance(a, str) for a in argv):
        raise UsageError("the command must be a list of strings, e.g. ['sh', '-c', 'echo hi']")
    if any("\0" in a for a in argv):
        raise UsageError("the command's arguments may not contain NUL")
    return tuple(argv)


def _check_ids_mapped(idm, uid: int, gid: int) -> None:
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


def parse_user(text: str) -> tuple[int, int]:
    """``UID[:GID]`` (numbers) to ids; `UsageError` otherwise."""
    uid, _, gid = text.partition(":")
    try:
        u = int(uid)
        g = int(gid) if gid else u
    except ValueError:
        raise UsageError(f"bad --user {text!r}",
                         hint="give numeric ids inside the sandbox: UID or UID:GID") from None
    if not (0 <= u < 2**32 - 1 and 0 <= g < 2**32 - 1):
        raise UsageError(f"bad --user {text!r}: ids must be between 0 and 4294967294")
    return u, g


class Sandbox:
    """A sandbox configuration; `run` launches one sandbox per call.

    ``profile``: a profile name or a path to a TOML file. ``rootfs``: a
    folder to use as root (never modified), or None for the host view.
    ``image``: a reference in the local image store (verified at every
    launch). ``volumes``: `Volume` values or ``SRC:DST[:ro|rw]`` strings.
    ``env``, ``hostname``, ``workdir``, ``user``: command-line overrides of
    the profile. ``root``: keep config, state and runtime under this folder.
    ``insecure_options``: e.g. ``("image",)`` to run an unsigned image.
    """

    def __init__(self, profile: str = "default", *, rootfs: str | os.PathLike | None = None,
                 image: str | None = None, volumes: Iterable[Volume | str] = (),
                 name: str | None = None, hostname: str | None = None,
                 env: Mapping[str, str] | None = None, workdir: str | None = None,
                 user: str | tuple[int, int] | None = None, root: str | os.PathLike | None = None,
                 insecure_options: Sequence[str] = (), network: str | None = None,
                 ports: Iterable[str] = (), dns: Iterable[str] = (),
                 audit: bool = True):
        self.paths = Paths.resolve(root)
        self.profile_ref = profile
        self.rootfs = None if rootfs is None else str(rootfs)
        self.image = image
        self.volumes = tuple(_volume(v) for v in volumes)
        if name is not None:
            from .runtime.supervise import _check_name
            _check_name(name)
        self.name = name
        self.hostname = hostname
        self.env = _env(env)
        self.workdir = workdir
        self.user = _user(user)
        self.insecure_options = tuple(insecure_options)
        # network (issue 7): "bridge:NAME" names the bridge; ports and name
        # servers are parsed here so a bad one fails before anything else
        self.bridge = None
        if network is not None and network.startswith("bridge:"):
            from .net.model import parse_network
            network, self.bridge = parse_network(network)
        self.network = network
        self.ports, self.dns = tuple(ports), tuple(dns)
        if self.ports or self.dns:
            from .net.model import parse_dns, parse_port
            self.ports = tuple(parse_port(p) if isinstance(p, str) else p for p in self.ports)
            self.dns = tuple(parse_dns(d) for d in self.dns)
        self.audit = audit
        self.verification = None     # the last launch's image Verification, if any
        self.image_record = None
        self.label_plan = None
        self.profile = None
        for opt in self.insecure_options:
            if opt not in ("image", "ondisk"):  # issue 12: ondisk
                raise UsageError(f"unknown insecure option {opt!r}",
                                 hint="known: image, ondisk")
        if self.rootfs is not None and self.image is not None:
            raise UsageError("give either an image or --rootfs, not both")

    # -- stage 2: the profile --------------------------------------------------
    def resolve_profile(self):
        from .profile import load
        overrides: dict[str, tuple] = {}
        if self.hostname is not None:
            overrides["process.hostname"] = (self.hostname, "flag --hostname")
        if self.workdir is not None:
            overrides["process.workdir"] = (self.workdir, "flag --workdir")
        if self.user is not None:
            overrides["user.uid"] = (self.user[0], "flag --user")
            overrides["user.gid"] = (self.user[1], "flag --user")
        if self.network is not None:
            overrides["network.mode"] = (self.network, "flag --net")
        prof = load(self.profile_ref, user_dir=self.paths.user_profiles, overrides=overrides)
        if self.env:
            env = dict(prof.process.env)
            env.update(self.env)
            origins = dict(prof.origins)
            origins["process.env"] = "flag --env"
            prof = prof._replace(process=prof.process._replace(env=tuple(env.items())),
                                 origins=tuple(sorted(origins.items())))
        return prof

    # -- stage 5: the root file system -----------------------------------------
    def _root(self) -> RootFS:
        if self.rootfs is None:
            return RootFS("host")
        p = Path(self.rootfs)
        if not p.exists():
            raise UsageError(f"--rootfs {self.rootfs!r} does not exist")
        if not p.is_dir():
            raise UsageError(f"--rootfs {self.rootfs!r} is not a folder")
        real = os.path.realpath(p)
        if any(c in real for c in ",:\0"):
            raise UsageError(f"--rootfs {real!r}: overlayfs cannot take a path with ',' or ':'")
        return RootFS("dir", real)

    # -- stages 3-4: the image, verified at every launch -------------------------
    def _image(self, argv, profile):
        """Resolve and verify the image; its config gives the defaults
        (Entrypoint, Cmd, Env, WorkingDir, User) that flags did not set."""
        from .image import ImageStore
        store = ImageStore(self.paths)
        # issue 12: `run docker://REF` pulls (verified) when missing
        rec = store.resolve_or_pull(self.image, insecure_options=self.insecure_options)
        self.verification = None
        if "image" not in self.insecure_options:
            self.verification = store.verify(rec)   # raises VerificationError
        if "ondisk" not in self.insecure_options:   # issue 12: what runs is what was verified
            store.check_on_disk(rec)
        self.image_record = rec
        cfg = rec.config or {}
        entry = list(cfg.get("Entrypoint") or [])
        if rec.format == "aci" and argv:
            # An ACI's app.exec (stored as Entrypoint) is the whole command
            # line: a command given to `run` replaces it (rkt's --exec), it
            # is not appended to it as arguments.
            entry = []
        cmd = list(argv) if argv else list(cfg.get("Cmd") or [])
        argv = entry + cmd
        if not argv:
            raise UsageError(f"image {rec.name or rec.digest} names no command",
                             hint="give one after '--'")
        env = dict(profile.process.env)
        for item in cfg.get("Env") or []:
            k, sep, v = item.partition("=")
            if sep:
                env[k] = v
        env.update(self.env)
        proc = profile.process._replace(env=tuple(env.items()))
        if cfg.get("WorkingDir") and self.workdir is None:
            proc = proc._replace(workdir=cfg["WorkingDir"])
        user = profile.user
        if cfg.get("User") and self.user is None:
            u, _, g = str(cfg["User"]).partition(":")
            if u.isdigit() and (not g or g.isdigit()):
                user = user._replace(uid=int(u), gid=int(g) if g else int(u))
            elif u not in ("root", "0"):
                raise UsageError(f"image user {cfg['User']!r} is a name; sandbox needs numeric ids",
                                 hint="pass --user UID[:GID]")
        profile = profile._replace(process=proc, user=user)
        from .image.isolators import apply_aci_isolators   # issue 12: never ignored
        profile = apply_aci_isolators(rec, profile)
        return RootFS("layers", layers=tuple(rec.layer_dirs)), tuple(argv), profile

    # -- stage 6: the plan -------------------------------------------------------
    def plan(self, argv: Sequence[str], *, sandbox_id: str | None = None,
             reservations: list | None = None) -> LaunchPlan:
        """Resolve everything and build the `LaunchPlan` without touching the
        kernel. Reservations (id range) made for the plan are appended to
        ``reservations`` (released by the caller), or released at once."""
        argv = _argv(argv)
        profile = self.resolve_profile()
        sid = sandbox_id or os.urandom(6).hex()
        root = self._root()
        if self.image is not None:
            root, argv, profile = self._image(argv, profile)
        elif not argv:
            raise UsageError("no command given", hint="write it after '--': sandbox run -- CMD")
        spec = RunSpec(tuple(argv), root, self.volumes, self.name, self.insecure_options)
        missing: list[str] = []

        # namespaces
        ns = profile.namespaces
        order = ("user", "mount", "pid", "net", "uts", "ipc", "cgroup")
        new = tuple(n for n in order if getattr(ns, n))
        shared = tuple(n for n in order if not getattr(ns, n))
        if profile.network.mode == "host" and "net" in new:
            new = tuple(n for n in new if n != "net")
            shared += ("net",)
        if "mount" not in new:
            raise ProfileError("a sandbox needs its own mount namespace",
                               source=profile.source, key="namespaces.mount")
        # network (issue 7): a bridge lease and held host ports (sandbox.net)
        netplan = None
        if profile.network.mode == "bridge":
            from .net import plan_bridge
            netplan, held = plan_bridge(self.paths, sid, bridge=self.bridge, ports=self.ports,
                                        dns=self.dns, hostname=profile.process.hostname,
                                        root=spec.root, hold=reservations is not None)
            if held is not None:
                reservations.append(held)
        elif self.ports or self.dns:
            raise UsageError(f"--port and --dns need --net bridge (network is "
                             f"{profile.network.mode!r})")

        # id maps
        from .runtime import idmap
        idm = None
        if "user" in new:
            res = idmap.reserve(profile.user.map, self.paths.runtime,
                                inside_uid=0 if os.geteuid() == 0 else profile.user.uid,
                                inside_gid=0 if os.geteuid() == 0 else profile.user.gid,
                                hold=reservations is not None)
            if reservations is not None:
                reservations.append(res)
            else:
                res.release()
            idm = res.idmap
            _check_ids_mapped(idm, profile.user.uid, profile.user.gid)

        # cgroups
        from .runtime import cgroups
        cg = cgroups.build(sid, profile.limits.memory, profile.limits.pids)
        if cg is not None:
            ok, why = cgroups.available()
            if not ok:
                if "cgroups" not in profile.optional:
                    raise HostSupportError(
                        f"profile {profile.name!r} sets memory/pids limits but {why}",
                        hint='run as root, or add "cgroups" to the profile\'s optional list')
                missing.append("cgroups")
                cg = None

        # seccomp: compiled here, in the parent, so errors come before any namespace
        sc = None
        if not profile.seccomp.unconfined:
            from .seccomp import compile_filter
            self.paths.ensure("state")   # 0700 before anything is cached in it
            cf = compile_filter(profile.seccomp.profile, capabilities=profile.capabilities,
                                default_action=profile.seccomp.default_action,
                                other_abis=profile.seccomp.other_abis,
                                cache_dir=self.paths.state / "cache" / "seccomp")
            sc = SeccompPlan(cf.bpf, cf.digest, cf.source, cf.default_action,
                             cf.architectures, cf.instructions)

        profile = with_home(profile, spec.root.kind)
        # label (stage 7): a level no other running sandbox holds; volumes
        # decided against it; Landlock rules that enforce the decision
        from .labels.alloc import allocate_level, labels_in_use
        from .labels.plan import apply_relabels, build_label_plan
        if reservations is None:
            # --dry-run: show a level as it would be drawn; hold and create nothing
            from .labels.model import Level
            import random
            level = profile.label.level
            if level == "auto":
                i, j = sorted(random.SystemRandom().sample(range(1024), 2))
                level = f"s0:c{i},c{j}"
            lp = build_label_plan(profile, Level.parse(level), self.volumes)
        else:
            lease = allocate_level(self.paths, profile.label.level, owner=sid)
            reservations.append(lease)
            others = [h.level for h in labels_in_use(self.paths)]
            lp = build_label_plan(profile, lease.level, self.volumes, held_by_others=others)
            apply_relabels(lp)
        volume_ops = tuple(
            MountOp("bind", pv.request.target, pv.request.source, pv.grant.mode,
                    f"volume, label {pv.grant.label or 'none'}")
            for pv in lp.volumes)
        mounts = build_mounts(profile, spec, volume_ops)
        if netplan is not None:     # /etc/hosts, hostname, resolv.conf for the bridge
            from .net import etc_mounts
            mounts = etc_mounts(mounts, netplan, profile.process.hostname, spec.root)
        landlock_rules, landlock_abi = (), 0
        if lp.landlock is not None:
            landlock_rules, landlock_abi = tuple(lp.landlock), lp.landlock_abi
        elif profile.landlock.enabled:
            missing.append("landlock")
        self.label_plan = lp
        self.profile = profile
        return LaunchPlan(
            sandbox_id=sid, name=self.name, profile=profile.name,
            profile_digest=profile.digest(), argv=tuple(argv), env=profile.process.env,
            workdir=profile.process.workdir, hostname=profile.process.hostname,
            uid=profile.user.uid, gid=profile.user.gid, namespaces=new,
            shared_namespaces=shared, idmap=idm,
            base=str(self.paths.runtime / sid), root_kind=spec.root.kind, mounts=mounts,
            capabilities=tuple(sorted(profile.capabilities)),
            no_new_privs=profile.process.no_new_privs,
            rlimits=build_rlimits(profile.limits), cgroup=cg, seccomp=sc,
            landlock=landlock_rules, landlock_abi=landlock_abi, label=str(lp.context),
            network=profile.network.mode if "net" in new or profile.network.mode == "host"
            else "host",
            missing=tuple(missing), insecure_options=self.insecure_options, net=netplan)

    # -- stages 8-10: spawn, supervise, record ----------------------------------
    def run(self, argv: Sequence[str], *, _detached=None) -> RunResult:
        """Launch ``argv`` in a new sandbox and wait for it.

        Returns a `RunResult`. Raises a `sandbox.errors.SandboxError`
        subclass when the sandbox is refused or cannot be set up (nothing is
        left behind), `CommandNotFound`/`CommandNotExecutable` for the
        command. With ``audit`` on (the default) the launch (with the
        payload's effective kernel state), its exit, any refusal and any
        insecure option are recorded in the audit log (DESIGN §6).
        """
        from .errors import SandboxError
        from .runtime.spawn import launch
        reservations: list = []
        # lifecycle (issue 6): ``_detached`` is the detached supervisor's hooks
        sid = _detached.sandbox_id if _detached is not None else os.urandom(6).hex()
        log = {}
        try:
            try:
                plan = self.plan(argv, sandbox_id=sid, reservations=reservations)
            except SandboxError as e:
                self._record("refusal", _refusal(sid, e, self))
                raise
            plan_digest = plan.digest()     # once: the record and the result share it
            for opt in plan.insecure_options:
                self._record("insecure-option", {"sandbox_id": sid, "option": opt,
                                                 "image": self._image_dict()})
            if _detached is not None:       # lifecycle: record the resources first
                _detached.planned(plan)

            def prepare():
                if _detached is not None:   # lifecycle: payload stdio to the log pipe
                    _detached.forked()
                # open the audit log while the child sets up (overlaps ~4 ms)
                if self.audit:
                    from . import audit
                    log["log"] = audit.prepare(self.paths)

            def started(effective, pid):
                self._record("launch", self._launch_record(plan, effective, plan_digest),
                             log.get("log"))
                if _detached is not None:   # lifecycle: state running, caller told
                    _detached.started(effective, pid)

            try:
                res = launch(plan, on_forked=prepare, on_started=started,
                             **(_detached.launch_options if _detached is not None else {}))
            except SandboxError as e:
                self._record("refusal", _refusal(sid, e, self, stage="setup"), log.get("log"))
                raise
            self._record("exit", {"sandbox_id": sid, "status": res.status, "signal": res.signal,
                                  "duration_ms": round(res.duration_ms, 3)}, log.get("log"))
            return RunResult(res.sandbox_id, res.status, res.signal, res.duration_ms,
                             plan_digest, res.effective, res.missing)
        finally:
            for r in reservations:
                r.release()

    # -- lifecycle (issue 6): detached sandboxes ---------------------------------
    def start(self, argv: Sequence[str]) -> "SandboxHandle":
        """Launch ``argv`` in a new *detached* sandbox and return its handle
        once the payload has been exec'd (`sandbox.lifecycle.SandboxHandle`:
        ``.id``, ``.wait()``, ``.stop()``, ``.status()``, ``.logs()``).

        A daemon supervisor (double fork, new session, no terminal) runs the
        same pipeline as `run`, audit records included, with the payload's
        stdout and stderr going to a rotated log in the sandbox's run
        folder. Raises what `run` raises for a refused or failed setup.
        Fork-based: call it from a single-threaded program (as the CLI is).
        """
        from .runtime.supervise import start_detached
        from .lifecycle import SandboxHandle
        return SandboxHandle(start_detached(self, argv), self.paths)

    # -- audit -----------------------------------------------------------------
    def _record(self, kind: str, data: dict, log=None) -> None:
        """Append one audit event. A launch, exit or insecure-option record
        that cannot be written raises (`SetupError`): the launch fails
        closed. A *refusal* that cannot be written only warns: the caller is
        about to raise the refusal itself, whose reason must not be replaced
        by the audit error (the next launch fails on the log anyway)."""
        if not self.audit:
            return
        try:
            if log is not None:
                log.append(kind, data)
            else:
                from .audit import record_event
                record_event(self.paths, kind, data)
        except Exception as e:
            from .errors import SandboxError
            if kind != "refusal" or not isinstance(e, SandboxError):
                raise
            import warnings
            warnings.warn(f"the refusal was not recorded in the audit log: {e}",
                          RuntimeWarning, stacklevel=3)

    def _image_dict(self) -> dict | None:
        rec = self.image_record
        if rec is None:
            return None if self.image is None else {"ref": self.image, "digest": None,
                                                    "verification": None}
        v = self.verification
        return {"ref": rec.name or self.image, "digest": rec.digest,
                "verification": None if v is None else {
                    "fingerprint": v.primary or v.signer, "signer": v.signer,
                    "prefix": v.entry, "format": v.format,
                    "key_expires": v.key_expires.isoformat() if v.key_expires else None,
                    "signed_at": v.signed_at.isoformat() if v.signed_at else None}}

    def _launch_record(self, plan: LaunchPlan, effective: dict | None,
                       plan_digest: str) -> dict:
        if not self.audit:
            return {}       # not recorded: do not pay for the digests and the lookups
        p = self.profile
        uid = os.getuid()
        uname = _USER_NAMES.get(uid)
        if uname is None:
            import pwd
            try:
                uname = pwd.getpwuid(uid).pw_name
            except KeyError:
                uname = str(uid)
            _USER_NAMES[uid] = uname
        lp = self.label_plan
        return {
            "sandbox_id": plan.sandbox_id, "name": plan.name,
            "user": {"uid": os.getuid(), "name": uname},
            "command": list(plan.argv),
            # the plan carries the profile's digest (computed once, in `plan`)
            "profile": {"name": p.name, "digest": plan.profile_digest, "source": p.source,
                        "unconfined": p.unconfined},
            "plan_digest": plan_digest,
            "root": {"kind": "image" if plan.root_kind == "layers" else plan.root_kind,
                     "path": self.rootfs},
            "image": self._image_dict(),
            "insecure_options": list(plan.insecure_options),
            "namespaces": {n: n in plan.namespaces for n in
                           ("user", "mount", "pid", "net", "uts", "ipc", "cgroup")},
            "capabilities": list(plan.capabilities),
            "seccomp": {"enabled": plan.seccomp is not None,
                        "default_action": plan.seccomp.default_action if plan.seccomp else None,
                        "digest": plan.seccomp.digest if plan.seccomp else None},
            "no_new_privs": plan.no_new_privs,
            "read_only_root": p.filesystem.read_only_root,
            "volumes": [{"source": pv.request.source, "target": pv.target,
                         "mode": pv.grant.mode,
                         "label": str(pv.grant.label) if pv.grant.label else None}
                        for pv in (lp.volumes if lp else ())],
            "network": plan.net.record() if plan.net is not None else
            {"mode": plan.network, "shared_with_host": plan.network == "host"},
            "limits": {"memory": p.limits.memory, "pids": p.limits.pids,
                       "nofile": p.limits.nofile},
            "label": plan.label,
            "landlock": {"enabled": bool(plan.landlock_abi and plan.landlock),
                         "abi": plan.landlock_abi or None},
            "missing": list(plan.missing),
            "effective": effective,
        }


#: uid -> user name, for launch records (looked up once per process)
_USER_NAMES: dict[int, str] = {}


def _refusal(sid: str, err, box: "Sandbox", stage: str | None = None) -> dict:
    """The audit data of a refused launch; ``stage`` from the error's kind
    and from where in planning it was raised (the traceback's frames):
    ``profile``, ``image``, ``verification``, ``label``, ``host-support``,
    ``usage`` or ``setup``."""
    from .errors import (HostSupportError, NotFound, ProfileError, UsageError,
                         VerificationError)
    frames = set()
    tb = getattr(err, "__traceback__", None)
    while tb is not None:
        frames.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    if stage is None:
        stage = ("verification" if isinstance(err, VerificationError) else
                 "profile" if "resolve_profile" in frames or isinstance(err, ProfileError) else
                 "image" if "_image" in frames and isinstance(err, NotFound) else
                 "label" if getattr(err, "step", None) == "label" else
                 "host-support" if isinstance(err, HostSupportError) else
                 "usage" if isinstance(err, UsageError) else "setup")
    # The image as of this attempt: the Sandbox keeps the record and the
    # verification of its *last successful* resolution, which must not be
    # reported for a later attempt that failed before or in `_image`.
    image = None
    if box.image is not None:
        fresh = stage == "setup" or (bool(frames) and "_image" not in frames
                                     and "resolve_profile" not in frames
                                     and "_root" not in frames)
        if fresh and box.image_record is not None:
            image = box._image_dict()
        else:
            digest = None
            try:
                from .image import ImageStore
                digest = ImageStore(box.paths).resolve(box.image).digest
            except Exception:       # not in the store, unreadable: no digest
                pass
            image = {"ref": box.image, "digest": digest, "verification": None}
    p = box.profile if stage in ("setup", "label") or (
        bool(frames) and "resolve_profile" not in frames) else None
    return {"sandbox_id": sid, "stage": stage,
            "reason": getattr(err, "reason", None) or type(err).__name__,
            "error": err.message, "image": image,
            "profile": {"name": p.name if p is not None else box.profile_ref},
            "command": None}
