"""``sandbox run``: its one option table, the small parser made from it,
and the command's body, shared by both paths.

`RUN_OPTIONS` declares every option of ``run`` once: its spellings, the
keyword it fills, whether it takes a value or repeats, its metavar and
help. Both parsers are made from it: the click command in
`sandbox.cli.run` (help, error messages) and `parse_fast` here, which
handles the forms a script uses without importing click (~25 ms of a
launch). Adding an option is one entry in the table plus its use in
`execute`; nothing else declares it.

`parse_fast` returns None for anything it does not handle (``--help``, an
unknown or malformed option, a second positional): the click command
takes over and explains. Values are never checked here: both paths hand
them to `execute`, which checks them once (`sandbox.launch.request`), so
a bad value gets the same message whichever parser read it.
"""

from __future__ import annotations

import sys
from typing import NamedTuple


class Opt(NamedTuple):
    """One option of ``run``: ``names`` (``--long`` first), the keyword of
    `execute` it fills, a value or a flag, repeatable or not."""

    names: tuple[str, ...]
    dest: str
    takes_value: bool = True
    multiple: bool = False
    metavar: str | None = None
    help: str = ""
    default: object = None

    @property
    def initial(self):
        """The value when the option is absent."""
        if self.multiple:
            return ()
        if not self.takes_value:
            return False
        return self.default


#: Every option of ``sandbox run``, in the order ``--help`` lists them.
RUN_OPTIONS: tuple[Opt, ...] = (
    Opt(("--profile", "-p"), "profile", metavar="NAME|PATH", default="default",
        help="Profile name (see 'sandbox profile list') or path to a TOML file."),
    Opt(("--rootfs",), "rootfs", metavar="DIR",
        help="Use DIR as the root file system (never modified)."),
    Opt(("--volume", "-v"), "volumes", multiple=True, metavar="SRC:DST[:ro|rw][,z|Z]",
        help="Bind a host path into the sandbox (read-only unless :rw; :Z relabels it "
             "private to this sandbox, see 'sandbox label')."),
    Opt(("--name",), "name", help="A name for this sandbox."),
    Opt(("--hostname",), "hostname", help="Host name inside the sandbox."),
    Opt(("--env", "-e"), "env", multiple=True, metavar="K=V",
        help="Set an environment variable (the caller's environment is not inherited)."),
    Opt(("--workdir", "-w"), "workdir", metavar="DIR", help="Working folder inside the sandbox."),
    Opt(("--user", "-u"), "user", metavar="USER[:GROUP]",
        help="User (and group) inside: numbers, or names from the sandbox root's "
             "/etc/passwd and /etc/group."),
    Opt(("--net",), "network", metavar="none|host|bridge[:NAME]|allow:HOST[,HOST...]",
        help="Network mode (default: the profile's, usually none). bridge (root only): "
             "an address on the Linux bridge NAME (default sandbox0). allow: only the "
             "named destinations (NAME, *.DOMAIN, IP, each [:PORT]) through an HTTP/SOCKS5 "
             "proxy outside the sandbox; every connection is audited."),
    Opt(("--port",), "ports", multiple=True, metavar="[HOSTIP:]HOSTPORT:PORT[/tcp|udp]",
        help="With --net bridge: forward a host port (default HOSTIP: the bridge's "
             "address) to PORT in the sandbox."),
    Opt(("--allow-host",), "allow_host", multiple=True, metavar="PORT[/tcp|udp]",
        help="With --net bridge: let the sandbox connect to this port of the host "
             "(by default a bridged sandbox reaches no service of the host)."),
    Opt(("--dns",), "dns", multiple=True, metavar="IP",
        help="With --net bridge: a name server for the sandbox's /etc/resolv.conf "
             "(default: the host's, unless they are loopback addresses)."),
    Opt(("--insecure-options",), "insecure", metavar="LIST", default="",
        help="Comma-separated protections to skip; 'image' runs an unverified image, "
             "'userns' accepts a user map that gives the sandbox host root. "
             "Recorded in the audit log."),
    Opt(("--timeout",), "timeout", metavar="DURATION",
        help="Stop the sandbox after DURATION (30s, 5m, 1h): SIGTERM, then SIGKILL "
             "2s later; exit status 124, as timeout(1). Not yet with --detach."),
    Opt(("--cpus",), "cpus", metavar="N",
        help="CPUs' worth of time the sandbox may use (0.5: half a CPU), through the "
             "cgroup cpu controller."),
    Opt(("--memory", "-m"), "memory", metavar="SIZE",
        help="Memory limit (512M, 1G) through the memory cgroup; rootless on cgroup v1: "
             "RLIMIT_AS instead (said at launch)."),
    Opt(("--pids-limit",), "pids_limit", metavar="N",
        help="Most processes at once (-1: unlimited) through the pids cgroup; rootless on "
             "cgroup v1: RLIMIT_NPROC instead (said at launch)."),
    Opt(("--ulimit",), "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]",
        help="An rlimit as Docker's --ulimit (nofile, nproc, cpu, as, fsize, core, ...); "
             "-1 is unlimited."),
    Opt(("--entrypoint",), "entrypoint", metavar="CMD",
        help="Run CMD first (the image's Entrypoint replaced, its Cmd dropped); '' "
             "clears the image's."),
    Opt(("--env-file",), "env_files", multiple=True, metavar="FILE",
        help="Read NAME=VALUE lines (NAME alone: the caller's value) before --env."),
    Opt(("--cap-add",), "cap_add", multiple=True, metavar="CAP",
        help="Keep capability CAP besides the profile's (CAP_NET_RAW or NET_RAW)."),
    Opt(("--cap-drop",), "cap_drop", multiple=True, metavar="CAP",
        help="Drop capability CAP from the profile's; ALL drops every one."),
    Opt(("--security-opt",), "security_opt", multiple=True, metavar="OPT",
        help="seccomp=FILE (an OCI/Docker seccomp JSON), seccomp=unconfined, "
             "label=level:LEVEL (an MCS level, e.g. s0:c1,c2), no-new-privileges."),
    Opt(("--tmpfs",), "tmpfs", multiple=True, metavar="DST[:OPTS]",
        help="A tmpfs at DST (OPTS: size, mode, uid, gid, noexec, nosuid, nodev)."),
    Opt(("--read-only",), "read_only", takes_value=False,
        help="Mount the root file system read-only (the profile's default)."),
    Opt(("--read-write",), "read_write", takes_value=False,
        help="Leave the root file system writable (an overlay; the lower folders never "
             "change)."),
    Opt(("--interactive", "-i"), "interactive", takes_value=False,
        help="Keep stdin open: the payload reads the caller's stdin (without it, "
             "/dev/null, as Docker)."),
    Opt(("--rm",), "rm", takes_value=False,
        help="Remove the sandbox when it exits (always so without --detach; not yet "
             "with --detach: 'sandbox rm ID' once it has exited)."),
    Opt(("--dry-run",), "dry_run", takes_value=False,
        help="Print the launch plan and exit; touch nothing."),
    Opt(("--json",), "as_json", takes_value=False, help="With --dry-run: the plan as JSON."),
    Opt(("--detach", "-d"), "detach", takes_value=False,
        help="Print the sandbox id and leave it running under a daemon supervisor "
             "(see 'sandbox ps', 'logs', 'stop', 'enter')."),
)


def option_index(options=RUN_OPTIONS) -> dict[str, Opt]:
    """Every spelling -> its `Opt`."""
    return {name: o for o in options for name in o.names}


#: spelling -> (keyword, takes a value, repeatable), derived from the table
OPTIONS = {name: (o.dest, o.takes_value, o.multiple) for name, o in option_index().items()}


def defaults(options=RUN_OPTIONS) -> dict:
    """The keyword arguments of `execute` when no option is given."""
    return {"image": None, **{o.dest: o.initial for o in options}}


def parse_fast(args: list[str], options=RUN_OPTIONS) -> dict | None:
    """``[--root DIR] [--debug] run [OPTIONS] [IMAGE] [-- CMD...]`` to keyword
    arguments of `execute`, or None to let click parse (and explain)."""
    index = option_index(options) if options is not RUN_OPTIONS else _INDEX
    out = dict(defaults(options), root=None, argv=None)
    multi: dict[str, list] = {o.dest: [] for o in options if o.multiple}
    i, n = 0, len(args)
    while i < n and args[i] != "run":            # the group's own options
        a = args[i]
        if a == "--root" and i + 1 < n:
            out["root"], i = args[i + 1], i + 2
        elif a.startswith("--root="):
            out["root"], i = a.split("=", 1)[1], i + 1
        elif a == "--debug":
            i += 1
        else:
            return None
    i += 1
    while i < n:
        a = args[i]
        if a == "--":
            out["argv"] = args[i + 1:]
            break
        if a.startswith("-"):
            name, eq, value = a.partition("=") if a.startswith("--") else (a, "", "")
            opt = index.get(name)
            if opt is None:
                return None
            if opt.takes_value:
                if not eq:
                    if i + 1 >= n:
                        return None
                    i += 1
                    value = args[i]
                if opt.multiple:
                    multi[opt.dest].append(value)
                else:
                    out[opt.dest] = value
            elif eq:
                return None
            else:
                out[opt.dest] = True
        elif out["image"] is None:
            out["image"] = a
        else:
            return None
        i += 1
    for key, values in multi.items():
        out[key] = tuple(values)
    return out


_INDEX = option_index()


def execute(*, root, image, profile, rootfs, volumes, name, hostname, env, workdir, user,
            network, insecure, dry_run, as_json, argv, ports=(), dns=(),
            detach=False, timeout=None, cpus=None, memory=None, pids_limit=None,
            ulimits=(), entrypoint=None, env_files=(), cap_add=(), cap_drop=(),
            security_opt=(), tmpfs=(), read_only=False, read_write=False, rm=False,
            interactive=False, allow_host=()) -> int:
    """The body of ``sandbox run``; returns the exit status."""
    from ..errors import UsageError
    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run")
    if detach and dry_run:
        raise UsageError("--detach does not go with --dry-run")
    if detach and timeout is not None:
        raise UsageError("--timeout does not go with --detach yet",
                         hint="stop a detached sandbox with 'sandbox stop ID'")
    if not argv and image is None:
        raise UsageError("no command given", hint="sandbox run [OPTIONS] [IMAGE] -- CMD [ARGS...]")
    if read_only and read_write:
        raise UsageError("give either --read-only or --read-write, not both")
    if rm and detach:
        raise UsageError("--rm does not go with --detach yet",
                         hint="remove it once it has exited: sandbox rm ID")
    from ..launch.request import parse_env_file, parse_env_pairs, parse_insecure
    opts = parse_insecure(insecure)
    if opts:
        sys.stderr.write(f"sandbox: WARNING: insecure options in use: {', '.join(opts)} "
                         "(recorded in the audit log)\n")
    from ..api import Sandbox
    env_map: dict = {}
    for f in env_files:
        env_map.update(parse_env_file(f))
    env_map.update(parse_env_pairs(env))
    box = Sandbox(profile, rootfs=rootfs, image=image, volumes=volumes, name=name,
                  hostname=hostname, env=env_map, workdir=workdir, user=user,
                  root=root, insecure_options=opts, network=network, ports=ports, dns=dns,
                  timeout=timeout, cpus=cpus, memory=memory, pids_limit=pids_limit,
                  ulimits=ulimits, entrypoint=entrypoint, cap_add=cap_add, cap_drop=cap_drop,
                  security_opt=security_opt, tmpfs=tmpfs,
                  read_only=True if read_only else False if read_write else None,
                  interactive=bool(interactive), allow_host=allow_host)
    if dry_run:
        plan = box.plan(argv or ())
        if as_json:
            import json
            d = plan.to_dict()
            d["plan_digest"] = plan.digest()
            print(json.dumps(d, indent=2, sort_keys=True))
        else:
            from ..display import escape     # argv, env, paths are the user's text
            for line in plan.describe():
                print(escape(line))
            print(f"     plan digest {plan.digest()}")
        return 0
    if detach:          # lifecycle (issue 6): print the id, leave it running
        handle = box.start(argv or ())
        print(handle.id)
        return 0
    # Docker's -i: without it the payload's stdin is /dev/null, so a
    # payload cannot read what the caller types or pipes unless asked
    result = box.run(argv or (), stdin=None if interactive else -3)     # -3: DEVNULL
    return result.status
