"""The resolved profile kept as a template between launches (issue 10,
the CLI path): a launch whose profile, overrides and host facts are those
of an earlier one reads the resolved `Profile` back instead of reading,
merging and validating TOML again (``tomllib`` alone is ~4-15 ms of a
cold launch). Only per-launch values (id, leases, argv) are filled in
later, by the leases and build stages.

Key: what the profile depends on, in two parts.

1. In the file name (a digest): the profile reference, the command line's
   overrides (hostname, workdir, user, network, env), the caller's ids,
   the working folder when the reference is a relative path, the format
   version and the stamp of the code that resolves profiles.
2. Inside the entry, checked at every hit: ``(path, device, inode, size,
   mtime_ns)`` of every profile file of the ``extends`` chain, of the
   seccomp JSON it names and of every folder a name is looked up in (a new
   user profile that hides a bundled one changes its folder). One stat each;
   any difference is a miss, and the entry is rewritten.

The entries live in the state folder (0700, the caller's own: the same
trust as the seccomp cache and the audit key there), written atomically
(temporary file, then rename). They are pickles of the frozen values; an
entry that does not load is a miss.
"""

from __future__ import annotations

import os

#: bump when the entry's format or what it holds changes
VERSION = 1


def _stamp() -> tuple:
    """The code that resolves profiles: its files' sizes and mtimes."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for rel in ("profile/load.py", "profile/schema.py", "profile/model.py",
                "launch/resolve.py", "launch/_template.py"):
        try:
            st = os.stat(os.path.join(here, rel))
            out.append((rel, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((rel, None, None))
    return tuple(out)


def _fingerprint(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def key_of(request, user_dir) -> str:
    """The file name of the entry for ``request`` (part 1 of the key)."""
    from .._hash import sha256
    ref = request.profile
    rel = ("/" in ref or ref.endswith(".toml")) and not os.path.isabs(ref)
    parts = (VERSION, _stamp(), ref, os.getcwd() if rel else None, str(user_dir),
             request.hostname, request.workdir, request.user, request.network,
             request.env, os.geteuid(), os.getegid(), request.limits, request.ulimits,
             request.profile_overrides)
    return sha256(repr(parts).encode()).hexdigest()[:32]


def dependencies(profile, request, user_dir) -> tuple:
    """Part 2 of the key: the fingerprints of every file and folder the
    resolved ``profile`` was made from. Called on a miss only."""
    import tomllib
    from pathlib import Path

    from ..profile.load import locate, search_dirs
    files: list[str] = []
    folders = {str(d) for d, _ in search_dirs(user_dir)}
    path = Path(profile.source)
    seen: set = set()
    while path not in seen and len(seen) < 32:
        seen.add(path)
        files.append(str(path))
        folders.add(str(path.parent))
        parent = tomllib.loads(path.read_text()).get("extends")
        if not isinstance(parent, str):
            break
        path = locate(parent, user_dir, beside=path.parent)
    if profile.seccomp.profile:
        files.append(profile.seccomp.profile)
    return tuple(_fingerprint(p) for p in files + sorted(folders))


def load(paths, request):
    """The resolved profile of an earlier launch, or None (a miss)."""
    name = os.path.join(str(paths.state), "cache", "launch", key_of(request,
                                                                    paths.user_profiles))
    try:
        with open(name, "rb") as f:
            data = f.read()
        import pickle
        entry = pickle.loads(data)
        deps, profile = entry["deps"], entry["profile"]
    except Exception:  # noqa: BLE001 - absent, unreadable or stale format: a miss
        return None
    for fp in deps:
        if _fingerprint(fp[0]) != tuple(fp):
            return None
    return profile


def store(paths, request, profile) -> None:
    """Keep ``profile`` for the next launches of ``request`` (best effort:
    a launch never fails because its template cannot be written)."""
    try:
        import pickle
        deps = dependencies(profile, request, paths.user_profiles)
        folder = os.path.join(str(paths.state), "cache", "launch")
        paths.ensure("state")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        name = os.path.join(folder, key_of(request, paths.user_profiles))
        tmp = f"{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, pickle.dumps({"deps": deps, "profile": profile},
                                      protocol=pickle.HIGHEST_PROTOCOL))
        finally:
            os.close(fd)
        os.replace(tmp, name)
    except Exception:  # noqa: BLE001 - the cache is an optimisation only
        try:
            os.unlink(tmp)      # type: ignore[possibly-undefined]
        except Exception:  # noqa: BLE001
            pass
