"""The command as a newcomer meets it: `sandbox` on PATH after install.sh
(a link to the venv's script that never replaces a file of someone else's),
shell completion for bash, zsh and fish, manual pages made from the
commands, and help text that points at no document users do not have.

install.sh's last step runs here as ``./install.sh --commands`` with
SANDBOX_PREFIX in a temporary folder, never in the machine's /usr/local."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

import helpers

REPO = helpers.REPO
VENV_SCRIPT = REPO / ".venv" / "bin" / "sandbox"
needs_venv = pytest.mark.skipif(not VENV_SCRIPT.exists(),
                                reason="no .venv in this checkout: run ./install.sh")


def _install(prefix: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "install.sh"), "--commands"], capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, SANDBOX_PREFIX=str(prefix)))


def _env_with_sandbox() -> dict:
    return dict(os.environ, PATH=f"{VENV_SCRIPT.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")


# --- sandbox on PATH -----------------------------------------------------------

@needs_venv
def test_install_links_sandbox_and_says_where(tmp_path):
    r = _install(tmp_path)
    assert r.returncode == 0, r.stderr
    link = tmp_path / "bin" / "sandbox"
    assert os.readlink(link) == str(VENV_SCRIPT)
    assert f"linked {link} -> {VENV_SCRIPT}" in r.stderr
    out = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "sandbox" in out.stdout
    assert (tmp_path / "share/bash-completion/completions/sandbox").is_file()
    assert (tmp_path / "share/zsh/site-functions/_sandbox").is_file()
    assert (tmp_path / "share/fish/vendor_completions.d/sandbox.fish").is_file()
    assert (tmp_path / "share/man/man1/sandbox-run.1").is_file()


@needs_venv
def test_install_twice_is_quiet_and_changes_nothing(tmp_path):
    assert _install(tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    r = _install(tmp_path)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after
    assert os.readlink(tmp_path / "bin" / "sandbox") == str(VENV_SCRIPT)


@needs_venv
def test_install_never_clobbers_a_foreign_sandbox_command(tmp_path):
    (tmp_path / "bin").mkdir()
    mine = tmp_path / "bin" / "sandbox"
    mine.write_text("#!/bin/sh\necho someone else's sandbox\n")
    r = _install(tmp_path)
    assert r.returncode == 0, r.stderr
    assert mine.read_text() == "#!/bin/sh\necho someone else's sandbox\n"
    assert f"left {mine} alone" in r.stderr
    mine.unlink()
    mine.symlink_to("/usr/bin/true")
    r = _install(tmp_path)
    assert os.readlink(mine) == "/usr/bin/true" and f"left {mine} alone" in r.stderr


@needs_venv
def test_install_relinks_a_link_to_another_checkouts_venv(tmp_path):
    (tmp_path / "bin").mkdir()
    link = tmp_path / "bin" / "sandbox"
    link.symlink_to("/elsewhere/checkout/.venv/bin/sandbox")
    r = _install(tmp_path)
    assert r.returncode == 0, r.stderr
    assert os.readlink(link) == str(VENV_SCRIPT)
    assert "it linked to /elsewhere/checkout/.venv/bin/sandbox" in r.stderr


@needs_venv
def test_install_leaves_foreign_pages_and_completions_alone(tmp_path):
    page = tmp_path / "share/man/man1/sandbox.1"
    comp = tmp_path / "share/bash-completion/completions/sandbox"
    for f in (page, comp):
        f.parent.mkdir(parents=True)
        f.write_text("not ours\n")
    r = _install(tmp_path)
    assert r.returncode == 0, r.stderr
    assert page.read_text() == "not ours\n" and comp.read_text() == "not ours\n"
    assert f"left {page} alone" in r.stderr and f"left {comp} alone" in r.stderr
    assert (tmp_path / "share/man/man1/sandbox-run.1").is_file()


# --- completion -----------------------------------------------------------------

@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_click_script(sroot, shell):
    r = helpers.run_sandbox(sroot, "completion", shell)
    assert r.returncode == 0, r.stderr
    assert "_SANDBOX_COMPLETE" in r.stdout


def test_completion_unknown_shell_is_a_usage_error(sroot):
    r = helpers.run_sandbox(sroot, "completion", "tcsh")
    assert r.returncode == 2 and "tcsh" in r.stderr


@needs_venv
def test_bash_completion_completes_commands_and_options():
    script = ('source <(sandbox completion bash)\n'
              'COMP_WORDS=(sandbox pro); COMP_CWORD=1; COMPREPLY=(); _sandbox_completion sandbox\n'
              'printf "%s\\n" "${COMPREPLY[@]}"; echo --\n'
              'COMP_WORDS=(sandbox profile show --no); COMP_CWORD=3; COMPREPLY=(); _sandbox_completion sandbox\n'
              'printf "%s\\n" "${COMPREPLY[@]}"; echo --\n'
              'COMP_WORDS=(sandbox profile show st); COMP_CWORD=3; COMPREPLY=(); _sandbox_completion sandbox\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                       env=_env_with_sandbox())
    assert r.returncode == 0, r.stderr
    first, second, third = r.stdout.split("--\n")
    assert first.split() == ["profile"]
    assert "--no-origins" in second.split()
    assert third.split() == ["strict"]          # profile names


@needs_venv
def test_zsh_completion_script_parses_and_answers():
    if shutil.which("zsh") is None:
        pytest.skip("zsh is not installed (install.sh installs it)")
    r = subprocess.run(["bash", "-c", "sandbox completion zsh | zsh -n"], capture_output=True,
                       text=True, timeout=60, env=_env_with_sandbox())
    assert r.returncode == 0, r.stderr
    env = dict(_env_with_sandbox(), _SANDBOX_COMPLETE="zsh_complete",
               COMP_WORDS="sandbox profile sh", COMP_CWORD="2")
    r = subprocess.run(["sandbox"], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and "show" in r.stdout.split("\n"), r.stdout + r.stderr


@needs_venv
def test_fish_completion_completes_commands():
    if shutil.which("fish") is None:
        pytest.skip("fish is not installed (install.sh installs it)")
    r = subprocess.run(["fish", "--no-config", "-c",
                        "sandbox completion fish | source; complete -C 'sandbox pro'"],
                       capture_output=True, text=True, timeout=60, env=_env_with_sandbox())
    assert r.returncode == 0, r.stderr
    assert [line.split("\t")[0] for line in r.stdout.splitlines()] == ["profile"]


# --- manual pages ------------------------------------------------------------------

def _all_commands():
    from sandbox.cli._app import cli
    from sandbox.cli.manpages import _walk, _context
    return list(_walk(cli, _context(cli, "sandbox", None)))


def test_man_pages_cover_every_command_and_render_cleanly(tmp_path):
    from sandbox.cli.manpages import MARKER, install_pages
    written, kept = install_pages(tmp_path)
    assert kept == []
    names = {Path(p).name for p in written}
    expected = {c.command_path.replace(" ", "-") + ".1" for _, c in _all_commands()}
    assert names == expected
    assert {"sandbox.1", "sandbox-run.1", "sandbox-profile-show.1",
            "sandbox-completion.1"} <= names
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed: cannot check that the pages render")
    for name in sorted(names):
        page = tmp_path / name
        assert page.read_text().startswith(MARKER)
        r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stderr == "", f"{name}: {r.stderr}"


def test_man_page_shows_the_commands_options():
    from sandbox.cli.manpages import build_pages
    page = build_pages(date="2026-01-01", version="9")["sandbox-profile-show.1"]
    assert '.TH "SANDBOX-PROFILE-SHOW" "1" "2026-01-01" "sandbox 9"' in page
    assert "\\-\\-no\\-origins" in page and "\\fBsandbox\\-profile\\fR(1)" in page


# --- help text ---------------------------------------------------------------------------

def test_help_text_points_at_no_internal_document():
    for cmd, ctx in _all_commands():
        text = cmd.get_help(ctx)
        assert not re.search(r"DESIGN|§|issue \d", text), (ctx.command_path, text)


def test_every_command_has_help_text():
    for cmd, ctx in _all_commands():
        assert cmd.get_short_help_str().strip(), ctx.command_path
        assert isinstance(cmd, click.Command)
