"""`sandbox run IMAGE` end to end, through the CLI, as root (issue 3).

A busybox-static root file system is made at test time into each of the
three formats (OCI layout, docker-archive, ACI), signed with a gpg key made
at test time, imported with `sandbox image import --signature`, its key
trusted for its prefix with `sandbox trust add --prefix P --yes`, and run;
then the key is removed and the next run is refused. What the store and
`ImageStore.verify` expect of signatures:

- OCI layout: a containers/image "simple signing" claim over the manifest
  (its ``docker-manifest-digest`` the manifest's digest, its identity the
  name the image is run by);
- docker-archive: an OpenPGP detached signature over the archive file (a
  docker-archive has no registry manifest; a simple-signing claim is
  refused with its own message, see
  test_simple_signing_claim_on_docker_archive_is_refused_with_a_clear_reason);
- ACI: an OpenPGP detached signature over the archive, rkt style.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import image_fixtures as fx  # noqa: E402
from helpers import run_sandbox  # noqa: E402

from sandbox.trust._testing import Signer, simple_signing_payload  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
    pytest.mark.skipif(not fx.have_busybox(), reason="busybox-static not installed"),
    pytest.mark.skipif(not Path("/usr/bin/gpg").exists(), reason="gpg not installed"),
]

PREFIX = "example.com/app"
FORMATS = ("oci", "docker-archive", "aci")


# ---------------------------------------------------------------- builders


@pytest.fixture(scope="module")
def signer():
    with Signer() as s:
        s.fpr = s.gen_key("Image Signer <signer@example.com>")
        yield s


@pytest.fixture(scope="module")
def keyfile(signer, tmp_path_factory):
    p = tmp_path_factory.mktemp("key") / "signer.asc"
    p.write_bytes(signer.export(signer.fpr))
    return p


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return fx.busybox_rootfs(tmp_path_factory.mktemp("bb") / "rootfs")


@pytest.fixture(scope="module")
def base_tar(rootfs):
    return fx.tar_dir(rootfs)


def build_image(kind: str, dest: Path, base_tar: bytes, rootfs: Path, name: str, *,
                layers=(), cmd=("/bin/sh", "-c", "echo from-image-cmd"), env=("PATH=/bin",),
                workdir="/", user="0:0") -> tuple[Path, str]:
    """(source, digest to sign) of the busybox image ``name`` (``repo:tag``)
    in ``kind``: for OCI the manifest digest, otherwise None (the archive
    is signed)."""
    dest.mkdir(parents=True, exist_ok=True)
    tars = [base_tar, *layers]
    diff_ids = [fx.sha256(t) for t in tars]
    cfg = fx.image_config(diff_ids, cmd=cmd, env=env, workdir=workdir, user=user)
    if kind == "oci":
        d = fx.write_oci_layout(dest / "oci", tars, ref_name=name, config=cfg)
        return dest / "oci", d["manifest"]
    if kind == "docker-archive":
        fx.write_docker_archive(dest / "docker.tar", tars, tags=[name], config=cfg)
        return dest / "docker.tar", None
    if kind == "aci":
        assert not layers, "an ACI has one root file system"
        repo, _, tag = name.rpartition(":")
        man = fx.aci_manifest(name=repo, version=tag, exec_=cmd)
        man["app"]["environment"] = [{"name": k, "value": v} for k, _, v in
                                     (e.partition("=") for e in env)]
        man["app"]["workingDirectory"] = workdir
        u, _, g = user.partition(":")
        man["app"]["user"], man["app"]["group"] = u, g or u
        fx.write_aci(dest / "image.aci", rootfs, man)
        return dest / "image.aci", None
    raise ValueError(kind)


def sign(signer, kind: str, src: Path, manifest_digest: str | None, name: str) -> Path:
    """The signature file the store expects for ``kind`` (see the module doc)."""
    out = src.parent / f"{src.name}.sig"
    if kind == "oci":
        out.write_bytes(signer.sign_message(
            signer.fpr, simple_signing_payload(manifest_digest, name, creator="test")))
    else:
        out.write_bytes(signer.sign_detached(signer.fpr, src.read_bytes()))
    return out


def sb(sroot, *args, **kw):
    return run_sandbox(sroot, *args, timeout=60, **kw)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def refused(r, status: int, *words: str) -> str:
    """Assert a refusal: ``status``, no traceback, a one-line reason (and at
    most a hint line after it) naming ``words``; returns the reason."""
    assert r.returncode == status, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines()
             if ln.startswith("sandbox: ") and "WARNING" not in ln]
    assert 1 <= len(lines) <= 2, r.stderr
    reason = lines[0]
    for w in words:
        assert w in reason, f"{w!r} not in {reason!r}"
    return reason


def import_signed(sroot, signer, kind, tmp, base_tar, rootfs, name, *, as_name=None, **kw):
    src, mdigest = build_image(kind, tmp, base_tar, rootfs, name, **kw)
    sig = sign(signer, kind, src, mdigest, name)
    # Imported insecurely: these tests are about the check at every launch
    # (the key is trusted later, or never); the check at import has its own
    # tests (test_image_import_verification.py).
    args = ["image", "import", str(src), "--signature", str(sig), "--insecure-options=image"]
    if as_name:
        args += ["--name", as_name]
    r = ok(sb(sroot, *args))
    assert f"imported {as_name or name}" in r.stdout
    return src


def audit_records(sroot) -> list[dict]:
    r = ok(sb(sroot, "audit", "log", "--json"))
    text = r.stdout.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------- acceptance


@pytest.mark.parametrize("kind", FORMATS)
def test_signed_image_runs_until_its_key_is_removed(kind, sroot, tmp_path, signer, keyfile,
                                                    base_tar, rootfs):
    name = f"{PREFIX}/{kind}:1"
    import_signed(sroot, signer, kind, tmp_path, base_tar, rootfs, name)
    # Not trusted yet: refused, as an unknown key.
    refused(sb(sroot, "run", name, "--", "/bin/sh", "-c", "echo ok"), 125,
            name, "not in the trust store")
    r = ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    assert signer.fpr in r.stdout.replace(" ", "")

    r = ok(sb(sroot, "run", name, "--", "/bin/sh", "-c", "echo ok"))
    assert r.stdout == "ok\n"
    r = ok(sb(sroot, "run", name))                 # the image's own Cmd / app.exec
    assert r.stdout == "from-image-cmd\n"
    r = ok(sb(sroot, "image", "verify", name))
    assert f"by key {signer.fpr}" in r.stdout and f"trust store prefix {PREFIX}" in r.stdout
    # the launch record names the image, its digest and who signed it
    launches = [rec for rec in audit_records(sroot) if rec["kind"] == "launch"]
    img = launches[-1]["data"]["image"]
    assert img["ref"] == name and img["digest"]
    assert img["verification"]["fingerprint"] == signer.fpr
    assert img["verification"]["prefix"] == PREFIX

    r = ok(sb(sroot, "trust", "remove", signer.fpr))
    assert "removed" in r.stdout
    refused(sb(sroot, "run", name, "--", "/bin/sh", "-c", "echo ok"), 125,
            name, signer.fpr, "not in the trust store")
    refused(sb(sroot, "image", "verify", name), 1, name, "not in the trust store")
    # the refusal is an audit record too
    refusals = [rec for rec in audit_records(sroot) if rec["kind"] == "refusal"]
    assert refusals and refusals[-1]["data"]["stage"] == "verification"
    assert refusals[-1]["data"]["reason"] == "unknown-key"


@pytest.mark.parametrize("kind", FORMATS)
def test_imported_under_a_name_outside_the_prefix_is_refused(kind, sroot, tmp_path, signer,
                                                             keyfile, base_tar, rootfs):
    name = f"{PREFIX}/{kind}:1"
    outside = f"example.org/app/{kind}:1"
    import_signed(sroot, signer, kind, tmp_path, base_tar, rootfs, name, as_name=outside)
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    reason = refused(sb(sroot, "run", outside, "--", "/bin/sh", "-c", "echo ok"), 125, outside)
    assert f"trusted for {PREFIX}, not for {outside}" in reason
    refused(sb(sroot, "image", "verify", outside), 1, outside)


@pytest.mark.parametrize("kind", FORMATS)
def test_name_that_only_shares_a_string_prefix_is_refused(kind, sroot, tmp_path, signer,
                                                          keyfile, base_tar, rootfs):
    """Prefixes match whole path components: example.com/appx is not under
    example.com/app."""
    name = f"{PREFIX}x/{kind}:1"
    import_signed(sroot, signer, kind, tmp_path, base_tar, rootfs, name)
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    refused(sb(sroot, "run", name, "--", "/bin/sh", "-c", "echo ok"), 125, name,
            f"trusted for {PREFIX}, not for")


def test_unsigned_image_refused_then_runs_with_insecure_option(sroot, tmp_path, base_tar,
                                                               rootfs):
    name = "example.net/unsigned:1"
    src, _ = build_image("oci", tmp_path, base_tar, rootfs, name)
    ok(sb(sroot, "image", "import", "--insecure-options=image", str(src)))
    refused(sb(sroot, "run", name, "--", "/bin/sh", "-c", "echo ok"), 125, name, "not signed")
    refused(sb(sroot, "image", "verify", name), 1, name, "not signed")

    r = ok(sb(sroot, "run", "--insecure-options=image", name, "--", "/bin/sh", "-c", "echo ok"))
    assert r.stdout == "ok\n"
    assert "WARNING" in r.stderr and "image" in r.stderr
    recs = audit_records(sroot)
    ins = [rec for rec in recs if rec["kind"] == "insecure-option"]
    assert len(ins) == 2
    assert ins[0]["data"]["stage"] == "import" and ins[0]["data"]["ref"] == name
    ins = ins[1:]
    assert ins[0]["data"]["option"] == "image"
    assert ins[0]["data"]["image"]["ref"] == name
    launch = [rec for rec in recs if rec["kind"] == "launch"][-1]["data"]
    assert launch["insecure_options"] == ["image"]
    assert launch["image"]["verification"] is None
    assert launch["sandbox_id"] == ins[0]["data"]["sandbox_id"]


def test_insecure_option_is_spelled_only_image(sroot, tmp_path, base_tar, rootfs):
    name = "example.net/unsigned:2"
    src, _ = build_image("oci", tmp_path, base_tar, rootfs, name)
    ok(sb(sroot, "image", "import", "--insecure-options=image", str(src)))
    r = sb(sroot, "run", "--insecure-options=all", name, "--", "/bin/true")
    assert r.returncode in (2, 125) and "unknown insecure option" in r.stderr
    assert not [rec for rec in audit_records(sroot) if rec["kind"] == "launch"]


def test_simple_signing_claim_on_docker_archive_is_refused_with_a_clear_reason(
        sroot, tmp_path, signer, keyfile, base_tar, rootfs):
    """Bug: a docker-archive has no manifest, so a simple-signing claim was
    handed to the detached check and refused as "not an OpenPGP signature"."""
    name = f"{PREFIX}/docker-claim:1"
    src, _ = build_image("docker-archive", tmp_path, base_tar, rootfs, name)
    sig = tmp_path / "claim.sig"
    sig.write_bytes(signer.sign_message(signer.fpr,
                                        simple_signing_payload(fx.sha256(b"x"), name)))
    ok(sb(sroot, "image", "import", str(src), "--signature", str(sig),
          "--insecure-options=image"))
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    reason = refused(sb(sroot, "run", name, "--", "/bin/true"), 125, name,
                     "simple-signing claim", "no manifest")
    assert "not an OpenPGP signature" not in reason
    refused(sb(sroot, "image", "verify", name), 1, "simple-signing claim")


def test_simple_signing_claim_for_another_tag_is_refused(sroot, tmp_path, signer, keyfile,
                                                          base_tar, rootfs):
    """The identity in an OCI claim must match the name being run, even under
    a trusted prefix."""
    signed_for = f"{PREFIX}/oci:1"
    run_as = f"{PREFIX}/oci:2"
    import_signed(sroot, signer, "oci", tmp_path, base_tar, rootfs, signed_for, as_name=run_as)
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    refused(sb(sroot, "run", run_as, "--", "/bin/true"), 125, run_as)
    refused(sb(sroot, "image", "verify", run_as), 1)


# ---------------------------------------------------------------- image config


@pytest.mark.parametrize("kind", FORMATS)
def test_image_env_workdir_and_user_apply(kind, sroot, tmp_path, signer, keyfile, base_tar,
                                          rootfs):
    name = f"{PREFIX}/cfg-{kind}:1"
    import_signed(sroot, signer, kind, tmp_path, base_tar, rootfs, name,
                  env=("PATH=/bin", "GREETING=from-image"), workdir="/etc", user="1000:1001")
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    r = ok(sb(sroot, "run", name, "--", "/bin/sh", "-c",
              'echo "$GREETING"; pwd; id -u; id -g'))
    assert r.stdout.split() == ["from-image", "/etc", "1000", "1001"]
    # flags win over the image
    r = ok(sb(sroot, "run", "-e", "GREETING=flag", "-w", "/", "-u", "7:8", name, "--",
              "/bin/sh", "-c", 'echo "$GREETING"; pwd; id -u; id -g'))
    assert r.stdout.split() == ["flag", "/", "7", "8"]


def test_aci_command_replaces_app_exec(sroot, tmp_path, signer, keyfile, base_tar, rootfs):
    """Bug: the ACI's app.exec (stored as Entrypoint) was prepended to the
    command given to `run`, so `run ACI -- /bin/sh -c 'echo ok'` ran the
    image's own exec with the command as extra arguments."""
    name = f"{PREFIX}/exec:1"
    import_signed(sroot, signer, "aci", tmp_path, base_tar, rootfs, name,
                  cmd=("/bin/echo", "from-exec"))
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    assert ok(sb(sroot, "run", name, "--", "/bin/sh", "-c", "echo ok")).stdout == "ok\n"
    assert ok(sb(sroot, "run", name)).stdout == "from-exec\n"


def test_oci_entrypoint_keeps_command_as_arguments(sroot, tmp_path, base_tar, rootfs):
    """OCI/Docker semantics: Entrypoint stays, the command replaces Cmd."""
    name = "example.net/entry:1"
    tars = [base_tar]
    cfg = fx.image_config([fx.sha256(base_tar)], entrypoint=("/bin/echo", "entry"),
                          cmd=("default-arg",))
    fx.write_oci_layout(tmp_path / "oci", tars, ref_name=name, config=cfg)
    ok(sb(sroot, "image", "import", "--insecure-options=image", str(tmp_path / "oci")))
    r = ok(sb(sroot, "run", "--insecure-options=image", name))
    assert r.stdout == "entry default-arg\n"
    r = ok(sb(sroot, "run", "--insecure-options=image", name, "--", "given"))
    assert r.stdout == "entry given\n"


# ---------------------------------------------------------------- layers


def test_whiteout_and_opaque_directory_merge_inside_run(sroot, tmp_path, signer, keyfile,
                                                        base_tar, rootfs):
    """Two layers over the base: the upper one deletes a file (``.wh.a``)
    and makes a folder opaque (``.wh..wh..opq``); `sandbox run` (overlayfs
    with userxattr in the sandbox's user namespace) shows the merged view."""
    l1 = fx.build_tar([
        fx.entry("data", "dir"), fx.entry("data/a", data=b"A"), fx.entry("data/b", data=b"B"),
        fx.entry("opq", "dir"), fx.entry("opq/x", data=b"x"), fx.entry("opq/y", data=b"y"),
        fx.entry("gone", "dir"), fx.entry("gone/f", data=b"f"),
    ])
    l2 = fx.build_tar([
        fx.entry("data", "dir"), fx.entry("data/.wh.a"), fx.entry("data/c", data=b"C"),
        fx.entry("opq", "dir"), fx.entry("opq/.wh..wh..opq"), fx.entry("opq/z", data=b"z"),
        fx.entry(".wh.gone"),
    ])
    for kind in ("oci", "docker-archive"):
        name = f"{PREFIX}/wh-{kind}:1"
        import_signed(sroot, signer, kind, tmp_path / kind, base_tar, rootfs, name,
                      layers=(l1, l2))
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    for kind in ("oci", "docker-archive"):
        name = f"{PREFIX}/wh-{kind}:1"
        r = ok(sb(sroot, "run", name, "--", "/bin/sh", "-c",
                  "ls -A /data; echo -; ls -A /opq; echo -; cat /data/b /data/c /opq/z; "
                  "echo; test -e /data/a && echo a-visible; test -e /gone && echo gone-visible; "
                  "test -e /opq/x && echo x-visible; ls -A / | grep -c '^.wh' ; true"))
        out = r.stdout.split("\n")
        assert out[0:2] == ["b", "c"], r.stdout
        assert out[2] == "-" and out[3] == "z" and out[4] == "-", r.stdout
        assert out[5] == "BCz", r.stdout
        assert "a-visible" not in r.stdout and "gone-visible" not in r.stdout
        assert "x-visible" not in r.stdout
        assert out[-2] == "0", r.stdout            # no .wh. names leak into the view
    # the store marked the opaque folder for the runtime's userxattr mount
    info = json.loads(ok(sb(sroot, "image", "inspect", f"{PREFIX}/wh-oci:1")).stdout)
    top = Path(info["layer_dirs"][-1])
    assert os.getxattr(top / "opq", "user.overlay.opaque") == b"y"


def test_aci_signed_for_one_name_renamed_to_another_under_the_prefix_is_refused(
        sroot, tmp_path, signer, keyfile, base_tar, rootfs):
    """Attack: a key trusted for example.com/app signed the ACI
    example.com/app/debug-shell; imported as example.com/app/web it would
    pass the prefix check. The ACI's manifest (covered by the signature)
    names the image, so the name it is run by must be that name (rkt's
    check), as the identity of a simple-signing claim must."""
    import_signed(sroot, signer, "aci", tmp_path, base_tar, rootfs,
                  f"{PREFIX}/debug-shell:1", as_name=f"{PREFIX}/web:1")
    ok(sb(sroot, "trust", "add", str(keyfile), "--prefix", PREFIX, "--yes"))
    reason = refused(sb(sroot, "run", f"{PREFIX}/web:1", "--", "/bin/echo", "ran"), 125,
                     f"{PREFIX}/web:1", f"names itself {PREFIX}/debug-shell")
    assert "ran" not in reason
    refused(sb(sroot, "image", "verify", f"{PREFIX}/web:1"), 1, "names itself")
    refusal = [rec for rec in audit_records(sroot) if rec["kind"] == "refusal"][-1]["data"]
    assert refusal["reason"] == "identity-mismatch"
    # under its own name (another tag is fine: the ACI version is not signed
    # into the name), it runs
    ok(sb(sroot, "image", "import", "--insecure-options=image", str(tmp_path / "image.aci"), "--name",
          f"{PREFIX}/debug-shell:2", "--signature", str(tmp_path / "image.aci.sig")))
    assert ok(sb(sroot, "run", f"{PREFIX}/debug-shell:2", "--", "/bin/echo", "ran")).stdout \
        == "ran\n"


def test_image_user_name_resolved_from_its_own_top_layer(sroot, tmp_path, base_tar, rootfs):
    # a second layer replaces /etc/passwd and /etc/group: the name means
    # what the top layer says, whatever the host's files say
    top = fx.build_tar([fx.entry("etc/", "dir"),
                        fx.entry("etc/passwd", data=b"root:x:0:0::/:/bin/sh\n"
                                 b"app:x:4242:4343::/:/bin/sh\n"),
                        fx.entry("etc/group", data=b"root:x:0:\nstaff:x:5151:\n")])
    name = "example.net/named-user:1"
    src, _ = build_image("oci", tmp_path, base_tar, rootfs, name, layers=(top,),
                         cmd=("/bin/sh", "-c", "id -u; id -g"), user="app")
    ok(sb(sroot, "image", "import", "--insecure-options=image", str(src)))
    r = ok(sb(sroot, "run", "--insecure-options=image", name))
    assert r.stdout.split() == ["4242", "4343"]
    r = ok(sb(sroot, "run", "--insecure-options=image", "-u", "app:staff", name,
              "--", "/bin/sh", "-c", "id -u; id -g"))
    assert r.stdout.split() == ["4242", "5151"]
    r = ok(sb(sroot, "run", "--insecure-options=image", "--entrypoint", "/bin/echo", name,
              "--", "entry"))
    assert r.stdout == "entry\n"        # the image's Cmd dropped, as Docker does
    refused(sb(sroot, "run", "--insecure-options=image", "-u", "nosuch", name), 125,
            "nosuch", "/etc/passwd")
