"""``sandbox run`` has one option table (`RUN_OPTIONS`); the click command
and the fast parser are both made from it and read every argv alike."""

from __future__ import annotations

import pytest

from sandbox.cli._run_fast import OPTIONS, RUN_OPTIONS, Opt, parse_fast
from sandbox.cli.run import build_run_command, run

ARGVS = [
    ["--", "true"],
    ["--timeout", "1s", "--cpus=0.5", "-m", "64m", "--pids-limit", "9", "--ulimit",
     "nofile=1:2", "--entrypoint", "sh", "--env-file", "/e", "--cap-add", "NET_RAW",
     "--cap-drop=ALL", "--security-opt", "seccomp=unconfined", "--tmpfs", "/t",
     "--read-only", "--read-write", "--rm", "-i", "--", "x"],
    ["-p", "strict", "--rootfs", "/r", "--", "sh", "-c", "x"],
    ["--volume=/a:/b:rw", "-v", "/c:/d", "-e", "A=1", "--env", "B=2", "--", "env"],
    ["--net", "bridge:lab", "--port", "80:80", "--dns", "192.0.2.1", "img", "--", "x"],
    ["--dry-run", "--json", "--name", "n1", "--hostname", "h", "-w", "/w", "-u", "1:2",
     "--insecure-options", "image", "example.com/app"],
    ["-d", "--", "sleep", "1"],
]


def _click_params(cmd, argv):
    ctx = cmd.make_context("run", list(argv))
    params = dict(ctx.params)
    params["argv"] = ctx.meta.get("sandbox.command")
    return params


def _fast_params(argv, options=RUN_OPTIONS):
    got = parse_fast(["run", *argv], options)
    assert got is not None, argv
    got.pop("root")
    return {k: (tuple(v) if isinstance(v, list) and k != "argv" else v) for k, v in got.items()}


def _norm(d):
    return {k: tuple(v) if isinstance(v, (list, tuple)) and k != "argv" else v
            for k, v in d.items()}


@pytest.mark.parametrize("argv", ARGVS)
def test_click_and_the_fast_parser_read_an_argv_alike(argv):
    assert _norm(_click_params(run, argv)) == _norm(_fast_params(argv))


def test_every_spelling_comes_from_the_table():
    declared = {o for p in run.params for o in getattr(p, "opts", ()) if o.startswith("-")}
    assert declared - {"-h", "--help"} == set(OPTIONS) == {n for o in RUN_OPTIONS
                                                           for n in o.names}


def test_a_new_option_is_one_entry_in_the_table():
    # the everyday-run issue adds Docker's options this way: one Opt, and
    # both parsers know it (spellings, value, repetition, default)
    table = RUN_OPTIONS + (
        Opt(("--no-flag-x",), "flag_x", takes_value=False, help="A flag."),
        Opt(("--drop-x",), "drop_x", multiple=True, metavar="X", help="Drop X."),
        Opt(("--stop-signal",), "stop_signal", metavar="SIG", default="SIGTERM", help="Signal."),
    )
    cmd = build_run_command(lambda ctx, image, **kw: kw, table)
    argv = ["--no-flag-x", "--drop-x", "CAP_CHOWN", "--drop-x=CAP_KILL", "--", "true"]
    c, f = _norm(_click_params(cmd, argv)), _norm(_fast_params(argv, table))
    assert c == f
    assert f["flag_x"] is True and f["drop_x"] == ("CAP_CHOWN", "CAP_KILL")
    assert f["stop_signal"] == "SIGTERM"
    assert "--no-flag-x" in cmd.get_help(cmd.make_context("run", ["--", "x"]))


@pytest.mark.parametrize("argv", [["--no-such"], ["--dry-run=yes"], ["-p"], ["a", "b"],
                                  ["--help"]])
def test_the_fast_parser_hands_what_it_does_not_know_to_click(argv):
    assert parse_fast(["run", *argv]) is None


def test_a_memory_limit_too_small_to_start_is_refused_by_name():
    # --memory 1 once let the cgroup's OOM killer end the sandbox during
    # setup: exit 125 with "failed during setup without saying why".
    from sandbox.errors import UsageError
    from sandbox.launch.request import build_limits
    from sandbox.profile import schema
    with pytest.raises(UsageError, match=r"bad --memory '1': .*minimum memory limit of 6M"):
        build_limits(memory="1")
    with pytest.raises(ValueError, match="minimum memory limit of 6M"):
        schema.check("limits.memory", "5m", None)
    assert build_limits(memory="6m") == (("limits.memory", 6 << 20, "flag --memory"),)
    assert schema.check("limits.memory", "unlimited", None) is None


@pytest.mark.parametrize("flag", ["--rm", "--timeout"])
def test_help_of_an_option_refused_with_detach_says_so(flag):
    # `sandbox run --help` said "--rm ... with --detach, its record and log go
    # once it has exited" while `run -d --rm` is refused: help must not
    # promise what the command refuses.
    from sandbox.cli._run_fast import execute
    from sandbox.errors import UsageError
    opt = next(o for o in RUN_OPTIONS if flag in o.names)
    assert "not yet with --detach" in opt.help.lower()
    args = {"--rm": ["--rm"], "--timeout": ["--timeout", "1s"]}[flag]
    params = parse_fast(["run", "-d", *args, "--", "true"], RUN_OPTIONS)
    with pytest.raises(UsageError, match=f"{flag} does not go with --detach"):
        execute(**params)


def test_volume_help_names_the_relabel_option():
    opt = next(o for o in RUN_OPTIONS if "--volume" in o.names)
    assert opt.metavar == "SRC:DST[:ro|rw][,z|Z]" and ":Z" in opt.help


def test_an_env_file_that_never_ends_is_refused_not_read_until_killed():
    # `sandbox run --env-file /dev/zero -- true` once read without bound
    # until the kernel killed the caller: exit 137 and not a word.
    from sandbox.errors import UsageError
    from sandbox.launch.request import parse_env_file
    with pytest.raises(UsageError, match=r"--env-file '/dev/zero': larger than 1 MiB"):
        parse_env_file("/dev/zero")


def test_an_env_file_from_a_pipe_is_still_read(tmp_path):
    import os
    from sandbox.launch.request import parse_env_file
    r, w = os.pipe()
    os.write(w, b"A=1\n# c\nB=x=y\n")
    os.close(w)
    try:
        assert parse_env_file(f"/proc/self/fd/{r}") == {"A": "1", "B": "x=y"}
    finally:
        os.close(r)


@pytest.mark.parametrize("target", ["/dev/null", "/tmp"])
def test_a_seccomp_profile_that_is_not_a_file_is_not_said_to_be_missing(target):
    # `--security-opt seccomp=/dev/null` once said "'/dev/null' does not exist"
    from sandbox.errors import UsageError
    from sandbox.launch.request import build_profile_overrides
    with pytest.raises(UsageError, match="is not a regular file") as e:
        build_profile_overrides(security_opt=[f"seccomp={target}"])
    assert "does not exist" not in str(e.value)


def test_a_bad_tmpfs_option_is_quoted_whole_in_the_error():
    # `--tmpfs /t:bogus` once said "unknown tmpfs option 'bogus' in '/t:bogus"
    # (the closing quote stripped off the message)
    from sandbox.errors import UsageError
    from sandbox.launch.request import build_profile_overrides
    with pytest.raises(UsageError) as e:
        build_profile_overrides(tmpfs=["/t:bogus"])
    assert str(e.value).endswith("unknown tmpfs option 'bogus' in '/t:bogus'")
