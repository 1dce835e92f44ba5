"""The OCI runtime validation suite (opencontainers/runtime-tools), run
against sandbox-oci and runc side by side in the same run.

Bounded: the suite is built once (~20 s), each program has a time limit,
and the two runtimes run at the same time (one program each at a time:
more parallelism on two cores turns slow programs into timeouts).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from tests.conformance import oci_validation as ov

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs containers as root")]

OCI = str(Path(sys.executable).parent / "sandbox-oci")

#: programs runc passes here that sandbox-oci fails on purpose, and why
KNOWN_GAPS = {
    # a config that shares the host's mount namespace: refused, the root
    # is always built in a mount namespace of its own
    "linux_ns_itype.t",
    # joining a mount namespace by path (refused, as above); its ipc, net,
    # pid, user and uts cases pass
    "linux_ns_path.t",
    # `true` ends before the program's `kill`: a stopped container refuses
    # kill, as the spec says it MUST; runc passes when its exited process
    # is still an unreaped zombie at that moment (a race it wins or loses)
    "pidfile.t",
}
#: the passing-assertion floor measured for sandbox-oci (3401 in December
#: 2026, runc 3705 of which 309 in a program it then fails); below it is
#: a regression
FLOOR = 3350


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    if not os.path.isdir(ov.SUITE):
        pytest.skip(f"the validation suite is absent ({ov.SUITE})")
    if shutil.which("go") is None or shutil.which("make") is None:
        pytest.skip("golang-go (and make) are needed to build the suite (install.sh)")
    if shutil.which("runc") is None:
        pytest.skip("runc is needed as the reference runtime (install.sh)")
    return ov.build(str(tmp_path_factory.mktemp("rt") / "runtime-tools"))


def test_sandbox_oci_passes_what_runc_passes(suite, tmp_path):
    wrapper = tmp_path / "sandbox-oci"
    wrapper.write_text(f"#!/bin/sh\nexec {OCI} --root {tmp_path / 'state'} "
                       f"--log {tmp_path / 'log'} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    res = ov.run_all(suite, {"sandbox-oci": str(wrapper), "runc": shutil.which("runc")},
                     limit=60, jobs=1)
    print("\n" + ov.table(res))
    ours, ref = res["sandbox-oci"], res["runc"]
    ok_ours = sum(v[0] for v in ours.values())
    ok_ref = sum(v[0] for v in ref.values())

    def clean(v):
        return not v[1] and not v[2]
    # a program runc passed and sandbox-oci failed runs once more, alone: on
    # a shared two-core machine a 5 s wait in a program can lapse (the
    # table shows the first result, this line the second)
    for p in ref:
        if clean(ref[p]) and not clean(ours[p]) and os.path.basename(p) not in KNOWN_GAPS:
            ours[p] = ov.run_one(suite, str(wrapper), p, 60)
            print(f"rerun {os.path.basename(p)}: {ours[p]}")
    lost = sorted(os.path.basename(p) for p in ref if clean(ref[p]) and not clean(ours[p]))
    assert set(lost) <= KNOWN_GAPS, f"sandbox-oci fails programs runc passes: {lost}"
    assert sum(map(clean, ours.values())) >= sum(map(clean, ref.values()))
    # passing assertions of the programs that ran to their end: a program
    # that exits non-zero after its assertions failed its point (runc's 309
    # in process_capabilities_fail come from accepting CAP_TEST, which the
    # spec says MUST be an error; sandbox-oci refuses it)
    done_ours = sum(v[0] for v in ours.values() if not v[2])
    done_ref = sum(v[0] for v in ref.values() if not v[2])
    print(f"passing assertions: sandbox-oci {ok_ours} ({done_ours} in completed programs), "
          f"runc {ok_ref} ({done_ref})")
    assert done_ours >= done_ref
    assert ok_ours >= FLOOR, f"{ok_ours} passing assertions, below the floor {FLOOR} " \
                             f"(runc: {ok_ref})"
