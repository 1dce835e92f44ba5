"""``sandbox version``: the package version; ``--verbose`` adds its Python
dependencies, libseccomp, gpg, the kernel and the host's protections (issue 13)."""

from __future__ import annotations

import json

import click


@click.command("version")
@click.option("-v", "--verbose", is_flag=True,
              help="Also the Python dependencies, libseccomp, gpg, the kernel and the "
                   "protections this host offers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (everything --verbose shows).")
def version(verbose, as_json):
    """Show the version of sandbox (and, with --verbose, of what it runs on)."""
    from ..hostinfo import collect, format_text, package_version
    if not (verbose or as_json):
        click.echo(f"sandbox {package_version()}")
        return
    info = collect()
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    for line in format_text(info):
        click.echo(line)
