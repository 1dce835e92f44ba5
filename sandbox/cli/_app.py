"""The click application: the `sandbox` group and its lazily loaded subcommands."""

from __future__ import annotations

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
    "completion": "sandbox.cli.completion:completion",
    "version": "sandbox.cli.version:version",
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


