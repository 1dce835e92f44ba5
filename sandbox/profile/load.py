"""Find, read, merge and validate profiles into one frozen `Profile`.

Order of precedence, lowest first: the schema's defaults, the root of the
``extends`` chain, ..., the named profile, then command-line overrides. Every
key remembers which of those set it (``Profile.origins``).

Lookup of a profile NAME: ``<config>/profiles/NAME.toml`` (the user's), then
the bundled ``profiles/NAME.toml``. Anything containing ``/`` or ending in
``.toml`` is a path. A parent named in ``extends`` is looked up first beside
the child, then the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, NamedTuple

from .._hash import sha256
from .._resources import data_dir
from ..errors import NotFound, ProfileError
from . import schema
from .model import (FilesystemSpec, LabelSpec, LandlockSpec, LimitsSpec,
                    Namespaces, NetworkSpec, ProcessSpec, Profile, SeccompSpec,
                    Tmpfs, UserSpec)

_MAX_DEPTH = 16


class ProfileFile(NamedTuple):
    """One profile file as found: its name, path, and whether it is bundled."""

    name: str
    path: Path
    bundled: bool

    @property
    def digest(self) -> str:
        return "sha256:" + sha256(self.path.read_bytes()).hexdigest()


def search_dirs(user_dir: Path | None) -> list[tuple[Path, bool]]:
    dirs = []
    if user_dir is not None:
        dirs.append((user_dir, False))
    dirs.append((data_dir("profiles"), True))
    return dirs


def available(user_dir: Path | None = None) -> list[ProfileFile]:
    """Every profile a name can select; a user profile hides a bundled one
    of the same name."""
    seen: dict[str, ProfileFile] = {}
    for d, bundled in search_dirs(user_dir):
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.toml")):
            seen.setdefault(p.stem, ProfileFile(p.stem, p, bundled))
    return sorted(seen.values(), key=lambda f: f.name)


def locate(ref: str, user_dir: Path | None = None, beside: Path | None = None) -> Path:
    """The file for a profile name or path; `NotFound` naming the choices."""
    if "/" in ref or ref.endswith(".toml"):
        p = Path(ref)
        if beside is not None and not p.is_absolute():
            p = beside / p
        if not p.is_file():
            raise NotFound(f"profile file {str(p)!r} does not exist",
                           hint="give an existing .toml file, or a name from 'sandbox profile list'")
        return p.resolve()
    dirs = ([(beside, False)] if beside is not None else []) + search_dirs(user_dir)
    for d, _ in dirs:
        p = d / f"{ref}.toml"
        if p.is_file():
            return p.resolve()
    import difflib  # only for this error's hint
    names = [f.name for f in available(user_dir)]
    close = difflib.get_close_matches(ref, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise NotFound(f"unknown profile {ref!r}",
                   hint=f"{hint}available: {', '.join(names)} (or give a path to a .toml file)")


def _read_toml(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProfileError(f"cannot read profile: {e.strerror}", source=str(path)) from None
    return _parse_toml(data, str(path))


def _parse_toml(data: bytes, source: str) -> dict:
    import tomllib  # not at module level: keeps `import sandbox` light
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProfileError("is not UTF-8 text", source=source) from None
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"is not valid TOML: {e}", source=source) from None


def _flatten(doc: dict, path: Path) -> dict[str, object]:
    flat: dict[str, object] = {}

    def walk(prefix: str, table: dict):
        for k, v in table.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and key not in schema.TABLE_LEAVES:
                walk(key + ".", v)
            else:
                flat[key] = v

    walk("", doc)
    return flat


def _parse_file(path: Path) -> dict[str, object]:
    """Read one file into validated dotted keys (``extends`` not applied)."""
    return _check_doc(_read_toml(path), str(path), path.parent)


def _check_doc(doc: dict, source: str, base_dir: Path) -> dict[str, object]:
    """Validate one parsed document; relative paths in it are read from ``base_dir``."""
    flat = _flatten(doc, Path(source))
    out = {}
    for key, value in flat.items():
        try:
            out[key] = schema.check(key, value, base_dir)
        except KeyError:
            import difflib  # only for this error's hint
            close = difflib.get_close_matches(key, schema.known_keys(), n=1)
            raise ProfileError(f"unknown key {key!r}", source=source, key=None,
                               hint=f"did you mean {close[0]!r}?" if close
                               else "see 'sandbox profile show default' for the keys") from None
        except ValueError as e:
            raise ProfileError(str(e), source=source, key=key) from None
    return out


def _resolve_flat(path: Path, user_dir: Path | None, chain: tuple[Path, ...],
                  name_out: dict | None = None) -> dict[str, tuple]:
    """Dotted key -> (value, origin) for ``path`` with its ``extends`` chain.
    ``name_out``, if given, gets ``path``'s own ``name`` (its ``"name"`` key)."""
    if path in chain:
        raise ProfileError("'extends' forms a cycle: " +
                           " -> ".join(str(p) for p in chain + (path,)), source=str(path),
                           key="extends")
    if len(chain) >= _MAX_DEPTH:
        raise ProfileError(f"'extends' is nested deeper than {_MAX_DEPTH}", source=str(path))
    return _resolve_own(_parse_file(path), str(path), path.parent, user_dir,
                        chain + (path,), name_out)


def _resolve_own(own: dict, origin: str, beside: Path, user_dir: Path | None,
                 chain: tuple[Path, ...], name_out: dict | None) -> dict[str, tuple]:
    """`_resolve_flat` for a document already parsed (a file, or standard input)."""
    result: dict[str, tuple] = {}
    parent = own.pop("extends", None)
    if parent is not None:
        try:
            ppath = locate(parent, user_dir, beside=beside)
        except NotFound as e:
            raise ProfileError(e.message, source=origin, key="extends", hint=e.hint) from None
        result = _resolve_flat(ppath, user_dir, chain)
    name = own.pop("name", None)
    if name_out is not None:
        name_out["name"] = name
    _apply(result, own, origin)
    return result


def _apply(result: dict[str, tuple], changes: Mapping[str, object], origin: str) -> None:
    adds = {}
    for key, value in changes.items():
        real = schema.ALIASES.get(key, key)
        for suffix in ("_add", "_remove"):
            if real.endswith(suffix) and real[: -len(suffix)] in schema.LIST_KEYS:
                adds[(real[: -len(suffix)], suffix)] = value
                break
        else:
            result[real] = (value, origin)
    for (key, suffix), value in sorted(adds.items(), key=lambda kv: kv[0][1] != "_remove"):
        current = list(result.get(key, (schema.SCHEMA[key][1], ""))[0])
        if suffix == "_add":
            current += [v for v in value if v not in current]
        else:
            current = [v for v in current if v not in value]
        result[key] = (tuple(current), origin)


def load(ref: str, *, user_dir: Path | None = None,
         overrides: Mapping[str, tuple[object, str]] | None = None) -> Profile:
    """Resolve a profile name or path into a frozen `Profile`.

    ``overrides`` maps dotted keys to ``(raw value, origin)``, for example
    ``{"process.hostname": ("web", "flag --hostname")}``; they are validated
    like file values. Raises `NotFound` or `ProfileError`.
    """
    path = locate(ref, user_dir)
    top: dict = {}
    flat = _resolve_flat(path, user_dir, (), top)
    return _finish(flat, top.get("name") or path.stem, str(path), overrides)


def loads(text: str | bytes, *, source: str = "<stdin>", base_dir: Path | None = None,
          user_dir: Path | None = None,
          overrides: Mapping[str, tuple[object, str]] | None = None) -> Profile:
    """`load` for a profile given as text (``sandbox profile validate -``).

    ``extends`` and relative paths in it are read from ``base_dir`` (the
    current folder unless given), as they would be beside a file there.
    """
    data = text.encode() if isinstance(text, str) else text
    base = Path.cwd() if base_dir is None else base_dir
    own = _check_doc(_parse_toml(data, source), source, base)
    top: dict = {}
    flat = _resolve_own(own, source, base, user_dir, (), top)
    return _finish(flat, top.get("name") or "stdin", source, overrides)


def _finish(flat: dict, name: str, source: str,
            overrides: Mapping[str, tuple[object, str]] | None) -> Profile:
    for key, (value, origin) in (overrides or {}).items():
        try:
            checked = schema.check(key, value, Path.cwd())
        except (KeyError, ValueError) as e:
            raise ProfileError(str(e), source=origin) from None
        _apply(flat, {key: checked}, origin)
    return build(name, source, flat)


def build(name: str, source: str, flat: Mapping[str, tuple]) -> Profile:
    """Turn resolved dotted keys into the frozen `Profile` (defaults filled in)."""
    def get(key):
        if key in flat:
            return flat[key][0]
        return schema.SCHEMA[key][1]

    seccomp_profile = get("seccomp.profile")
    tmpfs = []
    for spec in get("filesystem.tmpfs"):
        path, _, opts = spec.partition(":")
        tmpfs.append(Tmpfs(path, opts))
    prof = Profile(
        name=name,
        description=get("description"),
        source=source,
        namespaces=Namespaces(**{n: get(f"namespaces.{n}") for n in
                                 ("user", "pid", "mount", "net", "uts", "ipc", "cgroup")}),
        user=UserSpec(get("user.uid"), get("user.gid"), get("user.map")),
        capabilities=frozenset(get("capabilities.retain")),
        seccomp=SeccompSpec(
            profile=None if seccomp_profile in (None, "unconfined") else seccomp_profile,
            unconfined=seccomp_profile in (None, "unconfined"),
            default_action=get("seccomp.default_action"),
            other_abis=get("seccomp.other_abis")),
        filesystem=FilesystemSpec(
            read_only_root=get("filesystem.read_only_root"),
            tmpfs=tuple(tmpfs),
            masked_paths=tuple(get("filesystem.masked_paths")),
            read_only_paths=tuple(get("filesystem.read_only_paths")),
            allow_setuid=get("filesystem.allow_setuid")),
        label=LabelSpec(get("label.user"), get("label.role"), get("label.type"),
                        get("label.level"), get("label.allow_unlabelled_ro")),
        network=NetworkSpec(get("network.mode"), tuple(get("network.allow")),
                            tuple(get("network.deny"))),
        limits=LimitsSpec(memory=get("limits.memory"), pids=get("limits.pids"),
                          nofile=get("limits.nofile"), nproc=get("limits.nproc"),
                          fsize=get("limits.fsize"), core=get("limits.core"),
                          cpus=get("limits.cpus")),
        process=ProcessSpec(env=tuple(get("process.env")), workdir=get("process.workdir"),
                            hostname=get("process.hostname"),
                            no_new_privs=get("process.no_new_privs")),
        landlock=LandlockSpec(get("landlock.enabled")),
        optional=frozenset(get("optional")),
        origins=tuple(sorted((k, o) for k, (_, o) in flat.items())),
    )
    # the limits for untrusted work (issue 15), kept apart from the
    # constructor above so other branches' fields merge beside them
    return prof._replace(limits=prof.limits._replace(
        timeout=get("limits.timeout"), cpu_time=get("limits.cpu_time"),
        address_space=get("limits.address_space"), ulimits=tuple(get("limits.ulimits"))))
