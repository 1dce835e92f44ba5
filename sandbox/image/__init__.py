"""Images: import, store, resolve and verify (DESIGN §2 steps 3-5, issue 3).

The public surface, importable from here (loaded lazily)::

    ImageStore(paths, *, limits=None)
        .import_image(source, *, name=None, signatures=(), select=None,
                      allow_setuid=False, progress=None) -> ImageRecord
        .resolve(ref) -> ImageRecord
        .list() -> list[ImageRecord]
        .remove(ref) -> list[str]
        .gc() -> GcReport
        .verify(record, *, name=None) -> Verification   (sandbox.trust)
    ImageRecord      frozen: name, digest, format, layer_dirs (lowest first),
                     config (Entrypoint/Cmd/Env/WorkingDir/User), signatures,
                     manifest, archive_path, overlay_xattr, skipped, ...
    Limits           what one import may cost
    normalise_ref    "name" -> "name:latest"
    pull(store, ref, *, name=None, insecure_options=(), ...) -> ImageRecord
                     through skopeo, verified before it is kept

Formats: OCI image layout (folder or tar), docker-archive (``docker save``,
``podman save``), ACI (appc). Layers are unpacked once, safely (see
`sandbox.image._unpack`), into ``<state>/images/layers/<algo>-<hex>/root``
as separate overlayfs lower layers with overlayfs whiteouts.
"""

from __future__ import annotations

_EXPORTS = {
    "ImageStore": ".store", "ImageRecord": ".store", "GcReport": ".store",
    "normalise_ref": ".store", "Limits": "._unpack", "UnpackReport": "._unpack",
    "pull": "._pull",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'sandbox.image' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(mod, __name__), name)
    globals()[name] = value
    return value
