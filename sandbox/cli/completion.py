"""``sandbox completion bash|zsh|fish``: the shell completion script.

The scripts are click's own (``click.shell_completion``): the shell calls
``sandbox`` back with ``_SANDBOX_COMPLETE`` set, so completions always match
the installed commands. ``install.sh`` installs them where each shell looks.
"""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


def build_script(shell: str) -> str:
    """The completion script for ``shell`` (one of `SHELLS`)."""
    from click.shell_completion import get_completion_class
    from ._app import cli
    cls = get_completion_class(shell)
    return cls(cli, {}, "sandbox", "_SANDBOX_COMPLETE").source()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell):
    """Print the shell completion script for SHELL (bash, zsh or fish).

    install.sh installs them already; to load one in the current shell only:

    \b
    eval "$(sandbox completion bash)"
    eval "$(sandbox completion zsh)"
    sandbox completion fish | source
    """
    click.echo(build_script(shell), nl=False)
