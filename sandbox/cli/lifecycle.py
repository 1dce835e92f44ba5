"""``sandbox ps``, ``status``, ``stop``, ``logs``, ``rm``, ``gc`` and ``enter``
(issue 6): thin wrappers over `sandbox.lifecycle`.

Exit statuses: 0 success; 1 an unknown id or name, an ambiguous prefix, a
sandbox in the wrong state (stopping a stopped one); 2 usage. ``enter``
returns the command's status (126/127 when it cannot be run).
"""

from __future__ import annotations

import json
import sys

import click

_CTX = {"help_option_names": ["-h", "--help"]}


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: list[list[str]]) -> None:
    # ps: the id stays whole; the free-text columns wrap to fit the terminal
    from ._table import Col, format_table
    give = {"STARTED": (2, 10), "LABEL": (2, 8), "NAME": (1, 8), "IMAGE/ROOT": (1, 10),
            "PROFILE": (1, 8)}
    cols = [Col(h, *give.get(h, (0, 0))) for h in rows[0]]
    for line in format_table(cols, rows[1:]):
        click.echo(line)


@click.command(context_settings=_CTX)
@click.option("-a", "--all", "show_all", is_flag=True,
              help="Also exited and refused sandboxes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def ps(obj, show_all, as_json):
    """List sandboxes: running ones (and dead ones, whose supervisor died:
    run 'sandbox gc'); with --all, exited and refused ones too."""
    from .. import lifecycle as lc
    items = lc.list(obj.paths, all=show_all)
    if as_json:
        _echo_json(items)
        return 0
    rows = [["ID", "NAME", "PROFILE", "IMAGE/ROOT", "STATE", "STARTED", "LABEL", "NET"]]
    for i in items:
        rows.append([i["id"], i["name"] or "-", i["profile"] or "-",
                     i["image"] or i["root"] or "-", lc.describe_state(i),
                     i["started"] or i["created"] or "-", i["label"] or "-",
                     i["network"] or "-"])
    _table(rows)
    return 0


@click.command(context_settings=_CTX)
@click.argument("ref", metavar="ID|NAME")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj, ref, as_json):
    """Show one sandbox: state, pids, exit status and the payload's
    effective kernel state read back from /proc now."""
    from .. import lifecycle as lc
    from ..display import escape
    s = lc.status(obj.paths, lc.resolve(obj.paths, ref))
    if as_json:
        _echo_json(s)
        return 0
    for key in ("id", "name", "profile", "image", "root", "command", "label", "network",
                "created", "started", "finished", "pid", "pid1", "supervisor_pid", "log",
                "error"):
        v = s.get(key)
        if key == "command" and v:
            v = " ".join(v)
        click.echo(f"{key + ':':<16}{escape(v) if v is not None else '-'}")
    click.echo(f"{'state:':<16}{lc.describe_state(s)}")
    eg = s.get("egress")
    if eg:
        click.echo(f"{'egress:':<16}{eg.get('allowed', 0)} allowed, {eg.get('denied', 0)} "
                   f"denied, {eg.get('failed', 0)} failed; {eg.get('bytes_in', 0)} bytes in, "
                   f"{eg.get('bytes_out', 0)} out")
    eff = s.get("effective") or {}
    for key in ("CapEff", "CapBnd", "NoNewPrivs", "Seccomp"):
        if key in eff:
            click.echo(f"{key + ':':<16}{escape(eff[key])}")
    return 0


@click.command(context_settings=_CTX)
@click.argument("ref", metavar="ID|NAME")
@click.option("-t", "--time", "grace", type=click.FloatRange(min=0), default=10.0,
              show_default=True, metavar="SECONDS",
              help="Grace time between SIGTERM and SIGKILL.")
@click.pass_obj
def stop(obj, ref, grace):
    """Stop a running sandbox: SIGTERM to its payload, SIGKILL after the
    grace time; everything of it is torn down."""
    from .. import lifecycle as lc
    rec = lc.stop(obj.paths, lc.resolve(obj.paths, ref), grace)
    click.echo(rec["id"])
    return 0


@click.command(context_settings=_CTX)
@click.argument("ref", metavar="ID|NAME")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the sandbox ends.")
@click.pass_obj
def logs(obj, ref, follow):
    """Print the payload's output (stdout and stderr) of a detached sandbox."""
    from .. import lifecycle as lc
    rec = lc.resolve(obj.paths, ref)
    out = sys.stdout.buffer

    def write(b):
        out.write(b)
        out.flush()
    if follow:
        lc.follow_logs(obj.paths, rec, write)
    else:
        write(lc.read_logs(obj.paths, rec))
    return 0


@click.command(context_settings=_CTX)
@click.argument("refs", metavar="ID|NAME...", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Stop it first if it runs.")
@click.pass_obj
def rm(obj, refs, force):
    """Remove exited sandboxes: their records and logs."""
    from .. import lifecycle as lc
    for ref in refs:
        rec = lc.resolve(obj.paths, ref)
        lc.rm(obj.paths, rec, force)
        click.echo(rec["id"])
    return 0


@click.command(context_settings=_CTX)
@click.option("--grace", type=click.FloatRange(min=0), default=float(30 * 60),
              show_default=True, metavar="SECONDS",
              help="Keep records of sandboxes exited less than this long ago.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@click.pass_obj
def gc(obj, grace, as_json):
    """Clean up after supervisors that died (processes, cgroups, runtime
    folders, host mounts, label reservations, network pieces, lock files)
    and remove the records of sandboxes exited longer than the grace time.

    \b
    Also:
    - writes an audit exit record ("supervisor died", status unknown) for
      each launch whose supervisor is gone without one;
    - removes id-range lock files (/run/sandbox/idmap/*.lock) no sandbox
      holds;
    - leaves leftovers younger than 60 s alone (a launch may still be
      starting) and prints each one it deferred, and why.
    """
    from .. import lifecycle as lc
    rep = lc.gc(obj.paths, grace)
    if as_json:
        _echo_json(rep)
        return 1 if rep["leftovers"] else 0
    for sid in rep["cleaned"]:
        click.echo(f"cleaned up after dead supervisor: {sid}")
    for sid in rep["removed"]:
        click.echo(f"removed: {sid}")
    for p in rep["orphans"]:
        click.echo(f"removed orphan: {p}")
    for x in rep.get("exits", ()):         # issue 14
        click.echo(f"recorded exit (supervisor died) of {x['sandbox']}: audit record {x['seq']}")
    for x in rep.get("deferred", ()):
        click.echo(f"deferred: {x['what']}: {x['why']}")
    for p in rep["leftovers"]:
        click.echo(f"sandbox: could not remove {p}", err=True)
    return 1 if rep["leftovers"] else 0


@click.command(context_settings=dict(_CTX, ignore_unknown_options=True))
@click.argument("ref", metavar="ID|NAME")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def enter(obj, ref, command):
    """Run COMMAND (default /bin/sh) inside a running sandbox: its
    namespaces, root, ids, capabilities, Landlock rules and seccomp filter.

    \b
    sandbox enter web -- ps
    """
    from .. import lifecycle as lc
    from ..errors import CommandNotExecutable, CommandNotFound
    from ..lifecycle import enter_sandbox as do_enter
    rec = lc.resolve(obj.paths, ref)
    try:
        return do_enter(obj.paths, rec, list(command) or ["/bin/sh"])
    except (CommandNotFound, CommandNotExecutable) as e:
        from ..display import escape
        for line in e.lines():
            click.echo(f"sandbox: {escape(line)}", err=True)
        return e.run_status
