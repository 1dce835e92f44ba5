"""The `sandbox` command: a thin layer over the library.

Subcommands live in their own modules and are imported only when invoked.
``sandbox run`` in its common forms is parsed without click at all
(`_run_fast`), so a launch pays for nothing but the launch path; help,
errors and every other command go through the click application in
`_app`. Every `SandboxError` is caught here, once, and printed as one or
two plain lines; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys


def __getattr__(name):
    if name in ("cli", "Context", "COMMANDS"):
        from . import _app
        return getattr(_app, name)
    raise AttributeError(f"module 'sandbox.cli' has no attribute {name!r}")


def _subcommand(argv: list[str]) -> str | None:
    """The subcommand named in argv, skipping the group's own options."""
    it = iter(argv)
    for a in it:
        if a == "--root":
            next(it, None)
        elif not a.startswith("-"):
            return a
    return None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (an audit record kept for later, a refusal not recorded) as
    plain ``sandbox: warning:`` lines, not Python's file:line form (issue 14)."""
    lines = str(message).splitlines() or [""]
    sys.stderr.write("".join([f"sandbox: warning: {lines[0]}\n"] +
                             [f"sandbox: {x}\n" for x in lines[1:]]))


def main(argv=None) -> None:
    """Console entry point: runs the CLI and turns errors into exit codes."""
    from ..errors import SandboxError
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("SANDBOX_DEBUG"))
    if not debug:
        import warnings
        warnings.showwarning = _show_warning
    is_run = _subcommand(args) == "run"
    if is_run:
        from ._run_fast import parse_fast
        fast = parse_fast(args)
        if fast is not None:
            try:
                from ._run_fast import execute
                status = execute(**fast)
            except SandboxError as e:
                _fail(e, debug, 125 if e.run_status == 2 else e.run_status)
            except KeyboardInterrupt:
                sys.exit(130)
            except OSError as e:
                _fail_os(e, debug, 125)
            _flush()
            if argv is None:        # the console script, not a caller's main([...])
                _exit_now(status)
            sys.exit(status)
    import click
    from ._app import cli
    try:
        rv = cli.main(args=argv, prog_name="sandbox", standalone_mode=False)
    except SandboxError as e:
        _fail(e, debug, e.run_status if is_run else e.status)
    except click.exceptions.Abort:
        click.echo("sandbox: aborted", err=True)
        sys.exit(130 if not is_run else 125)
    except click.ClickException as e:
        e.show()
        sys.exit(125 if is_run and e.exit_code == 2 else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except OSError as e:
        _fail_os(e, debug, 125 if is_run else 1)
    if isinstance(rv, int):
        sys.exit(rv)


def _exit_now(status: int) -> None:
    """End the process with ``status`` without the interpreter's
    finalization (a garbage collection and the teardown of every module:
    about 10 ms of a ~80 ms ``sandbox run``). Nothing is lost by it: the
    ``atexit`` functions run as they would, the launch path writes its
    files through raw fds and closes them, the audit log's transactions are
    committed and its connection is closed here, and stdout and stderr are
    flushed."""
    import atexit
    atexit._run_exitfuncs()
    log = sys.modules.get("sandbox.audit.log")
    if log is not None:
        log.close_open()
    _flush()
    os._exit(status)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):     # None when the caller closed it
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def _fail_os(e: OSError, debug: bool, status: int) -> None:
    """An unexpected OSError (a --root that is a file, a folder we may not
    write): one line naming the path, not a traceback."""
    if debug:
        import traceback
        traceback.print_exc()
    from ..display import escape
    where = f" {escape(e.filename)}" if getattr(e, "filename", None) else ""
    _write_err(f"sandbox: cannot use{where}: {e.strerror or e}\n"
               "sandbox: check the path (--root must be a folder you can write)\n")
    sys.exit(status)


def _write_err(text: str) -> None:
    if sys.stderr is not None:
        try:
            sys.stderr.write(text)
        except (OSError, ValueError):
            pass


def _fail(e, debug: bool, status: int) -> None:
    if debug:
        import traceback
        traceback.print_exc()
    from ..display import escape     # messages quote paths, names, image text
    _write_err("".join(f"sandbox: {escape(line)}\n" for line in e.lines()))
    sys.exit(status)
