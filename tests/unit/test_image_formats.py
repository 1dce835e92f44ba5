"""Format reading without a store: config normalisation (OCI, docker,
ACI), ACI manifest checks against the appc and rkt corpus, names and refs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import image_fixtures as fx  # noqa: E402

from sandbox.errors import ArtifactError, UsageError  # noqa: E402
from sandbox.image import normalise_ref  # noqa: E402
from sandbox.image._formats import (detect, digest_key, host_platform,  # noqa: E402
                                    normalise_aci_manifest, normalise_oci_config,
                                    parse_digest)
from sandbox.image._unpack import Limits  # noqa: E402


def test_oci_config_normalised():
    cfg = normalise_oci_config({"config": {
        "Entrypoint": ["/bin/app"], "Cmd": ["--x"], "Env": ["A=1"], "WorkingDir": "/w",
        "User": "1000:1000", "Labels": {"k": "v"}, "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/data": {}}, "StopSignal": "SIGTERM"}})
    assert cfg["Entrypoint"] == ["/bin/app"] and cfg["Cmd"] == ["--x"]
    assert cfg["Env"] == ["A=1"] and cfg["WorkingDir"] == "/w" and cfg["User"] == "1000:1000"
    assert cfg["ExposedPorts"] == ["80/tcp"] and cfg["Volumes"] == ["/data"]


def test_oci_config_defaults_when_empty():
    cfg = normalise_oci_config({"config": None})
    assert cfg["Entrypoint"] is None and cfg["Cmd"] is None and cfg["Env"] == []
    assert cfg["WorkingDir"] == "" and cfg["User"] == ""


@pytest.mark.parametrize("bad", [{"config": {"Cmd": "sh -c x"}}, {"config": {"Env": [1]}},
                                 {"config": ["x"]}, []])
def test_oci_config_bad_types_refused(bad):
    with pytest.raises(ArtifactError):
        normalise_oci_config(bad)


def test_aci_app_normalised():
    cfg, name, plat = normalise_aci_manifest(fx.aci_manifest(
        extra={"annotations": [{"name": "authors", "value": "me"}]}))
    assert name == "example.com/busybox:1.0" and plat == "linux/amd64"
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "echo hi"] and cfg["Cmd"] is None
    assert cfg["Env"] == ["PATH=/bin"] and cfg["User"] == "0:0" and cfg["WorkingDir"] == "/"
    assert cfg["Labels"]["authors"] == "me"


def test_aci_other_arch_refused():
    with pytest.raises(ArtifactError, match="linux/aarch64"):
        normalise_aci_manifest(fx.aci_manifest(arch="aarch64"))


@pytest.mark.parametrize("patch,msg", [
    ({"acKind": "PodManifest"}, "acKind"),
    ({"name": "Example.com/UPPER"}, "AC identifier"),
    ({"dependencies": [{"imageName": "example.com/base"}]}, "dependencies"),
    ({"app": {"exec": ["/x"]}}, "user and group"),
])
def test_aci_manifest_refusals(patch, msg):
    with pytest.raises(ArtifactError, match=msg):
        normalise_aci_manifest({**fx.aci_manifest(), **patch})


APPC = fx.CORPUS / "appc-spec" / "examples" / "image.json"
RKT = fx.CORPUS / "rkt"


@pytest.mark.skipif(not APPC.is_file(), reason=f"corpus absent: {APPC}")
def test_appc_example_manifest_refused_for_its_dependencies():
    with pytest.raises(ArtifactError, match="dependencies"):
        normalise_aci_manifest(json.loads(APPC.read_text()))


@pytest.mark.skipif(not APPC.is_file(), reason=f"corpus absent: {APPC}")
def test_appc_example_app_section_without_dependencies():
    man = json.loads(APPC.read_text())
    man.pop("dependencies")
    cfg, name, _ = normalise_aci_manifest(man)
    assert cfg["Entrypoint"] == ["/usr/bin/reduce-worker", "--quiet"]
    assert cfg["User"] == "100:300" and "REDUCE_WORKER_DEBUG=true" in cfg["Env"]
    assert any(i["name"] == "resource/memory" for i in cfg["Isolators"])


@pytest.mark.skipif(not RKT.is_dir(), reason=f"corpus absent: {RKT}")
@pytest.mark.parametrize("which", ["image", "empty-image"])
def test_rkt_manifests_with_placeholders_refused_then_accepted(which):
    text = (RKT / which / "manifest").read_text()
    with pytest.raises(ArtifactError, match="@ACI_OS@"):
        normalise_aci_manifest(json.loads(text))
    fixed = text.replace("@ACI_OS@", "linux").replace("@ACI_ARCH@", "amd64")
    cfg, name, plat = normalise_aci_manifest(json.loads(fixed))
    assert name.startswith("coreos.com/rkt-") and plat == "linux/amd64"


@pytest.mark.parametrize("ref,norm", [
    ("example.com/app", "example.com/app:latest"), ("example.com/app:1.0", "example.com/app:1.0"),
    ("localhost:5000/app", "localhost:5000/app:latest"), ("busybox", "docker.io/library/busybox:latest"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
])
def test_normalise_ref(ref, norm):
    assert normalise_ref(ref) == norm


@pytest.mark.parametrize("ref", ["", "../x", "a//b", "-flag", "a b", "x" * 300,
                                 "Example.com/App:1", "example.com/App", "BUSYBOX"])
def test_bad_refs_are_usage_errors(ref):
    with pytest.raises(UsageError):
        normalise_ref(ref)


@pytest.mark.parametrize("d", ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64,
                               "sha256:../../etc/passwd", 7, None])
def test_bad_digests_refused(d):
    with pytest.raises(ArtifactError):
        parse_digest(d, what="x")


def test_digest_key_has_no_colon():
    assert digest_key("sha256:" + "a" * 64) == "sha256-" + "a" * 64


def test_host_platform_is_linux():
    assert host_platform()[0] == "linux"


def test_detect_refuses_non_images(tmp_path):
    (tmp_path / "f").write_bytes(b"hello")
    with pytest.raises(ArtifactError):
        detect(tmp_path / "f", Limits())
    (tmp_path / "d").mkdir()
    with pytest.raises(ArtifactError, match="not an image folder"):
        detect(tmp_path / "d", Limits())
    with pytest.raises(UsageError):
        detect(tmp_path / "missing", Limits())


@pytest.mark.parametrize("content", [b"junk\n", b"\x1f\x8b\x08\x00junk"])
def test_import_of_a_non_image_names_the_callers_file_not_the_private_copy(tmp_path, content):
    # `sandbox image import junk.asc` once said ".../state/images/tmp/
    # import-XXXX/source.blob: not a tar archive": the store's private copy.
    from sandbox.image._formats import open_source
    copy = tmp_path / "source.blob"
    copy.write_bytes(content)
    with pytest.raises(ArtifactError) as e:
        open_source(copy, limits=Limits(), select=None, workdir=tmp_path, label="junk.asc")
    assert str(e.value).startswith("junk.asc: ") and "source.blob" not in str(e.value)
