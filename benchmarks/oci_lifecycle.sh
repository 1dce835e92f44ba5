#!/bin/sh
# One container lifecycle with an OCI runtime: create, start, wait for the
# process to end, delete (runc's `run` does exactly these steps).
#   benchmarks/oci_lifecycle.sh RUNTIME BUNDLE
# Measured side by side (sandbox-oci, runc, crun) in docs/benchmarks.md.
# crun 1.8 refuses this host's hybrid cgroup layout unless the v2 hierarchy
# is unmounted in a mount namespace of its own: CRUN_UNIFIED_UMOUNT=1 does it.
set -e
runtime=$1
bundle=$2
root=$(mktemp -d /tmp/oci-bench-root.XXXXXX)
id=bench-$$
if [ -n "$CRUN_UNIFIED_UMOUNT" ]; then
    unshare -m sh -c "umount /sys/fs/cgroup/unified 2>/dev/null; exec $runtime --root $root run --bundle $bundle $id" >/dev/null
else
    "$runtime" --root "$root" run --bundle "$bundle" "$id" >/dev/null
fi
rm -rf "$root"
