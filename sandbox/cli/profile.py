"""``sandbox profile``: list, show, validate and explain profiles."""

from __future__ import annotations

import json

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def profile():
    """List, show and validate sandbox profiles (TOML, DESIGN §3)."""


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
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        first = r["description"].split(". ")[0].rstrip(".")
        tag = "bundled" if r["bundled"] else "user"
        click.echo(f"{r['name']:<{width}}  {tag:<7}  {first}")


def _flatten(d, prefix=""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "env":
            yield from _flatten(v, key + ".")
        else:
            yield key, v


@profile.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(obj, name, as_json):
    """Show the resolved profile NAME, with where each value was set."""
    from ..profile import load
    p = load(name, user_dir=obj.paths.user_profiles)
    d = p.to_dict()
    if as_json:
        d["digest"] = p.digest()
        d["origins"] = dict(p.origins)
        click.echo(json.dumps(d, indent=2, sort_keys=True))
        return
    click.echo(f"# {p.name}  {p.digest()}")
    click.echo(f"# from {p.source}")
    origins = dict(p.origins)
    alias = {"capabilities": "capabilities.retain", "seccomp.unconfined": "seccomp.profile"}
    for key, value in _flatten(d):
        if key in ("name", "source"):
            continue
        origin = origins.get(alias.get(key, key), "built-in default")
        click.echo(f"{key} = {json.dumps(value)}    # {origin}")


@profile.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.pass_obj
def validate(obj, file):
    """Check a profile file, its parents and its seccomp JSON; exit 0 if valid."""
    from ..profile import load
    p = load(file if "/" in file or file.endswith(".toml") else file,
             user_dir=obj.paths.user_profiles)
    if p.seccomp.profile:
        from ..seccomp import compile_filter
        cf = compile_filter(p.seccomp.profile, capabilities=p.capabilities,
                            default_action=p.seccomp.default_action,
                            other_abis=p.seccomp.other_abis)
        extra = f"; seccomp {cf.instructions} BPF instructions"
        if cf.skipped:
            extra += f" (skipped unknown: {', '.join(cf.skipped)})"
        from ..seccomp import build_warnings     # issue 13: refuses for strict-derived
        for line in build_warnings(p, cf.bpf):
            click.echo(f"sandbox: warning: {line}", err=True)
    else:
        extra = "; WARNING: no seccomp filter (unconfined): every launch is flagged by audit reports"
    click.echo(f"{file}: valid profile {p.name!r}{extra}")
