"""Batch-inference throughput of ``i2i translate`` (Ray Data, an actor pool of model replicas), measured (prints
figures; not a test).

A pix2pix generator (``--ngf``, ``--size`` px; the paper's unet_256 is ``--ngf 64 --size 256``) is saved as a
checkpoint folder; ``--images`` random PNGs are translated from a local folder into another, once per replica
count in ``--concurrency``. Each line: wall time of the whole job (including actor start-up and model loading),
images/s over it, and images/s of a second run on the warm cluster. CPU or GPU: whatever the local cluster has
(one GPU per replica when there are GPUs).

    python benchmarks/translate_throughput.py [--images 256] [--size 256] [--ngf 64] [--batch 8]
        [--concurrency 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import numpy as np
    import ray
    import torch
    from PIL import Image

    from i2i_models.registry import get_model
    from pipelines.cluster import init_ray
    from pipelines.translate import TranslateConfig, run_translate

    init_ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = ray.cluster_resources().get("CPU", 0)
    device = torch.cuda.get_device_name(0) if gpus else platform.processor() or platform.machine()
    print(f"# {platform.machine()}, {cpus:g} CPUs, {gpus} GPUs ({device}), torch {torch.__version__}, "
          f"ray {ray.__version__}; pix2pix ngf={args.ngf} at {args.size} px, {args.images} images, batch {args.batch}")
    with tempfile.TemporaryDirectory() as work:
        ckpt, src = os.path.join(work, "model"), os.path.join(work, "in")
        get_model("pix2pix", image_size=args.size, ngf=args.ngf).save_pretrained(ckpt)
        os.makedirs(src)
        rng = np.random.default_rng(0)
        for i in range(args.images):
            Image.fromarray(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)).save(
                os.path.join(src, f"{i:05d}.png"))
        for n in args.concurrency:
            cfg = TranslateConfig(concurrency=n, batch_size=args.batch, cpus_per_worker=max(cpus / n - 0.5, 0.25)
                                  if not gpus else 1.0)
            times = []
            for run in range(2):
                t0 = time.perf_counter()
                r = run_translate(ckpt, src, os.path.join(work, f"out-{n}-{run}"), cfg=cfg)
                times.append(time.perf_counter() - t0)
                assert r.written == args.images, r
            print(f"replicas {n}: first run {times[0]:.1f} s ({args.images / times[0]:.1f} img/s), "
                  f"second run {times[1]:.1f} s ({args.images / times[1]:.1f} img/s)")


if __name__ == "__main__":
    main()
