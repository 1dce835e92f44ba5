"""The `sandbox` command: a thin layer of click over the library.

Subcommands live in their own modules and are imported only when invoked,
so ``sandbox run`` pays for nothing but the launch path. Every
`SandboxError` is caught here, once, and printed as one or two plain lines;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys

import click

#: command name -> "module:attribute"; a module that does not exist yet is
#: simply not offered.
COMMANDS = {
    "run": "sandbox.cli.run:run",
    "profile": "sandbox.cli.profile:profile",
    "image": "sandbox.cli.image:image",
    "trust": "sandbox.cli.trust:trust",
    "audit": "sandbox.cli.audit:audit",
    "label": "sandbox.cli.label:label",
    "ps": "sandbox.cli.lifecycle:ps",
    "status": "sandbox.cli.lifecycle:status",
    "stop": "sandbox.cli.lifecycle:stop",
    "enter": "sandbox.cli.lifecycle:enter",
    "logs": "sandbox.cli.lifecycle:logs",
    "rm": "sandbox.cli.lifecycle:rm",
    "gc": "sandbox.cli.lifecycle:gc",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n in COMMANDS if self._spec_exists(n)]

    @staticmethod
    def _spec_exists(name):
        import importlib.util
        module = COMMANDS[name].split(":")[0]
        try:
            return importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    def get_command(self, ctx, name):
        spec = COMMANDS.get(name)
        if spec is None:
            return None
        module, attr = spec.split(":")
        import importlib
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                return None
            raise
        return getattr(mod, attr, None)


class Context:
    """What every subcommand gets: the folders and the debug switch."""

    def __init__(self, root: str | None, debug: bool):
        from ..paths import Paths
        self.paths = Paths.resolve(root)
        self.root = root
        self.debug = debug


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="SANDBOX_ROOT", metavar="DIR",
              help="Keep config, state and runtime folders under DIR (env SANDBOX_ROOT).")
@click.option("--debug", is_flag=True, envvar="SANDBOX_DEBUG",
              help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="sandbox", prog_name="sandbox")
@click.pass_context
def cli(ctx, root, debug):
    """Run programs and container images in a locked-down Linux sandbox.

    \b
    sandbox run -- python3 x.py          the host's programs, read-only, confined
    sandbox run --rootfs DIR -- sh       a root file system of your own
    sandbox run example.com/app          a verified image from the local store
    sandbox profile list                 the profiles a run can use
    """
    ctx.obj = Context(root, debug)


def _subcommand(argv: list[str]) -> str | None:
    """The subcommand named in argv, skipping the group's own options."""
    it = iter(argv)
    for a in it:
        if a == "--root":
            next(it, None)
        elif not a.startswith("-"):
            return a
    return None


def main(argv=None) -> None:
    """Console entry point: runs the CLI and turns errors into exit codes."""
    from ..errors import SandboxError
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or bool(os.environ.get("SANDBOX_DEBUG"))
    is_run = _subcommand(args) == "run"
    try:
        rv = cli.main(args=argv, prog_name="sandbox", standalone_mode=False)
    except SandboxError as e:
        if debug:
            import traceback
            traceback.print_exc()
        for line in e.lines():
            click.echo(f"sandbox: {line}", err=True)
        sys.exit(e.run_status if is_run else e.status)
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
    if isinstance(rv, int):
        sys.exit(rv)
