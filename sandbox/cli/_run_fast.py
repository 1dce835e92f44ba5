"""``sandbox run`` without click: the option table, a small parser, and the
command's body, shared by both paths.

click costs ~25 ms to import, a large part of a launch. `parse_fast`
handles the forms a script uses; anything else (``--help``, an unknown or
malformed option) returns None and the click command in `run` takes over,
with its help and its error messages. A unit test checks that `OPTIONS`
and the click command declare the same options.
"""

from __future__ import annotations

import sys

#: option -> (keyword, takes a value, repeatable)
OPTIONS = {
    "--profile": ("profile", True, False), "-p": ("profile", True, False),
    "--rootfs": ("rootfs", True, False),
    "--volume": ("volumes", True, True), "-v": ("volumes", True, True),
    "--name": ("name", True, False),
    "--hostname": ("hostname", True, False),
    "--env": ("env", True, True), "-e": ("env", True, True),
    "--workdir": ("workdir", True, False), "-w": ("workdir", True, False),
    "--user": ("user", True, False), "-u": ("user", True, False),
    "--net": ("network", True, False),
    "--port": ("ports", True, True),
    "--dns": ("dns", True, True),
    "--insecure-options": ("insecure", True, False),
    "--dry-run": ("dry_run", False, False),
    "--json": ("as_json", False, False),
    "--detach": ("detach", False, False), "-d": ("detach", False, False),
}
NETWORK_MODES = ("none", "host", "bridge")
DEFAULTS = {"image": None, "profile": "default", "rootfs": None, "volumes": (), "name": None,
            "hostname": None, "env": (), "workdir": None, "user": None, "network": None,
            "ports": (), "dns": (),
            "insecure": "", "dry_run": False, "as_json": False, "detach": False}


def parse_fast(args: list[str]) -> dict | None:
    """``[--root DIR] [--debug] run [OPTIONS] [IMAGE] [-- CMD...]`` to keyword
    arguments of `execute`, or None to let click parse (and explain)."""
    out = dict(DEFAULTS, root=None, argv=None)
    multi: dict[str, list] = {"volumes": [], "env": [], "ports": [], "dns": []}
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
            spec = OPTIONS.get(name)
            if spec is None:
                return None
            key, takes, repeat = spec
            if takes:
                if not eq:
                    if i + 1 >= n:
                        return None
                    i += 1
                    value = args[i]
                if repeat:
                    multi[key].append(value)
                else:
                    out[key] = value
            elif eq:
                return None
            else:
                out[key] = True
        elif out["image"] is None:
            out["image"] = a
        else:
            return None
        i += 1
    net = out["network"]
    if net is not None and net not in NETWORK_MODES and not net.startswith("bridge:"):
        return None
    for key in ("volumes", "env", "ports", "dns"):
        out[key] = tuple(multi[key])
    return out


def _env(values) -> dict:
    from ..errors import UsageError
    env = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k:
            raise UsageError(f"bad --env {v!r}", hint="write it as NAME=VALUE")
        env[k] = val
    return env


def execute(*, root, image, profile, rootfs, volumes, name, hostname, env, workdir, user,
            network, insecure, dry_run, as_json, argv, ports=(), dns=(),
            detach=False) -> int:
    """The body of ``sandbox run``; returns the exit status."""
    from ..errors import UsageError
    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run")
    if detach and dry_run:
        raise UsageError("--detach does not go with --dry-run")
    if not argv and image is None:
        raise UsageError("no command given", hint="sandbox run [OPTIONS] [IMAGE] -- CMD [ARGS...]")
    opts = tuple(o for o in insecure.split(",") if o)
    for o in opts:
        if o not in ("image", "ondisk"):  # issue 12: ondisk
            raise UsageError(f"unknown insecure option {o!r}", hint="known: image, ondisk")
    if opts:
        sys.stderr.write(f"sandbox: WARNING: insecure options in use: {', '.join(opts)} "
                         "(recorded in the audit log)\n")
    from ..api import Sandbox
    box = Sandbox(profile, rootfs=rootfs, image=image, volumes=volumes, name=name,
                  hostname=hostname, env=_env(env), workdir=workdir, user=user,
                  root=root, insecure_options=opts, network=network, ports=ports, dns=dns)
    if dry_run:
        plan = box.plan(argv or ())
        if as_json:
            import json
            d = plan.to_dict()
            d["plan_digest"] = plan.digest()
            print(json.dumps(d, indent=2, sort_keys=True))
        else:
            for line in plan.describe():
                print(line)
            print(f"     plan digest {plan.digest()}")
        return 0
    if detach:          # lifecycle (issue 6): print the id, leave it running
        handle = box.start(argv or ())
        print(handle.id)
        return 0
    result = box.run(argv or ())
    return result.status
