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


class Resolved(NamedTuple):
    """The output of stage 2: a frozen value the later stages read."""

    profile: object                  # sandbox.profile.model.Profile, with origins
    root: RootFS
    argv: tuple[str, ...]
    image: ImageInfo | None
    seccomp: SeccompPlan | None
    missing: tuple[str, ...]         # optional protections this host lacks
    cgroups_ok: bool


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
    if request.user is not None:
        overrides["user.uid"] = (request.user[0], "flag --user")
        overrides["user.gid"] = (request.user[1], "flag --user")
    if request.network is not None:
        overrides["network.mode"] = (request.network, "flag --net")
    prof = load(request.profile, user_dir=paths.user_profiles, overrides=overrides)
    if request.env:
        env = dict(prof.process.env)
        env.update(request.env)
        prof = apply_values(prof, {"process.env": tuple(env.items())}, "flag --env")
    return prof


def resolve_root(request: Request) -> RootFS:
    """The root file system named by ``--rootfs``, or the host view."""
    if request.rootfs is None:
        return RootFS("host")
    path = request.rootfs
    if not os.path.exists(path):
        raise UsageError(f"--rootfs {path!r} does not exist")
    if not os.path.isdir(path):
        raise UsageError(f"--rootfs {path!r} is not a folder")
    real = os.path.realpath(path)
    if any(c in real for c in ",:\0"):
        raise UsageError(f"--rootfs {real!r}: overlayfs cannot take a path with ',' or ':'")
    return RootFS("dir", real)


def resolve_image(request: Request, paths) -> ImageInfo:
    """Find the image in the store and verify it (at every launch:
    DESIGN §2 step 4). `NotFound` or `VerificationError` otherwise."""
    from ..image import ImageStore
    store = ImageStore(paths)
    rec = store.resolve(request.image)
    verification = None
    if "image" not in request.insecure_options:
        verification = store.verify(rec)
    return ImageInfo(request.image, rec, verification)


def apply_image_config(profile, image: ImageInfo, argv: tuple[str, ...], request: Request):
    """The image config's Entrypoint/Cmd, Env, WorkingDir and User, under
    what the command line set: ``(argv, profile)``, each profile value
    changed with ``image config`` as its origin. Pure."""
    rec = image.record
    cfg = rec.config or {}
    entry = list(cfg.get("Entrypoint") or [])
    if rec.format == "aci" and argv:
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
        elif u not in ("root", "0"):
            raise UsageError(f"image user {cfg['User']!r} is a name; sandbox needs numeric ids",
                             hint="pass --user UID[:GID]")
    env_origin = dict(profile.origins).get("process.env") if request.env else None
    profile = apply_values(profile, {k: v for k, v in values.items() if k != "process.env"},
                           IMAGE_ORIGIN)
    if "process.env" in values:
        profile = apply_values(profile, {"process.env": values["process.env"]},
                               env_origin or IMAGE_ORIGIN)
    return full, profile


def apply_home(profile, root_kind: str):
    """The profile with a tmpfs on $HOME when the root is the host view
    (whose home folders are not shown), so the payload has a writable home
    and Landlock grants it like any other tmpfs. Pure."""
    home = dict(profile.process.env).get("HOME", "/root")
    fs = profile.filesystem
    if root_kind != "host" or any(t.path == home for t in fs.tmpfs):
        return profile
    from ..profile.model import Tmpfs
    return apply_values(profile, {"filesystem.tmpfs": fs.tmpfs + (Tmpfs(home, "mode=700,size=64m"),)},
                        HOME_ORIGIN)


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
    return SeccompPlan(cf.bpf, cf.digest, cf.source, cf.default_action,
                       cf.architectures, cf.instructions)


def check_host(profile) -> tuple[bool, tuple[str, ...]]:
    """``(cgroups usable, missing optional protections)``; `HostSupportError`
    for a protection the profile needs and the host lacks (fail closed)."""
    missing: list[str] = []
    ok = True
    if profile.limits.memory is not None or profile.limits.pids is not None:
        from ..runtime import cgroups
        ok, why = cgroups.available()
        if not ok:
            if "cgroups" not in profile.optional:
                raise HostSupportError(
                    f"profile {profile.name!r} sets memory/pids limits but {why}",
                    hint='run as root, or add "cgroups" to the profile\'s optional list')
            missing.append("cgroups")
    return ok, tuple(missing)
