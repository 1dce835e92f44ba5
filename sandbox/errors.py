"""The one exception tree of `sandbox`, grouped by who must act.

Every error carries a short message that names the object and, where there
is one, ends with the fix. The CLI catches `SandboxError` in one place
(`sandbox.cli`) and maps it to an exit status:

=====================  ===========================================  =========
class                  who must act                                 run/other
=====================  ===========================================  =========
UsageError             the user: flags, arguments                   125 / 2
ProfileError           the user: a profile file or a profile key    125 / 2
ArtifactError          the artifact: bad image, layer, signature    125 / 1
VerificationError      the trust decision refused an image          125 / 1
HostSupportError       the host lacks a feature (says how to fix)   125 / 1
SetupError             a launch step failed (names the step)        125 / 1
CommandNotFound        the payload command does not exist           127
CommandNotExecutable   the payload command cannot be executed       126
CheckFailed            a check (audit verify, image verify) failed  1
NotFound               a named object (sandbox, image, key) absent  1
=====================  ===========================================  =========

`sandbox run` uses the container convention (DESIGN §8): 125 when the sandbox
could not be set up or was refused, 126 cannot execute, 127 not found.
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error `sandbox` raises on purpose.

    ``run_status`` is the exit status of ``sandbox run`` for this error;
    ``status`` the one of every other command.
    """

    run_status = 125
    status = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The error as one or two plain lines: what went wrong, then the fix."""
        out = [self.message]
        if self.hint:
            out.append(self.hint)
        return out

    def __str__(self) -> str:  # pragma: no cover - trivial
        return "\n".join(self.lines())


class UsageError(SandboxError):
    """Bad flags or arguments on the command line."""

    run_status = 125
    status = 2


class ProfileError(SandboxError):
    """A profile (or a file it points at, such as a seccomp JSON) is invalid.

    ``source`` names the file; ``key`` the dotted key, when known.
    """

    status = 2

    def __init__(self, message: str, *, source: str | None = None,
                 key: str | None = None, hint: str | None = None):
        where = ""
        if source and key:
            where = f"{source}: {key}: "
        elif source:
            where = f"{source}: "
        elif key:
            where = f"{key}: "
        super().__init__(where + message, hint=hint)
        self.source = source
        self.key = key


class ArtifactError(SandboxError):
    """An image, layer, manifest or signature is malformed or unsafe."""


class VerificationError(SandboxError):
    """The trust decision refused an image. ``reason`` is a stable keyword
    (``unsigned``, ``unknown-key``, ``wrong-prefix``, ``expired-key``,
    ``revoked-key``, ``expired-signature``, ``bad-signature``,
    ``identity-mismatch``, ``digest-mismatch``)."""

    def __init__(self, message: str, *, reason: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.reason = reason


class HostSupportError(SandboxError):
    """The host cannot provide a protection the profile asks for.

    The hint says how to enable it, or which profile key marks it optional.
    """


class SetupError(SandboxError):
    """A launch step failed. ``step`` names it (for example ``mount /proc``)."""

    def __init__(self, message: str, *, step: str | None = None,
                 errno: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.step = step
        self.errno = errno


class CommandNotFound(SandboxError):
    """The payload command does not exist inside the sandbox."""

    run_status = 127


class CommandNotExecutable(SandboxError):
    """The payload command exists but cannot be executed."""

    run_status = 126


class CheckFailed(SandboxError):
    """A check the user asked for failed (``audit verify``, ``image verify``)."""


class NotFound(SandboxError):
    """A named object (sandbox, image, key, profile) does not exist."""

    status = 1


class TimeoutExpired(SandboxError):
    """`Sandbox.run` with ``timeout``: the payload ran past it, and the
    whole sandbox was stopped (SIGTERM, SIGKILL after a grace) and torn
    down before this was raised. As `subprocess.TimeoutExpired`: ``cmd``,
    ``timeout``, ``output``/``stdout`` and ``stderr`` (what was captured);
    ``result`` the `RunResult` (status 124)."""

    run_status = 124

    def __init__(self, cmd, timeout: float, output=None, stderr=None, result=None):
        super().__init__(f"command {list(cmd)!r} timed out after {timeout:g} seconds; "
                         "the sandbox was killed")
        self.cmd, self.timeout, self.output, self.stderr = cmd, timeout, output, stderr
        self.result = result

    @property
    def stdout(self):
        return self.output
