"""ACI isolators (appc spec v0.8, "Isolators"): honoured, or the launch is
refused naming the isolator; never stored and ignored (issue 12).

An image can only narrow what the profile allows, never widen it:

=====================================  =====================================
isolator                               effect
=====================================  =====================================
``os/linux/capabilities-retain-set``   the capability set is exactly
                                       ``value.set``; refused if it names a
                                       capability the profile does not grant
``os/linux/capabilities-remove-set``   the profile's set minus ``value.set``
``resource/memory``                    ``limits.memory`` = ``value.limit``;
                                       refused above the profile's own limit
``resource/cpu``                       refused: this sandbox sets no CPU
                                       limit, and running without the one
                                       asked for would ignore it
``os/linux/no-new-privileges``         ``true`` is what every profile does
                                       already; ``false`` is refused
anything else                          refused, named
=====================================  =====================================

Every value changed is recorded in ``Profile.origins`` as
``image isolator NAME`` (shown by the audit record and ``profile show``).
"""

from __future__ import annotations

import re

from ..capabilities import CAPABILITIES as CAPS
from ..errors import ArtifactError

_QTY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$")
_MULT = {None: 1, "k": 1000, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3, "T": 1000 ** 4,
         "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "Ti": 1024 ** 4}


def _refuse(image: str, iso: str, why: str) -> ArtifactError:
    return ArtifactError(f"image {image}: ACI isolator {iso}: {why}; refusing to run it",
                         hint="rebuild the image without it, or run it under a profile "
                              "that allows it")


def parse_quantity(text) -> int:
    """A Kubernetes-style resource quantity (appc uses them): ``512M``,
    ``1Gi``, ``1048576`` -> bytes."""
    m = _QTY.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a quantity such as 512M or 1Gi")
    return int(float(m.group(1)) * _MULT[m.group(2)])


def _cap_set(image, iso, value) -> frozenset:
    caps = (value or {}).get("set") if isinstance(value, dict) else None
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise _refuse(image, iso, "value.set must be a list of capability names")
    out = set()
    for c in caps:
        name = c if c.startswith("CAP_") else f"CAP_{c}"
        if name not in CAPS:
            raise _refuse(image, iso, f"{c!r} is not a capability name")
        out.add(name)
    return frozenset(out)


def apply_aci_isolators(record, profile):
    """The profile narrowed by ``record``'s ACI isolators (a no-op for other
    formats and for ACIs without isolators). Raises `ArtifactError` naming
    the first isolator that cannot be honoured."""
    isolators = (record.config or {}).get("Isolators") or []
    if record.format != "aci" or not isolators:
        return profile
    image = record.name or record.digest
    origins = dict(profile.origins)
    caps = profile.capabilities
    limits = profile.limits
    for iso in isolators:
        name = iso.get("name") if isinstance(iso, dict) else None
        value = iso.get("value") if isinstance(iso, dict) else None
        if not isinstance(name, str):
            raise _refuse(image, repr(name), "an isolator without a name")
        why = f"image isolator {name}"
        if name == "os/linux/capabilities-retain-set":
            want = _cap_set(image, name, value)
            extra = sorted(want - profile.capabilities)
            if extra:
                raise _refuse(image, name, f"asks for {', '.join(extra)}, which profile "
                                           f"{profile.name} does not grant")
            caps = want
            origins["capabilities.retain"] = why
        elif name == "os/linux/capabilities-remove-set":
            caps = caps - _cap_set(image, name, value)
            origins["capabilities.retain"] = why
        elif name == "resource/memory":
            lim = value.get("limit") if isinstance(value, dict) else None
            if lim is None:
                raise _refuse(image, name, "has no limit")
            try:
                n = parse_quantity(lim)
            except ValueError as e:
                raise _refuse(image, name, str(e)) from None
            if profile.limits.memory is not None and n > profile.limits.memory:
                raise _refuse(image, name, f"limit {lim} is above profile {profile.name}'s "
                                           f"memory limit of {profile.limits.memory} bytes")
            limits = limits._replace(memory=n)
            origins["limits.memory"] = why
        elif name == "os/linux/no-new-privileges":
            if value is not True:
                raise _refuse(image, name, "only true is supported (no_new_privs is always set)")
        elif name == "resource/cpu":
            raise _refuse(image, name, "CPU limits are not supported by this sandbox")
        else:
            raise _refuse(image, name, "not supported by this sandbox")
    return profile._replace(capabilities=frozenset(caps), limits=limits,
                            origins=tuple(sorted(origins.items())))
