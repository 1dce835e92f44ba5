"""Seccomp for the launch path: read OCI/Docker JSON, compile it early, load it last.

Follows seccomp(2), the OCI runtime spec's ``linux.seccomp`` (with Docker's
``names``/``includes``/``excludes``/``archMap`` extensions) and libseccomp
(seccomp_rule_add(3), seccomp_export_bpf(3)).

* `compile_filter` runs in the parent (DESIGN §2 step 6): it parses the JSON,
  builds the filter with libseccomp through pyseccomp and returns a frozen
  `CompiledFilter` holding the BPF bytes, cached on disk by content so a
  launch with a warm cache never imports pyseccomp.
* `apply_filter` runs in the child as the very last step before execve,
  after no_new_privs.
* `CompiledFilter.describe` is what the launch plan and ``--dry-run`` show;
  `export_pfc` gives libseccomp's readable pseudo-code for debugging.

Errno policy and ABI handling are documented in `sandbox.seccomp._compile`.
"""

from sandbox.seccomp._compile import (CompiledFilter, apply_filter, compile_filter,
                                      export_pfc, libseccomp_version, parse_action)
from sandbox.seccomp._risks import SeccompFinding, build_findings, build_warnings


def parse_profile(data: bytes, source: str):
    """Parse seccomp JSON bytes into a frozen `SeccompProfile` (see `_parse`)."""
    from sandbox.seccomp._parse import parse_profile as _parse_profile
    return _parse_profile(data, source)


__all__ = ["CompiledFilter", "SeccompFinding", "apply_filter", "build_findings", "build_warnings", "compile_filter", "export_pfc",
           "libseccomp_version", "parse_action", "parse_profile"]
