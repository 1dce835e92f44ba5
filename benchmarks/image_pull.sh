#!/bin/bash
# Issue 12 benchmarks, measured with farm-bench (paired A/B, medians, ratios):
#
#  1. `sandbox image pull` (skopeo copy to dir:, unpack, seal, verify) of a
#     ~120 MB signed image from a docker-registry on 127.0.0.1, against
#     `skopeo copy` of the same image to an OCI layout.
#  2. The on-disk check's added launch time: `sandbox run` of a 10,000-file
#     image with the check, against the same run with
#     --insecure-options=ondisk (warm page cache).
#
# As root, after ./install.sh:   bash benchmarks/image_pull.sh [RUNS]
# Prints farm-bench's reports; docs/benchmarks.md quotes the ratios.
set -euo pipefail
RUNS=${1:-10}
HERE=$(cd "$(dirname "$0")/.." && pwd)
SB="$HERE/.venv/bin/sandbox"
PY="$HERE/.venv/bin/python"
W=$(mktemp -d /var/tmp/sandbox-imgbench.XXXXXX)
trap 'kill "$REG" 2>/dev/null || true; rm -rf "$W"' EXIT
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HOST="127.0.0.1:$PORT"
mkdir -p "$W/data" "$W/lookaside" "$W/regd" "$W/gnupg"; chmod 700 "$W/gnupg"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$W/data" "$HOST" > "$W/reg.yml"
docker-registry serve "$W/reg.yml" >/dev/null 2>&1 & REG=$!
printf 'docker:\n  %s:\n    lookaside: file://%s\n    lookaside-staging: file://%s\n' "$HOST" "$W/lookaside" "$W/lookaside" > "$W/regd/b.yaml"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$W/policy.json"
export GNUPGHOME="$W/gnupg"
gpg --batch --passphrase '' --quick-gen-key "Bench <bench@example.com>" ed25519 sign never 2>/dev/null
FPR=$(gpg --list-keys --with-colons | awk -F: '/^fpr/{print $10; exit}')
gpg --armor --export "$FPR" > "$W/key.asc"
sleep 0.5

# a ~120 MB image of 10,000 files (busybox base + random files)
(cd "$HERE" && "$PY" - "$W" <<'EOF'
import os, sys
from pathlib import Path
sys.path.insert(0, "tests")
import image_fixtures as fx
w = Path(sys.argv[1])
rootfs = fx.busybox_rootfs(w / "rootfs")
ents = [fx.entry(f"d{i}", "dir") for i in range(100)]
ents += [fx.entry(f"d{i}/f{j}", data=os.urandom(12000)) for i in range(100) for j in range(100)]
fx.write_oci_layout(w / "oci", [fx.tar_dir(rootfs), fx.build_tar(ents)], ref_name="bench",
                    compression=None)
EOF
)
skopeo --policy "$W/policy.json" --registries.d "$W/regd" copy --quiet --dest-tls-verify=false \
    --sign-by "$FPR" "oci:$W/oci" "docker://$HOST/bench/img:1"
mkdir -p "$W/trusted"
"$SB" --root "$W/trusted" trust add "$W/key.asc" --prefix "$HOST/bench" --yes >/dev/null

echo "== 1. pull + verify vs skopeo copy to an OCI layout (~120 MB, loopback)"
farm-bench -n "$RUNS" --warmup 1 --timeout 1800 \
    --vs "sh -c 'd=\$(mktemp -d /var/tmp/skb.XXXXXX); skopeo --policy $W/policy.json copy --quiet --src-tls-verify=false docker://$HOST/bench/img:1 oci:\$d/x; rm -rf \$d'" \
    -- sh -c "r=\$(mktemp -d /var/tmp/sbb.XXXXXX); cp -a $W/trusted/. \$r/; $SB --root \$r image pull docker://$HOST/bench/img:1 --registries.d $W/regd --no-tls-verify >/dev/null 2>&1; rm -rf \$r"

echo "== 2. on-disk check: run with it vs --insecure-options=ondisk (10,000-file image, warm)"
"$SB" --root "$W/trusted" image pull "docker://$HOST/bench/img:1" --registries.d "$W/regd" --no-tls-verify >/dev/null 2>&1
farm-bench -n "$RUNS" --warmup 2 --timeout 1800 \
    --vs "$SB --root $W/trusted run --insecure-options=ondisk $HOST/bench/img:1 -- /bin/true" \
    -- "$SB" --root "$W/trusted" run "$HOST/bench/img:1" -- /bin/true
