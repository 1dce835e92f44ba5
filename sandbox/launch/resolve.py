"""Stage 2 of a launch: resolve the profile, the image and the root
(DESIGN §2 steps 2-5).

Every value that changes the profile on its way to the plan goes through
`apply_values`, which records where it came from in ``Profile.origins``:
the command line (``flag --env``), the image's config (``image config``:
Entrypoint/Cmd, Env, WorkingDir, User) and the implicit ``$HOME`` tmpfs of
the host view (``implicit $HOME tmpfs``). ``sandbox profile explain`` and
the audit record can then say why each value is what it is.

The seccomp filter is compiled here, in the parent (STYLE: compile early,
load last), so an unknown syscall name fails before anything is leased.
Nothing here takes a lease or writes to the host, except the seccomp
cache under the state folder.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import HostSupportError, UsageError
from ..runtime.plan import SeccompPlan
from ..runtime.spec import RootFS
from .request import Request

#: the origin recorded for values the image's config sets
IMAGE_ORIGIN = "image config"
#: the origin of the tmpfs on $HOME the host view adds
HOME_ORIGIN = "implicit $HOME tmpfs (host view)"


class ImageInfo(NamedTuple):
    """The image a launch runs: its store record and, unless
    ``--insecure-options=image``, the `Verification` that allowed it."""

    ref: str
    record: object
    verification: object | None


class HostPath(NamedTuple):
    """A caller-given host path, opened once (``O_PATH``, no symbolic link
    followed): every later decision and the mount use ``fd``, never
    ``path`` (issue 13 item 9). ``path`` is how the caller spelled it."""

    path: str
    fd: int
    device: int
    inode: int
    is_dir: bool

    @property
    def fdpath(self) -> str:
        """``/proc/self/fd/N``: the very inode, for calls that take a path."""
        return f"/proc/self/fd/{self.fd}"

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class Resolved(NamedTuple):
    """The output of stage 2: a frozen value the later stages read."""

    profile: object                  # sandbox.profile.model.Profile, with origins
    root: RootFS
    argv: tuple[str, ...]
    image: ImageInfo | None
    seccomp: SeccompPlan | None
    missing: tuple[str, ...]         # optional protections this host lacks
    cgroups_ok: bool
    volumes: tuple[HostPath, ...] = ()      # the request's volumes' sources, in order
    root_path: HostPath | None = None       # the --rootfs folder

    def close(self) -> None:
        """Close the fds of the caller-given paths (idempotent enough:
        a closed fd is ignored)."""
        for hp in self.volumes + ((self.root_path,) if self.root_path else ()):
            hp.close()


#: folders a --rootfs may not be (the host's own system)
SYSTEM_FOLDERS = ("/", "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                  "/boot", "/dev", "/proc", "/sys", "/var", "/var/lib", "/root", "/home",
                  "/run", "/opt", "/srv", "/tmp", "/var/tmp")


def open_host_path(path: str, what: str) -> HostPath:
    """Open ``path`` once, as the caller typed it, refusing any symbolic
    link in it (``openat2`` with ``RESOLVE_NO_SYMLINKS`` and
    ``RESOLVE_NO_MAGICLINKS``): a name another process swaps for a link
    is refused, not followed. `UsageError` naming ``what`` otherwise."""
    import errno
    from ..runtime import kernel as k
    try:
        fd = k.openat2(path, os.O_PATH | os.O_CLOEXEC,
                       k.RESOLVE_NO_SYMLINKS | k.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UsageError(f"{what} {path!r} has a symbolic link in it; sandbox opens "
                             "caller-given paths without following links",
                             hint=f"give the real path: {what} $(realpath {path})") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise UsageError(f"{what} {path!r} does not exist") from None
        if e.errno == errno.ENOSYS:
            raise HostSupportError("this kernel has no openat2(2) (Linux 5.6+)",
                                   hint="upgrade the kernel") from None
        raise UsageError(f"{what} {path!r}: cannot open it: {e.strerror}") from None
    import stat
    st = os.fstat(fd)
    return HostPath(path, fd, st.st_dev, st.st_ino, stat.S_ISDIR(st.st_mode))


def open_volumes(request: Request) -> tuple[HostPath, ...]:
    """Every volume source opened once (see `open_host_path`)."""
    out: list[HostPath] = []
    try:
        for v in request.volumes:
            out.append(open_host_path(v.source, "--volume source"))
    except BaseException:
        for hp in out:
            hp.close()
        raise
    return tuple(out)


def apply_values(profile, values: dict, origin: str):
    """``profile`` with ``values`` (dotted keys of two levels, e.g.
    ``process.env``) set, each recorded as coming from ``origin``. The one
    way a launch changes a profile after loading it. Pure."""
    if not values:
        return profile
    sections: dict[str, dict] = {}
    for key, value in values.items():
        sec, _, field = key.partition(".")
        sections.setdefault(sec, {})[field] = value
    changes = {sec: getattr(profile, sec)._replace(**fields) for sec, fields in sections.items()}
    origins = dict(profile.origins)
    for key in values:
        origins[key] = origin
    return profile._replace(**changes, origins=tuple(sorted(origins.items())))


def resolve_egress(prof):
    """A profile whose ``[network] allow`` is set gets mode ``allow`` where
    its mode is ``none`` (the default, and what ``default.toml`` says),
    unless ``--net none`` asked for none; in mode ``allow`` the payload's
    environment points at the egress proxy (``HTTP_PROXY`` and the rest,
    unless the profile or ``--env`` set them). Pure."""
    net = prof.network
    if net.allow and net.mode == "none" and prof.origin("network.mode") != "flag --net":
        prof = apply_values(prof, {"network.mode": "allow"}, prof.origin("network.allow"))
    if prof.network.mode != "allow":
        return prof
    from ..net.egress import proxy_env
    env = dict(prof.process.env)
    added = {k: v for k, v in proxy_env().items() if k not in env}
    if not added:
        return prof
    env.update(added)
    return apply_values(prof, {"process.env": tuple(env.items())}, "network allow")


def resolve_profile(request: Request, paths, *, cached: bool = True):
    """Load the profile named in ``request`` with the command line's
    overrides; `NotFound`/`ProfileError` otherwise. With ``cached`` the
    resolved profile of an earlier launch with the same inputs is used
    when none of its files changed (`sandbox.launch._template`)."""
    if cached:
        from . import _template
        prof = _template.load(paths, request)
        if prof is None:
            prof = resolve_profile(request, paths, cached=False)
            _template.store(paths, request, prof)
        return prof
    from ..profile import load
    overrides: dict[str, tuple] = {}
    if request.hostname is not None:
        overrides["process.hostname"] = (request.hostname, "flag --hostname")
    if request.workdir is not None:
        overrides["process.workdir"] = (request.workdir, "flag --workdir")
    if isinstance(request.user, tuple):     # names: after the root (launch.users)
        overrides["user.uid"] = (request.user[0], "flag --user")
        overrides["user.gid"] = (request.user[1], "flag --user")
    if request.network is not None and request.network.startswith("allow:"):
        overrides["network.mode"] = ("allow", "flag --net")
        overrides["network.allow"] = (request.network[6:].split(","), "flag --net")
    elif request.network is not None:
        overrides["network.mode"] = (request.network, "flag --net")
    for key, value, origin in request.profile_overrides:    # checked by build_request
        overrides[key] = (value, origin)
    prof = load(request.profile, user_dir=paths.user_profiles, overrides=overrides)
    for key, value, origin in request.limits:        # checked by build_request
        prof = apply_values(prof, {key: value}, origin)
    if request.ulimits:         # each --ulimit replaces the profile's for its name
        lims = {n: (n, s, h) for n, s, h in prof.limits.ulimits}
        lims.update({n: (n, s, h) for n, s, h in request.ulimits})
        prof = apply_values(prof, {"limits.ulimits": tuple(sorted(lims.values()))},
                            "flag --ulimit")
    prof = resolve_egress(prof)
    if request.env:
        env = dict(prof.process.env)
        env.update(request.env)
        prof = apply_values(prof, {"process.env": tuple(env.items())}, "flag --env")
    return prof


def resolve_user_names(profile, request: Request, root: RootFS, root_path, image):
    """``--user NAME[:GROUP]`` resolved in the sandbox's own root (the
    image's layers, the ``--rootfs`` folder's fd, or the host's ``/``),
    set with origin ``flag --user``; numeric ids were set on loading."""
    if not isinstance(request.user, str):
        return profile
    from .users import resolve_user
    if image is not None:
        roots = tuple(reversed(image.record.layer_dirs))
    elif root_path is not None:
        roots = (root_path.fd,)
    else:
        roots = ("/",)
    uid, gid = resolve_user(request.user, roots)
    return apply_values(profile, {"user.uid": uid, "user.gid": gid}, "flag --user")


def resolve_root(request: Request) -> tuple[RootFS, HostPath | None]:
    """The root file system named by ``--rootfs`` (opened once, see
    `open_host_path`; the host's ``/`` or a system folder refused), or the
    host view."""
    if request.rootfs is None:
        return RootFS("host"), None
    path = os.path.abspath(request.rootfs)
    if any(c in path for c in ",:\0"):
        raise UsageError(f"--rootfs {path!r}: overlayfs cannot take a path with ',' or ':'")
    hp = open_host_path(path, "--rootfs")
    try:
        if not hp.is_dir:
            raise UsageError(f"--rootfs {path!r} is not a folder")
        for sysdir in SYSTEM_FOLDERS:
            try:
                st = os.stat(sysdir)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (hp.device, hp.inode):
                what = "the host's root" if sysdir == "/" else f"the system folder {sysdir}"
                raise UsageError(f"--rootfs {path!r} is {what}",
                                 hint="give a folder holding a root file system of its own")
        real = os.readlink(hp.fdpath)     # the kernel's name of that inode, not looked up
        if any(real == t or real.startswith(t + "/") for t in ("/proc", "/sys", "/dev")):
            raise UsageError(f"--rootfs {path!r} is inside the system folder {real}",
                             hint="give a folder holding a root file system of its own")
    except BaseException:
        hp.close()
        raise
    return RootFS("dir", path), hp


def resolve_image(request: Request, paths) -> ImageInfo:
    """Find the image in the store and verify it (at every launch:
    DESIGN §2 step 4). `NotFound` or `VerificationError` otherwise."""
    from ..image import ImageStore
    store = ImageStore(paths)
    # issue 12: `run docker://REF` pulls (verified) when missing
    rec = store.resolve_or_pull(request.image, insecure_options=request.insecure_options)
    verification = None
    if "image" not in request.insecure_options:
        verification = store.verify(rec)
    if "ondisk" not in request.insecure_options:    # issue 12: what runs is what was verified
        store.check_on_disk(rec)
    return ImageInfo(request.image, rec, verification)


def apply_image_config(profile, image: ImageInfo, argv: tuple[str, ...], request: Request):
    """The image config's Entrypoint/Cmd, Env, WorkingDir and User, under
    what the command line set: ``(argv, profile)``, each profile value
    changed with ``image config`` as its origin. Pure."""
    rec = image.record
    cfg = rec.config or {}
    entry = list(cfg.get("Entrypoint") or [])
    if request.entrypoint is not None:
        # Docker's --entrypoint: replaces the image's, and drops its Cmd
        entry = list(request.entrypoint)
        cfg = {k: v for k, v in cfg.items() if k != "Cmd"}
    elif rec.format == "aci" and argv:
        # An ACI's app.exec (stored as Entrypoint) is the whole command
        # line: a command given to `run` replaces it (rkt's --exec), it is
        # not appended to it as arguments.
        entry = []
    cmd = list(argv) if argv else list(cfg.get("Cmd") or [])
    full = tuple(entry + cmd)
    if not full:
        raise UsageError(f"image {rec.name or rec.digest} names no command",
                         hint="give one after '--'")
    values: dict[str, object] = {}
    if cfg.get("Env"):
        env = dict(profile.process.env)
        for item in cfg.get("Env") or []:
            k, sep, v = item.partition("=")
            if sep:
                env[k] = v
        env.update(request.env)         # the command line wins over the image
        values["process.env"] = tuple(env.items())
    if cfg.get("WorkingDir") and request.workdir is None:
        values["process.workdir"] = cfg["WorkingDir"]
    if cfg.get("User") and request.user is None:
        u, _, g = str(cfg["User"]).partition(":")
        if u.isdigit() and (not g or g.isdigit()):
            values["user.uid"] = int(u)
            values["user.gid"] = int(g) if g else int(u)
        elif u not in ("root", "0") or g:
            # a name: as the image's own /etc/passwd and /etc/group say
            from .users import resolve_user
            values["user.uid"], values["user.gid"] = resolve_user(
                str(cfg["User"]), tuple(reversed(rec.layer_dirs)), what="image user")
    env_origin = dict(profile.origins).get("process.env") if request.env else None
    profile = apply_values(profile, {k: v for k, v in values.items() if k != "process.env"},
                           IMAGE_ORIGIN)
    if "process.env" in values:
        profile = apply_values(profile, {"process.env": values["process.env"]},
                               env_origin or IMAGE_ORIGIN)
    from ..image.isolators import apply_aci_isolators   # issue 12: never ignored
    return full, apply_aci_isolators(rec, profile)


def apply_home(profile, root_kind: str):
    """The profile with a tmpfs on $HOME when the root is the host view
    (whose home folders are not shown), so the payload has a writable home
    and Landlock grants it like any other tmpfs. Pure."""
    home = dict(profile.process.env).get("HOME", "/root")
    fs = profile.filesystem
    if root_kind != "host" or any(t.path == home for t in fs.tmpfs):
        return profile
    from ..profile.model import Tmpfs
    # a flag that set tmpfs mounts stays named (the record's overrides)
    before = dict(profile.origins).get("filesystem.tmpfs", "")
    origin = f"{before}; {HOME_ORIGIN}" if before.startswith("flag ") else HOME_ORIGIN
    return apply_values(profile, {"filesystem.tmpfs": fs.tmpfs + (Tmpfs(home, "mode=700,size=64m"),)},
                        origin)


def compile_seccomp(profile, paths) -> SeccompPlan | None:
    """The profile's filter, compiled (cached by content under the state
    folder); None for an unconfined profile."""
    if profile.seccomp.unconfined:
        return None
    from ..seccomp import compile_filter
    paths.ensure("state")   # 0700 before anything is cached in it
    cf = compile_filter(profile.seccomp.profile, capabilities=profile.capabilities,
                        default_action=profile.seccomp.default_action,
                        other_abis=profile.seccomp.other_abis,
                        cache_dir=paths.state / "cache" / "seccomp")
    # issue 13 item 5: a filter that breaks or opens things warns (one line
    # each) or, in a strict-derived profile, refuses
    from ..seccomp import build_warnings
    for line in build_warnings(profile, cf.bpf):
        import sys
        sys.stderr.write(f"sandbox: warning: {line}\n")
    return SeccompPlan(cf.bpf, cf.digest, cf.source, cf.default_action,
                       cf.architectures, cf.instructions)


def check_host(profile) -> tuple[bool, tuple[str, ...]]:
    """``(cgroups usable, missing optional protections)``; `HostSupportError`
    for a protection the profile needs and the host lacks (fail closed)."""
    missing: list[str] = []
    ok = True
    lim = profile.limits
    cpus = getattr(lim, "cpus", None)
    if lim.memory is not None or lim.pids is not None or cpus is not None:
        from ..runtime import cgroups
        ok, why = cgroups.available(cpu=cpus is not None)
        if not ok:
            if "cgroups" not in profile.optional:
                what = "/".join(n for n, v in (("memory", lim.memory), ("pids", lim.pids),
                                               ("cpus", cpus)) if v is not None)
                raise HostSupportError(
                    f"profile {profile.name!r} sets {what} limits but {why}",
                    hint='run as root, or add "cgroups" to the profile\'s optional list')
            missing.append("cgroups")
    return ok, tuple(missing)
