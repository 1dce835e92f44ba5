#!/usr/bin/env bash
# Set up sandbox on a fresh Debian 12 machine, as root, from this checkout:
#   Debian packages, subordinate ids for root, a virtual environment in .venv
#   made from Debian's own /usr/bin/python3 (fastest start, see HOST.md), and
#   the project installed editable with its test extras.
# Last, it puts the `sandbox` command on PATH (a link in /usr/local/bin to the
# venv's script), with its shell completions and manual pages (see
# install_commands below; SANDBOX_PREFIX moves them from /usr/local).
# Idempotent: run it as often as you like. Quiet unless something fails, then
# it prints the failing step's output and exits non-zero.
#   ./install.sh              everything
#   ./install.sh --commands   only the last step (the venv must exist)
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

say() { printf 'install.sh: %s\n' "$*" >&2; }

# Run a step quietly; on failure show everything it printed.
quiet() {
    local log
    log=$(mktemp)
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        say "FAILED: $*"
        return 1
    fi
    rm -f "$log"
}

# --- `sandbox` on PATH, shell completions, manual pages ------------------------
# The link and the files it writes are replaced only when they are ours: a
# link to some checkout's .venv/bin/sandbox, a completion script of click's
# for sandbox, a page carrying the generator's marker. Anything else of the
# same name is left alone, and said so.
install_commands() {
    local prefix="${SANDBOX_PREFIX:-/usr/local}"
    local script="$PWD/.venv/bin/sandbox"
    local link="$prefix/bin/sandbox"
    mkdir -p "$prefix/bin"
    if [ -L "$link" ]; then
        local current
        current=$(readlink "$link")
        if [ "$current" != "$script" ]; then
            if [[ "$current" == */.venv/bin/sandbox ]]; then
                ln -s "$script" "$link.tmp.$$" && mv -T "$link.tmp.$$" "$link"
                say "linked $link -> $script (it linked to $current)"
            else
                say "left $link alone: it links to $current; remove it to use this checkout's sandbox"
            fi
        fi
    elif [ -e "$link" ]; then
        say "left $link alone: it is not a link made by install.sh; remove it to use this checkout's sandbox"
    else
        ln -s "$script" "$link"
        say "linked $link -> $script"
    fi

    local shell file
    for shell in bash zsh fish; do
        case "$shell" in
            bash) file="$prefix/share/bash-completion/completions/sandbox" ;;
            zsh) file="$prefix/share/zsh/site-functions/_sandbox" ;;
            fish) file="$prefix/share/fish/vendor_completions.d/sandbox.fish" ;;
        esac
        if [ -e "$file" ] && ! grep -q _SANDBOX_COMPLETE "$file"; then
            say "left $file alone: it is not sandbox's completion script"
            continue
        fi
        mkdir -p "$(dirname "$file")"
        "$script" completion "$shell" >"$file.tmp.$$"
        chmod 644 "$file.tmp.$$"
        mv -T "$file.tmp.$$" "$file"
    done
    .venv/bin/python -m sandbox.cli.manpages "$prefix/share/man/man1"
}

if [ "${1:-}" = "--commands" ]; then
    install_commands
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    say "run me as root (Debian packages and /etc/subuid need it)"
    exit 1
fi

# --- Debian packages ---------------------------------------------------------
PACKAGES=(
    # the interpreter, and what python-prctl and pyseccomp need
    python3 python3-venv python3-dev gcc libcap-dev libseccomp2
    # tests: signatures, a static userland for tiny root file systems, rootless runs
    gnupg busybox-static util-linux passwd attr
    # tests: a launch through `sudo -u` records SUDO_USER (issue 14)
    sudo
    # peers for benchmarks, and real OCI images for tests
    bubblewrap crun runc skopeo umoci
    # a local registry for the image pull tests (started by the tests on 127.0.0.1)
    docker-registry
    # builds the OCI runtime validation suite (tests/conformance)
    golang-go make
    # networking
    nftables iproute2 iptables
    # fresh clones in tests and CI
    git ca-certificates
    # the shells whose completion scripts tests load; man to read the pages
    bash zsh fish man-db
)
missing=()
for p in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get update
    quiet apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- subordinate ids: 100 ranges of 65536 for the sandboxes root starts -------
if ! grep -q '^root:' /etc/subuid 2>/dev/null; then
    say "adding subordinate uids 100000-6653599 for root"
    quiet usermod --add-subuids 100000-6653599 root
fi
if ! grep -q '^root:' /etc/subgid 2>/dev/null; then
    say "adding subordinate gids 100000-6653599 for root"
    quiet usermod --add-subgids 100000-6653599 root
fi

# --- the virtual environment and the project ---------------------------------
if [ ! -x .venv/bin/python ] || ! grep -qx 'home = /usr/bin' .venv/pyvenv.cfg 2>/dev/null; then
    say "creating .venv from /usr/bin/python3"
    quiet /usr/bin/python3 -m venv --clear .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# The toolkit's own supply chain (issue 13): every Python dependency, the test
# extra and the build backend come from requirements.lock, pinned and checked
# against its sha256 hashes; then the project itself, with no dependencies of
# its own choosing. No build isolation: an isolated build would fetch its
# build requirements unpinned and unhashed (sdists such as python-prctl build
# with the venv's own setuptools, and the project with the locked backend).
# Regenerate the lock after changing pyproject.toml: see README, "Supply chain".
quiet .venv/bin/python -m pip install -q --require-hashes --no-build-isolation -r requirements.lock
quiet .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .

# --- the launch path: compiled bytecode and its own entry script -------------
# .pyc files now, so no launch pays for compiling (53 ms instead of 28 ms of
# imports when none exists) and users who cannot write the tree get them too.
quiet .venv/bin/python -m compileall -q -j 0 sandbox
# pip's console-script wrapper imports `re` (~5 ms) and runs with site (the
# .pth files, user site-packages, PYTHON* variables). Ours runs the
# interpreter isolated (-I: no PYTHON* variables, no user site, no script
# folder on sys.path) without site (-S), with the two folders the package
# needs put on sys.path at install time. Rewritten after every pip install.
quiet .venv/bin/python - <<'PY'
import os, sys, sysconfig
here = os.getcwd()
purelib = sysconfig.get_paths()["purelib"]
folders = [here] + [p for p in dict.fromkeys([purelib, sysconfig.get_paths()["platlib"]])]
script = os.path.join(sys.prefix, "bin", "sandbox")
text = (f"#!{sys.executable} -IS\n"
        "# sandbox's own entry script (install.sh): isolated, no site, no `re`.\n"
        "import sys\n"
        f"sys.path[:0] = {folders!r}\n"
        "from sandbox.cli import main\n"
        "main()\n")
tmp = script + ".tmp"
with open(tmp, "w") as f:
    f.write(text)
os.chmod(tmp, 0o755)
os.replace(tmp, script)
PY

install_commands
link="${SANDBOX_PREFIX:-/usr/local}/bin/sandbox"
if [ "$(readlink "$link" 2>/dev/null || true)" = "$PWD/.venv/bin/sandbox" ]; then
    say "ready: $(.venv/bin/sandbox --version), linked as $link"
else
    say "ready: $(.venv/bin/sandbox --version), as $PWD/.venv/bin/sandbox (not linked, see above)"
fi
