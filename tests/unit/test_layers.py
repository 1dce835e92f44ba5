"""The package layers hold (DESIGN §11, STYLE "mend as you pass").

Walks every module's imports with `ast` (nothing is imported, so no import
side effects) and checks three rules:

1. a package imports only packages of a lower layer (`LAYERS`), never one
   of its own layer or above: in particular the runtime (the executor)
   imports no ``net``, ``audit``, ``trust``, ``image``, ``launch``, and no
   lower layer calls back into the facade (``api``) or the CLI;
2. a package imports only *public* modules and names of another package
   (no ``from ..runtime._kernel import``, no ``child._drop_capabilities``):
   what two packages need is made public;
3. the known exceptions in `ALLOWED` still exist (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "sandbox"

#: layer of each top-level package or module of `sandbox`: an import must
#: go to a strictly lower layer (or stay inside its own package)
LAYERS = {
    "errors": 0, "_values": 0, "_hash": 0, "_resources": 0, "paths": 0, "capabilities": 0,
    "display": 0,
    "safefs": 1,
    "profile": 1,
    "runtime": 2,
    "seccomp": 3, "labels": 3, "net": 3,
    "audit": 4,                 # reports judge profiles' seccomp filters
    "trust": 5,
    "image": 6,
    "lifecycle": 7,
    "launch": 8,
    "oci": 8,                   # sandbox-oci: an OCI runtime over the plan and the audit log
    "hostinfo": 8,              # `sandbox version --verbose`: reads every layer below
    "api": 9,
    "cli": 10,
    "__main__": 11, "__init__": 11,
}

#: what the executor (DESIGN §11) must never import, whatever the table says
RUNTIME_FORBIDDEN = {"net", "audit", "trust", "image", "launch", "api", "cli", "lifecycle"}

#: known exceptions, each (importing module, imported name) with its owner.
#: sandbox/lifecycle/_enter.py is being replaced by the compiled executor
#: (issue 10 item 3, the runtime half), which shares the confinement steps
#: with `run`; until then it reaches into the runtime's private modules.
ALLOWED = {
    ("sandbox.lifecycle._enter", "sandbox.runtime._kernel"),
    ("sandbox.lifecycle._enter", "sandbox.runtime._landlock"),
    ("sandbox.lifecycle._enter", "sandbox.runtime._landlock.LandlockRule"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Every ``sandbox.*`` name ``path`` imports: modules, and for
    ``from X import y`` also ``X.y`` (y may be a module or a name)."""
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append(target)
            out += [f"{target}.{a.name}" for a in node.names]
    return [t for t in out if t == "sandbox" or t.startswith("sandbox.")]


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _all_imports():
    for path in sorted(PKG.rglob("*.py")):
        mod = _module_name(path)
        for target in _imports(path):
            yield mod, target


def _violations():
    bad = []
    for mod, target in _all_imports():
        src, dst = _top(mod), _top(target)
        if target == "sandbox" or src == dst:
            continue
        if src not in LAYERS or dst not in LAYERS:
            bad.append((mod, target, f"{src if src not in LAYERS else dst} has no layer"))
            continue
        if src == "runtime" and dst in RUNTIME_FORBIDDEN:
            bad.append((mod, target, "the runtime imports no net/audit/trust/image/launch"))
        elif LAYERS[dst] >= LAYERS[src]:
            bad.append((mod, target, f"{src} (layer {LAYERS[src]}) may not import "
                                     f"{dst} (layer {LAYERS[dst]})"))
        private = [p for p in target.split(".")[2:] if p.startswith("_") and p != "__init__"]
        if private:
            bad.append((mod, target, f"private {private[0]} of another package"))
    return bad


def test_every_package_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert tops - set(LAYERS) == set(), "give each new package a layer in LAYERS"


def test_imports_follow_the_layer_table():
    bad = [v for v in _violations() if (v[0], v[1]) not in ALLOWED]
    assert bad == [], "\n".join(f"{m} imports {t}: {why}" for m, t, why in bad)


def test_known_exceptions_still_exist():
    # an exception that no longer happens leaves the list
    found = {(m, t) for m, t, _ in _violations()}
    assert ALLOWED <= found, sorted(ALLOWED - found)


def test_runtime_imports_no_higher_package():
    higher = sorted({(m, t) for m, t in _all_imports()
                     if _top(m) == "runtime" and _top(t) in RUNTIME_FORBIDDEN})
    assert higher == []


@pytest.mark.parametrize("src,target,expect", [
    ("runtime", "sandbox.net", "runtime imports no"),
    ("labels", "sandbox.runtime._landlock", "private _landlock"),
    ("runtime", "sandbox.api", "runtime imports no"),
    ("net", "sandbox.labels", "may not import"),
])
def test_the_checker_catches_a_bad_import(tmp_path, monkeypatch, src, target, expect):
    # the walker itself: a planted bad import is reported
    fake = tmp_path / "sandbox"
    (fake / src).mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / src / "__init__.py").write_text("")
    mod, _, name = target.rpartition(".")
    (fake / src / "bad.py").write_text(f"from {mod} import {name}\n")
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    assert any(expect in why for _m, _t, why in _violations())
