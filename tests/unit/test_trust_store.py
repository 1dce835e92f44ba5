"""The trust store layout, layering, masking, generation and atomic writes."""

from pathlib import Path

import pytest

from sandbox.errors import ArtifactError, NotFound, UsageError
from sandbox.paths import Paths
from sandbox.trust import TrustStore, keys
from sandbox.trust.store import ROOT

C = Path("/work/shared/corpus/containers-image-signature")
FPR = "08CD26E446E2E95249B7A405E932F44B23E8DD43"
SUB = "B9F4CDB9FD8C475BFA340AC38D54A947EE396F36"


@pytest.fixture
def paths(tmp_path):
    return Paths.resolve(tmp_path / "root")


@pytest.fixture
def vendor(tmp_path):
    v = tmp_path / "vendor"
    (v / "root.d").mkdir(parents=True)
    (v / "prefix.d").mkdir()
    return v


@pytest.fixture
def store(paths, vendor):
    return TrustStore(paths, vendor=vendor)


def put_vendor(vendor, scope, fpr, data):
    d = vendor / "root.d" if scope == ROOT else vendor.joinpath("prefix.d", *scope.split("/"))
    d.mkdir(parents=True, exist_ok=True)
    (d / fpr).write_bytes(data)


def test_empty_store(store):
    assert store.entries() == []
    assert store.entries_for("example.com/app") == []


def test_add_writes_config_layer_under_prefix(paths, store):
    cand = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    p = keys.add_key(paths, cand, prefix="example.com/app", store=store)
    assert p == paths.trustedkeys / "prefix.d" / "example.com" / "app" / FPR
    assert [e.scope for e in store.entries_for("example.com/app/web")] == ["example.com/app"]
    assert store.entries_for("example.com/appx") == []
    assert store.entries_for("example.com") == []


def test_add_root_covers_every_name(paths, store):
    cand = keys.inspect_key_file((C / "public-key-1.gpg").read_bytes())  # binary form
    keys.add_key(paths, cand, root=True, store=store)
    assert [e.scope for e in store.entries_for("anything/at/all")] == [ROOT]


def test_add_needs_exactly_one_of_prefix_and_root(paths, store):
    cand = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    with pytest.raises(UsageError):
        keys.add_key(paths, cand, store=store)
    with pytest.raises(UsageError):
        keys.add_key(paths, cand, prefix="a", root=True, store=store)


def test_armored_and_binary_key_are_the_same_key():
    a = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    b = keys.inspect_key_file((C / "public-key-1.gpg").read_bytes())
    assert a.fingerprint == b.fingerprint == FPR
    assert a.info.uids == ("skopeo testing key",)


@pytest.mark.parametrize("data,words", [
    (b"hello, not a key", "not an OpenPGP"),
    (b"", "no OpenPGP public key"),
    ((C / "pubring.gpg").read_bytes(), "keys; trust them one at a time"),
    ((C / "secring.gpg").read_bytes(), "SECRET"),
    ((C / "image.signature").read_bytes(), "OpenPGP public key"),
])
def test_bad_key_files_are_refused(data, words):
    with pytest.raises(ArtifactError) as e:
        keys.inspect_key_file(data)
    assert words in e.value.message


def test_vendor_layer_is_read_and_config_replaces_it(paths, store, vendor):
    blob = (C / "public-key.gpg").read_bytes()
    put_vendor(vendor, "example.com", FPR, blob)
    (e,) = store.entries_for("example.com/x")
    assert (e.layer, e.scope) == ("vendor", "example.com")
    cand = keys.inspect_key_file(blob)
    keys.add_key(paths, cand, prefix="example.com", store=store)
    (e,) = store.entries_for("example.com/x")
    assert e.layer == "config"


def test_remove_vendor_key_writes_mask(paths, store, vendor):
    put_vendor(vendor, ROOT, FPR, (C / "public-key.gpg").read_bytes())
    assert len(store.entries()) == 1
    removed = store.remove(FPR)
    assert [(r.layer, r.scope) for r in removed] == [("vendor", ROOT)]
    mask = paths.trustedkeys / "root.d" / FPR
    assert mask.is_file() and mask.stat().st_size == 0
    assert store.entries() == []
    assert (vendor / "root.d" / FPR).stat().st_size > 0  # vendor layer untouched


def test_remove_unknown_key_is_not_found(store):
    with pytest.raises(NotFound):
        store.remove(FPR)


def test_remove_only_one_prefix(paths, store):
    cand = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    keys.add_key(paths, cand, prefix="a/b", store=store)
    keys.add_key(paths, cand, prefix="c", store=store)
    keys.add_key(paths, cand, root=True, store=store)
    store.remove(FPR, "a/b")
    assert sorted(e.scope for e in store.entries()) == ["c", ROOT]
    store.remove(FPR, ROOT)
    assert [e.scope for e in store.entries()] == ["c"]
    store.remove(FPR)
    assert store.entries() == []


def test_generation_changes_on_every_change(paths, store, vendor):
    g0 = store.generation()
    cand = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    keys.add_key(paths, cand, prefix="a", store=store)
    g1 = store.generation()
    keys.add_key(paths, keys.inspect_key_file((C / "public-key-with-subkey.gpg").read_bytes()),
                 prefix="a/b/c", store=store)
    g2 = store.generation()
    store.remove(SUB)
    g3 = store.generation()
    put_vendor(vendor, "z", FPR, (C / "public-key.gpg").read_bytes())
    g4 = store.generation()
    store.remove(FPR, "z")  # mask
    g5 = store.generation()
    assert len({g0, g1, g2, g4, g5}) == 5
    assert g3 == g1  # same content, same generation
    # a hand edit of a key file counts too
    f = paths.trustedkeys / "prefix.d" / "a" / FPR
    f.write_bytes(f.read_bytes() + b"\0")
    assert store.generation() != g5


def test_writes_leave_no_temporary_files(paths, store):
    cand = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    keys.add_key(paths, cand, prefix="a", store=store)
    keys.add_key(paths, cand, prefix="a", store=store)  # replace
    left = [p.name for p in (paths.trustedkeys / "prefix.d" / "a").iterdir()]
    assert left == [FPR]


def test_non_fingerprint_files_are_ignored(paths, store):
    d = paths.trustedkeys / "root.d"
    d.mkdir(parents=True)
    (d / "README").write_text("x")
    (d / FPR.lower()).write_bytes((C / "public-key.gpg").read_bytes())
    assert store.entries() == []


def test_audit_hook_receives_every_change(paths, store, monkeypatch):
    import sys
    import types
    events = []
    mod = types.ModuleType("sandbox.audit")
    mod.record_event = lambda p, kind, data: events.append((p, kind, data))
    monkeypatch.setitem(sys.modules, "sandbox.audit", mod)
    import sandbox
    monkeypatch.setattr(sandbox, "audit", mod, raising=False)
    cand = keys.inspect_key_file((C / "public-key.gpg").read_bytes())
    keys.add_key(paths, cand, prefix="example.com/app", store=store)
    store.remove(FPR)
    kinds = [k for _p, k, _d in events]
    assert kinds == ["trust.add", "trust.remove"]
    assert events[0][0] is paths
    assert events[0][2]["fingerprint"] == FPR and events[0][2]["scope"] == "example.com/app"
    assert events[0][2]["generation"] != events[0][2]["generation_before"]


def test_bundled_vendor_layer_exists_and_is_shaped():
    from sandbox._resources import data_dir
    k = data_dir("keys")
    assert (k / "root.d").is_dir() and (k / "prefix.d").is_dir()
    # every bundled key file is a single usable public key named by its fingerprint
    for f in list((k / "root.d").iterdir()) + list((k / "prefix.d").rglob("*")):
        if f.is_file() and f.stat().st_size and len(f.name) in (40, 64):
            assert keys.inspect_key_file(f.read_bytes()).fingerprint == f.name


def test_expired_encryption_subkey_does_not_poison_signing_key():
    # podman's e2e key: [SC] primary valid, encryption subkey expired in 2022.
    k = Path("/work/shared/corpus/podman/e2e-sign/key.gpg")
    if not k.exists():
        pytest.skip("podman corpus key missing")
    cand = keys.inspect_key_file(k.read_bytes())
    assert cand.fingerprint == "4724F869CECB2E26C1C9E69BA9AA07032E8FD9B2"


def test_certify_only_primary_with_signing_subkey_is_accepted():
    k = Path("/work/shared/corpus/skopeo/no-passphrase.pub")
    if not k.exists():
        pytest.skip("skopeo corpus key missing")
    cand = keys.inspect_key_file(k.read_bytes())
    assert cand.fingerprint == "50DDE898DF4E48755C8C2B7AF6F908B6FA48A229"
    assert any("s" in caps for _f, _e, _r, caps in cand.info.subkeys)
