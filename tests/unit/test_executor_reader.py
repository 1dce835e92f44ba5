"""The compiled executor's plan reader (issue 10): the wire format built
from real plans parses; malformed plans (property tests, bounded budget)
get a clear one-line error and exit 1, never a crash. Also run against a
debug build with AddressSanitizer and UBSan. No privilege: ``--check``
parses only."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sandbox import Sandbox
from sandbox.runtime.steps import CONFINEMENT_KINDS
from sandbox.runtime.wire import MAGIC, OPCODES, WIRE_VERSION, WireError, build_wire, \
    executor_path

pytestmark = pytest.mark.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[2]
EXE = executor_path()


def _check(data: bytes, exe: str = EXE) -> subprocess.CompletedProcess:
    return subprocess.run([exe, "--check"], input=data, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def wire(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plan")
    plan = Sandbox("default", root=tmp / "r").plan(["/bin/true", "a b", ""])
    steps = [s for s in plan.steps if s.kind in CONFINEMENT_KINDS]
    return build_wire(steps), steps


@pytest.fixture(scope="module")
def asan_exe(tmp_path_factory):
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("asan") / "sandbox-exec-asan"
    r = subprocess.run([cc, "-O1", "-g", "-Wall", "-Wextra", "-Werror",
                        "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                        "-o", str(out), str(REPO / "csrc" / "sandbox-exec.c")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return str(out)


def test_executor_is_installed_static_and_hardened():
    assert os.access(EXE, os.X_OK), f"{EXE} missing: reinstall (pip install -e .)"
    out = subprocess.run(["file", EXE], capture_output=True, text=True).stdout \
        if shutil.which("file") else "static-pie linked"
    assert "static-pie linked" in out
    if shutil.which("readelf"):     # binutils: -z relro -z now, no executable stack
        dyn = subprocess.run(["readelf", "-d", "-l", "-W", EXE], capture_output=True,
                             text=True).stdout
        assert "BIND_NOW" in dyn and "GNU_RELRO" in dyn
        stack = [ln for ln in dyn.splitlines() if "GNU_STACK" in ln]
        assert stack and "RWE" not in stack[0]


def test_real_plan_parses(wire):
    data, steps = wire
    r = _check(data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == f"ok: {len(steps)} steps"


def test_wire_header_and_opcode_order(wire):
    data, steps = wire
    assert data[:4] == MAGIC and struct.unpack("<HHI", data[4:12]) == (WIRE_VERSION, 0,
                                                                     len(steps))
    ops = [OPCODES[s.kind] for s in steps]
    assert ops == sorted(ops) and ops[-1] == OPCODES["execve"]


def test_steps_the_executor_cannot_perform_are_refused_by_the_serializer(tmp_path):
    plan = Sandbox("default", root=tmp_path / "r").plan(["/bin/true"])
    with pytest.raises(WireError, match="cannot perform step"):
        build_wire(plan.steps)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"XXXX" + d[4:], "bad magic"),
    (lambda d: d[:4] + struct.pack("<H", WIRE_VERSION + 1) + d[6:], "wire version"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\0", "after the last step"),
    (lambda d: d[:8] + struct.pack("<I", 0) + d[12:], "0 steps"),
])
def test_malformed_header_named(wire, mutate, message):
    r = _check(mutate(wire[0]))
    assert r.returncode == 1 and message in r.stderr.decode(), r.stderr
    assert r.stderr.decode().count("\n") == 1 and r.stderr.startswith(b"sandbox-exec: plan:")


def _record(op: int, fields: bytes) -> bytes:
    return struct.pack("<HHI", op, 0, len(fields)) + fields


def _plan(*records: bytes) -> bytes:
    return MAGIC + struct.pack("<HHI", WIRE_VERSION, 0, len(records)) + b"".join(records)


EXECVE = _record(9, b"u" + struct.pack("<Q", 1) + b"s" + struct.pack("<I", 9) + b"/bin/true"
                 + b"u" + struct.pack("<Q", 0))


def test_seccomp_after_execve_or_repeated_step_refused():
    r = _check(_plan(EXECVE, _record(1, b"")))
    assert r.returncode == 1 and b"setsid after execve" in r.stderr
    r = _check(_plan(_record(5, b""), _record(5, b""), EXECVE))
    assert r.returncode == 1 and b"no_new_privs after no_new_privs" in r.stderr


def test_plan_without_execve_refused():
    r = _check(_plan(_record(1, b"")))
    assert r.returncode == 1 and b"not execve" in r.stderr


def test_unknown_step_kind_refused_not_skipped():
    r = _check(_plan(_record(77, b""), EXECVE))
    assert r.returncode == 1 and b"unknown step kind 77" in r.stderr


def test_seccomp_program_of_odd_length_refused():
    r = _check(_plan(_record(8, b"b" + struct.pack("<I", 7) + b"\0" * 7), EXECVE))
    assert r.returncode == 1 and b"seccomp" in r.stderr


def test_string_with_nul_refused():
    r = _check(_plan(_record(2, b"s" + struct.pack("<I", 3) + b"/\0x"), EXECVE))
    assert r.returncode == 1 and b"NUL" in r.stderr


def _assert_clean(r: subprocess.CompletedProcess) -> None:
    # exit 0 (a valid plan) or 1 with one line naming the plan; never a signal
    assert r.returncode in (0, 1), (r.returncode, r.stderr[-2000:])
    if r.returncode == 1:
        assert r.stderr.startswith(b"sandbox-exec: plan: ") and r.stderr.count(b"\n") == 1, \
            r.stderr[-2000:]


_FUZZ = settings(max_examples=120, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=256))
def test_random_bytes_never_crash(data):
    _assert_clean(_check(data))
    _assert_clean(_check(MAGIC + struct.pack("<HH", WIRE_VERSION, 0) + data))


@_FUZZ
@given(st.data())
def test_mutated_real_plan_never_crashes(wire, data):
    raw = bytearray(wire[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "big"]))
        if kind == "flip":
            raw[i] ^= data.draw(st.integers(1, 255))
        elif kind == "cut":
            del raw[i:i + data.draw(st.integers(1, 64))]
        elif kind == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        elif i + 4 <= len(raw):
            raw[i:i + 4] = struct.pack("<I", data.draw(st.sampled_from(
                [0xFFFFFFFF, 0x7FFFFFFF, 0x10000, 0])))
        if not raw:
            break
    _assert_clean(_check(bytes(raw)))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_mutated_plans_under_address_sanitizer(wire, asan_exe, data):
    raw = bytearray(wire[0])
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    r = _check(bytes(raw[:cut]), asan_exe)
    _assert_clean(r)


# -- the executor's dry mode: what it would perform, in order (no root) --------

def _dry(data: bytes) -> list[list[str]]:
    r = subprocess.run([EXE, "--check", "--trace", "1"], input=data, capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[-1].startswith("ok: ")
    return [ln.split(" ", 1) for ln in lines[:-1]]


def test_dry_mode_order_caps_ids_nnp_landlock_seccomp_execve(wire):
    data, steps = wire
    kinds = [p[0] for p in _dry(data)]
    assert kinds == [s.kind for s in steps]
    assert kinds[kinds.index("capabilities"):] == [
        "capabilities", "ids", "no_new_privs", "landlock", "seccomp", "execve"]


def test_dry_mode_arguments_match_the_dry_run_json(tmp_path):
    from sandbox.capabilities import CAPABILITIES
    plan = Sandbox("strict", root=tmp_path / "r").plan(["/bin/echo", "x"])
    listed = [s for s in plan.to_dict()["steps"] if s["kind"] in CONFINEMENT_KINDS]
    performed = _dry(build_wire([s for s in plan.steps if s.kind in CONFINEMENT_KINDS]))
    assert [p[0] for p in performed] == [s["kind"] for s in listed]
    args = {p[0]: p[1] if len(p) > 1 else "" for p in performed}
    by = {s["kind"]: s for s in listed}
    assert args["chdir"] == by["chdir"]["workdir"]
    assert int(args["capabilities"], 16) == sum(1 << CAPABILITIES[c]
                                               for c in by["capabilities"]["keep"])
    assert args["ids"] == f"{by['ids']['uid']} {by['ids']['gid']} {int(by['ids']['setgroups'])}"
    if "landlock" in by:
        assert args["landlock"] == f"{by['landlock']['abi']} {len(by['landlock']['rules'])}"
    assert int(args["seccomp"]) == by["seccomp"]["instructions"]
    assert args["execve"] == "/bin/echo"


def test_enter_steps_join_chroot_fork_come_first():
    from sandbox.runtime.steps import ChrootFd, ForkWait, JoinNamespaces
    steps = (JoinNamespaces(((5, 0x10000000), (6, 0x00020000))), ChrootFd(7), ForkWait())
    data = build_wire(steps + (EXECVE_STEP,))
    assert [p[0] for p in _dry(data)] == ["setns", "chroot", "fork", "execve"]
    # and never after confinement has begun
    late = build_wire((EXECVE_STEP,))[:8] + struct.pack("<I", 2) + \
        build_wire((ChrootFd(7),))[12:] + build_wire((EXECVE_STEP,))[12:]
    assert _check(late).returncode == 0
    bad = build_wire((EXECVE_STEP,))[:8] + struct.pack("<I", 2) + \
        build_wire((EXECVE_STEP,))[12:] + build_wire((ChrootFd(7),))[12:]
    r = _check(bad)
    assert r.returncode == 1 and b"chroot after execve" in r.stderr


def test_setns_with_a_time_namespace_flag_refused():
    from sandbox.runtime.steps import JoinNamespaces
    r = _check(build_wire((JoinNamespaces(((5, 0x80),)), EXECVE_STEP)))
    assert r.returncode == 1 and b"namespace type 0x80" in r.stderr


from sandbox.runtime.steps import Execve  # noqa: E402

EXECVE_STEP = Execve(("/bin/true",), (("PATH", "/bin"),))


# -- the OCI kinds: parsed, ordered, refused when malformed, fuzzed ------------

@pytest.fixture(scope="module")
def oci_wire(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oci")
    sets = (("CAP_KILL", "CAP_CHOWN"), ("CAP_KILL",), ("CAP_KILL",), ("CAP_KILL",),
            ("CAP_KILL",))
    plan = Sandbox("default", root=tmp / "r").plan(["/bin/true"])._replace(
        no_new_privs=False, umask=0o77, additional_gids=(1, 2, 3), controlling_tty=True,
        capability_sets=sets)
    steps = [s for s in plan.steps if s.kind in CONFINEMENT_KINDS]
    return build_wire(steps), steps, plan


def test_oci_plan_parses_and_dry_mode_matches_its_steps(oci_wire):
    data, steps, plan = oci_wire
    kinds = [p[0] for p in _dry(data)]
    assert kinds == [s.kind for s in steps] == [
        s["kind"] for s in plan.to_dict()["steps"] if s["kind"] in CONFINEMENT_KINDS]
    assert kinds[:8] == ["setsid", "controlling_tty", "umask", "chdir", "seccomp_early",
                         "capability_sets", "groups", "ids"]
    assert "seccomp" not in kinds
    args = dict(p for p in _dry(data) if len(p) > 1)
    assert args["umask"] == "0077" and args["groups"] == "3 1,2,3"


def _oci_only(*steps):
    return build_wire(tuple(steps) + (EXECVE_STEP,))


def test_capabilities_and_capability_sets_together_refused():
    from sandbox.runtime.steps import Capabilities, CapabilitySets
    r = _check(_oci_only(Capabilities(("CAP_KILL",)), CapabilitySets((), (), (), (), ())))
    assert r.returncode == 1 and b"capability_sets after capabilities" in r.stderr


def test_seccomp_twice_refused_and_early_seccomp_after_the_drop_refused(oci_wire):
    from sandbox.runtime.steps import CapabilitySets, Seccomp, SeccompEarly
    _, steps, plan = oci_wire
    f = plan.seccomp
    r = _check(_oci_only(SeccompEarly(f), Seccomp(f)))
    assert r.returncode == 1 and b"a second filter after seccomp_early" in r.stderr
    r = _check(_oci_only(CapabilitySets((), (), (), (), ()), SeccompEarly(f)))
    assert r.returncode == 1 and b"seccomp_early after capability_sets" in r.stderr


def test_malformed_oci_fields_refused():
    from sandbox.runtime.steps import Groups, Umask
    with pytest.raises(WireError):
        build_wire((Umask(0o1777), EXECVE_STEP))
    hand = _oci_only(Umask(0o77)).replace(struct.pack("<Q", 0o77), struct.pack("<Q", 0o7777))
    r = _check(hand)
    assert r.returncode == 1 and b"umask" in r.stderr
    r = _check(_oci_only(Groups(())))
    assert r.returncode == 1 and b"groups: 0 groups" in r.stderr
    r = _check(_oci_only(Groups((1 << 32,))))
    assert r.returncode == 1 and b"gid 4294967296 out of range" in r.stderr


@_FUZZ
@given(st.data())
def test_mutated_oci_plan_never_crashes(oci_wire, data):
    raw = bytearray(oci_wire[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        if data.draw(st.booleans()):
            raw[i] ^= data.draw(st.integers(1, 255))
        else:
            del raw[i:i + data.draw(st.integers(1, 64))]
        if not raw:
            break
    _assert_clean(_check(bytes(raw)))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_mutated_oci_plans_under_address_sanitizer(oci_wire, asan_exe, data):
    raw = bytearray(oci_wire[0])
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    _assert_clean(_check(bytes(raw[:data.draw(st.integers(0, len(raw)))]), asan_exe))
