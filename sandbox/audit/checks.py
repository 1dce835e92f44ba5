"""The named checks that controls refer to (controls are data; checks are code).

A control's ``[control.check]`` table names one check here and gives its
parameters, for example::

    [control.check]
    name = "equals"
    field = "namespaces.pid"
    value = true

Two scopes:

- ``subject`` checks judge one *subject*: a recorded launch (its ``data``,
  in the launch record shape documented in `sandbox.audit.report`) or a
  resolved profile viewed in the same shape (`sandbox.audit.report.profile_view`).
  They return an `Outcome`. A key that is absent means *unknown*: the
  outcome is not-applicable, never a guess.
- ``log`` checks judge the log as a whole over the report's period (refused
  launches, the chain) and return a list of `Finding`.

Each check declares its parameters; `sandbox.audit.controls` validates a
control file against them when it is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

PASS, FAIL, NA = "pass", "fail", "not-applicable"
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str          # PASS | FAIL | NA
    message: str


@dataclass(frozen=True, slots=True)
class Finding:
    """One result of a log check: ``subject`` names it (``record 12``,
    ``audit log``), ``seq`` the record it points at."""

    status: str
    subject: str
    seq: int | None
    message: str
    sandbox_id: str | None = None


@dataclass(frozen=True, slots=True)
class Subject:
    """What a subject check sees. ``kind``: ``launch`` or ``profile``;
    ``ref``: ``record 12`` or ``profile strict``; ``time``: the record's
    time (None for a profile: judged as of now)."""

    kind: str
    ref: str
    data: dict
    seq: int | None = None
    sandbox_id: str | None = None
    time: str | None = None


@dataclass(frozen=True, slots=True)
class CheckSpec:
    name: str
    fn: Callable
    scope: str                                   # "subject" | "log"
    params: dict[str, tuple[type | tuple, bool]]  # name -> (types, required)
    doc: str


REGISTRY: dict[str, CheckSpec] = {}


def check(name: str, *, scope: str = "subject", **params):
    """Register a check. ``params``: ``name=(type or tuple of types, required)``."""
    def deco(fn):
        REGISTRY[name] = CheckSpec(name, fn, scope, params, (fn.__doc__ or "").strip())
        return fn
    return deco


def lookup(data: Any, field: str) -> Any:
    """``data["a"]["b"]`` for ``field`` ``"a.b"``; `_MISSING` when absent."""
    cur = data
    for part in field.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def _unknown(field: str, s: "Subject | None" = None) -> Outcome:
    if (s is not None and field.startswith("effective.")
            and isinstance(s.data, dict) and "effective" in s.data
            and s.data["effective"] is None):
        # The runtime records ``effective: null`` when the payload was gone
        # before its /proc entry could be read (a short-lived payload).
        return Outcome(NA, f"{field} unknown: the effective state was not read back "
                           "(the payload exited first)")
    return Outcome(NA, f"{field} not recorded")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return str(v)


# -- generic field checks --------------------------------------------------

@check("equals", field=(str, True), value=((bool, int, str), True))
def equals(s: Subject, field: str, value) -> Outcome:
    """Pass when ``field`` equals ``value``."""
    v = lookup(s.data, field)
    if v is _MISSING:
        return _unknown(field)
    if v == value and type(v) is type(value):
        return Outcome(PASS, f"{field} = {_fmt(v)}")
    return Outcome(FAIL, f"{field} = {_fmt(v)} (expected {_fmt(value)})")


@check("not_in", field=(str, True), values=(list, True))
def not_in(s: Subject, field: str, values: list) -> Outcome:
    """Pass when ``field`` (a string, compared without case) is none of ``values``."""
    v = lookup(s.data, field)
    if v is _MISSING:
        return _unknown(field)
    if v is None:
        return Outcome(NA, f"{field} not set")
    bad = {str(x).lower() for x in values}
    if str(v).lower() in bad:
        return Outcome(FAIL, f"{field} = {_fmt(v)}")
    return Outcome(PASS, f"{field} = {_fmt(v)}")


@check("present", field=(str, True))
def present(s: Subject, field: str) -> Outcome:
    """Pass when ``field`` is recorded and set (not null, not empty)."""
    v = lookup(s.data, field)
    if v is _MISSING:
        return _unknown(field)
    if v is None or v == "" or v == [] or v == {}:
        return Outcome(FAIL, f"{field} is not set")
    return Outcome(PASS, f"{field} = {_fmt(v)}")


@check("empty", field=(str, True))
def empty(s: Subject, field: str) -> Outcome:
    """Pass when the list ``field`` is empty."""
    v = lookup(s.data, field)
    if v is _MISSING:
        return _unknown(field)
    if v:
        return Outcome(FAIL, f"{field}: {', '.join(map(str, v))}")
    return Outcome(PASS, f"{field}: none")


@check("not_contains", field=(str, True), value=(str, True))
def not_contains(s: Subject, field: str, value: str) -> Outcome:
    """Pass when the list ``field`` does not contain ``value``."""
    v = lookup(s.data, field)
    if v is _MISSING or v is None:
        return _unknown(field)
    if value in v:
        return Outcome(FAIL, f"{field} includes {value}")
    return Outcome(PASS, f"{field} does not include {value}")


@check("subset", field=(str, True), allowed=((list, str), True))
def subset(s: Subject, field: str, allowed) -> Outcome:
    """Pass when every item of the list ``field`` is in ``allowed`` (a list,
    or ``"docker-default"`` for Docker's default capability set)."""
    v = lookup(s.data, field)
    if v is _MISSING or v is None:
        return _unknown(field)
    if allowed == "docker-default":
        from ..capabilities import DOCKER_DEFAULT
        allowed_set = set(DOCKER_DEFAULT)
    else:
        allowed_set = set(allowed)
    extra = sorted(set(v) - allowed_set)
    if extra:
        shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        return Outcome(FAIL, f"{field} beyond the allowed set: {shown}")
    return Outcome(PASS, f"{field}: {len(v)} within the allowed set")


# -- volumes ---------------------------------------------------------------

def _volumes(s: Subject):
    v = lookup(s.data, "volumes")
    if v is _MISSING or v is None:
        return None
    return [x for x in v if isinstance(x, dict)]


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


@check("no_sensitive_mounts", exact=(list, False), under=(list, False))
def no_sensitive_mounts(s: Subject, exact: list = (), under: list = ()) -> Outcome:
    """Fail when a volume's host source is one of ``exact`` or lies in one
    of ``under`` (after normalising the path)."""
    vols = _volumes(s)
    if vols is None:
        return _unknown("volumes")
    bad = []
    for vol in vols:
        src = os.path.normpath(str(vol.get("source") or ""))
        if src in exact or any(_under(src, top) for top in under):
            bad.append(f"{src} -> {vol.get('target')} ({vol.get('mode', '?')})")
    if bad:
        return Outcome(FAIL, "sensitive host path mounted: " + "; ".join(bad))
    return Outcome(PASS, f"{len(vols)} volume(s), none sensitive")


@check("no_socket_mounts", names=(list, True))
def no_socket_mounts(s: Subject, names: list) -> Outcome:
    """Fail when a volume's host source is a socket named in ``names``
    (matched on the last path component), or a folder holding one."""
    vols = _volumes(s)
    if vols is None:
        return _unknown("volumes")
    bad = []
    for vol in vols:
        src = os.path.normpath(str(vol.get("source") or ""))
        if os.path.basename(src) in names or src in ("/run", "/var/run"):
            bad.append(src)
    if bad:
        return Outcome(FAIL, "container runtime socket mounted: " + ", ".join(bad))
    return Outcome(PASS, "no runtime socket mounted")


@check("writable_volumes_labelled")
def writable_volumes_labelled(s: Subject) -> Outcome:
    """Fail when a read-write volume has no label."""
    vols = _volumes(s)
    if vols is None:
        return _unknown("volumes")
    bad = [str(v.get("source")) for v in vols if v.get("mode") == "rw" and not v.get("label")]
    if bad:
        return Outcome(FAIL, "read-write volume without a label: " + ", ".join(bad))
    return Outcome(PASS, "every read-write volume is labelled")


# -- image -----------------------------------------------------------------

@check("image_signed")
def image_signed(s: Subject) -> Outcome:
    """Fail when an image ran without a verification result."""
    img = lookup(s.data, "image")
    if img is _MISSING:
        return _unknown("image")
    if img is None:
        return Outcome(NA, "no image (host or directory root)")
    if not isinstance(img.get("verification"), dict):
        return Outcome(FAIL, f"image {img.get('ref')} ({img.get('digest')}) ran unverified")
    v = img["verification"]
    return Outcome(PASS, f"image {img.get('ref')} signed by {v.get('fingerprint')} "
                         f"(prefix {v.get('prefix')})")


@check("key_expiry", min_days=(int, True))
def key_expiry(s: Subject, min_days: int) -> Outcome:
    """Fail when the key that signed the image expires within ``min_days``
    of the launch (or has expired)."""
    from ._when import parse_time
    img = lookup(s.data, "image")
    if img is _MISSING:
        return _unknown("image")
    if not isinstance(img, dict) or not isinstance(img.get("verification"), dict):
        return Outcome(NA, "no verified image")
    exp = img["verification"].get("key_expires")
    if not exp:
        return Outcome(PASS, "the signing key does not expire")
    when = parse_time(exp)
    at = parse_time(s.time) if s.time else None
    if when is None:
        return Outcome(FAIL, f"key expiry {exp!r} is not a time")
    if at is None:
        from datetime import datetime, timezone
        at = datetime.now(timezone.utc)
    days = (when - at).total_seconds() / 86400
    fp = img["verification"].get("fingerprint")
    if days < min_days:
        state = "had expired" if days < 0 else f"expires {days:.0f} day(s) after the launch"
        return Outcome(FAIL, f"signing key {fp} {state} ({exp}); minimum {min_days} days")
    return Outcome(PASS, f"signing key {fp} valid {days:.0f} more day(s)")


# -- effective state read back from /proc ------------------------------------

def _mask(v) -> int | None:
    try:
        return int(str(v), 16)
    except ValueError:
        return None


@check("effective_caps_within", field=(str, True))
def effective_caps_within(s: Subject, field: str) -> Outcome:
    """Fail when the effective mask ``field`` (``effective.CapEff``, hex)
    holds a capability the record's ``capabilities`` does not declare."""
    from ..capabilities import CAPABILITIES, from_mask
    v = lookup(s.data, field)
    caps = lookup(s.data, "capabilities")
    if v is _MISSING or caps is _MISSING or caps is None:
        return _unknown(field, s)
    mask = _mask(v)
    if mask is None:
        return Outcome(FAIL, f"{field} = {v!r} is not a hex mask")
    declared = 0
    for c in caps:
        if c in CAPABILITIES:
            declared |= 1 << CAPABILITIES[c]
    extra = mask & ~declared
    if extra:
        return Outcome(FAIL, f"{field} holds undeclared: {', '.join(sorted(from_mask(extra)))}")
    return Outcome(PASS, f"{field} = {v} within the declared set")


@check("mask_zero", field=(str, True))
def mask_zero(s: Subject, field: str) -> Outcome:
    """Pass when the hex capability mask ``field`` is zero."""
    from ..capabilities import from_mask
    v = lookup(s.data, field)
    if v is _MISSING:
        return _unknown(field, s)
    mask = _mask(v)
    if mask is None:
        return Outcome(FAIL, f"{field} = {v!r} is not a hex mask")
    if mask:
        return Outcome(FAIL, f"{field} = {v}: {', '.join(sorted(from_mask(mask)))}")
    return Outcome(PASS, f"{field} = {v}")


@check("effective_matches", field=(str, True), value=((int, str, bool), True),
       when_field=(str, True), when_value=((int, str, bool), True))
def effective_matches(s: Subject, field: str, value, when_field: str, when_value) -> Outcome:
    """When ``when_field`` equals ``when_value`` (what was asked for), pass
    only if ``field`` (what the kernel reports) equals ``value``."""
    want = lookup(s.data, when_field)
    if want is _MISSING:
        return _unknown(when_field)
    if want != when_value:
        return Outcome(NA, f"{when_field} = {_fmt(want)}: not asked for")
    got = lookup(s.data, field)
    if got is _MISSING:
        return _unknown(field, s)
    if got != value:
        return Outcome(FAIL, f"{when_field} = {_fmt(want)} but the kernel reports "
                             f"{field} = {_fmt(got)}")
    return Outcome(PASS, f"{field} = {_fmt(got)} as asked")


@check("no_host_root_mapping", field=(str, True))
def no_host_root_mapping(s: Subject, field: str) -> Outcome:
    """Fail when an id map (``uid_map`` text: ``inside outside count`` per
    line) maps some id in the sandbox to the host's root (0)."""
    v = lookup(s.data, field)
    if v is _MISSING or v is None:
        return _unknown(field, s)
    # The runtime's readback joins the map's lines with single spaces
    # ("0 100000 65536 65536 0 1" for two lines), so read the numbers in
    # triples rather than line by line: a second line must not go unread.
    parts = str(v).split()
    try:
        nums = [int(x) for x in parts]
    except ValueError:
        nums = None
    if nums is None or len(nums) % 3:
        return Outcome(FAIL, f"{field} = {str(v)!r} is not an id map")
    for i in range(0, len(nums), 3):
        inside, outside, count = nums[i:i + 3]
        if outside == 0 and count > 0:
            return Outcome(FAIL, f"{field} maps sandbox id {inside} to host root: "
                                 f"'{inside} {outside} {count}'")
    return Outcome(PASS, f"{field} maps no id to host root")


# -- the log as a whole ----------------------------------------------------

@check("no_events", scope="log", kinds=(list, True), outside_launches=(bool, False))
def no_events(ctx, kinds: list, outside_launches: bool = False) -> list[Finding]:
    """One failure per record of one of ``kinds`` in the period. With
    ``outside_launches``, events of a sandbox that has a launch record are
    left to the launch controls (one act, one failing control: issue 14)."""
    launched = ({r.sandbox_id for r in ctx.all_records if r.kind == "launch"}
                if outside_launches else set())
    out = []
    for r in ctx.records:
        if r.kind in kinds and not (r.sandbox_id and r.sandbox_id in launched):
            d = r.data
            why = d.get("reason") or d.get("option") or d.get("error") or r.kind
            stage = f" at {d['stage']}" if d.get("stage") else ""
            out.append(Finding(FAIL, f"record {r.seq}", r.seq,
                               f"{r.kind}{stage}: {why}", r.sandbox_id))
    if not out:
        out.append(Finding(PASS, "audit log", None,
                           f"no {' or '.join(kinds)} record in the period"))
    return out


@check("chain_intact", scope="log")
def chain_intact(ctx) -> list[Finding]:
    """The result of `sandbox.audit.verify.verify_log` over the whole log."""
    v = ctx.verification
    if v is None:
        return [Finding(NA, "audit log", None, "the log was not verified")]
    if v.ok:
        return [Finding(PASS, "audit log", v.signed or v.head or None, v.message)]
    return [Finding(FAIL, "audit log" if v.first_bad is None else f"record {v.first_bad}",
                    v.first_bad, v.message)]


@check("launch_has_exit", scope="log")
def launch_has_exit(ctx) -> list[Finding]:
    """Fail for each launch in the period with no later exit record of the
    same sandbox (still running, or its supervisor died)."""
    exits = {}
    for r in ctx.all_records:
        if r.kind == "exit" and r.sandbox_id:
            exits.setdefault(r.sandbox_id, r.seq)
    out = []
    for r in ctx.records:
        if r.kind != "launch":
            continue
        e = exits.get(r.sandbox_id) if r.sandbox_id else None
        if e is None or e < r.seq:
            out.append(Finding(FAIL, f"record {r.seq}", r.seq,
                               f"launch of {r.sandbox_id} has no exit record", r.sandbox_id))
        else:
            out.append(Finding(PASS, f"record {r.seq}", r.seq,
                               f"exit recorded at seq {e}", r.sandbox_id))
    return out


@check("no_denied_egress", scope="log")
def no_denied_egress(ctx) -> list[Finding]:
    """One failure per ``egress`` record in the period whose decision is
    ``denied`` (the allow-list proxy refused a connection, issue 16)."""
    out = []
    allowed = 0
    for r in ctx.records:
        if r.kind != "egress":
            continue
        d = r.data
        if d.get("decision") == "denied":
            out.append(Finding(FAIL, f"record {r.seq}", r.seq,
                               f"egress denied: {d.get('reason') or d.get('host')}",
                               r.sandbox_id))
        else:
            allowed += 1
    if not out:
        out.append(Finding(PASS, "audit log", None,
                           f"no denied egress in the period ({allowed} connection(s) allowed)"))
    return out
