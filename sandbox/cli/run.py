"""``sandbox run``: the click command, made from the option table in
`sandbox.cli._run_fast` (`RUN_OPTIONS`), which the fast parser uses too."""

from __future__ import annotations

import click

from ._run_fast import RUN_OPTIONS


class _RunCommand(click.Command):
    """Everything after ``--`` is the command, kept verbatim (click would
    otherwise drop the separator and we could not tell IMAGE from CMD)."""

    def parse_args(self, ctx, args):
        if "--" in args:
            i = args.index("--")
            ctx.meta["sandbox.command"] = args[i + 1:]
            args = args[:i]
        else:
            ctx.meta["sandbox.command"] = None
        return super().parse_args(ctx, args)


def click_option(opt):
    """The click decorator for one `Opt` of the table."""
    names = [n for n in opt.names if n.startswith("-")]
    if opt.takes_value:
        return click.option(*names, opt.dest, multiple=opt.multiple, metavar=opt.metavar,
                            help=opt.help, default=() if opt.multiple else opt.default,
                            show_default=opt.dest == "profile")
    return click.option(*names, opt.dest, is_flag=True, help=opt.help)


def build_run_command(body, options=RUN_OPTIONS) -> click.Command:
    """The click command of ``run`` for ``options``, calling ``body(ctx,
    image, **options)``."""
    cmd = click.pass_context(body)
    for opt in reversed(options):       # decorators apply bottom-up
        cmd = click_option(opt)(cmd)
    cmd = click.argument("image", required=False)(cmd)
    return click.command("run", cls=_RunCommand,
                         context_settings={"help_option_names": ["-h", "--help"]})(cmd)


def _run(ctx, image, **options):
    """Run a command in a new sandbox, locked down by PROFILE.

    \b
    sandbox run -- python3 -c 'print(1)'         host view (read-only host programs)
    sandbox run --rootfs ./root -- /bin/sh       your own root file system
    sandbox run --profile strict -- make test    no capabilities, no sockets but AF_UNIX
    sandbox run --dry-run -- true                show every step without doing it

    Exit status: the command's own, 128+N after signal N, 125 when the
    sandbox was refused or could not be set up, 126 when the command cannot
    be executed, 127 when it is not found.
    """
    from ._run_fast import execute
    return execute(root=ctx.obj.root, image=image, argv=ctx.meta.get("sandbox.command"),
                   **options)


run = build_run_command(_run)
