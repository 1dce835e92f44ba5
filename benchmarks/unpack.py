#!/usr/bin/env python3
"""Unpack throughput: `sandbox image import` of an OCI layout against
`umoci unpack` of the same layout (issue 3 benchmark; target >= 1.0x).

Builds one OCI image layout (gzip layers) from host folders — by default a
busybox root plus /usr/lib/python3.11 (thousands of small files) and a large
incompressible file — then, for N rounds, times:

- ours:  ImageStore(tmp root).import_image(layout): reads, hashes (blob and
         diff id), decompresses, unpacks safely and commits to the store;
- umoci: ``umoci unpack --image layout:bench bundle`` (also verifies digests,
         and additionally writes an mtree manifest and a runtime config).

Prints median wall times, MB/s of uncompressed layer bytes and the ratio
umoci_time / our_time (> 1.0 means we are faster). Not a test.

    .venv/bin/python benchmarks/unpack.py [--rounds 5] [--src DIR ...] [--big-mb 64]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))


def build_layout(work: Path, srcs: list[str], big_mb: int) -> tuple[Path, int]:
    import image_fixtures as fx
    layers = []
    base = fx.busybox_rootfs(work / "bb")
    layers.append(fx.tar_dir(base))
    for i, s in enumerate(srcs):
        stage = work / f"src{i}"
        shutil.copytree(s, stage / s.strip("/"), symlinks=True)
        layers.append(fx.tar_dir(stage))
        shutil.rmtree(stage)
    if big_mb:
        layers.append(fx.build_tar([fx.entry("data/big.bin", data=os.urandom(big_mb << 20))]))
    fx.write_oci_layout(work / "layout", layers, ref_name="bench")
    return work / "layout", sum(len(t) for t in layers)


def time_ours(layout: Path, work: Path) -> float:
    from sandbox.image import ImageStore
    from sandbox.paths import Paths
    root = Path(tempfile.mkdtemp(dir=work))
    t = time.perf_counter()
    ImageStore(Paths.resolve(root)).import_image(layout, name="bench/ours:1")
    dt = time.perf_counter() - t
    shutil.rmtree(root)
    return dt


def time_umoci(layout: Path, work: Path) -> float:
    bundle = work / "bundle"
    args = ["umoci", "unpack"]
    if os.geteuid() != 0:
        args.append("--rootless")
    t = time.perf_counter()
    subprocess.run(args + ["--image", f"{layout}:bench", str(bundle)], check=True,
                   stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    shutil.rmtree(bundle)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--src", action="append", help="host folder to pack as a layer "
                    "(repeatable; default /usr/lib/python3.11)")
    ap.add_argument("--big-mb", type=int, default=64, help="size of one incompressible file")
    a = ap.parse_args()
    if not shutil.which("umoci"):
        sys.exit("umoci is not installed (apt-get install umoci)")
    srcs = a.src or ["/usr/lib/python3.11"]
    with tempfile.TemporaryDirectory(prefix="unpack-bench-") as w:
        work = Path(w)
        layout, raw = build_layout(work, srcs, a.big_mb)
        comp = sum(f.stat().st_size for f in (layout / "blobs/sha256").iterdir())
        print(f"image: {raw / 1e6:.1f} MB uncompressed, {comp / 1e6:.1f} MB in the layout; "
              f"{a.rounds} rounds, alternating")
        ours, theirs = [], []
        time_ours(layout, work)  # warm the page cache for both
        for _ in range(a.rounds):
            ours.append(time_ours(layout, work))
            theirs.append(time_umoci(layout, work))
        mo, mu = statistics.median(ours), statistics.median(theirs)
        print(f"sandbox import  median {mo * 1000:7.0f} ms  {raw / mo / 1e6:6.1f} MB/s")
        print(f"umoci unpack    median {mu * 1000:7.0f} ms  {raw / mu / 1e6:6.1f} MB/s")
        print(f"ratio umoci/sandbox = {mu / mo:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
