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
    over the profile's, as the run options of the same names; so are
    ``cap_add``, ``cap_drop``, ``security_opt``, ``tmpfs``, ``read_only``
    (None: the profile's) and ``entrypoint``.
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
                 pids_limit: str | int | None = None, ulimits: Iterable[str] = (),
                 cap_add: Iterable[str] = (), cap_drop: Iterable[str] = (),
                 security_opt: Iterable[str] = (), tmpfs: Iterable[str] = (),
                 read_only: bool | None = None,
                 entrypoint: str | Sequence[str] | None = None,
                 interactive: bool | None = None,
                 allow_host: Iterable[str | int] = ()):
        self.paths = Paths.resolve(root)
        self.request: Request = build_request(
            profile, rootfs=rootfs, image=image, volumes=volumes, name=name,
            hostname=hostname, env=env, workdir=workdir, user=user, network=network,
            ports=ports, dns=dns, insecure_options=insecure_options, audit=audit,
            timeout=timeout, cpus=cpus, memory=memory, pids_limit=pids_limit,
            ulimits=ulimits, cap_add=tuple(cap_add), cap_drop=tuple(cap_drop),
            security_opt=tuple(security_opt), tmpfs=tuple(tmpfs), read_only=read_only,
            entrypoint=entrypoint, interactive=interactive, allow_host=allow_host)

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

    def run(self, argv: Sequence[str], *, input: bytes | str | None = None, stdin=None,
            stdout=None, stderr=None, capture_output: bool = False, text: bool = False,
            timeout: float | str | None = None, env: Mapping[str, str] | None = None,
            cwd: str | None = None) -> RunResult:
        """Launch ``argv`` in a new sandbox and wait for it, as
        `subprocess.run` runs a command.

        ``stdin``, ``stdout``, ``stderr``: None (this process's own),
        ``subprocess.PIPE`` (captured; ``stdin=PIPE`` without ``input``
        gives the payload an empty stdin), ``subprocess.DEVNULL``, an fd or
        a file object; ``stderr=subprocess.STDOUT`` joins stdout.
        ``input``: bytes (str with ``text``) fed to stdin.
        ``capture_output``: both captured. ``text``: str instead of bytes
        (UTF-8, universal newlines). ``timeout`` (seconds or ``"30s"``):
        past it the whole sandbox is stopped (SIGTERM, SIGKILL 2 s later)
        and torn down, then `sandbox.errors.TimeoutExpired` is raised with
        what was captured. ``env`` is added to the profile's environment
        (a sandbox inherits none of the caller's); ``cwd`` is the working
        folder inside the sandbox. Both and ``timeout`` are recorded with
        origin ``flag``, as the run options of the same meaning.

        Returns a `RunResult`: ``status`` (also ``returncode``),
        ``stdout``/``stderr`` when captured, ``effective`` (the kernel
        state read back from the payload), ``plan_digest``, ``audit_seq``
        (the launch record's sequence number). Raises a
        `sandbox.errors.SandboxError` subclass when the sandbox is refused
        or cannot be set up (nothing is left behind),
        `CommandNotFound`/`CommandNotExecutable` for the command.

        Safe to call from several threads at once: launches share nothing
        but this object's frozen request; from a thread other than the main
        one, signals are not forwarded to the sandbox (use ``timeout``).
        """
        from .launch.run import run_launch
        request = self._per_run(env, cwd, timeout)
        with _Stdio(input, stdin, stdout, stderr, capture_output, text) as io:
            result = run_launch(request, argv, self.paths, load_profile=(
                self.resolve_profile if request is self.request else None), stdio=io.fds)
            out, err = io.collect()
        result = result._replace(stdout=out, stderr=err)
        if result.timed_out:
            from .errors import TimeoutExpired
            limit = dict((k, v) for k, v, _ in request.limits)["limits.timeout"]
            raise TimeoutExpired(tuple(argv), limit, out, err, result)
        return result

    async def run_async(self, argv: Sequence[str], **kw) -> RunResult:
        """`run` for asyncio: the same arguments and result, the launch run
        in the loop's default executor so the loop keeps serving. A
        cancelled await does not stop the sandbox: give ``timeout``."""
        import asyncio
        import functools
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self.run, argv, **kw))

    def _per_run(self, env, cwd, timeout) -> Request:
        """The request with one launch's ``env``, ``cwd`` and ``timeout``,
        checked as the constructor checks them."""
        request = self.request
        if env is None and cwd is None and timeout is None:
            return request
        from .launch.request import build_limits, check_env
        changes: dict = {}
        if env is not None:
            merged = dict(request.env)
            merged.update(check_env(env))
            changes["env"] = tuple(merged.items())
        if cwd is not None:
            cwd = os.fspath(cwd)
            if not isinstance(cwd, str) or not cwd.startswith("/"):
                from .errors import UsageError
                raise UsageError(f"bad cwd {cwd!r}: give an absolute path inside the sandbox")
            changes["workdir"] = cwd
        if timeout is not None:
            changes["limits"] = tuple(x for x in request.limits if x[0] != "limits.timeout") \
                + build_limits(timeout=timeout)
        return request._replace(**changes)

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
        if any(key == "limits.timeout" for key, _, _ in self.request.limits):
            # the detached supervisor's wait has no timer yet: refuse rather
            # than run without the limit asked for
            from .errors import UsageError
            raise UsageError("a timeout does not go with a detached sandbox yet",
                             hint="stop it with 'sandbox stop ID', or use run()")
        from .launch.detach import start_detached
        from .lifecycle import SandboxHandle
        return SandboxHandle(start_detached(self.request, self.paths, argv,
                                            load_profile=self.resolve_profile), self.paths)


class _Stdio:
    """The payload's stdio for one `Sandbox.run`, as `subprocess.run`
    reads its arguments: ``fds`` for the launch, pipes drained by threads
    (so a payload that fills one pipe cannot block on the other), closed
    on exit whatever happened."""

    PIPE, STDOUT, DEVNULL = -1, -2, -3      # subprocess's constants

    def __init__(self, input, stdin, stdout, stderr, capture_output, text):
        if input is not None and stdin is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        if capture_output:
            if stdout is not None or stderr is not None:
                raise ValueError("stdout and stderr arguments may not be used "
                                 "with capture_output.")
            stdout = stderr = self.PIPE
        if input is not None:
            stdin = self.PIPE
            if text and isinstance(input, str):
                input = input.encode("utf-8")
            if not isinstance(input, (bytes, bytearray, memoryview)):
                raise TypeError("input must be bytes (or str with text=True)")
        self.input, self.text = input, text
        self.spec = (stdin, stdout, stderr)
        self.close_after: list[int] = []        # our copies of the payload's ends
        self.readers: dict[int, list] = {}      # stdio index -> [thread, chunks]
        self.writer = None
        self.fds: tuple = (None, None, None)

    def __enter__(self):
        try:
            fds = []
            for i, want in enumerate(self.spec):
                fds.append(self._fd(i, want, fds))
            self.fds = tuple(fds)
        except BaseException:
            self._close()
            raise
        return self

    def _fd(self, i, want, fds):
        import threading
        if want is None:
            return None
        if want == self.STDOUT and i == 2:
            return fds[1] if fds[1] is not None else 1
        if want == self.DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            self.close_after.append(fd)
            return fd
        if want == self.PIPE:
            r, w = os.pipe2(os.O_CLOEXEC)
            if i == 0:
                self.close_after.append(r)
                data = bytes(self.input or b"")
                self.writer = threading.Thread(target=_feed, args=(w, data), daemon=True)
                self.writer.start()
                return r
            self.close_after.append(w)
            chunks: list[bytes] = []
            t = threading.Thread(target=_drain, args=(r, chunks), daemon=True)
            t.start()
            self.readers[i] = [t, chunks]
            return w
        if isinstance(want, int) and not isinstance(want, bool) and want >= 0:
            return want
        if hasattr(want, "fileno"):
            return want.fileno()
        raise ValueError(f"bad {('stdin', 'stdout', 'stderr')[i]}: {want!r}")

    def collect(self):
        """Close our copies of the payload's ends, wait for the readers:
        ``(stdout, stderr)`` as captured (None where not)."""
        self._close()
        out = []
        for i in (1, 2):
            if i not in self.readers:
                out.append(None)
                continue
            t, chunks = self.readers[i]
            t.join()
            data = b"".join(chunks)
            out.append(data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
                       if self.text else data)
        return tuple(out)

    def _close(self):
        for fd in self.close_after:
            try:
                os.close(fd)
            except OSError:
                pass
        self.close_after = []

    def __exit__(self, *exc):
        self._close()           # readers see EOF and end; the writer sees EPIPE
        return False


def _feed(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:             # the payload closed its stdin, or is gone
        pass
    finally:
        os.close(fd)


def _drain(fd: int, chunks: list) -> None:
    try:
        while True:
            b = os.read(fd, 65536)
            if not b:
                return
            chunks.append(b)
    finally:
        os.close(fd)
