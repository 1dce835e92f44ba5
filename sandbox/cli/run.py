"""``sandbox run``: parse flags into plain values and hand them to `Sandbox`."""

from __future__ import annotations

import click


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


@click.command(cls=_RunCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", required=False)
@click.option("-p", "--profile", default="default", show_default=True, metavar="NAME|PATH",
              help="Profile name (see 'sandbox profile list') or path to a TOML file.")
@click.option("--rootfs", metavar="DIR", help="Use DIR as the root file system (never modified).")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro|rw]",
              help="Bind a host path into the sandbox (read-only unless :rw).")
@click.option("--name", help="A name for this sandbox.")
@click.option("--hostname", help="Host name inside the sandbox.")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V",
              help="Set an environment variable (the caller's environment is not inherited).")
@click.option("-w", "--workdir", metavar="DIR", help="Working folder inside the sandbox.")
@click.option("-u", "--user", metavar="UID[:GID]", help="Numeric user (and group) inside.")
@click.option("--net", "network", metavar="none|host|bridge[:NAME]",
              help="Network mode (default: the profile's, usually none). bridge (root only): "
                   "an address on the Linux bridge NAME (default sandbox0).")
@click.option("--port", "ports", multiple=True, metavar="[HOSTIP:]HOSTPORT:PORT[/tcp|udp]",
              help="With --net bridge: forward a host port (default HOSTIP: the bridge's "
                   "address) to PORT in the sandbox.")
@click.option("--dns", "dns", multiple=True, metavar="IP",
              help="With --net bridge: a name server for the sandbox's /etc/resolv.conf "
                   "(default: the host's, unless they are loopback addresses).")
@click.option("--insecure-options", "insecure", metavar="LIST", default="",
              help="Comma-separated protections to skip; 'image' runs an unverified image, "
                   "'userns' accepts a user map that gives the sandbox host root. "
                   "Recorded in the audit log.")
@click.option("--dry-run", is_flag=True, help="Print the launch plan and exit; touch nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: the plan as JSON.")
@click.option("-d", "--detach", is_flag=True,
              help="Print the sandbox id and leave it running under a daemon supervisor "
                   "(see 'sandbox ps', 'logs', 'stop', 'enter').")
@click.pass_context
def run(ctx, image, profile, rootfs, volumes, name, hostname, env, workdir, user, network,
        ports, dns, insecure, dry_run, as_json, detach):
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
    return execute(root=ctx.obj.root, image=image, profile=profile, rootfs=rootfs,
                   volumes=volumes, name=name, hostname=hostname, env=env, workdir=workdir,
                   user=user, network=network, ports=ports, dns=dns, insecure=insecure,
                   dry_run=dry_run,
                   as_json=as_json, argv=ctx.meta.get("sandbox.command"), detach=detach)
