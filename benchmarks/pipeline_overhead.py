"""Pipeline overhead: training images/s through the whole Ray Train + Ray Data path ÷ images/s of the same
``train_step`` in a plain loop over tensors already in memory, on the same number of torch threads.

The data are the demo edges→photo pairs (built from the photos in the scikit-image wheel) sharded at ``--size`` px.
The pipeline figure is the run's own ``images_per_s`` of its last epoch (optimizer steps of the epoch ÷ the
epoch's wall time, waiting for data included; validation and checkpointing excluded), with one worker holding
``--cpus`` CPUs (the rest of the machine's CPUs left to Ray Data's read/decode tasks); torch runs on as many threads
as the worker holds (rounded). The plain loop runs in this process on that many threads. Prints measured figures;
not a test.

    python benchmarks/pipeline_overhead.py [--size 128] [--batches 1 4] [--epochs 2] [--cpus 1.75]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from i2i_models.registry import get_model  # noqa: E402


def plain_rate(model_args: dict, batch: int, size: int, threads: int, steps: int, warmup: int = 2) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = get_model("pix2pix", **model_args)
    model.setup_optimizers()
    data = model.example_batch(batch, size)
    for s in range(warmup):
        model.train_step(data, s)
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        model.train_step(data, s)
    return batch * steps / (time.perf_counter() - t0)


def pipeline_rate(dataset: str, model_args: dict, batch: int, size: int, cpus: float, epochs: int, work: str,
                  ) -> tuple[float, dict]:
    from pipelines import tracking
    from pipelines.train import TrainConfig, run_train

    train = TrainConfig(dataset=dataset, epochs=epochs, batch_size=batch, crop_size=size, flip=True,
                        num_workers=1, cpus_per_worker=cpus, storage_path=os.path.join(work, "runs"),
                        run_name=f"overhead-b{batch}-{int(time.time())}", log_every_steps=10_000)
    mlflow = tracking.MlflowConfig(tracking_uri=f"sqlite:///{work}/mlflow.db", experiment="pipeline-overhead")
    result = run_train(model="pix2pix", model_args=model_args, loss_weights={}, train=train, mlflow=mlflow)
    return float(result.metrics["images_per_s"]), result.metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--epochs", type=int, default=2, help="the last epoch's rate is reported")
    p.add_argument("--cpus", type=float, default=max(1.0, (os.cpu_count() or 2) - 0.25),
                   help="CPUs the training worker holds (default: all but a quarter CPU for Ray Data)")
    p.add_argument("--plain-steps", type=int, default=10)
    p.add_argument("--max-per-photo", type=int, default=8, help="demo tiles per photo (sets the epoch length)")
    args = p.parse_args()

    from pipelines.cluster import RayConfig, init_ray
    from pipelines.demo_data import build_demo
    from pipelines.shard import ShardConfig, run_shard

    threads = max(1, round(args.cpus))
    model_args = {"image_size": args.size}  # the paper's pix2pix, unet_<size>
    init_ray(RayConfig(num_cpus=os.cpu_count() or 2))
    with tempfile.TemporaryDirectory() as work:
        demo = build_demo(os.path.join(work, "demo"), tile_size=args.size, max_per_photo=args.max_per_photo)
        shards = os.path.join(work, "shards")
        run_shard(ShardConfig(source=os.path.join(demo.out, "edges2photo"), output=shards, load_size=args.size,
                              num_shards=4))
        n_train = sum(v for k, v in demo.datasets["edges2photo"].items() if k.startswith("train"))
        print(f"pipeline overhead, pix2pix unet_{args.size}, {args.size}px, {n_train} training pairs, one worker "
              f"holding {args.cpus:g} CPU (torch {threads} threads) on {platform.processor() or platform.machine()}"
              f" with {os.cpu_count()} CPUs; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}", flush=True)
        for batch in args.batches:
            piped, m = pipeline_rate(shards, model_args, batch, args.size, args.cpus, args.epochs, work)
            plain = plain_rate(model_args, batch, args.size, threads, args.plain_steps)
            print(f"batch {batch:>2}: pipeline {piped:7.3f} img/s (epoch {int(m['epoch'])}, "
                  f"{m['epoch_seconds']:.1f} s)  plain loop {plain:7.3f} img/s  ratio {piped / plain:5.2f}×",
                  flush=True)


if __name__ == "__main__":
    main()
