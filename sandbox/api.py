"""The library entry point: ``Sandbox(...).run([...])``, which the CLI uses too.

    >>> from sandbox import Sandbox
    >>> result = Sandbox(profile="default").run(["/bin/sh", "-c", "exit 3"])
    >>> result.status
    3

`Sandbox` is a thin facade over the launch stages of `sandbox.launch`
(DESIGN §2, §11): its constructor is the request stage (every argument
checked, a frozen `Request` kept), and each `run` walks resolve -> leases
-> build -> run -> record anew. No stage result is kept on the object:
two launches of one `Sandbox` share only its request.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

from .launch.request import Request, build_request, parse_user, parse_volume
from .launch.run import RunResult
from .paths import Paths
from .runtime.plan import LaunchPlan
from .runtime.spec import Volume

__all__ = ["Sandbox", "RunResult", "parse_volume", "parse_user", "Volume"]


class Sandbox:
    """A sandbox configuration; `run` launches one sandbox per call.

    ``profile``: a profile name or a path to a TOML file. ``rootfs``: a
    folder to use as root (never modified), or None for the host view.
    ``image``: a reference in the local image store (verified at every
    launch). ``volumes``: `Volume` values or ``SRC:DST[:ro|rw]`` strings.
    ``env``, ``hostname``, ``workdir``, ``user``: command-line overrides of
    the profile. ``root``: keep config, state and runtime under this folder.
    ``insecure_options``: e.g. ``("image",)`` to run an unsigned image.
    ``timeout`` (seconds or ``"30s"``), ``cpus``, ``memory``, ``pids_limit``
    and ``ulimits`` (``"NAME=SOFT[:HARD]"``): the limits of every launch,
    over the profile's, as the run options of the same names.
    """

    def __init__(self, profile: str = "default", *, rootfs: str | os.PathLike | None = None,
                 image: str | None = None, volumes: Iterable[Volume | str] = (),
                 name: str | None = None, hostname: str | None = None,
                 env: Mapping[str, str] | None = None, workdir: str | None = None,
                 user: str | tuple[int, int] | None = None, root: str | os.PathLike | None = None,
                 insecure_options: Sequence[str] = (), network: str | None = None,
                 ports: Iterable[str] = (), dns: Iterable[str] = (),
                 audit: bool = True, timeout: str | float | None = None,
                 cpus: str | float | None = None, memory: str | int | None = None,
                 pids_limit: str | int | None = None, ulimits: Iterable[str] = ()):
        self.paths = Paths.resolve(root)
        self.request: Request = build_request(
            profile, rootfs=rootfs, image=image, volumes=volumes, name=name,
            hostname=hostname, env=env, workdir=workdir, user=user, network=network,
            ports=ports, dns=dns, insecure_options=insecure_options, audit=audit,
            timeout=timeout, cpus=cpus, memory=memory, pids_limit=pids_limit,
            ulimits=ulimits)

    # the request's fields, read-only, under their old names
    profile_ref = property(lambda self: self.request.profile)
    rootfs = property(lambda self: self.request.rootfs)
    image = property(lambda self: self.request.image)
    volumes = property(lambda self: self.request.volumes)
    name = property(lambda self: self.request.name)
    insecure_options = property(lambda self: self.request.insecure_options)
    audit = property(lambda self: self.request.audit)

    def resolve_profile(self):
        """The profile this sandbox runs under, with the command line's
        overrides and their origins (`sandbox.launch.resolve`)."""
        from .launch.resolve import resolve_profile
        return resolve_profile(self.request, self.paths)

    def plan(self, argv: Sequence[str], *, sandbox_id: str | None = None) -> LaunchPlan:
        """The `LaunchPlan` a launch of ``argv`` would run, built through
        the launch's own stages with dry leases: nothing is held, created
        or relabelled (``--dry-run``)."""
        from .launch.run import plan_launch
        return plan_launch(self.request, argv, self.paths, sandbox_id=sandbox_id,
                           load_profile=self.resolve_profile)

    def run(self, argv: Sequence[str]) -> RunResult:
        """Launch ``argv`` in a new sandbox and wait for it.

        Returns a `RunResult`. Raises a `sandbox.errors.SandboxError`
        subclass when the sandbox is refused or cannot be set up (nothing is
        left behind), `CommandNotFound`/`CommandNotExecutable` for the
        command. With ``audit`` on (the default) the launch (with the
        payload's effective kernel state), its exit, any refusal and any
        insecure option are recorded in the audit log (DESIGN §6).
        """
        from .launch.run import run_launch
        return run_launch(self.request, argv, self.paths, load_profile=self.resolve_profile)

    def start(self, argv: Sequence[str]) -> "SandboxHandle":  # noqa: F821 - lazy import
        """Launch ``argv`` in a new *detached* sandbox and return its handle
        once the payload has been exec'd (`sandbox.lifecycle.SandboxHandle`:
        ``.id``, ``.wait()``, ``.stop()``, ``.status()``, ``.logs()``).

        A daemon supervisor (double fork, new session, no terminal) runs the
        same pipeline as `run`, audit records included, with the payload's
        stdout and stderr going to a rotated log in the sandbox's run
        folder. Raises what `run` raises for a refused or failed setup.
        Fork-based: call it from a single-threaded program (as the CLI is).
        """
        from .launch.detach import start_detached
        from .lifecycle import SandboxHandle
        return SandboxHandle(start_detached(self.request, self.paths, argv,
                                            load_profile=self.resolve_profile), self.paths)
