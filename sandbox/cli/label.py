"""``sandbox label``: volume labels and the labels of running sandboxes.

A thin layer over `sandbox.labels`; errors reach `sandbox.cli.main` as
`SandboxError` and become one line and an exit status.
"""

from __future__ import annotations

import click


def _json(obj) -> None:
    import json
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


@click.group()
def label():
    """Volume labels (MCS levels such as s0:c5,c9) and running sandboxes' labels."""


@label.command("set")
@click.argument("path", type=click.Path(exists=False))
@click.argument("level")
@click.pass_obj
def set_(obj, path, level):
    """Label the volume PATH with LEVEL (for example s0:c5,c9, or s0 for shared read-only).

    PATH is opened once, with no symlink followed in it; the folder opened
    is the one checked, labelled and named in the output."""
    from ..labels.model import Level
    from ..labels.volumes import apply_volume_label
    lvl = Level.parse(level)
    real = apply_volume_label(path, lvl, own_folders=tuple(obj.paths))
    from ..display import escape
    click.echo(f"{escape(real)}: {lvl}")


@label.command("show")
@click.argument("path", type=click.Path(exists=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(path, as_json):
    """Show the label of the volume PATH."""
    import os
    from ..labels.volumes import read_volume_label
    lvl = read_volume_label(path)
    real = os.path.realpath(path)
    if as_json:
        _json({"path": real, "label": None if lvl is None else str(lvl)})
    else:
        from ..display import escape
        click.echo(f"{escape(real)}: {lvl if lvl is not None else 'unlabelled'}")


@label.command("rm")
@click.argument("path", type=click.Path(exists=True))
def rm(path):
    """Remove the label of the volume PATH (it becomes unlabelled)."""
    from ..labels.volumes import remove_volume_label
    had = remove_volume_label(path)
    from ..display import escape
    click.echo(f"{escape(path)}: {'label removed' if had else 'was unlabelled'}")


@label.command("list")
@click.option("--running", is_flag=True, help="The labels of running sandboxes (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj, running, as_json):
    """List the levels held by running sandboxes."""
    from ..labels.alloc import labels_in_use
    held = labels_in_use(obj.paths)
    if as_json:
        _json([h.to_dict() for h in held])
        return
    if not held:
        click.echo("no running sandbox holds a label")
        return
    from ._table import Col, format_table
    rows = [(str(h.level), h.kind, str(h.pid), str(h.owner)) for h in held]
    for line in format_table([Col("LEVEL", 1, 12), Col("KIND"), Col("PID"),
                              Col("OWNER", 2, 16)], rows):
        click.echo(line)


@label.command("check")
@click.argument("path", type=click.Path(exists=False))
@click.option("--level", "level", required=True, help="The sandbox's level, e.g. s0:c1,c2.")
@click.option("--mode", type=click.Choice(["ro", "rw"]), default="rw", show_default=True)
@click.option("--relabel", type=click.Choice(["z", "Z"]), default=None,
              help="Podman-style relabel: z shared (read-only), Z private.")
@click.option("--allow-unlabelled-ro", is_flag=True,
              help="As the profile key label.allow_unlabelled_ro.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def check(obj, path, level, mode, relabel, allow_unlabelled_ro, as_json):
    """Would the volume PATH mount in a sandbox at LEVEL? Changes nothing.

    Exit 0 with the grant, or a one-line refusal (exit 1).
    """
    from ..labels.alloc import labels_in_use
    from ..labels.model import LevelRange
    from ..labels.volumes import decide_volume
    rng = LevelRange.parse(level)
    sandbox_level = rng.low if rng.single else rng
    held = [h.level for h in labels_in_use(obj.paths)]
    grant = decide_volume(path, sandbox_level, mode, allow_unlabelled_ro=allow_unlabelled_ro,
                          relabel=relabel, held_by_others=held)
    if as_json:
        _json({"path": path, **grant.to_dict()})
    else:
        extra = f", relabel to {grant.relabel_to}" if grant.relabel_to is not None else ""
        shown = grant.label if grant.label is not None else "unlabelled"
        from ..display import escape
        click.echo(f"{escape(path)}: {grant.mode} ({shown}{extra})")
