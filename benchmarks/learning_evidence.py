"""Evidence that pix2pix learns through the pipeline, side by side with the same model trained in a plain loop.

The dataset is the demo's ``facades`` (``pipelines.demo_data.facade``) at 128 px, built here with its own counts:
pix2pix's aligned layout (``train/ val/``, each file ``A|B``), A a flat-coloured label map of a synthetic facade (wall — its label colour naming one of three
materials —, a grid of windows, a door, balconies, an optional sky band) and B its rendering: the wall material's
colour under a vertical light falloff, glass with a sky-reflection gradient and a light frame, a shadow under each
window and balcony, wood and railings, and mild noise (the part no model can predict). Deterministic for a seed.

Three figures of validation L1 (the pipeline's metric: mean |fake − real| on the models' [−1, 1] scale):

* **mean colour**: every output pixel the mean colour of the training targets — what a model that learned
  nothing about the input reaches;
* **pipeline**: ``run_shard`` (Ray Data; resize to ``load_size``) → ``run_train`` (Ray Train, 1 worker, global
  batch 1, pix2pix unet_128, the first ``--epochs`` epochs of the authors' schedule: random crop 128 + flip,
  shuffled) → the run's own last ``val_l1`` (per-worker batch 1) and ``run_evaluate``'s ``l1`` (batches of 16);
* **plain loop**: the same model, seed and preprocessing (PIL bicubic resize to ``load_size``, random crop and
  flip, centre crop for validation) in a for loop over the files without Ray, evaluated one image at a time.

A pipeline effect (shuffling, cropping, normalisation, eval batching) shows up as a gap between the last two
beyond the spread between training seeds (``--train-seeds``: each seed sets the initial weights, the data order
and the crops of both runs, as ``train.seed`` does in the pipeline; the two never share a random stream, so
only their distributions are comparable). Prints measured figures; not a test (CPU-heavy: minutes per run).

    python benchmarks/learning_evidence.py [--train 100] [--val 30] [--epochs 2] [--ngf 64] [--train-seeds 0 1 2]
        [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

SIZE, LOAD = 128, 143  # unet_128; pix2pix's 286 → 256 jitter at half scale


# --- the dataset: the demo's facades (pipelines.demo_data.facade) at SIZE px ------------------------------------
def write_dataset(root: str, n_train: int, n_val: int, seed: int) -> None:
    from pipelines.demo_data import facade

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        os.makedirs(f"{root}/{split}", exist_ok=True)
        for i in range(n):
            a, b = facade(rng, SIZE)
            Image.fromarray(np.concatenate([a, b], 1)).save(f"{root}/{split}/{i:04d}.png")


def load_pairs(folder: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(A, B) of every file, each half resized to LOAD² (bicubic) as the shard step stores them."""
    out = []
    for name in sorted(os.listdir(folder)):
        ab = Image.open(f"{folder}/{name}").convert("RGB")
        w, h = ab.size
        halves = (ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h)))
        out.append(tuple(np.asarray(x.resize((LOAD, LOAD), Image.Resampling.BICUBIC)) for x in halves))
    return out


def to_model(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).float().div(127.5).sub(1.0)[None]


def centre(x: np.ndarray) -> np.ndarray:
    o = (LOAD - SIZE) // 2
    return x[o:o + SIZE, o:o + SIZE]


# --- the three figures ------------------------------------------------------------------------------------------
def mean_colour_l1(src: str) -> float:
    from pipelines import metrics

    train, val = load_pairs(f"{src}/train"), load_pairs(f"{src}/val")
    mean = np.mean([b.reshape(-1, 3).mean(0) for _, b in train], axis=0)
    sums = sum(metrics.paired_sums(to_model(np.broadcast_to(mean, (SIZE, SIZE, 3)).astype(np.float32)),
                                   to_model(centre(b))) for _, b in val)
    return metrics.paired_means(sums)["l1"]


def plain_loop(src: str, args, seed: int) -> dict:
    from i2i_models.registry import get_model
    from pipelines import metrics

    train, val = load_pairs(f"{src}/train"), load_pairs(f"{src}/val")
    torch.manual_seed(seed)  # as the trainer seeds the initial weights
    model = get_model("pix2pix", image_size=SIZE, ngf=args.ngf, ndf=args.ngf)
    model.setup_optimizers()
    gen, step, t0 = torch.Generator().manual_seed(seed), 0, time.perf_counter()
    for epoch in range(args.epochs):
        for lr_group in (g for o in model.optimizers.values() for g in o.param_groups):
            lr_group["lr"] = model.config.lr * model.lr_factor(step=step, epoch=epoch)
        for i in torch.randperm(len(train), generator=gen).tolist():
            a, b = train[i]
            y0, x0 = (int(v) for v in torch.randint(0, LOAD - SIZE + 1, (2,), generator=gen))
            a, b = a[y0:y0 + SIZE, x0:x0 + SIZE], b[y0:y0 + SIZE, x0:x0 + SIZE]
            if torch.rand(1, generator=gen).item() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            model.train_step({"input": to_model(a), "target": to_model(b)}, step)
            step += 1
        print(f"plain loop: epoch {epoch} done, step {step}, {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    torch.manual_seed(0)
    sums = sum(metrics.paired_sums(model.translate(to_model(centre(a))), to_model(centre(b))) for a, b in val)
    return {"val_l1": metrics.paired_means(sums)["l1"], "steps": step, "train_s": seconds}


def pipeline(src: str, work: str, args, seed: int) -> dict:
    from pipelines.evaluate import EvaluateConfig, run_evaluate
    from pipelines.shard import ShardConfig, run_shard
    from pipelines.tracking import MlflowConfig
    from pipelines.train import TrainConfig, run_train

    shards = f"{work}/shards"
    run_shard(ShardConfig(source=src, output=shards, layout="aligned", load_size=LOAD, samples_per_shard=64))  # once
    mlflow = MlflowConfig(tracking_uri=f"sqlite:///{work}/mlflow.db", experiment="learning-evidence")
    train = TrainConfig(dataset=shards, epochs=args.epochs, global_batch_size=1, num_workers=1, crop_size=SIZE,
                        cpus_per_worker=1, storage_path=f"{work}/ray_results", log_every_steps=100, seed=seed)
    t0 = time.perf_counter()
    result = run_train(model="pix2pix", model_args={"image_size": SIZE, "ngf": args.ngf, "ndf": args.ngf},
                       loss_weights={}, train=train, mlflow=mlflow)
    seconds = time.perf_counter() - t0
    ev = run_evaluate(model_uri=result.checkpoint, dataset=shards, mlflow=mlflow,
                      cfg=EvaluateConfig(split="val", fid=False, batch_size=16))
    return {"val_l1": result.metrics["val_l1"], "evaluate_l1_batch16": ev.metrics["l1"], "steps": result.metrics["step"],
            "train_s": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=100)
    p.add_argument("--val", type=int, default=30)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--ngf", type=int, default=64, help="ngf = ndf (64: the authors' unet_128)")
    p.add_argument("--seed", type=int, default=0, help="the dataset's seed")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0], help="one run of each kind per seed")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    args = p.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="i2i-evidence-")
    src = f"{work}/facades"
    write_dataset(src, args.train, args.val, args.seed)
    print(f"dataset: {args.train} train / {args.val} val aligned {SIZE}px pairs in {src}; load {LOAD} → crop {SIZE}; "
          f"pix2pix unet_128 ngf {args.ngf}, global batch 1, {args.epochs} epochs; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}", flush=True)
    mean_l1 = mean_colour_l1(src)
    print(f"mean colour: val_l1 {mean_l1:.4f}", flush=True)
    rows = []
    for seed in args.train_seeds:
        plain = plain_loop(src, args, seed)
        print(f"seed {seed} plain loop:", json.dumps(plain), flush=True)
        piped = pipeline(src, work, args, seed)
        print(f"seed {seed} pipeline:", json.dumps(piped), flush=True)
        rows.append((plain["val_l1"], piped["val_l1"], piped["evaluate_l1_batch16"]))
    print(f"| {'predictor':<38} | " + " | ".join(f"seed {s}" for s in args.train_seeds) + " | mean |")
    print(f"|{'-' * 40}|" + "--------|" * (len(args.train_seeds) + 1))
    columns = {"mean colour of the training targets": [mean_l1] * len(rows),
               "plain loop (no Ray), eval batch 1": [r[0] for r in rows],
               "pipeline: the run's val_l1 (batch 1)": [r[1] for r in rows],
               "pipeline: i2i evaluate (batch 16)": [r[2] for r in rows]}
    for label, values in columns.items():
        print(f"| {label:<38} | " + " | ".join(f"{v:.4f}" for v in values) + f" | {np.mean(values):.4f} |")


if __name__ == "__main__":
    main()
