"""Regressions found by trying the tool as a new user would: each test is
named after the problem and asserts the exact behaviour now expected."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from helpers import IS_ROOT, SANDBOX, run_sandbox

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="launches need root here (subordinate ids)")


def test_long_host_command_line_does_not_crash_pid1(sroot):
    # PID 1 rewrites its command line in place; a 20 kB argv once segfaulted it
    big = "a" * 20000
    r = run_sandbox(sroot, "run", "--", "sh", "-c",
                    'echo ${#1}; tr "\\0" " " </proc/1/cmdline | tr -s " "; echo', "x", big)
    assert r.returncode == 0, r.stderr
    n, cmdline = r.stdout.splitlines()[:2]
    assert n == "20000"
    assert cmdline.strip() == "sandbox-init"


def _start(sroot, *cmd):
    return subprocess.Popen([SANDBOX, "--root", str(sroot), "run", "--", *cmd],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(p):
    assert p.stdout.readline().strip() == "ready"


def _wait_for_process(cmdline: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["pgrep", "-f", f"^{cmdline}$"], capture_output=True).returncode == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"{cmdline!r} did not start")


def test_sigint_stops_a_shell_payload_and_its_children(sroot):
    p = _start(sroot, "sh", "-c", "echo ready; sleep 317; echo after")
    _wait_ready(p)
    # once the shell waits for its child (a ^C before that is the shell's
    # own business: dash notes it and goes on)
    _wait_for_process("sleep 317")
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=10)
    assert p.returncode == 130
    assert "after" not in out


def test_third_stop_request_kills_a_payload_that_ignores_them(sroot):
    p = _start(sroot, "sh", "-c", "trap '' TERM INT; echo ready; while :; do sleep 0.1; done")
    _wait_ready(p)
    for _ in range(3):
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    p.communicate(timeout=10)
    assert p.returncode == 137


def test_exit_status_survives_closed_stdout_and_stderr(sroot):
    for redirect in ({"stdout": subprocess.DEVNULL, "close": 1},
                     {"stderr": subprocess.DEVNULL, "close": 2}):
        fd = redirect["close"]
        r = subprocess.run(["sh", "-c", f'exec {fd}>&-; exec "$@"', "sh", SANDBOX, "--root",
                            str(sroot), "run", "--", "sh", "-c", "echo x; echo y >&2; exit 4"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 4, r.stderr
        assert "Traceback" not in r.stderr


def test_root_that_is_a_file_gives_a_one_line_error(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    r = run_sandbox(f, "run", "--", "true")
    assert r.returncode == 125
    assert "Traceback" not in r.stderr and "Not a directory" in r.stderr
    r = run_sandbox(f, "ps")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_home_is_writable_in_the_default_host_view(sroot):
    r = run_sandbox(sroot, "run", "--", "sh", "-c", 'touch "$HOME/x" && mkdir "$HOME/.cache" && echo ok')
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_profile_written_without_extends_is_still_locked_down(sroot, tmp_path):
    prof = tmp_path / "empty.toml"      # read by the supervisor, not the sandbox
    prof.write_text("")
    r = run_sandbox(sroot, "run", "-p", str(prof), "--", "sh", "-c",
                    "grep Seccomp: /proc/self/status; wc -c </proc/timer_list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["Seccomp:", "2", "0"]


def test_user_outside_the_mapped_range_is_refused_before_launch(sroot):
    for args in (("--user", "70000"), ("--user", "5:70000"), ("--dry-run", "--user", "70000")):
        r = run_sandbox(sroot, "run", *args, "--", "id")
        assert r.returncode == 125
        assert "not mapped in this sandbox (ids 0-65535 are)" in r.stderr


def test_relabelling_below_a_host_system_folder_is_refused(sroot):
    r = run_sandbox(sroot, "label", "set", "/usr/share/doc", "s0:c1,c2")
    assert r.returncode == 1
    assert "relabelling a host system folder is refused" in r.stderr
    assert b"sandbox" not in b"".join(os.listxattr("/usr/share/doc"))


@pytest.mark.parametrize("target", ["/proc", "/", "/dev/x", "/sys/fs"])
def test_volume_cannot_cover_kernel_file_systems(sroot, target):
    r = run_sandbox(sroot, "run", "-v", f"/var/tmp:{target}", "--", "true")
    assert r.returncode == 125
    assert "a volume cannot cover" in r.stderr


def test_api_rejects_a_string_command_and_bad_env():
    from sandbox import Sandbox
    from sandbox.errors import UsageError
    with pytest.raises(UsageError, match="list of strings"):
        Sandbox(audit=False).plan("true")
    with pytest.raises(UsageError, match="must be a string"):
        Sandbox(env={"A": 1})
    with pytest.raises(UsageError, match="bad environment variable name"):
        Sandbox(env={"=x": "1"})
