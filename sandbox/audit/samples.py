"""Realistic sample event data, for tests, the benchmark and documentation.

The values follow the launch record shape in `sandbox.audit.report`; a
launch under the bundled ``default`` profile passes every control.
"""

from __future__ import annotations

import copy

from ..capabilities import CAPABILITIES, DOCKER_DEFAULT, to_mask

_ALL_NS = {"user": True, "pid": True, "mount": True, "net": True, "uts": True,
           "ipc": True, "cgroup": True}


def days_from_now(days: float) -> str:
    """An ISO 8601 UTC time ``days`` from now (for key expiry dates)."""
    from datetime import datetime, timedelta, timezone
    t = datetime.now(timezone.utc) + timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


_DEFAULT = object()


def _image(ref="example.com/app/web:1.0", expires=_DEFAULT, signed=True):
    if expires is _DEFAULT:
        expires = days_from_now(365)
    return {"ref": ref, "digest": "sha256:" + "ab" * 32,
            "verification": {"fingerprint": "0123456789ABCDEF0123456789ABCDEF01234567",
                             "prefix": "example.com/app", "key_expires": expires,
                             "signed_at": "2026-10-01T12:00:00Z"} if signed else None}


def launch(profile: str = "default", sandbox_id: str = "sb-0001", **overrides) -> dict:
    """A launch record's ``data`` as the runtime writes it for ``profile``
    (``default``, ``strict`` or ``unconfined``), then ``overrides`` applied
    (top-level keys replaced)."""
    caps = sorted(DOCKER_DEFAULT)
    d = {
        "sandbox_id": sandbox_id, "name": None,
        "user": {"uid": 0, "name": "root"},
        "command": ["/bin/sh", "-c", "echo hello"],
        "profile": {"name": profile, "digest": "sha256:" + "11" * 32,
                    "source": f"/usr/share/sandbox/profiles/{profile}.toml",
                    "unconfined": False},
        "plan_digest": "sha256:" + "22" * 32,
        "root": {"kind": "image", "path": None},
        "image": _image(),
        "insecure_options": [],
        "namespaces": dict(_ALL_NS),
        "capabilities": caps,
        "seccomp": {"enabled": True, "default_action": "errno:ENOSYS",
                    "digest": "sha256:" + "33" * 32},
        "no_new_privs": True,
        "read_only_root": True,
        "volumes": [{"source": "/srv/data/job1", "target": "/data", "mode": "rw",
                     "label": "s0:c5,c9"}],
        "network": {"mode": "none"},
        "limits": {"memory": 512 * 1024 * 1024, "pids": 1024, "nofile": 1024},
        "label": "system_u:system_r:sandbox_t:s0:c5,c9",
        "landlock": {"enabled": True, "abi": 7},
        "missing": [],
        "effective": {"CapEff": "%016x" % to_mask(caps), "CapPrm": "%016x" % to_mask(caps),
                      "CapBnd": "%016x" % to_mask(caps), "CapInh": "0000000000000000",
                      "CapAmb": "0000000000000000", "NoNewPrivs": 1, "Seccomp": 2,
                      # as `sandbox.runtime.spawn.read_effective` reads them back:
                      # the map's numbers joined by single spaces, on one line
                      "Seccomp_filters": 1, "uid_map": "0 100000 65536",
                      "gid_map": "0 100000 65536",
                      "namespaces_differ": sorted(_ALL_NS)},
    }
    if profile == "strict":
        d["capabilities"] = []
        for k in ("CapEff", "CapPrm", "CapBnd"):
            d["effective"][k] = "0000000000000000"
        d["limits"] = {"memory": 256 * 1024 * 1024, "pids": 128, "nofile": 256}
        d["volumes"] = []
    elif profile == "unconfined":
        allcaps = sorted(CAPABILITIES)
        d["profile"]["unconfined"] = True
        d["capabilities"] = allcaps
        d["seccomp"] = {"enabled": False, "default_action": None, "digest": None}
        d["no_new_privs"] = False
        d["read_only_root"] = False
        d["limits"] = {"memory": None, "pids": None, "nofile": None}
        d["landlock"] = {"enabled": False, "abi": None}   # as the runtime records it
        d["missing"] = ["cgroups"]
        d["volumes"] = []
        m = "%016x" % to_mask(allcaps)
        d["effective"].update(CapEff=m, CapPrm=m, CapBnd=m, NoNewPrivs=0, Seccomp=0,
                              Seccomp_filters=0)
    d = copy.deepcopy(d)
    d.update(overrides)
    return d


def exit_(sandbox_id: str = "sb-0001", status: int = 0, signal: int | None = None,
          duration_ms: float = 12.5) -> dict:
    """An exit record's ``data``."""
    return {"sandbox_id": sandbox_id, "status": status, "signal": signal,
            "duration_ms": duration_ms}


def refusal(sandbox_id: str = "sb-0009", reason: str = "unsigned",
            stage: str = "verification") -> dict:
    """A refusal record's ``data`` (an unsigned image, refused)."""
    return {"sandbox_id": sandbox_id, "reason": reason, "stage": stage,
            "error": "image example.com/evil:latest has no signature",
            "image": {"ref": "example.com/evil:latest", "digest": "sha256:" + "cd" * 32},
            "profile": {"name": "default"}}


def image(ref: str = "example.com/app/web:1.0", **kw) -> dict:
    """An image value for ``launch(image=...)``: ``expires`` (ISO time or
    None for a key that never expires; default a year from now),
    ``signed=False`` for an unverified image."""
    return _image(ref, **kw)
