"""Evidence that pix2pix learns through the pipeline, side by side with the same model trained in a plain loop.

The dataset is built here, not taken from the demo tiles: ``facades`` in pix2pix's aligned layout (``train/ val/``,
each file ``A|B``), A a flat-coloured label map of a synthetic facade (wall — its label colour naming one of three
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
# wall label colour → its material's colour (sandstone, brick, plaster): the material is readable from the input
WALLS = {(200, 60, 60): (176, 148, 112), (60, 200, 60): (150, 70, 55), (60, 60, 200): (215, 212, 200)}
LABELS = {"window": (240, 240, 40), "door": (40, 220, 220), "balcony": (220, 40, 220), "sky": (250, 250, 250)}


# --- the dataset --------------------------------------------------------------------------------------------------
def facade(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(label map A, rendering B), both SIZE × SIZE × 3 uint8."""
    wall_label = list(WALLS)[rng.integers(len(WALLS))]
    a = np.empty((SIZE, SIZE, 3), np.uint8)
    a[:] = wall_label
    y = np.arange(SIZE, dtype=np.float32)[:, None, None]
    b = np.asarray(WALLS[wall_label], np.float32)[None, None] * (1.05 - 0.35 * y / SIZE)  # light from above
    b = np.broadcast_to(b, (SIZE, SIZE, 3)).copy()
    top = 0
    if rng.random() < 0.5:  # a sky band above the roof line
        top = int(rng.integers(8, 24))
        a[:top] = LABELS["sky"]
        b[:top] = np.array([150, 185, 230], np.float32) + 40 * (np.arange(top)[:, None, None] / top)
    rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    cell_h, cell_w = (SIZE - top - 30) // rows, SIZE // cols
    for r in range(rows):
        for c in range(cols):
            h, w = int(rng.integers(cell_h // 2, cell_h - 4)), int(rng.integers(cell_w // 3, cell_w - 6))
            y0, x0 = top + 4 + r * cell_h + (cell_h - h) // 2, c * cell_w + (cell_w - w) // 2
            a[y0:y0 + h, x0:x0 + w] = LABELS["window"]
            glass = np.linspace(120, 40, h, dtype=np.float32)[:, None, None] * np.array([0.8, 0.9, 1.1], np.float32)
            b[y0:y0 + h, x0:x0 + w] = glass
            b[y0:y0 + h, x0:x0 + 2] = b[y0:y0 + 2, x0:x0 + w] = 235  # light frame, left and top
            b[y0 + h:y0 + h + 3, x0 + 2:x0 + w + 2] *= 0.6  # shadow under the sill
            if r > 0 and rng.random() < 0.3:  # a balcony across the window's lower part
                by = y0 + h - 6
                bx = max(0, x0 - 2)
                a[by:by + 6, bx:x0 + w + 2] = LABELS["balcony"]
                rail = 110 + 60 * ((np.arange(6) % 2) == 0)
                b[by:by + 6, bx:x0 + w + 2] = rail[:, None, None]
                b[by + 6:by + 9, bx + 2:x0 + w + 4] *= 0.55
    dw, dh = int(rng.integers(14, 24)), int(rng.integers(22, 28))
    dx = int(rng.integers(0, SIZE - dw))
    a[SIZE - dh:, dx:dx + dw] = LABELS["door"]
    wood = 95 + 25 * ((np.arange(dw) // 3) % 2)
    b[SIZE - dh:, dx:dx + dw] = wood[None, :, None] * np.array([1.0, 0.62, 0.35], np.float32)
    b += rng.normal(0, 4, b.shape)  # unpredictable texture
    return a, np.clip(b, 0, 255).astype(np.uint8)


def write_dataset(root: str, n_train: int, n_val: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        os.makedirs(f"{root}/{split}", exist_ok=True)
        for i in range(n):
            a, b = facade(rng)
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
