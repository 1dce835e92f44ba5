"""Evaluate controls against recorded launches, the log, and profiles.

Subjects:

- every ``launch`` record in the period (``--since``);
- every profile named with ``--profile``, viewed in the launch record shape
  by `profile_view` (keys a profile cannot decide, such as the image or the
  volumes, are absent, so those controls are not applicable to it);
- the log as a whole, for ``log`` checks (refused launches, the chain).

The launch record shape (``data`` of kind ``launch``; absent keys mean
unknown)::

    {"sandbox_id": str, "name": str|None, "user": {"uid": int, "name": str},
     "command": [str],
     "profile": {"name", "digest": "sha256:..", "source", "unconfined": bool},
     "plan_digest": "sha256:..", "root": {"kind": "host"|"dir"|"image", "path"},
     "image": null | {"ref", "digest", "verification": null | {"fingerprint",
                      "prefix", "key_expires": iso8601|None, "signed_at"}},
     "insecure_options": [str], "namespaces": {"user": bool, ...: true = new},
     "capabilities": [names], "seccomp": {"enabled", "default_action", "digest"},
     "no_new_privs": bool, "read_only_root": bool,
     "volumes": [{"source", "target", "mode": "ro"|"rw", "label"}],
     "network": {"mode": "none"|"host"|"bridge"},
     "limits": {"memory": int|None, "pids": int|None, "nofile": int|None},
     "label": str|None, "landlock": {"enabled": bool, "abi": int|None},
     "missing": [str], "effective": {"CapEff": hex, "CapPrm", "CapBnd",
     "CapInh", "CapAmb", "NoNewPrivs": int, "Seccomp": int,
     "Seccomp_filters": int, "uid_map": str, "gid_map": str,
     "namespaces_differ": [names]}}

``exit``: ``{"sandbox_id", "status", "signal", "duration_ms"}``;
``refusal``: ``{"sandbox_id", "reason", "error", "stage", ...}``.

A control's result is ``fail`` when any subject fails, else ``pass`` when
any passes, else ``not-applicable``. Its evidence lists the failing
subjects (or, on a pass, the subjects checked), each with the record's
sequence number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checks import FAIL, NA, PASS, REGISTRY, Subject
from .controls import SEVERITIES, Control

#: Evidence items kept per passing control (failures are all kept).
PASS_EVIDENCE_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a control passed or failed for one subject. ``subject``:
    ``record 12``, ``profile strict`` or ``audit log``; ``seq``: the record
    it points at (None for a profile)."""

    status: str
    subject: str
    message: str
    seq: int | None = None
    sandbox_id: str | None = None
    # issue 14: what an auditor needs on the line itself (None: unknown)
    time: str | None = None          # the record's time, ISO 8601 UTC
    caller: str | None = None        # "alice (uid 1000) via sudo from bob"
    command: str | None = None       # the argv, joined
    image: str | None = None         # image ref@digest, or the root folder
    uri: str | None = None           # the profile file, for profile subjects

    def to_dict(self) -> dict:
        return {"status": self.status, "subject": self.subject, "seq": self.seq,
                "sandbox_id": self.sandbox_id, "message": self.message,
                "time": self.time, "caller": self.caller, "command": self.command,
                "image": self.image, "uri": self.uri}


@dataclass(frozen=True, slots=True)
class ControlResult:
    control: Control
    status: str                      # pass | fail | not-applicable
    evidence: tuple[Evidence, ...]
    checked: int = 0                 # subjects that gave pass or fail
    omitted: int = 0                 # passing evidence left out (limit)

    @property
    def failures(self) -> tuple[Evidence, ...]:
        return tuple(e for e in self.evidence if e.status == FAIL)

    @property
    def summary(self) -> str:
        if self.status == FAIL:
            f = self.failures
            seqs = [str(e.seq) for e in f if e.seq is not None]
            where = f" (seq {', '.join(seqs)})" if seqs else ""
            return f"{len(f)} failing subject(s){where}: {f[0].message}"
        if self.status == PASS:
            unread = sum(1 for e in self.evidence
                         if e.status == NA and "not read back" in e.message)
            more = (f"; kernel state unknown for {unread} (payload exited before the "
                    "readback)") if unread else ""
            return f"{self.checked} subject(s) checked{more}"
        return self.evidence[0].message if self.evidence else "nothing to check"

    def to_dict(self) -> dict:
        return {"id": self.control.id, "title": self.control.title,
                "severity": self.control.severity, "status": self.status,
                "references": list(self.control.references),
                "rationale": self.control.rationale,
                "remediation": self.control.remediation,
                "checked": self.checked, "omitted": self.omitted,
                "evidence": [e.to_dict() for e in self.evidence]}


@dataclass(frozen=True, slots=True)
class Report:
    """The evaluated controls. ``generated``/``since`` are record-time
    strings; ``launches``/``records`` count the period's records;
    ``profiles`` names the profiles judged; ``verification`` is the
    `VerifyResult` of the whole log (None when not checked)."""

    generated: str
    since: str | None
    results: tuple[ControlResult, ...]
    records: int = 0
    launches: int = 0
    profiles: tuple[str, ...] = ()
    verification: object = None
    head: int = 0
    tool_version: str = ""
    #: issue 14: what the report covers, shown first by every format:
    #: host, window (from, to), records (first, last), key, verification
    scope: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, NA: 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def failed(self, at_or_above: str = "low") -> list[ControlResult]:
        """Failed controls of severity ``at_or_above`` or higher."""
        rank = SEVERITIES.index(at_or_above)
        return [r for r in self.results if r.status == FAIL and r.control.rank >= rank]

    def to_dict(self) -> dict:
        v = self.verification
        return {"scope": self.scope,
                "generated": self.generated, "since": self.since, "tool": "sandbox",
                "version": self.tool_version, "records": self.records,
                "launches": self.launches, "profiles": list(self.profiles),
                "head": self.head, "summary": self.counts(),
                "verification": v.to_dict() if v is not None else None,
                "controls": [r.to_dict() for r in self.results]}


@dataclass
class LogContext:
    """What log checks see: the period's records, all records, the chain."""

    records: list | None             # None: the log was not read
    all_records: list
    verification: object = None
    extra: dict = field(default_factory=dict)


def profile_view(profile) -> dict:
    """A resolved `Profile` in the launch record shape, for subject checks.

    Only what the profile decides is filled in; the image, volumes, missing
    protections and the effective kernel state are left out (unknown).
    """
    seccomp_enabled = not profile.seccomp.unconfined
    action = profile.seccomp.default_action
    if seccomp_enabled and not action and profile.seccomp.profile:
        import json
        try:
            with open(profile.seccomp.profile, encoding="utf-8") as f:
                action = json.load(f).get("defaultAction")
        except (OSError, ValueError, AttributeError):
            action = None
    io_uring = None if seccomp_enabled else True
    if seccomp_enabled and profile.seccomp.profile:     # issue 13: SBX-SECCOMP-04
        from sandbox.errors import SandboxError
        from sandbox.seccomp import build_findings, compile_filter
        try:
            cf = compile_filter(profile.seccomp.profile, capabilities=profile.capabilities,
                                default_action=profile.seccomp.default_action,
                                other_abis=profile.seccomp.other_abis)
            io_uring = any(f.kind == "io_uring" for f in build_findings(cf.bpf))
        except SandboxError:
            io_uring = None
    lab = profile.label
    return {
        "profile": {"name": profile.name, "digest": profile.digest(),
                    "source": profile.source, "unconfined": profile.unconfined},
        "namespaces": {n: getattr(profile.namespaces, n) for n in
                       ("user", "pid", "mount", "net", "uts", "ipc", "cgroup")},
        "capabilities": sorted(profile.capabilities),
        "seccomp": {"enabled": seccomp_enabled, "default_action": action,
                    **({} if io_uring is None else {"io_uring_allowed": io_uring})},
        "no_new_privs": profile.process.no_new_privs,
        "read_only_root": profile.filesystem.read_only_root,
        "network": {"mode": profile.network.mode},
        "limits": {"memory": profile.limits.memory, "pids": profile.limits.pids,
                   "nofile": profile.limits.nofile},
        "label": f"{lab.user}:{lab.role}:{lab.type}:{lab.level}" if lab.type else None,
        "landlock": {"enabled": profile.landlock.enabled, "abi": None},
        "insecure_options": [],
    }


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def describe_record(data: dict | None, time: str | None = None) -> dict:
    """The evidence context of a record's data: time, caller, command,
    image (issue 14). Works on older records (``user`` instead of
    ``caller``) and on profile views (the profile file as ``uri``)."""
    d = data if isinstance(data, dict) else {}
    caller = None
    c = d.get("caller")
    if isinstance(c, dict):
        caller = f"{c.get('user')} (uid {c.get('uid')})"
        if c.get("sudo_user"):
            caller += f" via sudo from {c['sudo_user']}"
    elif isinstance(d.get("user"), dict):
        caller = f"{d['user'].get('name')} (uid {d['user'].get('uid')})"
    cmd = d.get("command")
    command = _short(" ".join(map(str, cmd))) if isinstance(cmd, list) and cmd else None
    image = None
    img = d.get("image")
    if isinstance(img, dict) and img.get("ref"):
        image = img["ref"] + (f"@{img['digest']}" if img.get("digest") else "")
    elif isinstance(d.get("root"), dict):
        r = d["root"]
        image = f"{r.get('kind')}:{r['path']}" if r.get("path") else r.get("kind")
    uri = None
    prof = d.get("profile")
    if time is None and isinstance(prof, dict) and prof.get("source"):
        uri = str(prof["source"])
    return {"time": time, "caller": caller, "command": command, "image": image, "uri": uri}


def _judge_subjects(control: Control, subjects: list[Subject]) -> ControlResult:
    spec = REGISTRY[control.check]
    params = control.param_dict()
    evidence: list[Evidence] = []
    na: list[Evidence] = []
    checked = 0
    if subjects and not any(s.kind in control.applies_to for s in subjects):
        na.append(Evidence(NA, "-", f"judged on {' and '.join(control.applies_to)} "
                                    "subjects only; none in this report"))
    for s in subjects:
        if s.kind not in control.applies_to:
            continue
        o = spec.fn(s, **params)
        ev = Evidence(o.status, s.ref, o.message, s.seq, s.sandbox_id,
                      **describe_record(s.data, s.time))
        if o.status == NA:
            na.append(ev)
        else:
            checked += 1
            evidence.append(ev)
    return _aggregate(control, evidence, na, checked)


def _aggregate(control, evidence, na, checked) -> ControlResult:
    fails = [e for e in evidence if e.status == FAIL]
    if fails:
        return ControlResult(control, FAIL, tuple(fails), checked)
    if evidence:
        # A pass lists the subjects it could not judge as well (a launch whose
        # payload exited before its state was read back): "passed" must not
        # read as "passed for every launch".
        unknown = [e for e in na if e.seq is not None]
        both = evidence + unknown
        kept = both[:PASS_EVIDENCE_LIMIT]
        return ControlResult(control, PASS, tuple(kept), checked, len(both) - len(kept))
    if not na:
        na = [Evidence(NA, "-", "no launch or profile in the period to check")]
    return ControlResult(control, NA, tuple(na[:1]), 0)


def _judge_log(control: Control, ctx: LogContext) -> ControlResult:
    if ctx.records is None:
        return ControlResult(control, NA, (Evidence(NA, "audit log", "the log was not read"),))
    spec = REGISTRY[control.check]
    findings = spec.fn(ctx, **control.param_dict())
    by_seq = ctx.extra.setdefault("by_seq", {r.seq: r for r in ctx.all_records})

    def ev(f):
        rec = by_seq.get(f.seq) if f.seq is not None and f.subject.startswith("record") else None
        more = describe_record(rec.data, rec.time) if rec is not None else {}
        return Evidence(f.status, f.subject, f.message, f.seq, f.sandbox_id, **more)
    evidence = [ev(f) for f in findings if f.status != NA]
    na = [ev(f) for f in findings if f.status == NA]
    return _aggregate(control, evidence, na, len(evidence))


def evaluate(controls: list[Control], *, records: list, all_records: list | None = None,
             profiles: list | None = None, verification=None,
             since: str | None = None, scope: dict | None = None) -> Report:
    """Judge ``controls``.

    ``records``: the period's `Record` values (all kinds, in order), or
    None when the log is not judged at all (profiles only: log controls are
    then not applicable); ``all_records``: the whole log (for checks that
    look past the period; default ``records``); ``profiles``: resolved
    `Profile` values; ``verification``: the log's `VerifyResult`;
    ``scope``: what the caller knows of the host (``host``, ``key``). Pure:
    reads nothing.
    """
    from ._canon import utc_now
    log_read = records is not None
    records = records if records is not None else []
    all_records = records if all_records is None else all_records
    subjects = [Subject("launch", f"record {r.seq}", r.data, r.seq, r.sandbox_id, r.time)
                for r in records if r.kind == "launch"]
    names = []
    for p in profiles or ():
        subjects.append(Subject("profile", f"profile {p.name}", profile_view(p)))
        names.append(p.name)
    ctx = LogContext(list(records) if log_read else None, list(all_records), verification)
    results = []
    for c in controls:
        if c.scope == "log":
            results.append(_judge_log(c, ctx))
        else:
            results.append(_judge_subjects(c, subjects))
    try:
        from importlib.metadata import version
        ver = version("sandbox")
    except Exception:
        ver = ""
    head = all_records[-1].seq if all_records else 0
    now = utc_now()
    scope = dict(scope or {})
    scope.update({
        "window": {"from": records[0].time if records else since, "to": now,
                   "since": since},
        "records": {"first": records[0].seq if records else None,
                    "last": records[-1].seq if records else None,
                    "count": len(records), "log_head": head},
        "verification": ({"ok": verification.ok, "result": verification.message}
                         if verification is not None else None),
        "profiles": list(names)})
    scope.setdefault("key", getattr(verification, "key", None))
    return Report(generated=now, since=since, results=tuple(results),
                  records=len(records),
                  launches=sum(1 for r in records if r.kind == "launch"),
                  profiles=tuple(names), verification=verification, head=head,
                  tool_version=ver, scope=scope)


def build_report(log, *, controls: list[Control] | None = None, since: str | None = None,
                 profiles: list | None = None, verify: bool = True) -> Report:
    """Read ``log`` (an `AuditLog`), verify it, and `evaluate` ``controls``
    (default: the bundled ones) over the records since ``since``."""
    from .controls import load_controls
    controls = load_controls() if controls is None else controls
    all_records = list(log.records())
    period = [r for r in all_records if not since or r.time >= since]
    verification = log.verify() if verify else None
    import socket
    scope = {"host": socket.gethostname(), "state": str(log.state),
             "key": getattr(verification, "key", None)}
    if scope["key"] is None:
        from . import _keys
        try:
            scope["key"] = _keys.fingerprint(_keys.public_raw(log.public_key_path.read_bytes()))
        except (OSError, _keys.KeyError_):
            pass
    return evaluate(controls, records=period, all_records=all_records,
                    profiles=profiles, verification=verification, since=since, scope=scope)
