"""``sandbox trust``: manage the keys trusted to sign images, per name prefix.

A thin layer over `sandbox.trust`; see `sandbox.trust.store` for the layout.
"""

from __future__ import annotations

import json
import sys

import click

from ..errors import NotFound, UsageError


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _group4(fpr: str) -> str:
    return " ".join(fpr[i:i + 4] for i in range(0, len(fpr), 4))


def _when(d) -> str:
    return d.strftime("%Y-%m-%d") if d else "never"


@click.group()
def trust():
    """Manage the keys trusted to sign images.

    \b
    sandbox trust add KEY.asc --prefix example.com/app   trust for that name and below
    sandbox trust add KEY.asc --root                     trust for every name
    sandbox trust list [--json]
    sandbox trust show FINGERPRINT
    sandbox trust refresh KEY.asc                        merge a revocation or new expiry
    sandbox trust remove FINGERPRINT [--prefix P | --root]
    sandbox trust import-policy /etc/containers/policy.json
    """


@trust.command("add")
@click.argument("keyfile", type=click.Path(dir_okay=False, allow_dash=False))
@click.option("--prefix", metavar="PREFIX",
              help="Trust the key for names under PREFIX (whole path components).")
@click.option("--root", "root_", is_flag=True, help="Trust the key for every name.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask; trust the key (for scripts).")
@click.pass_obj
def add(obj, keyfile, prefix, root_, yes):
    """Trust the OpenPGP public key in KEYFILE (armored or binary)."""
    from ..trust import keys, names
    if bool(prefix) == bool(root_):
        raise UsageError("give exactly one of --prefix PREFIX or --root",
                         hint="--prefix example.com/app trusts the key for that name and below")
    if prefix:
        prefix = "/".join(names.parse_prefix(prefix))
    data = _read_key_file(keyfile)
    cand = keys.inspect_key_file(data, source=f"key file {keyfile}", usable=False)
    if keys.unusable(cand.info):
        from ..trust import TrustStore
        if TrustStore(obj.paths).entries_of(cand.fingerprint):
            # A revocation (or expiry) for a key already trusted takes
            # effect now: merged into its entries, never refused.
            _refreshed(*keys.refresh_key(obj.paths, cand), keyfile)
            return
        cand = keys.inspect_key_file(data, source=f"key file {keyfile}")   # refuses
    info = cand.info
    where = "every image name (root)" if root_ else f"images named {prefix} and below"
    click.echo(f"Fingerprint: {_group4(info.fingerprint)}")
    from ..display import escape     # user ids are the key maker's text
    for uid in info.uids or ("(no user id)",):
        click.echo(f"User id:     {escape(uid)}")
    click.echo(f"Created:     {_when(info.created)}   Expires: {_when(info.expires)}")
    click.echo(f"Trust for:   {where}")
    if not yes:
        if not _stdin_is_tty():
            raise UsageError(
                f"refusing to trust key {info.fingerprint} without confirmation: "
                "there is no terminal to ask on",
                hint="check the fingerprint above, then pass --yes")
        if not click.confirm("Trust this key to sign images?", default=False):
            click.echo("Key not trusted.", err=True)
            raise click.exceptions.Exit(1)
    path = keys.add_key(obj.paths, cand, prefix=prefix, root=root_)
    click.echo(f"Trusted key {info.fingerprint} for {where} ({path}).")


def _refreshed(merged, entries, keyfile) -> None:
    from ..display import escape
    from ..trust import keys
    info = merged.info
    if info.revoked:
        state = "REVOKED: its signatures are refused from now on"
    elif keys.unusable(info):
        state = "EXPIRED: its signatures are refused from now on"
    else:
        state = f"expires {_when(info.expires)}"
    click.echo(f"Key {info.fingerprint}: merged {escape(keyfile)} into {len(entries)} trust "
               f"entr{'y' if len(entries) == 1 else 'ies'}; {state}.")


@trust.command("refresh")
@click.argument("keyfile", type=click.Path(dir_okay=False, allow_dash=False))
@click.pass_obj
def refresh(obj, keyfile):
    """Merge a newer copy of a trusted key (a revocation, a new expiry) into
    every entry that trusts it; it takes effect at the next verification."""
    from ..trust import keys
    data = _read_key_file(keyfile)
    cand = keys.inspect_key_file(data, source=f"key file {keyfile}", usable=False)
    _refreshed(*keys.refresh_key(obj.paths, cand), keyfile)


def _read_key_file(keyfile: str) -> bytes:
    """The key file's bytes (at most 2 MiB); `NotFound` naming it otherwise."""
    try:
        with open(keyfile, "rb") as f:
            return f.read(2 << 20)
    except FileNotFoundError:
        raise NotFound(f"key file {keyfile} does not exist") from None
    except OSError as e:
        raise NotFound(f"cannot read key file {keyfile}: {e.strerror}") from None


def _rows(paths):
    from ..trust import TrustStore, keys
    store = TrustStore(paths)
    out = []
    for e in store.entries():
        try:
            info = keys.key_info(paths, e.read())
        except Exception:  # an unreadable key is listed, not fatal
            info = None
        d = e.as_dict()
        d["uids"] = list(info.uids) if info else []
        d["expires"] = info.expires.isoformat() if info and info.expires else None
        d["readable"] = info is not None
        out.append((e, info, d))
    return store, out


@trust.command("import-policy")
@click.argument("policy", type=click.Path(dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Do not ask; trust the keys (for scripts).")
@click.pass_obj
def import_policy(obj, policy, yes):
    """Trust the keys of a containers policy.json (signedBy scopes).

    Shows what would be trusted and what cannot be imported (with why),
    asks, then trusts each key for its scope as `trust add` does (audited).
    See docs/images.md for why this is an import and not a live read."""
    from ..trust import policy as pol
    plan = pol.plan_policy_import(policy)
    for k in plan.keys:
        where = k.scope or "every name (root)"
        uid = k.candidate.info.uids[0] if k.candidate.info.uids else "(no user id)"
        click.echo(f"trust {k.candidate.fingerprint} for {where}  ({uid}; {k.origin})")
    for where, why in plan.skipped:
        click.echo(f"skip  {where}: {why}")
    if not plan.keys:
        click.echo(f"{policy}: nothing to trust.")
        return
    if not yes:
        if not _stdin_is_tty():
            raise UsageError(f"refusing to trust the keys of {policy} without confirmation: "
                             "there is no terminal to ask on",
                             hint="check the keys above, then pass --yes")
        if not click.confirm(f"Trust these {len(plan.keys)} key(s) to sign images?",
                             default=False):
            click.echo("Nothing trusted.", err=True)
            raise click.exceptions.Exit(1)
    pol.apply_policy_import(obj.paths, plan)
    click.echo(f"Trusted {len(plan.keys)} key(s) from {policy}.")


@trust.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(obj, as_json):
    """List trusted keys: fingerprint, scope (root or prefix), layer."""
    store, rows = _rows(obj.paths)
    if as_json:
        click.echo(json.dumps({"generation": store.generation(),
                               "keys": [d for _e, _i, d in rows]}, indent=2))
        return
    if not rows:
        click.echo("No trusted keys. Add one with `sandbox trust add KEYFILE --prefix PREFIX`.")
        return
    from ._table import Col, format_table
    table = []
    for e, info, d in rows:
        scope = "(every name)" if e.is_root else e.scope
        uid = info.uids[0] if info and info.uids else ("(unreadable)" if not info else "")
        from ..display import escape    # issue 13 item 8: scope and user id are untrusted text
        table.append((e.fingerprint, e.layer, _when(info.expires) if info else "?",
                      escape(scope), escape(uid)))
    # The fingerprint is never cut or wrapped (it is compared and copied);
    # in a narrow terminal the user id goes on a line of its own under it.
    from ._table import natural_width, terminal_width
    cols = [Col("FINGERPRINT"), Col("LAYER"), Col("EXPIRES"), Col("FOR", 1, 12),
            Col("USER ID", 1, 16)]
    if natural_width(cols, table) <= terminal_width():
        lines = format_table(cols, table)
    else:
        lines = format_table(cols[:4], [t[:4] for t in table],
                             notes=[f"user id: {t[4]}" if t[4] else "" for t in table])
    for line in lines:
        click.echo(line)


@trust.command("show")
@click.argument("fingerprint")
@click.pass_obj
def show(obj, fingerprint):
    """Show one trusted key: user ids, expiry, subkeys, where it is trusted."""
    from ..trust import TrustStore, keys, names
    fpr = names.normalize_fingerprint(fingerprint)
    store = TrustStore(obj.paths)
    entries = store.entries_of(fpr)
    if not entries:
        raise NotFound(f"key {fpr} is not in the trust store",
                       hint="see `sandbox trust list`")
    info = keys.key_info(obj.paths, entries[0].read())
    click.echo(f"Fingerprint: {_group4(fpr)}")
    if info:
        from ..display import escape
        for uid in info.uids:
            click.echo(f"User id:     {escape(uid)}")
        click.echo(f"Created:     {_when(info.created)}")
        click.echo(f"Expires:     {_when(info.expires)}")
        for sfpr, sexp, srev, caps in info.subkeys:
            state = " revoked" if srev else ""
            click.echo(f"Subkey:      {sfpr} [{caps}] expires {_when(sexp)}{state}")
    else:
        click.echo("(gpg cannot read this key file)")
    for e in entries:
        scope = "every name (root)" if e.is_root else f"prefix {e.scope}"
        click.echo(f"Trusted for: {scope}  [{e.layer}: {e.path}]")


@trust.command("remove")
@click.argument("fingerprint")
@click.option("--prefix", metavar="PREFIX", help="Remove only the entry for PREFIX.")
@click.option("--root", "root_", is_flag=True, help="Remove only the every-name entry.")
@click.pass_obj
def remove(obj, fingerprint, prefix, root_):
    """Stop trusting a key (everywhere, or for one prefix). A bundled
    (vendor) key is masked with an empty file in the config layer."""
    from ..trust import TrustStore, names
    if prefix and root_:
        raise UsageError("give at most one of --prefix PREFIX or --root")
    fpr = names.normalize_fingerprint(fingerprint)
    scope = "root" if root_ else prefix
    removed = TrustStore(obj.paths).remove(fpr, scope)
    for e in removed:
        what = "every name" if e.is_root else f"prefix {e.scope}"
        how = "masked vendor key" if e.layer == "vendor" else "removed"
        click.echo(f"Key {fpr}: {how} for {what}.")
