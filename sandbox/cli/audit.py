"""``sandbox audit``: read, verify, export the audit log; compliance reports.

A thin layer: everything here calls `sandbox.audit`.
"""

from __future__ import annotations

import sys

import click

SEVERITIES = ("low", "medium", "high", "critical")
FORMATS = ("table", "markdown", "html", "json", "sarif", "junit")


def _log(ctx):
    from ..audit import AuditLog
    return AuditLog(ctx.obj.paths)


def _write(text: str, output: str | None) -> None:
    if output and output != "-":
        from ..safefs import write_output
        write_output(output, text)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


@click.group()
def audit():
    """The tamper-evident audit log, and compliance reports from it.

    \b
    sandbox audit log --since 24h            what ran, refused, changed
    sandbox audit verify                     check the hash chain and signature
    sandbox audit report --fail-on high      controls against recorded launches
    """


def _summary(rec) -> str:
    d = rec.data
    if rec.kind == "launch":
        prof = (d.get("profile") or {}).get("name", "?")
        img = d.get("image") or {}
        what = img.get("ref") or (d.get("root") or {}).get("kind", "?")
        cmd = " ".join(map(str, d.get("command") or []))
        extra = f" insecure={','.join(d['insecure_options'])}" if d.get("insecure_options") else ""
        return f"profile={prof} root={what}{extra} -- {cmd}"
    if rec.kind == "exit":
        sig = f" signal={d['signal']}" if d.get("signal") else ""
        return f"status={d.get('status')}{sig} duration={d.get('duration_ms')}ms"
    if rec.kind == "refusal":
        return f"stage={d.get('stage')} reason={d.get('reason')}: {d.get('error', '')}"
    from ..audit import canonical
    return canonical({k: v for k, v in d.items() if k != "sandbox_id"}).decode()[:160]


@audit.command("log")
@click.option("--since", metavar="WHEN", help="Only records since WHEN (24h, 7d, 2026-11-01, ISO time).")
@click.option("--sandbox", "sandbox_id", metavar="ID", help="Only records of this sandbox (id or prefix).")
@click.option("--kind", "kinds", multiple=True, metavar="K",
              help="Only records of this kind (launch, exit, refusal, trust.add, ...); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per line.")
@click.pass_context
def log_cmd(ctx, since, sandbox_id, kinds, as_json):
    """Show audit records, oldest first."""
    from ..audit import parse_when
    from ..audit import canonical
    since_t = parse_when(since) if since else None
    for rec in _log(ctx).records(since=since_t, kinds=kinds or None, sandbox=sandbox_id):
        if as_json:
            click.echo(canonical(rec.to_dict()).decode())
        else:
            from ..display import escape     # payload argv, names, paths: one line each
            sid = rec.sandbox_id or "-"
            click.echo(escape(f"{rec.seq:>6}  {rec.time[:19]}Z  {rec.kind:<15} {sid:<14} "
                              f"{_summary(rec)}"))


@audit.command("verify")
@click.option("--public-key", type=click.Path(dir_okay=False), metavar="FILE",
              help="Check the signature with this PEM public key (held apart from the host).")
@click.option("--witness", "witnesses", multiple=True, type=click.Path(dir_okay=False),
              metavar="FILE", help="A signed head from 'sandbox audit anchor export' kept "
                                   "elsewhere: fail when the log is behind it or forks from it; "
                                   "repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify_cmd(ctx, public_key, witnesses, as_json):
    """Check every record, the hash chain, the anchor and its signature,
    the key's high-water mark (a removed or restarted log fails) and any
    witnesses.

    Exit 0 when intact; 1 with the first bad sequence number otherwise.
    """
    from ..audit.verify import load_witness, verify_log
    from ..errors import CheckFailed
    result = verify_log(_log(ctx), public_key, witnesses=[load_witness(w) for w in witnesses])
    if as_json:
        import json
        click.echo(json.dumps(result.to_dict(), sort_keys=True))
    if not result.ok:
        raise CheckFailed(result.message,
                          hint="the log was changed outside sandbox, or a write was lost; "
                               "keep a copy and investigate before trusting it")
    if not as_json:
        click.echo(result.message)
        for n in result.notes:
            click.echo(f"note: {n}")


@audit.group("anchor")
def anchor_grp():
    """The signed head of the log, to keep off the host as a witness."""


@anchor_grp.command("export")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")
@click.pass_context
def anchor_export_cmd(ctx, output):
    """Write the signed head (seq, hash, time, key id, signature) as JSON.
    The log is verified first and signed to its head; ship the file
    elsewhere and later run 'sandbox audit verify --witness FILE'."""
    import json
    from ..errors import CheckFailed
    log = _log(ctx)
    result = log.verify()
    if not result.ok:
        raise CheckFailed(result.message, hint="a broken log gives no witness; investigate first")
    _write(json.dumps(log.witness(), indent=2, sort_keys=True) + "\n", output)


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")
@click.option("--since", metavar="WHEN", help="Only records since WHEN.")
@click.pass_context
def export_cmd(ctx, fmt, output, since):
    """Export records for a log collector: one canonical JSON record per line
    (seq, time, kind, data, prev, hash). The log is verified first and, when
    intact, signed to its head (a broken log is exported with a warning)."""
    from ..audit import parse_when
    from ..audit import canonical
    log = _log(ctx)
    since_t = parse_when(since) if since else None
    if log.db_path.exists():
        # Verify first (which signs the verified head), so an exported copy
        # can be checked offline to its last record; never sign unchecked.
        result = log.verify()
        if not result.ok:
            click.echo(f"sandbox: warning: {result.message}; exporting anyway", err=True)
    lines = [canonical(r.to_dict()).decode() + "\n" for r in log.records(since=since_t)]
    _write("".join(lines), output)


@audit.command("report")
@click.option("--since", metavar="WHEN", help="Judge launches since WHEN (24h, 7d, ISO date).")
@click.option("--profile", "profiles", multiple=True, metavar="P",
              help="Also judge profile P (name or path); repeatable.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--fail-on", type=click.Choice(SEVERITIES), default=None,
              help="Exit 1 when a control of this severity or higher fails.")
@click.option("--controls", "extra", multiple=True, type=click.Path(exists=True), metavar="PATH",
              help="Extra control files or folders (replace bundled ones with the same id).")
@click.option("--no-records", is_flag=True, help="Judge only the profiles, not the log.")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE instead of standard output.")
@click.pass_context
def report_cmd(ctx, since, profiles, fmt, fail_on, extra, no_records, output):
    """Evaluate the controls against recorded launches and profiles."""
    from ..audit import parse_when, render
    from ..audit.controls import load_controls
    from ..audit.report import build_report, evaluate
    from ..profile import load
    controls = load_controls(*extra)
    since_t = parse_when(since) if since else None
    resolved = [load(p, user_dir=ctx.obj.paths.user_profiles) for p in profiles]
    if no_records:
        rep = evaluate(controls, records=None, profiles=resolved, since=since_t)
    else:
        rep = build_report(_log(ctx), controls=controls, since=since_t, profiles=resolved)
    _write(render(rep, fmt), output)
    if fail_on and rep.failed(fail_on):
        failed = rep.failed(fail_on)
        click.echo(f"sandbox: {len(failed)} control(s) at or above {fail_on} failed: "
                   + ", ".join(r.control.id for r in failed), err=True)
        ctx.exit(1)


@audit.command("controls")
@click.option("--controls", "extra", multiple=True, type=click.Path(exists=True), metavar="PATH")
def controls_cmd(extra):
    """List the controls a report evaluates."""
    from ..audit.controls import load_controls
    from ._table import Col, format_table
    rows = [(c.id, c.severity, f"{c.title}  [{', '.join(c.references)}]")
            for c in load_controls(*extra)]
    for line in format_table([Col("ID"), Col("SEVERITY"), Col("TITLE", 1, 24)], rows):
        click.echo(line)
