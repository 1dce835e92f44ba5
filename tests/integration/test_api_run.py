"""`Sandbox.run` as `subprocess.run` (issue 15): stdio, capture, input,
text, timeout (the whole sandbox killed before `TimeoutExpired`), env and
cwd as recorded per-run overrides, several threads at once, asyncio."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

from sandbox import Sandbox  # noqa: E402
from sandbox.errors import TimeoutExpired, UsageError  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


@pytest.fixture
def box(sroot):
    return Sandbox(root=sroot)


def _records(sroot, kind):
    r = helpers.run_sandbox(sroot, "audit", "log", "--json")
    return [json.loads(x) for x in r.stdout.splitlines()
            if x.strip() and json.loads(x)["kind"] == kind]


def test_capture_output_text_and_input(box, sroot):
    r = box.run(["sh", "-c", "echo out; echo err >&2; cat; exit 3"], input="in\r\nput",
                capture_output=True, text=True, timeout=10)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\nin\nput", "err\n")
    assert r.plan_digest.startswith("sha256:") and isinstance(r.effective, dict)
    [launch] = _records(sroot, "launch")
    assert launch["seq"] == r.audit_seq
    assert launch["data"]["plan_digest"] == r.plan_digest


def test_bytes_by_default_stderr_to_stdout_and_devnull(box):
    r = box.run(["sh", "-c", "echo a; echo b >&2; cat"], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert sorted(r.stdout.split()) == [b"a", b"b"] and r.stderr is None


def test_stdin_pipe_without_input_is_empty(box):
    r = box.run(["sh", "-c", "cat; echo end"], stdin=subprocess.PIPE, capture_output=True)
    assert r.stdout == b"end\n"


def test_stdout_to_a_file_object(box, tmp_path):
    with open(tmp_path / "out", "wb") as f:
        box.run(["echo", "to a file"], stdout=f)
    assert (tmp_path / "out").read_bytes() == b"to a file\n"


def test_timeout_kills_the_whole_sandbox_then_raises(box, sroot):
    t0 = time.monotonic()
    with pytest.raises(TimeoutExpired) as e:
        box.run(["sh", "-c", "echo partial; sleep 30 & sleep 30"], capture_output=True,
                timeout=1)
    assert time.monotonic() - t0 < 4
    assert e.value.output == b"partial\n" and e.value.timeout == 1
    assert e.value.result.status == 124
    assert helpers.runtime_leftovers(sroot) == []
    [launch] = _records(sroot, "launch")
    assert launch["data"]["limits"]["origins"]["timeout"] == "flag --timeout"
    [ex] = _records(sroot, "exit")
    assert ex["data"]["timed_out"] is True
    for f, _ in launch["data"]["limits"]["cgroup"]:
        assert not os.path.exists(os.path.dirname(f))


def test_a_payload_exiting_124_itself_is_not_a_timeout(box):
    assert box.run(["sh", "-c", "exit 124"], timeout=30).status == 124


def test_env_and_cwd_per_run_are_recorded_as_flags(box, sroot):
    r = box.run(["sh", "-c", "pwd; echo $FOO"], capture_output=True, text=True,
                env={"FOO": "bar"}, cwd="/tmp")
    assert r.stdout == "/tmp\nbar\n"
    r2 = box.run(["sh", "-c", "echo ${FOO:-unset}"], capture_output=True, text=True)
    assert r2.stdout == "unset\n"           # per run: the Sandbox is unchanged


@pytest.mark.parametrize("kw, exc", [
    ({"input": b"x", "stdin": subprocess.DEVNULL}, ValueError),
    ({"capture_output": True, "stdout": subprocess.PIPE}, ValueError),
    ({"timeout": "soon"}, UsageError), ({"cwd": "relative"}, UsageError),
    ({"env": {"1BAD": "x"}}, UsageError),
])
def test_bad_arguments_are_refused_before_anything_runs(box, sroot, kw, exc):
    with pytest.raises(exc):
        box.run(["true"], **kw)
    assert helpers.runtime_leftovers(sroot) == []


def test_twenty_threads_at_once_all_succeed(box):
    results: list = [None] * 20
    errors: list = []

    def go(i):
        try:
            results[i] = box.run(["sh", "-c", f"echo {i}"], capture_output=True, text=True,
                                 timeout=60)
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert [(r.status, r.stdout) for r in results] == [(0, f"{i}\n") for i in range(20)]
    assert len({r.sandbox_id for r in results}) == 20
    assert len({r.audit_seq for r in results}) == 20


def test_a_long_sandbox_in_one_thread_does_not_hold_anothers_pipes(box):
    # the attack on a threaded fork: sandbox A's first child inherits the
    # capture pipe of sandbox B launched meanwhile and keeps B waiting for
    # EOF as long as A lives (apply_child_fds closes what is not its own)
    long = threading.Thread(target=box.run, args=(["sleep", "4"],), kwargs={"timeout": 30})
    long.start()
    try:
        t0 = time.monotonic()
        for _ in range(5):
            r = box.run(["echo", "quick"], capture_output=True)
            assert r.stdout == b"quick\n"
        assert time.monotonic() - t0 < 3.5
    finally:
        long.join(30)


def test_asyncio_variant(box):
    async def main():
        return await asyncio.gather(*(box.run_async(["sh", "-c", f"echo {i}"],
                                                    capture_output=True, timeout=30)
                                      for i in range(4)))
    rs = asyncio.run(main())
    assert [r.stdout for r in rs] == [f"{i}\n".encode() for i in range(4)]


def test_asyncio_timeout_raises(box):
    async def main():
        await box.run_async(["sleep", "30"], timeout=0.5)
    with pytest.raises(TimeoutExpired):
        asyncio.run(main())


def test_a_timeout_is_refused_for_a_detached_sandbox_not_dropped(sroot):
    with pytest.raises(UsageError):
        Sandbox(root=sroot, timeout="1s").start(["sleep", "5"])
    r = helpers.run_sandbox(sroot, "run", "-d", "--timeout", "1s", "--", "sleep", "5")
    assert r.returncode == 125 and "--timeout" in r.stderr
