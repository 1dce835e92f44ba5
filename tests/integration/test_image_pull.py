"""`sandbox image pull` from a real registry (issue 12).

Debian's docker-registry is started by the test on 127.0.0.1; images are
pushed with `skopeo copy --sign-by` using a key made at test time, their
signatures written to a file:// lookaside store named in a test
registries.d. All traffic stays on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import image_fixtures as fx  # noqa: E402
from helpers import run_sandbox  # noqa: E402

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
pytestmark = [
    pytest.mark.skipif(REGISTRY is None, reason="docker-registry is not installed"),
    pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed"),
    pytest.mark.skipif(not fx.have_busybox(), reason="busybox-static not installed"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    def __init__(self, base: Path):
        self.base = base
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        (base / "data").mkdir(parents=True)
        (base / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n")
        self.proc = subprocess.Popen([REGISTRY, "serve", str(base / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            pytest.fail("docker-registry did not start")
        self.gnupg = base / "gnupg"
        self.gnupg.mkdir(mode=0o700)
        self.lookaside = base / "lookaside"
        self.lookaside.mkdir()
        self.regd = base / "registries.d"
        self.regd.mkdir()
        (self.regd / "test.yaml").write_text(
            f"docker:\n  {self.host}:\n    lookaside: file://{self.lookaside}\n"
            f"    lookaside-staging: file://{self.lookaside}\n")
        (base / "policy.json").write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        self.env = {"PATH": "/usr/bin:/bin", "GNUPGHOME": str(self.gnupg),
                    "HOME": str(base), "LC_ALL": "C"}
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                        "Pull Test <pull@example.com>", "ed25519", "sign", "never"],
                       env=self.env, check=True, capture_output=True)
        out = subprocess.run(["gpg", "--list-keys", "--with-colons"], env=self.env,
                             check=True, capture_output=True, text=True).stdout
        self.fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr"))
        self.key = base / "key.asc"
        self.key.write_bytes(subprocess.run(["gpg", "--armor", "--export", self.fpr],
                                            env=self.env, check=True,
                                            capture_output=True).stdout)

    def push(self, layout: Path, repo_tag: str, *, sign: bool) -> None:
        cmd = [SKOPEO, "--policy", str(self.base / "policy.json"), "--registries.d",
               str(self.regd), "copy", "--quiet", "--dest-tls-verify=false"]
        if sign:
            cmd += ["--sign-by", self.fpr]
        cmd += [f"oci:{layout}", f"docker://{self.host}/{repo_tag}"]
        subprocess.run(cmd, env=self.env, check=True, capture_output=True)

    def digest(self, repo_tag: str) -> str:
        out = subprocess.run([SKOPEO, "inspect", "--tls-verify=false",
                              f"docker://{self.host}/{repo_tag}"], env=self.env, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out)["Digest"]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    base = tmp_path_factory.mktemp("registry")
    reg = Registry(base)
    rootfs = fx.busybox_rootfs(base / "rootfs")
    base_tar = fx.tar_dir(rootfs)
    hello = fx.build_tar([fx.entry("etc", "dir"), fx.entry("etc/hello", data=b"signed\n")])
    other = fx.build_tar([fx.entry("etc", "dir"), fx.entry("etc/hello", data=b"other\n")])
    big = fx.build_tar([fx.entry("big", data=os.urandom(48 << 20))])
    fx.write_oci_layout(base / "a", [base_tar, hello], ref_name="a", compression=None)
    fx.write_oci_layout(base / "b", [base_tar, other], ref_name="b", compression=None)
    fx.write_oci_layout(base / "big", [base_tar, big], ref_name="big", compression=None)
    reg.push(base / "a", "app/hello:1", sign=True)
    reg.push(base / "b", "app/unsigned:1", sign=False)
    reg.push(base / "a", "app/swapped:1", sign=True)
    reg.push(base / "big", "app/big:1", sign=True)
    yield reg
    reg.stop()


def sb(sroot, *args, timeout=120):
    return run_sandbox(sroot, *args, timeout=timeout)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def pull_args(reg, ref):
    return ("image", "pull", f"docker://{reg.host}/{ref}", "--registries.d", str(reg.regd),
            "--no-tls-verify")


@pytest.fixture
def trusted(sroot, registry):
    ok(sb(sroot, "trust", "add", str(registry.key), "--prefix", f"{registry.host}/app", "--yes"))
    return sroot


def listed(sroot):
    return json.loads(ok(sb(sroot, "image", "list", "--json")).stdout)


def test_pull_then_run_verified(trusted, registry):
    r = ok(sb(trusted, *pull_args(registry, "app/hello:1")))
    name = f"{registry.host}/app/hello:1"
    assert f"pulled {name}" in r.stdout
    r = ok(sb(trusted, "run", name, "--", "/bin/cat", "/etc/hello"))
    assert r.stdout == "signed\n"
    v = json.loads(ok(sb(trusted, "image", "verify", "--json", name)).stdout)
    assert v["verified"] and v["primary"] == registry.fpr and v["identity"] == name
    assert v["image_digest"] == registry.digest("app/hello:1")


def test_unsigned_image_refused_at_pull(trusted, registry):
    r = sb(trusted, *pull_args(registry, "app/unsigned:1"))
    assert r.returncode == 1 and "not signed" in r.stderr and "Traceback" not in r.stderr
    assert listed(trusted) == []


def test_manifest_changed_in_the_registry_refused(trusted, registry):
    """The registry serves another manifest under a signed tag, and the
    lookaside store offers the old manifest's signature for it."""
    signed = registry.digest("app/swapped:1")
    registry.push(registry.base / "b", "app/swapped:1", sign=False)
    now = registry.digest("app/swapped:1")
    assert now != signed
    src = registry.lookaside / "app" / f"swapped@{signed.replace(':', '=')}"
    shutil.copytree(src, registry.lookaside / "app" / f"swapped@{now.replace(':', '=')}")
    r = sb(trusted, *pull_args(registry, "app/swapped:1"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"is for manifest {signed}" in r.stderr
    assert listed(trusted) == []


def test_sigkill_mid_pull_leaves_nothing_visible(trusted, registry):
    tmp = Path(trusted) / "state" / "images" / "tmp"
    cmd = [str(Path(sys.prefix) / "bin" / "sandbox"), "--root", str(trusted),
           *pull_args(registry, "app/big:1")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if tmp.is_dir() and any(tmp.iterdir()):
            break
        time.sleep(0.005)
    time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(0.2)
    assert listed(trusted) == []
    blobs = Path(trusted) / "state" / "images" / "blobs"
    layers = Path(trusted) / "state" / "images" / "layers"
    assert [x for x in blobs.rglob("*") if x.is_file()] == []
    assert list(layers.iterdir()) == []
    ok(sb(trusted, "image", "gc"))
    assert list(tmp.iterdir()) == []


def test_run_docker_ref_pulls_when_missing(trusted, registry):
    name = f"docker://{registry.host}/app/hello:1"
    conf = {"SANDBOX_PULL_TLS_VERIFY": "false"}
    # without the lookaside store the pull finds no signature: refused, 125
    r = run_sandbox(trusted, "run", name, "--", "/bin/cat", "/etc/hello", timeout=120,
                    env=conf)
    assert r.returncode == 125 and "not signed" in r.stderr, r.stderr
    assert listed(trusted) == []
    r = run_sandbox(trusted, "run", name, "--", "/bin/cat", "/etc/hello", timeout=120,
                    env={**conf, "SANDBOX_REGISTRIES_D": str(registry.regd)})
    assert r.returncode == 0 and r.stdout == "signed\n", r.stderr
    assert [i["names"] for i in listed(trusted)] == [[f"{registry.host}/app/hello:1"]]
    # present now: the next run does not pull (it runs with the registry gone too)
    r = run_sandbox(trusted, "run", name, "--", "/bin/cat", "/etc/hello", timeout=120)
    assert r.returncode == 0 and r.stdout == "signed\n", r.stderr


def test_import_accepts_skopeo_dir_layout_with_its_signatures(trusted, registry, tmp_path):
    """skopeo's own dir: layout, the one `skopeo copy --sign-by` writes
    signatures into (signature-N files), imports and verifies."""
    dest = tmp_path / "dir"
    subprocess.run([SKOPEO, "--policy", str(registry.base / "policy.json"), "--registries.d",
                    str(registry.regd), "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{registry.host}/app/hello:1", f"dir:{dest}"],
                   env=registry.env, check=True, capture_output=True)
    assert (dest / "signature-1").is_file()
    name = f"{registry.host}/app/hello:1"
    r = ok(sb(trusted, "image", "import", str(dest), "--name", name))
    assert f"imported {name}" in r.stdout
    info = json.loads(ok(sb(trusted, "image", "inspect", name)).stdout)
    assert info["format"] == "oci" and len(info["signatures"]) == 1
    assert info["digest"] == registry.digest("app/hello:1")
    # the same layout under another name: its signature names hello:1
    r = sb(trusted, "image", "import", str(dest), "--name", f"{registry.host}/app/other:1")
    assert r.returncode == 1 and "does not match" in r.stderr
    rows = json.loads(ok(sb(trusted, "image", "list", "--json")).stdout)
    assert rows[0]["manifest_digest"] == info["digest"]
    assert rows[0]["image_id"] == info["config_digest"]
