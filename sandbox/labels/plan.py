"""The label part of a launch plan (DESIGN §2 step 7), as one frozen value.

The runtime calls, in order (parent unless marked):

1. ``lease = allocate_level(paths, profile.label.level, owner=sandbox_id)``
   and keeps it until the sandbox has exited (`LabelLease.release`);
2. ``plan = build_label_plan(profile, lease.level, volumes, held_by_others=...)``
   which reads the volumes' labels, decides every volume (refusals raise
   `LabelRefused` before anything is written or mounted), and builds the
   Landlock rules and the SELinux contexts; `--dry-run` prints ``to_dict``;
3. ``apply_relabels(plan)``: writes the labels ``:z``/``:Z`` asked for;
4. child: mounts each volume at ``plan.volumes[i].host_target`` (or
   ``resolve_target_inside(rootfs, target)``) with ``.grant.mode`` (and ``plan.selinux.mount_option``
   on its own mounts where SELinux is active);
5. child, after ``no_new_privs``: ``apply_landlock(plan.landlock)`` when
   ``plan.landlock`` is not None; then ``apply_exec_context(
   plan.selinux.exec_context)`` when ``plan.selinux.active``; then seccomp.
"""

from __future__ import annotations

from .._values import checked

import os
from typing import Collection, NamedTuple, Sequence

from ..errors import HostSupportError, UsageError
from .model import Context, Level, LevelRange
from .selinux import SELinuxPlan, build_selinux_plan
from .volumes import (RELABELS, VolumeGrant, apply_volume_label, decide_volume,
                      resolve_target)


class _VolumeRequestFields(NamedTuple):
    source: str
    target: str
    mode: str = "rw"
    relabel: str | None = None


@checked
class VolumeRequest(_VolumeRequestFields):
    """``--volume SRC:DST[:ro|rw][,z|Z]`` as plain values, checked when
    made (also by ``_replace``)."""

    __slots__ = ()

    def __new__(cls, source: str, target: str, mode: str = "rw", relabel: str | None = None):
        if mode not in ("ro", "rw"):
            raise UsageError(f"volume {source}: bad mode {mode!r}: expected ro or rw")
        if relabel not in RELABELS:
            raise UsageError(f"volume {source}: bad relabel {relabel!r}: "
                             "expected z or Z")
        if not target.startswith("/"):
            raise UsageError(f"volume {source}: target {target!r} must be absolute")
        return super().__new__(cls, source, target, mode, relabel)


class PlannedVolume(NamedTuple):
    """A decided volume. ``target`` is the path inside the sandbox with
    symlinks resolved inside the root file system (the request's own
    target when no root was given); ``host_target`` the host-side mount
    point under the root, or None."""

    request: VolumeRequest
    grant: VolumeGrant
    target: str
    host_target: str | None = None

    def to_dict(self) -> dict:
        return {"source": self.request.source, "target": self.target,
                "requested": self.request.mode, "relabel": self.request.relabel,
                **self.grant.to_dict()}


class LabelPlan(NamedTuple):
    """The sandbox's label, its volumes' grants, and how they are enforced.

    ``landlock`` is None when the profile disables Landlock or the host
    lacks it and the profile marks it optional (then ``landlock_missing``
    is True and the audit record says so).
    """

    context: Context
    volumes: tuple[PlannedVolume, ...]
    landlock: tuple | None          # tuple[LandlockRule, ...]
    landlock_abi: int
    landlock_missing: bool
    selinux: SELinuxPlan

    @property
    def level(self) -> Level:
        return self.context.level

    def to_dict(self) -> dict:
        return {
            "context": str(self.context),
            "level": str(self.level),
            "volumes": [v.to_dict() for v in self.volumes],
            "landlock": None if self.landlock is None else {
                "abi": self.landlock_abi, "rules": [r.to_dict() for r in self.landlock]},
            "landlock_missing": self.landlock_missing,
            "selinux": self.selinux.to_dict(),
        }


def build_label_plan(profile, level: Level, volumes: Sequence = (), *,
                     held_by_others: Collection[Level] = (),
                     rootfs: str | os.PathLike | None = None,
                     landlock_abi: int | None = None,
                     selinux_active: bool | None = None,
                     own_folders: Sequence[str | os.PathLike] = ()) -> LabelPlan:
    """Decide every volume and build the label plan for ``profile`` (a
    `sandbox.profile.model.Profile`) at ``level`` (the lease's).

    ``volumes``: `VolumeRequest` values, or anything with ``source``,
    ``target``, ``mode`` and ``relabel`` (`sandbox.api.Volume` works).

    With ``rootfs`` (the host path of the root file system), each target
    is resolved inside it (`resolve_target`) and the Landlock rules name
    the resolved paths; pass it whenever the root is known.

    Reads the volumes' xattrs; writes nothing. ``held_by_others``: the
    levels of the other running sandboxes (`labels_in_use`); ``own_folders``
    the product's folders of this launch (never relabelled); ``landlock_abi``
    defaults to the kernel's. Raises `LabelRefused` for a refused volume,
    `HostSupportError` when Landlock is missing and not optional,
    `LabelError`/`UsageError` for malformed input.
    """
    from ..runtime.landlock import build_landlock_rules, landlock_support
    spec = profile.label
    ctx = Context(spec.user, spec.role, spec.type, LevelRange.of(level))
    others = [lv for lv in held_by_others if lv != level]
    planned = []
    for v in volumes:
        grant = decide_volume(v.source, level, v.mode,
                              allow_unlabelled_ro=spec.allow_unlabelled_ro,
                              relabel=v.relabel, held_by_others=others,
                              own_folders=own_folders)
        if rootfs is not None:
            host, inside = resolve_target(rootfs, v.target)
        else:
            host, inside = None, os.path.normpath(v.target)
        planned.append(PlannedVolume(v, grant, inside, host))

    rules = None
    abi = 0
    missing = False
    if profile.landlock.enabled:
        if landlock_abi is None:
            abi, error = landlock_support()
        else:
            abi, error = landlock_abi, None
        if abi <= 0:
            if "landlock" not in profile.optional:
                raise error or HostSupportError(
                    "Landlock is not available on this host",
                    hint="boot with lsm=...,landlock, or add \"landlock\" to the "
                         "profile's optional list")
            missing = True
        else:
            rules = build_landlock_rules(
                profile.filesystem.read_only_root,
                [(p.target, p.grant.mode) for p in planned],
                [t.path for t in profile.filesystem.tmpfs])
    sel = build_selinux_plan(spec.user, spec.role, spec.type, level, active=selinux_active)
    return LabelPlan(ctx, tuple(planned), rules, abi, missing, sel)


def apply_relabels(plan: LabelPlan, *,
                   own_folders: Sequence[str | os.PathLike] = ()) -> tuple[str, ...]:
    """Write the labels the plan's ``:z``/``:Z`` volumes need; the paths
    relabelled. Call after `build_label_plan` succeeded, before mounting."""
    done = []
    for v in plan.volumes:
        if v.grant.relabel_to is not None:
            done.append(apply_volume_label(v.request.source, v.grant.relabel_to,
                                           selinux=plan.selinux.active,
                                           own_folders=own_folders))
    return tuple(os.fspath(p) for p in done)
