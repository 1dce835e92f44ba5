"""Set up the CLI-launch comparison of issue 10 (the launch path): a
busybox root and an OCI bundle for runc with a user namespace, no
capabilities and Docker's seccomp filter (the same as `launch.py`), then
print the two command lines to time side by side.

    .venv/bin/python benchmarks/cli_setup.py [WORK]     # default /var/tmp/sandbox-bench-cli

Time them with a paired A/B timer (A and B interleaved, medians and the
ratio of each pair), e.g. hyperfine, or ``/usr/bin/time -v`` for peak RSS;
the figures are in docs/benchmarks.md ("The CLI launch path").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import launch as L  # noqa: E402 - benchmarks/launch.py, for its root and bundle


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("cli_setup.py: run me as root (runc and the id ranges need it)")
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/sandbox-bench-cli")
    L.WORK, L.ROOT = work, work / "rootfs"
    root = L.make_rootfs()
    bundle = L.make_bundle(root, L.MOBY_SECCOMP)
    state = work / "state"
    print(f"A: {L.SANDBOX_CLI} --root {state} run --profile default --rootfs {root} -- /bin/true")
    print(f"B: runc run --bundle {bundle} bench-cli")


if __name__ == "__main__":
    main()
