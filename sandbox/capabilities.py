"""Capability names and numbers, as in capabilities(7) and <linux/capability.h>.

Names are always spelled ``CAP_*``. The kernel's highest capability is read
from ``/proc/sys/kernel/cap_last_cap`` at launch, so capabilities newer than
this table are still dropped.
"""

from __future__ import annotations

CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6,
    "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
NAMES: dict[int, str] = {v: k for k, v in CAPABILITIES.items()}

#: Docker's default capability set (moby oci/caps/defaults.go; the CIS Docker
#: Benchmark 5.4 does not flag these).
DOCKER_DEFAULT: frozenset[str] = frozenset({
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
    "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
    "CAP_SYS_CHROOT",
})


def normalize(name: str) -> str:
    """``chown``/``CHOWN``/``CAP_CHOWN`` to ``CAP_CHOWN``; ``KeyError`` if unknown."""
    n = name.strip().upper()
    if not n.startswith("CAP_"):
        n = "CAP_" + n
    if n not in CAPABILITIES:
        raise KeyError(name)
    return n


def last_cap() -> int:
    """The kernel's highest capability number (capabilities(7))."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def to_mask(names) -> int:
    """A set of names to the 64-bit mask used in /proc/<pid>/status."""
    mask = 0
    for n in names:
        mask |= 1 << CAPABILITIES[n]
    return mask


def from_mask(mask: int) -> frozenset[str]:
    """A /proc/<pid>/status mask (``CapEff`` etc.) to names; unknown bits as ``CAP_<n>``."""
    out = set()
    bit = 0
    while mask:
        if mask & 1:
            out.add(NAMES.get(bit, f"CAP_{bit}"))
        mask >>= 1
        bit += 1
    return frozenset(out)
