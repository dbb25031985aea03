"""Compute ASHA needs to find loss weights within 5% of the best of a small grid, against the grid itself.

Both search pix2pix's (l1, gan) weights on the demo edges→photo shards with the tuning objective
(val L1 + KID on the seeded feature net). Compute is counted in trial-epochs. Prints measured figures.

    python benchmarks/tune_efficiency.py [--epochs 4] [--samples 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

GRID = {"loss_weights.l1": {"grid": [1, 10, 100, 300]}, "loss_weights.gan": {"grid": [0.5, 2.0]}}
SPACE = {"loss_weights.l1": {"loguniform": [1, 300]}, "loss_weights.gan": {"uniform": [0.5, 2.0]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    args = p.parse_args()
    import ray

    from pipelines.demo_data import build_demo
    from pipelines.shard import ShardConfig, run_shard
    from pipelines.tracking import MlflowConfig
    from pipelines.train import TrainConfig
    from pipelines.tune import TuneSection, run_tune

    model_args = {"image_size": args.size, "ngf": 8, "ndf": 8, "norm": "instance", "n_epochs": args.epochs,
                  "n_epochs_decay": 0}
    with tempfile.TemporaryDirectory() as work:
        build_demo(work, tile_size=args.size, max_per_photo=12)
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        run_shard(ShardConfig(source=f"{work}/edges2photo", output=f"{work}/shards", load_size=args.size,
                              num_shards=2))
        train = TrainConfig(dataset=f"{work}/shards", batch_size=4, crop_size=args.size, shuffle_buffer=8,
                            storage_path=f"{work}/runs", log_every_steps=10_000)
        mlflow = MlflowConfig(tracking_uri=f"sqlite:///{work}/mlflow.db")
        results = {}
        for label, space, samples in (("grid", GRID, 1), ("asha", SPACE, args.samples)):
            t0 = time.perf_counter()
            cfg = TuneSection(search_space=space, scheduler="asha" if label == "asha" else "fifo",
                              num_samples=samples, epochs=args.epochs, grace_period=1, reduction_factor=2,
                              storage_path=f"{work}/tune", name=label)
            r = run_tune(model="pix2pix", model_args=model_args, loss_weights={}, train=train, cfg=cfg,
                         mlflow=mlflow)
            results[label] = (r, time.perf_counter() - t0)
        ray.shutdown()
    (grid, tg), (asha, ta) = results["grid"], results["asha"]
    within = asha.best_objective <= grid.best_objective * 1.05
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs; pix2pix {args.size}px, {args.epochs} epochs/trial")
    print(f"grid: {grid.trials} trials, {grid.trial_epochs} trial-epochs, {tg:.0f} s, best objective "
          f"{grid.best_objective:.4f} at {grid.best_config}")
    print(f"asha: {asha.trials} trials, {asha.trial_epochs} trial-epochs, {ta:.0f} s, best objective "
          f"{asha.best_objective:.4f} at {asha.best_config}")
    print(f"asha within 5% of the grid's best: {within}; compute {asha.trial_epochs / grid.trial_epochs:.2f}x the grid's")


if __name__ == "__main__":
    main()
