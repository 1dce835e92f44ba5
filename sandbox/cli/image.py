"""``sandbox image``: import, list, inspect, verify and remove images.

A thin layer over `sandbox.image.ImageStore`.
"""

from __future__ import annotations

import json
import sys

import click

_PROGRESS_MIN = 4 << 20  # a bar only for imports of more than a few MB


def _store(obj):
    from ..image import ImageStore
    return ImageStore(obj.paths)


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _short(digest: str) -> str:
    algo, hexpart = (digest.split(":", 1) if ":" in digest else digest.split("-", 1))
    return f"{algo}:{hexpart[:12]}"


def _id12(digest: str) -> str:
    """As Docker lists ids: 12 hex digits for sha256 (the algorithm named
    otherwise); the whole digest is in ``--json`` and ``image inspect``."""
    short = _short(digest)
    return short[len("sha256:"):] if short.startswith("sha256:") else short


class _Bar:
    """click.progressbar, opened on the first report once the total is known
    and only when stderr is a terminal and the import is big enough."""

    def __init__(self):
        self.bar = None
        self.last = 0
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int):
        if not self.enabled or total < _PROGRESS_MIN:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="importing", file=sys.stderr,
                                         show_pos=False, show_percent=True, show_eta=True)
            self.bar.__enter__()
        self.bar.update(done - self.last)
        self.last = done

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _insecure(text: str) -> tuple:
    from ..errors import UsageError
    opts = tuple(o for o in text.split(",") if o)
    for o in opts:
        if o != "image":
            raise UsageError(f"unknown insecure option {o!r}", hint="the only one here is 'image'")
    if opts:
        click.echo("sandbox: WARNING: insecure options in use: " + ", ".join(opts)
                   + " (recorded in the audit log)", err=True)
    return opts


@click.group()
def image():
    """Import, list, inspect, verify and remove images.

    \b
    sandbox image import FILE|DIR [--name REF] [--signature SIG]...
    sandbox image pull docker://REF [--registries.d DIR]
    sandbox image list [--json]
    sandbox image inspect REF
    sandbox image verify REF
    sandbox image rm REF...
    """


@image.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=True, file_okay=True))
@click.option("--name", metavar="REF", help="Name to store the image under (default: the "
              "archive's own tag or ACI name).")
@click.option("--signature", "signatures", multiple=True, metavar="SIG",
              type=click.Path(exists=True, dir_okay=False),
              help="A signature file to keep with the image (OpenPGP detached over the "
              "archive, or simple signing over the manifest). Repeatable.")
@click.option("--select", metavar="REF-NAME", help="Choose one image of a layout or archive "
              "that holds several (its ref name or tag).")
@click.option("--allow-setuid", is_flag=True, help="UNSAFE: keep setuid/setgid bits and file "
              "capabilities from the layers.")
@click.option("--insecure-options", "insecure", metavar="LIST", default="",
              help="UNSAFE: 'image' keeps an unsigned or untrusted image (recorded).")
@click.pass_obj
def import_(obj, source, name, signatures, select, allow_setuid, insecure):
    """Import an OCI layout (folder or tar), docker-archive or ACI file.

    Its signatures are verified for its name before anything is kept."""
    from ..errors import UsageError
    opts = _insecure(insecure)
    sigs = []
    for s in signatures:
        with open(s, "rb") as f:
            data = f.read((1 << 20) + 1)
        if len(data) > 1 << 20:
            raise UsageError(f"{s}: larger than 1 MiB; not a signature")
        sigs.append(data)
    if allow_setuid:
        click.echo("sandbox: warning: --allow-setuid keeps setuid/setgid bits and file "
                   "capabilities from this image's layers", err=True)
    bar = _Bar()
    try:
        rec = _store(obj).import_image(source, name=name, signatures=sigs, select=select,
                                       allow_setuid=allow_setuid, progress=bar,
                                       insecure_options=opts)
    finally:
        bar.close()
    from ..display import escape     # names and member paths come from the archive
    label = escape(rec.name or "(no name)")
    click.echo(f"imported {label} {rec.digest} ({rec.format}, {len(rec.layer_dirs)} "
               f"layer{'s' if len(rec.layer_dirs) != 1 else ''}, {_human(rec.size)})")
    devices = [s for s in rec.skipped if "device" in s[1]]
    if devices:
        click.echo(f"sandbox: note: {len(devices)} device node(s) not created "
                   f"(first: {escape(devices[0][0])})", err=True)
    if rec.cleared_setuid:
        click.echo(f"sandbox: note: setuid/setgid bits cleared on {len(rec.cleared_setuid)} "
                   f"file(s) (first: {escape(rec.cleared_setuid[0])})", err=True)
    if not rec.name:
        click.echo("sandbox: note: the image has no name; give one with --name to verify "
                   "and run it by name", err=True)


@image.command("pull")
@click.argument("ref")
@click.option("--name", metavar="REF", help="Name to store it under (default: the docker "
              "reference; required for oci:, oci-archive:, dir:, docker-archive:).")
@click.option("--registries.d", "registries_d", metavar="DIR",
              type=click.Path(exists=True, file_okay=False),
              help="registries.d folder naming the lookaside signature stores "
              "(default: skopeo's own).")
@click.option("--tls-verify/--no-tls-verify", default=True,
              help="Check the registry's TLS certificate (default: yes).")
@click.option("--insecure-options", "insecure", metavar="LIST", default="",
              help="UNSAFE: 'image' keeps an unsigned or untrusted image (recorded).")
@click.pass_obj
def pull(obj, ref, name, registries_d, tls_verify, insecure):
    """Pull an image with skopeo and import it, verified.

    \b
    REF is docker://NAME[:TAG|@DIGEST], oci:PATH[:REF], oci-archive:PATH,
    dir:PATH or docker-archive:PATH. Signatures come from the lookaside
    stores named in registries.d, as for skopeo and podman; nothing is kept
    unless they verify for the name."""
    opts = _insecure(insecure)
    from ..image import pull as do_pull
    rec = do_pull(_store(obj), ref, name=name, insecure_options=opts,
                  registries_d=registries_d, tls_verify=tls_verify)
    click.echo(f"pulled {rec.name} {rec.digest} ({len(rec.layer_dirs)} layer"
               f"{'s' if len(rec.layer_dirs) != 1 else ''}, {_human(rec.size)}, "
               f"{len(rec.signatures)} signature{'s' if len(rec.signatures) != 1 else ''})")


@image.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of images.")
@click.pass_obj
def list_(obj, as_json):
    """List the images in the store.

    \b
    IMAGE ID  sha256 of the image's configuration document, for every format
              (OCI/Docker config JSON; an ACI's manifest)
    DIGEST    sha256 of the registry manifest (what NAME@DIGEST and
              simple-signing signatures name); <none> for docker-archive
              and ACI, which have none"""
    recs = _store(obj).list()
    if as_json:
        out = [{"names": list(r.names), "digest": r.digest, "image_id": _image_id(r),
                "manifest_digest": r.manifest_digest, "format": r.format,
                "platform": r.platform, "size": r.size, "layers": len(r.layer_dirs),
                "signatures": len(r.signatures), "imported_at": r.imported_at}
               for r in recs]
        click.echo(json.dumps(out, indent=2))
        return
    from ._table import Col, format_table
    rows = []
    for r in recs:
        for n in (r.names or ("<none>",)):
            rows.append((n, _id12(_image_id(r)),
                         _id12(r.manifest_digest) if r.manifest_digest else "<none>",
                         r.format, _human(r.size), str(len(r.signatures)), r.imported_at))
    cols = [Col("NAME", 2, 16), Col("IMAGE ID"), Col("DIGEST"), Col("FORMAT", 1, 6), Col("SIZE"),
            Col("SIGS"), Col("IMPORTED", 1, 10)]
    for line in format_table(cols, rows):
        click.echo(line)


def _image_id(r) -> str:
    return r.config_blob or r.digest


@image.command("inspect")
@click.argument("ref")
@click.pass_obj
def inspect(obj, ref):
    """Show one image as JSON."""
    click.echo(json.dumps(_store(obj).resolve(ref).to_json(), indent=2, sort_keys=True))


@image.command("verify")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="The decision as JSON (on failure too).")
@click.option("--full", is_flag=True, help="Also hash every file of every layer and every "
              "kept blob again against the seal taken at import.")
@click.pass_obj
def verify(obj, ref, as_json, full):
    """Check the image's signatures against the trust store and its layers
    against their seals (exit 1 if refused)."""
    from ..errors import SandboxError
    store = _store(obj)
    rec = None
    try:
        rec = store.resolve(ref)
        v = store.verify(rec)
        store.check_on_disk(rec, full=full)
    except SandboxError as e:
        if not as_json:
            raise
        out = {"verified": False, "ref": ref,
               "name": rec.name if rec else None, "digest": rec.digest if rec else None,
               "reason": getattr(e, "reason", None) or type(e).__name__,
               "error": e.message, "hint": e.hint, "ondisk": "full" if full else "fast"}
        click.echo(json.dumps(out, indent=2, sort_keys=True))
        raise SystemExit(e.status)
    sig_index = _signature_index(rec, v)
    if as_json:
        d = v.as_dict()
        d.update({"verified": True, "ref": ref, "digest": rec.digest,
                  "signature": sig_index, "source": _source(v, obj.paths),
                  "ondisk": "full" if full else "fast"})
        click.echo(json.dumps(d, indent=2, sort_keys=True, default=str))
        return
    sig = f"signature {sig_index} ({v.signature_digest[:19]})" if sig_index else \
        f"signature {v.signature_digest[:19]}"
    from ..display import escape
    click.echo(escape(f"verified {rec.name or rec.digest}: {sig} by key {v.primary} "
                      f"(allowed by {_source(v, obj.paths)}); layers match their seals"
                      + (" (full re-hash)" if full else "")))


def _source(v, paths=None) -> str:
    if paths is not None:
        from ..trust.policy import source_of
        return source_of(paths, v.entry, v.primary)
    return "trust store: every name" if v.entry == "root" else f"trust store prefix {v.entry}"


def _signature_index(rec, v):
    import hashlib
    for i, s in enumerate(rec.signatures, 1):
        if f"sha256:{hashlib.sha256(s).hexdigest()}" == v.signature_digest:
            return i
    return None


@image.command("rm")
@click.argument("refs", nargs=-1, required=True)
@click.pass_obj
def rm(obj, refs):
    """Remove images (by name or digest) and the content only they used."""
    store = _store(obj)
    for ref in refs:
        for what in store.remove(ref):
            from ..display import escape
            click.echo(f"removed {escape(what)}")


@image.command("gc")
@click.pass_obj
def gc(obj):
    """Remove unreferenced layers and blobs and leftovers of killed imports."""
    r = _store(obj).gc()
    click.echo(f"removed {r.layers} layer(s), {r.blobs} blob(s), "
               f"{r.temporary} temporary item(s)")
