"""Metrics that scale: validation's peak RSS vs the size of the val set, and evaluate's wall time vs its workers.

1. **Validation peak RSS**: one fresh process per val-set size runs ``train_loop._validate`` (pix2pix, tiny
   networks, paired data with ``kid_weight`` so FID/KID statistics are accumulated) over N generated 64 px image
   pairs, handed out in batches as Ray Data would (nothing holds the whole split). Peak RSS is the process's
   ``ru_maxrss``; the ratio is peak(5,000) / peak(100) (target ≤ 1.2×).
2. **evaluate, 1 vs 2 workers**: demo shards at 64 px on a local Ray cluster (``--cpus``), ``evaluate_model`` of
   an untrained pix2pix with ``workers`` 1 and 2 (``cpus_per_worker`` 0.75: the reads need a quarter CPU each);
   wall time of each and the ratio. On a shared 2-core machine both figures are noisy.

    python benchmarks/eval_scale.py [--sizes 100 5000] [--feature-net tiny] [--cpus 2] [--skip-evaluate]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import torch


def validate_once(n: int, feature_net: str) -> dict:
    """``_validate`` over ``n`` generated pairs in this process; its peak RSS (MiB) and seconds."""
    from i2i_models.registry import get_model
    from pipelines.train_loop import LoopIO, _validate

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = get_model("pix2pix", image_size=64, ngf=8, ndf=8)

    class Batches:  # a val split handed out batch by batch, as iter_torch_batches does
        def iter_torch_batches(self, batch_size):
            for i in range(0, n, batch_size):
                g = torch.Generator().manual_seed(i)
                size = min(batch_size, n - i)
                yield {k: torch.randint(0, 256, (size, 64, 64, 3), generator=g, dtype=torch.uint8)
                       for k in ("input", "target")}

    io = LoopIO(dataset=lambda name: Batches(), get_checkpoint=lambda: None, report=lambda m, c: None,
                checkpoint_from_directory=lambda d: None)
    config = {"data_mode": "paired", "seed": 0, "batch_size": 50, "crop_size": 64, "channels_last": False,
              "kid_weight": 1.0, "feature_net": feature_net}
    t0 = time.perf_counter()
    out, _ = _validate(model, config, io, torch.device("cpu"))
    return {"n": n, "seconds": round(time.perf_counter() - t0, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "val_kid": out["val_kid"]}


def evaluate_workers(cpus: int) -> list[dict]:
    import ray

    from i2i_models.registry import get_model
    from pipelines.demo_data import build_demo
    from pipelines.evaluate import EvaluateConfig, evaluate_model
    from pipelines.shard import ShardConfig, run_shard

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    tmp = tempfile.mkdtemp(prefix="eval-scale-")
    build_demo(f"{tmp}/demo", tile_size=64, max_per_photo=60, val_fraction=0.5, seed=0)
    run_shard(ShardConfig(source=f"{tmp}/demo/edges2photo", output=f"{tmp}/shards", load_size=64, num_shards=4))
    torch.manual_seed(0)
    model = get_model("pix2pix", image_size=64, ngf=16, ndf=16)
    rows = []
    for workers in (1, 2, 1, 2):  # twice each, interleaved (the first run also warms Ray's worker pool)
        cfg = EvaluateConfig(feature_net="tiny", batch_size=8, workers=workers, cpus_per_worker=0.75)
        t0 = time.perf_counter()
        r = evaluate_model(model, f"{tmp}/shards", cfg)
        rows.append({"workers": workers, "seconds": round(time.perf_counter() - t0, 1), "samples": r.samples,
                     "fid": r.metrics["fid"]})
    ray.shutdown()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 5000])
    p.add_argument("--feature-net", default="tiny", choices=["tiny", "inception"])
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--skip-evaluate", action="store_true")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: one validation run in this process
    a = p.parse_args()
    if a.one is not None:
        print(json.dumps(validate_once(a.one, a.feature_net)))
        return
    runs = []
    for n in a.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--feature-net", a.feature_net],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(f"validation, {n:>6} val pairs at 64 px: peak RSS {runs[-1]['peak_rss_mib']:8.1f} MiB  "
              f"({runs[-1]['seconds']} s, val_kid {runs[-1]['val_kid']:.5f})", flush=True)
    print(f"peak RSS ratio {a.sizes[-1]} / {a.sizes[0]}: {runs[-1]['peak_rss_mib'] / runs[0]['peak_rss_mib']:.3f}x "
          "(target <= 1.2x)", flush=True)
    if not a.skip_evaluate:
        rows = evaluate_workers(a.cpus)
        for r in rows:
            print(f"evaluate, {r['workers']} worker(s): {r['seconds']:6.1f} s over {r['samples']} pairs "
                  f"(fid {r['fid']:.4f})", flush=True)
        best = {w: min(r["seconds"] for r in rows if r["workers"] == w) for w in (1, 2)}
        print(f"evaluate wall time, 2 workers / 1 worker (best of 2 each): {best[2] / best[1]:.2f}", flush=True)


if __name__ == "__main__":
    main()
