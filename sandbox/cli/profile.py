"""``sandbox profile``: list, show, validate and explain profiles."""

from __future__ import annotations

import json

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def profile():
    """List, show and validate sandbox profiles (TOML files)."""


def _complete_profile(ctx, param, incomplete):
    """Profile names for shell completion (``sandbox profile show <TAB>``)."""
    from ..paths import Paths
    from ..profile import available
    user_dir = Paths.resolve(ctx.find_root().params.get("root")).user_profiles
    return [f.name for f in available(user_dir) if f.name.startswith(incomplete)]


@profile.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_(obj, as_json):
    """Profiles a run can select by name; a user profile hides a bundled one."""
    from ..profile import available
    rows = []
    for f in available(obj.paths.user_profiles):
        desc = ""
        try:
            from ..profile import load
            desc = load(str(f.path), user_dir=obj.paths.user_profiles).description
        except Exception as e:  # noqa: BLE001 - a broken profile is listed as such
            desc = f"INVALID: {getattr(e, 'message', e)}"
        rows.append({"name": f.name, "path": str(f.path), "bundled": f.bundled,
                     "description": desc})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from ._table import Col, format_table
    table = [(r["name"], "bundled" if r["bundled"] else "user",
              r["description"].split(". ")[0].rstrip(".")) for r in rows]
    for line in format_table([Col("NAME"), Col("KIND"), Col("DESCRIPTION", 1, 24)], table):
        click.echo(line)


@profile.command("show")
@click.argument("name", shell_complete=_complete_profile)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--origins/--no-origins", default=True, show_default=True,
              help="Say where each value was set, as a TOML comment on its line.")
@click.pass_obj
def show(obj, name, as_json, origins):
    """Show the resolved profile NAME as a profile file.

    The output is TOML that 'sandbox profile validate -' accepts, with every
    field spelled out and, as a comment on each line, where it was set:

    \b
    sandbox profile show default > my.toml
    sandbox profile show default | sandbox profile validate -
    """
    from ..profile import load
    p = load(name, user_dir=obj.paths.user_profiles)
    if as_json:
        d = p.to_dict()
        d["digest"] = p.digest()
        d["origins"] = dict(p.origins)
        click.echo(json.dumps(d, indent=2, sort_keys=True))
        return
    from ..profile.render import render_toml
    click.echo(render_toml(p, origins=origins), nl=False)


@profile.command("validate")
@click.argument("file", metavar="FILE|-")
@click.pass_obj
def validate(obj, file):
    """Check a profile file, its parents and its seccomp JSON.

    FILE is a path, a profile name, or - for standard input (its 'extends'
    and relative paths are then read from the current folder). Exit status:
    0 valid, 1 invalid, 2 usage (for example a file that does not exist).
    """
    import sys
    from ..errors import NotFound, ProfileError, UsageError
    from ..profile import load, loads
    try:
        if file == "-":
            p = loads(sys.stdin.buffer.read(), source="<stdin>",
                      user_dir=obj.paths.user_profiles)
        else:
            p = load(file, user_dir=obj.paths.user_profiles)
        if p.user.map == "identity" and p.namespaces.user and not p.unconfined:
            # issue 13 item 1, as the launch refuses it: run by root,
            # "identity" is host root inside the sandbox
            raise ProfileError('"identity" run by root maps the sandbox to host uid 0 '
                               '(host root)', source=p.source, key="user.map",
                               hint='use map = "auto" (a subordinate range as root, the '
                                    'caller\'s own id otherwise), or the unconfined profile '
                                    'for debugging')
        if p.seccomp.profile:
            from ..seccomp import compile_filter
            cf = compile_filter(p.seccomp.profile, capabilities=p.capabilities,
                                default_action=p.seccomp.default_action,
                                other_abis=p.seccomp.other_abis)
    except NotFound as e:
        # the file (or name) given on the command line: a usage error
        raise UsageError(e.message, hint=e.hint) from None
    except ProfileError as e:
        # an invalid profile is a failed check (1), not a usage error (2)
        click.echo("".join(f"sandbox: {line}\n" for line in e.lines()), err=True, nl=False)
        sys.exit(1)
    if p.seccomp.profile:
        extra = f"; seccomp {cf.instructions} BPF instructions"
        if cf.skipped:
            extra += f" (skipped unknown: {', '.join(cf.skipped)})"
        from ..seccomp import build_warnings     # issue 13: refuses for strict-derived
        for line in build_warnings(p, cf.bpf):
            click.echo(f"sandbox: warning: {line}", err=True)
    else:
        extra = "; WARNING: no seccomp filter (unconfined): every launch is flagged by audit reports"
    click.echo(f"{file}: valid profile {p.name!r}{extra}")
