"""Build hook: compile the executor (``csrc/sandbox-exec.c``) into the
package as ``sandbox/_bin/sandbox-exec`` on every build, wheel or editable.

Static PIE: the executor runs after ``pivot_root``, where the host's
dynamic loader is out of reach. Warnings are errors; the hardening flags
are those Debian builds its own packages with. A missing or failing
compiler fails the install: an executor that is not there cannot confine.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2",
          "-fstack-protector-strong", "-fstack-clash-protection", "-fcf-protection",
          "-fPIE", "-static-pie", "-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack"]
SOURCE = os.path.join("csrc", "sandbox-exec.c")
TARGET = os.path.join("sandbox", "_bin", "sandbox-exec")


def build_executor(root: str) -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("sandbox: a C compiler (gcc) is needed to build the executor; "
                           "apt-get install gcc")
    out = os.path.join(root, TARGET)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    subprocess.run([cc, *CFLAGS, "-o", tmp, os.path.join(root, SOURCE)], check=True)
    os.replace(tmp, out)
    return out


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        out = build_executor(self.root)
        if version != "editable":
            build_data["force_include"][out] = "sandbox/_bin/sandbox-exec"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
