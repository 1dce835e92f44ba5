#!/usr/bin/env bash
# Set up sandbox on a fresh Debian 12 machine, as root, from this checkout:
#   Debian packages, subordinate ids for root, a virtual environment in .venv
#   made from Debian's own /usr/bin/python3 (fastest start, see HOST.md), and
#   the project installed editable with its test extras.
# Idempotent: run it as often as you like. Quiet unless something fails, then
# it prints the failing step's output and exits non-zero.
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
    # peers for benchmarks, and real OCI images for tests
    bubblewrap crun runc skopeo umoci
    # builds the OCI runtime validation suite (tests/conformance)
    golang-go make
    # networking
    nftables iproute2 iptables
    # fresh clones in tests and CI
    git ca-certificates
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
# hatchling too: tests/unit/test_packaging.py builds a wheel without isolation.
quiet .venv/bin/python -m pip install -q -e '.[test]' 'hatchling>=1.18'

say "ready: $(.venv/bin/sandbox --version)"
