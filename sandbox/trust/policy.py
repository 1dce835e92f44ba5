"""Trust from containers' own ``policy.json`` (containers-policy.json(5)),
imported into the trust store (issue 12).

Why an import (`sandbox trust import-policy FILE`) and not a live read of
``/etc/containers/policy.json`` at every launch: every change of what
``sandbox`` trusts is a reviewed, audited event (DESIGN §4, §6; ``trust
add`` asks before trusting). A live read would let an edit of a file
outside the trust store change which images run with no audit record and no
question asked, and would make one launch's decision depend on a file the
audit log never saw. Importing shows what will be trusted, asks, writes the
keys through the same code as ``trust add`` (one audit event per key), and
remembers where each came from, so every decision names its source
(``policy.json FILE scope SCOPE``).

What maps, per transport ``docker`` and ``atomic`` (both name docker
references, as the image store does) and the ``default`` entry:

=====================================  ======================================
requirement                            imported as
=====================================  ======================================
``signedBy`` ``GPGKeys`` with          each key trusted for the scope as a
``keyPath``, ``keyPaths`` or           prefix (``""``/``default``: every
``keyData``; ``signedIdentity``        name); one key per file
absent or ``matchRepoDigestOrExact``
``insecureAcceptAnything``             nothing: sandbox never accepts
                                       unsigned images by configuration
                                       (``--insecure-options=image`` per run)
``reject``                             nothing: what no key signs is refused
=====================================  ======================================

Not imported, each listed with its reason: other transports (their scopes
are paths, not names), scopes with a tag, a digest or a ``*.`` wildcard,
other ``signedIdentity`` rules (``matchExact``, ``matchRepository``,
``exactReference``, ``exactRepository``, ``remapIdentity``), ``sigstoreSigned``,
and a scope that requires several signatures at once. A ``reject`` or
``insecureAcceptAnything`` under a prefix whose parent has keys is noted:
trust prefixes add up, so the parent's keys still apply below it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ArtifactError, UsageError
from ..paths import Paths

_SOURCES = "policy-sources.json"
_NAME_TRANSPORTS = ("docker", "atomic")


@dataclass(frozen=True)
class PlannedKey:
    scope: str                 # "" for every name, else a trust prefix
    candidate: object          # keys.KeyCandidate
    origin: str                # "policy.json FILE scope SCOPE"


@dataclass
class PolicyImport:
    source: str
    keys: list = field(default_factory=list)
    skipped: list = field(default_factory=list)    # (where, why)


def _load(path: Path) -> dict:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read policy {path}: {e.strerror}") from None
    if len(data) > 4 << 20:
        raise ArtifactError(f"policy {path} is larger than 4 MiB")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"policy {path} is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("default"), list):
        raise ArtifactError(f"policy {path} has no 'default' list of requirements",
                            hint="see containers-policy.json(5)")
    return doc


def _scope_prefix(scope: str) -> str | None:
    """A docker scope (``host[:port][/namespace...]``, fully qualified as
    containers-policy.json(5) requires) as a trust prefix; None when it
    cannot be one (a tag, a digest, a wildcard, no host, upper case)."""
    from .names import parse_prefix
    if scope.startswith("*.") or "@" in scope or scope != scope.lower():
        return None
    first = scope.split("/", 1)[0]
    if not ("." in first or ":" in first or first == "localhost"):
        return None
    try:
        return "/".join(parse_prefix(scope))
    except UsageError:
        return None


def _key_blobs(req: dict, base: Path, where: str, skipped: list) -> list[tuple[bytes, str]]:
    out = []
    paths = []
    if isinstance(req.get("keyPath"), str):
        paths.append(req["keyPath"])
    if isinstance(req.get("keyPaths"), list):
        paths += [p for p in req["keyPaths"] if isinstance(p, str)]
    for p in paths:
        full = (base / p) if not p.startswith("/") else Path(p)
        try:
            out.append((full.read_bytes(), f"key file {full}"))
        except OSError as e:
            skipped.append((where, f"key file {full}: {e.strerror}"))
    if isinstance(req.get("keyData"), str):
        try:
            out.append((base64.b64decode(req["keyData"], validate=True), "keyData"))
        except ValueError:
            skipped.append((where, "keyData is not base64"))
    if not out and not paths and "keyData" not in req:
        skipped.append((where, "signedBy names no keyPath, keyPaths or keyData"))
    return out


def plan_policy_import(path: str | Path) -> PolicyImport:
    """Read ``path`` and decide what importing it would trust (nothing is
    written). Raises `UsageError`/`ArtifactError` for an unreadable or
    malformed file; each requirement that cannot be imported is listed in
    ``skipped`` with its reason."""
    from . import keys
    path = Path(path)
    doc = _load(path)
    plan = PolicyImport(source=str(path))
    entries = [("default", "", doc["default"])]
    transports = doc.get("transports") or {}
    if not isinstance(transports, dict):
        raise ArtifactError(f"policy {path}: 'transports' is not an object")
    for tname, scopes in sorted(transports.items()):
        if not isinstance(scopes, dict):
            raise ArtifactError(f"policy {path}: transport {tname!r} is not an object")
        for scope, reqs in sorted(scopes.items()):
            where = f"transport {tname} scope {scope!r}"
            if tname not in _NAME_TRANSPORTS:
                plan.skipped.append((where, "not a docker-reference transport; its scopes "
                                            "are not image names"))
                continue
            entries.append((where, scope, reqs))
    for where, scope, reqs in entries:
        if not isinstance(reqs, list) or not reqs:
            plan.skipped.append((where, "requirements must be a non-empty list"))
            continue
        prefix = "" if scope == "" else _scope_prefix(scope)
        if prefix is None:
            plan.skipped.append((where, "a scope with a tag, a digest, a wildcard or no "
                                        "host name is not a trust prefix"))
            continue
        kinds = [r.get("type") if isinstance(r, dict) else None for r in reqs]
        if "reject" in kinds:
            plan.skipped.append((where, "reject: nothing to trust (what no key signs is "
                                        "refused; keys of a parent prefix still apply)"))
            continue
        signed = [r for r in reqs if isinstance(r, dict) and r.get("type") == "signedBy"]
        others = [k for k in kinds if k not in ("signedBy", "insecureAcceptAnything")]
        if others:
            plan.skipped.append((where, f"requirement {others[0]!r} is not supported"))
            continue
        if not signed:
            plan.skipped.append((where, "insecureAcceptAnything: sandbox never accepts "
                                        "unsigned images by configuration; use "
                                        "--insecure-options=image per run"))
            continue
        if len(signed) > 1:
            plan.skipped.append((where, "several signedBy requirements at once (all must "
                                        "hold) cannot be expressed as trust prefixes"))
            continue
        req = signed[0]
        if req.get("keyType") != "GPGKeys":
            plan.skipped.append((where, f"keyType {req.get('keyType')!r} is not GPGKeys"))
            continue
        ident = req.get("signedIdentity")
        if ident is not None and (not isinstance(ident, dict)
                                  or ident.get("type") != "matchRepoDigestOrExact"):
            t = ident.get("type") if isinstance(ident, dict) else ident
            plan.skipped.append((where, f"signedIdentity {t!r}: only matchRepoDigestOrExact "
                                        "(the default) is how sandbox matches names"))
            continue
        for blob, what in _key_blobs(req, path.parent, where, plan.skipped):
            try:
                cand = keys.inspect_key_file(blob, source=f"{what} ({where})")
            except ArtifactError as e:
                plan.skipped.append((where, e.message))
                continue
            shown = "default" if where == "default" else scope
            plan.keys.append(PlannedKey(prefix, cand, f"policy.json {path} scope {shown!r}"))
    return plan


def apply_policy_import(paths: Paths, plan: PolicyImport, *, store=None) -> list:
    """Trust the planned keys (through `keys.add_key`: atomic writes, one
    audit event each) and remember each one's origin. Returns the files
    written."""
    from . import keys
    written = []
    sources = load_sources(paths)
    for k in plan.keys:
        written.append(keys.add_key(paths, k.candidate, prefix=k.scope or None,
                                    root=not k.scope, store=store))
        sources[f"{k.scope or 'root'}\0{k.candidate.fingerprint}"] = k.origin
    _save_sources(paths, sources)
    return written


def _sources_path(paths: Paths) -> Path:
    return Path(paths.trustedkeys) / _SOURCES


def load_sources(paths: Paths) -> dict:
    try:
        d = json.loads(_sources_path(paths).read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_sources(paths: Paths, sources: dict) -> None:
    import os
    p = _sources_path(paths)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = p.with_name(f".{p.name}.{os.getpid()}")
    tmp.write_text(json.dumps(sources, sort_keys=True, indent=1))
    os.replace(tmp, p)


def source_of(paths: Paths, entry: str, fingerprint: str) -> str:
    """Where the trust that allowed a decision came from: ``policy.json FILE
    scope S`` for imported keys, else ``trust store prefix P`` / ``trust
    store: every name``."""
    origin = load_sources(paths).get(f"{entry}\0{fingerprint}")
    if origin:
        return origin
    return "trust store: every name" if entry == "root" else f"trust store prefix {entry}"
