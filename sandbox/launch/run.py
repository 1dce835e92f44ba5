"""Stage 5 of a launch: run it (DESIGN §2 steps 8-10), and the driver that
walks every stage.

    request -> resolve -> leases -> build -> run -> record
    (request.py) (resolve.py) (leases.py) (build.py) (here) (record.py)

`prepare_launch` walks the stages up to the plan; a `SandboxError` from a
stage leaves it as `Refused`, which names the stage as a value and carries
what the stages before it resolved (for the refusal record). `plan_launch`
is ``--dry-run``: the same walk with dry leases, nothing held or written.
`run_launch` takes real leases, applies the ``:z``/``:Z`` relabels, hands
the plan and its network object to the runtime, and writes the records;
every lease is released in one place (its ``finally``).

Stage results are local values here, never attributes of a caller's
object: two launches of one `Sandbox` share nothing but its request.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ..errors import SandboxError, UsageError
from .record import Refusal, append_record
from .request import Request, check_argv


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
    #: the audit log's sequence number of this launch's record (None: audit off)
    audit_seq: int | None = None
    timed_out: bool = False         # stopped by its timeout (status 124)
    #: as subprocess.CompletedProcess: the command, and what was captured
    args: tuple[str, ...] = ()
    stdout: bytes | str | None = None
    stderr: bytes | str | None = None

    @property
    def returncode(self) -> int:
        """``status``, under subprocess's name (a signal is 128+N here)."""
        return self.status


class Refused(Exception):
    """A stage refused the launch: ``refusal`` (stage and error) and what
    the earlier stages resolved (``profile``, ``image``), or None."""

    def __init__(self, refusal: Refusal, profile=None, image=None):
        super().__init__(refusal.error.message)
        self.refusal, self.profile, self.image = refusal, profile, image


class Prepared(NamedTuple):
    """Stages 2-4 of one launch."""

    resolved: object                # sandbox.launch.resolve.Resolved
    leases: object                  # sandbox.launch.leases.Leases
    plan: object                    # sandbox.runtime.plan.LaunchPlan


def prepare_launch(request: Request, argv, paths, sandbox_id: str, *, dry: bool,
                   load_profile=None) -> Prepared:
    """Resolve, take the leases (dry: hold nothing) and build the plan.
    Raises `Refused`; nothing is held then. ``load_profile()``: the
    profile (default: `resolve_profile` of ``request``)."""
    from . import resolve as rs
    stage, profile, image = "request", None, None
    opened: list = []       # caller-given paths opened once (closed on refusal)
    try:
        argv = check_argv(argv)
        stage = "profile"
        profile = load_profile() if load_profile is not None else \
            rs.resolve_profile(request, paths)
        stage = "root"
        root, root_path = rs.resolve_root(request)
        if root_path is not None:
            opened.append(root_path)
        volumes = rs.open_volumes(request)
        opened.extend(volumes)
        if request.image is not None:
            stage = "image"
            image = rs.resolve_image(request, paths)
            argv, profile = rs.apply_image_config(profile, image, argv, request)
            from ..runtime.spec import RootFS
            root = RootFS("layers", layers=tuple(image.record.layer_dirs))
        else:
            if request.entrypoint:      # --entrypoint without an image: in front
                argv = tuple(request.entrypoint) + tuple(argv)
            if not argv:
                stage = "request"
                raise UsageError("no command given",
                                 hint="write it after '--': sandbox run -- CMD")
        profile = rs.resolve_user_names(profile, request, root, root_path, image)
        stage = "build"
        from .build import build_namespaces
        build_namespaces(profile)        # a profile without a mount namespace: refused now
        stage = "host"
        cgroups_ok, missing = rs.check_host(profile)
        seccomp = rs.compile_seccomp(profile, paths)
        profile = rs.apply_home(profile, root.kind)
        resolved = rs.Resolved(profile, root, argv, image, seccomp, missing, cgroups_ok,
                               volumes, root_path)
        stage = "leases"
        from .leases import take_leases
        leases = take_leases(resolved, request, paths, sandbox_id, dry=dry)
    except SandboxError as e:
        for hp in opened:
            hp.close()
        raise Refused(Refusal(stage, e), profile, image) from None
    except BaseException:
        for hp in opened:
            hp.close()
        raise
    try:
        from .build import build_plan
        plan = build_plan(resolved, leases, request, str(paths.runtime / sandbox_id))
    except SandboxError as e:
        leases.release()
        resolved.close()
        raise Refused(Refusal("build", e), profile, image) from None
    except BaseException:
        leases.release()
        resolved.close()
        raise
    return Prepared(resolved, leases, plan)


def plan_launch(request: Request, argv, paths, *, sandbox_id: str | None = None,
                load_profile=None):
    """The `LaunchPlan` ``--dry-run`` prints: the same stages as a launch,
    with dry leases; nothing is held, created or relabelled."""
    sid = sandbox_id or os.urandom(6).hex()
    try:
        prep = prepare_launch(request, argv, paths, sid, dry=True, load_profile=load_profile)
    except Refused as r:
        raise r.refusal.error from None
    prep.resolved.close()
    # the fds die here: a plan handed out must not carry their numbers
    return prep.plan._replace(mounts=tuple(m._replace(fd=None) if m.fd is not None else m
                                           for m in prep.plan.mounts))


def run_launch(request: Request, argv, paths, *, hooks=None, load_profile=None,
               stdio=None) -> RunResult:
    """Launch ``argv`` and wait for it; every record written (with
    ``request.audit``). ``hooks`` (the detached supervisor's,
    `sandbox.launch.detach`): ``sandbox_id``, ``planned(plan, image)``,
    ``forked()``, ``started(effective, pid)`` and ``launch_options``.
    ``stdio``: the payload's stdin, stdout, stderr fds (None: the caller's)."""
    sid = hooks.sandbox_id if hooks is not None else os.urandom(6).hex()
    try:
        prep = prepare_launch(request, argv, paths, sid, dry=False, load_profile=load_profile)
    except Refused as r:
        _refuse(paths, request, sid, r.refusal, r.profile, r.image, argv=argv)
        raise r.refusal.error from None
    try:
        return _run(request, paths, prep, hooks, stdio)
    finally:
        prep.leases.release()
        prep.resolved.close()


def _refuse(paths, request, sid, refusal, profile, image, log=None, argv=None) -> None:
    if not request.audit:
        return
    from ..audit import evidence
    if evidence.is_usage_error(refusal.error):
        return          # issue 14: a typo is not a refusal (nothing was decided)
    from .record import build_refusal_record
    append_record(paths, "refusal", evidence.complete_refusal(build_refusal_record(
        sid, refusal, request, profile=profile, image=image, paths=paths),
        request.caller, argv), log)


def _run(request: Request, paths, prep: Prepared, hooks, stdio=None) -> RunResult:
    from ..runtime.spawn import launch
    from . import record as rec
    resolved, leases, plan = prep
    sid = plan.sandbox_id
    audit = request.audit
    plan_digest = plan.digest()     # once: the record and the result share it
    if audit:
        for opt in plan.insecure_options:
            append_record(paths, "insecure-option",
                          rec.build_insecure_record(sid, opt, resolved.image, request,
                                                    plan.argv))
    # the :z/:Z relabels, decided with the level lease, are written now:
    # building a plan (and --dry-run) never changes the host
    try:
        apply_relabels_fd(leases.label_plan, resolved.volumes, own_folders=tuple(paths))
    except SandboxError as e:
        _refuse(paths, request, sid, Refusal("leases", e), resolved.profile, resolved.image,
                argv=plan.argv)
        raise
    if plan.not_applied:            # fail loud: said at launch, not only in the record
        announce_not_applied(plan)
    if hooks is not None:           # lifecycle: record the resources first
        hooks.planned(plan, resolved.image)
    log: dict = {}

    def forked():
        if hooks is not None:       # lifecycle: payload stdio to the log pipe
            hooks.forked()
        # open the audit log while the child sets up (overlaps ~4 ms)
        if audit:
            from .. import audit as _audit
            log["log"] = _audit.prepare(paths)

    def confined(effective, pid):
        # issue 14: the launch record is durable before the payload gets go;
        # if it cannot be written, the runtime kills the payload before execve
        if audit:
            from ..audit import evidence
            log["seq"] = evidence.record_launch(log.get("log"), paths, evidence.complete_launch(
                rec.build_launch_record(plan, plan_digest, resolved, leases, request,
                                        effective), request.caller))
            log["launched"] = True

    def started(effective, pid):
        if hooks is not None:       # lifecycle: state running, caller told
            hooks.started(effective, pid)

    from .network import build_network
    try:
        res = launch(plan, on_forked=forked, on_started=started, on_confined=confined,
                     network=build_network(plan, paths if audit else None), stdio=stdio,
                     **(hooks.launch_options if hooks is not None else {}))
    except SandboxError as e:
        if log.get("launched"):     # issue 14: a recorded launch ends with its exit record
            from ..audit import evidence
            evidence.record_exit(log.get("log"), paths, {
                "sandbox_id": sid, "status": e.run_status, "signal": None, "error": e.message})
        else:
            _refuse(paths, request, sid, Refusal("run", e), resolved.profile, resolved.image,
                    log.get("log"), argv=plan.argv)
        raise
    if audit:                       # issue 14: retried; kept as a gap if it is lost
        from ..audit import evidence
        evidence.record_exit(log.get("log"), paths, rec.build_exit_record(res))
    return RunResult(res.sandbox_id, res.status, res.signal, res.duration_ms,
                     plan_digest, res.effective, res.missing, log.get("seq"), res.timed_out,
                     tuple(plan.argv))


def announce_not_applied(plan) -> None:
    """One line on stderr naming every requested limit the host could not
    apply as asked, and what was applied instead (requested -> applied)."""
    import sys
    sys.stderr.write("sandbox: warning: limits not applied as asked (no usable cgroups): "
                     + "; ".join(f"{r} -> {a}" for r, a in plan.not_applied) + "\n")


def apply_relabels_fd(label_plan, volumes, *, own_folders=()) -> tuple[str, ...]:
    """Write the labels the plan's ``:z``/``:Z`` volumes need, each on the
    fd its source was opened as (``volumes``: `HostPath` values in the
    plan's order), never by name (issue 13 item 9). The paths relabelled."""
    from ..labels.volumes import apply_volume_label_fd
    done = []
    for pv, hp in zip(label_plan.volumes, volumes):
        if pv.grant.relabel_to is not None:
            done.append(apply_volume_label_fd(hp.fd, pv.grant.relabel_to,
                                              selinux=label_plan.selinux.active,
                                              own_folders=own_folders))
    return tuple(done)
