"""The per-worker training function Ray Train runs on every rank (``TorchTrainer(train_loop, ...)``).

Every rank builds the model from the same seed (identical initial weights, EMA copies included), then draws from a
stream of its own. Every network is wrapped in DDP separately (gloo on CPU, NCCL on GPU). Data arrive as equal
shards of the Ray Datasets (``get_dataset_shard``) in per-worker batches of ``batch_size`` = global batch / world
size, are cropped/flipped on the worker from a seeded generator (same crop for an input and its target). Before
every iteration each optimizer's rate is set to its base rate × ``model.lr_factor(step=, epoch=)`` (``step`` = the
global iteration count, the same on every rank). The run ends after ``epochs`` epochs or ``max_steps`` iterations,
whichever comes first (mid-epoch for the latter). Each epoch ends with validation metrics all-reduced across ranks,
one ``ray.train.report`` per rank, and a checkpoint written by rank 0 (networks, optimizers, epoch, step, model
config — a checkpoint folder is also loadable with ``I2IModel.from_pretrained``; the rate is recomputed from the
step on resume), uploaded before the next epoch starts (``train.checkpoint_upload: async``: by Ray Train in the
background while the next epoch trains; a failed upload fails the worker group). torch runs on as many threads as
the CPUs the worker holds. Only rank 0 talks to MLflow.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from i2i_models.base import I2IModel, unwrap
from i2i_models.registry import get_model
from pipelines import feeds, metrics
from pipelines.errors import DatasetError
from pipelines.pretrained import fetch_files

STATE_FILE = "train_state.pt"


@dataclass
class LoopIO:
    """Where one training loop gets its data and reports to: Ray Train (``train_loop``) or a Tune trial."""

    dataset: Callable[[str], Any]  # "train" / "val" → something with ``iter_torch_batches``
    get_checkpoint: Callable[[], Any]
    report: Callable[[dict, Any], None]  # (metrics, checkpoint or None)
    checkpoint_from_directory: Callable[[str], Any]
    async_upload: bool = False  # report() returns before the checkpoint is uploaded, and deletes its folder after


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def build_model(config: dict, device: torch.device, world_size: int, rank: int = 0) -> I2IModel:
    """The model, built from ``config["seed"]`` on every rank — identical initial weights everywhere, EMA copies
    included (DDP broadcasts only the trained nets) — then the global RNG reseeded per rank for what follows
    (noise, dropout, image pools)."""
    import ray.train.torch

    torch.manual_seed(config["seed"])
    # files the model is built from (DTN's f), shipped by the driver to storage: read here as local copies
    args = {**config["model_args"], **fetch_files(config.get("files", {}))}
    model = get_model(config["model"], loss_weights=config["loss_weights"], **args)
    torch.manual_seed(config["seed"] + rank)
    if config["bf16"] and device.type == "cuda":
        model.amp_dtype = torch.bfloat16
    for name in list(model.nets):
        net = model.nets[name]
        if config["channels_last"]:
            net = net.to(memory_format=torch.channels_last)
        # one DDP wrapper per trained network; buffers not re-broadcast on every forward (D runs twice per step).
        # Networks with nothing to train (EMA copies) stay plain: every rank updates them identically.
        trained = any(p.requires_grad for p in net.parameters())
        if config.get("compile") and trained:
            net.compile()  # in place: the module, its parameters and state_dict keys stay as they are
        model.nets[name] = ray.train.torch.prepare_model(
            net, parallel_strategy_kwargs={"broadcast_buffers": False}) if world_size > 1 and trained else net.to(device)
    model.setup_optimizers()
    return model


class LrSchedule:
    """Sets every optimizer's rate to its base rate × ``model.lr_factor(step=, epoch=)``, before each iteration.

    The base rates are read when the optimizers are built (the model config's ``lr``), before a checkpoint's
    optimizer state (which carries the rate in force when it was saved) is loaded, so a resumed run continues the
    schedule from its step, and a PBT trial that explored ``model.args.lr`` gets its new base rate."""

    def __init__(self, model: I2IModel):
        self.model = model
        self.base = {g: [group["lr"] for group in opt.param_groups] for g, opt in model.optimizers.items()}

    def apply(self, *, step: int, epoch: int) -> float:
        factor = self.model.lr_factor(step=step, epoch=epoch)
        for g, opt in self.model.optimizers.items():
            for group, base in zip(opt.param_groups, self.base[g], strict=True):
                group["lr"] = base * factor
        return factor


def say(text: str) -> None:
    """One log line of the loop, on the process's own stdout (which Ray copies to the driver once). A plain
    ``print`` in a Ray Train worker is patched to go to Train's logger *and*, when something (MLflow, …) wrapped
    ``sys.stdout``, to the stream too: every line would show twice."""
    print(text, file=sys.__stdout__ or sys.stdout, flush=True)


def progress(config: dict, epoch: int, step: int, step_rate: float) -> str:
    """``epoch 2/4 step 120/188 (64%), ETA 1:05``: where the run is, in the run's totals, and when it will end at
    ``step_rate`` iterations per second (a run bounded in iterations only shows no epoch total)."""
    from pipelines.progress import duration

    epochs, total = config.get("epochs"), config.get("total_steps")
    text = f"epoch {epoch + 1}" + (f"/{epochs}" if epochs else "") + f" step {step}"
    if total:
        text += f"/{total} ({100 * step // total}%)"
        if step_rate > 0 and step < total:
            text += f", ETA {duration((total - step) / step_rate)}"
    return text


def _restore(model: I2IModel, io: LoopIO) -> tuple[int, int, str, dict]:
    """Load the checkpoint handed over (a restarted worker group, a re-run, or a PBT exploit): (next epoch, step,
    the id of the run/trial that wrote it, the loss weights it was trained with)."""
    ckpt = io.get_checkpoint()
    if ckpt is None:
        return 0, 0, "", {}
    with ckpt.as_directory() as d:
        state = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)
    model.load_nets(state["nets"])
    for g, opt in model.optimizers.items():
        opt.load_state_dict(state["optimizers"][g])  # the rate in it is overwritten from the step before each step
    say(f"[i2i] resumed from checkpoint: epoch {state['epoch'] + 1} done, step {state['step']}")
    return state["epoch"] + 1, state["step"], state.get("written_by", ""), state.get("loss_weights", {})


def _save(model: I2IModel, epoch: int, step: int, directory: str, written_by: str) -> None:
    model.save_pretrained(directory)
    torch.save({"nets": {k: unwrap(v).state_dict() for k, v in model.nets.items()},
                "optimizers": {g: o.state_dict() for g, o in model.optimizers.items()},
                "epoch": epoch, "step": step, "written_by": written_by,
                "loss_weights": model.loss_weights}, os.path.join(directory, STATE_FILE))


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return {k: (v.to(device).contiguous(memory_format=fmt) if v.dim() == 4 else v.to(device))
            for k, v in batch.items()}


def _train_epoch(model: I2IModel, config: dict, io: LoopIO, epoch: int, step: int, rank: int, device,
                 lr: LrSchedule) -> tuple[dict, int, float]:
    """One pass over this rank's shard, or up to ``max_steps`` global iterations (every rank stops at the same
    step: the ranks' shards hold the same number of batches)."""
    gen = torch.Generator().manual_seed(config["seed"] * 1_000_003 + epoch * 7919 + rank)
    sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=device))
    n_steps, n_images, t0 = 0, 0, time.perf_counter()
    max_steps = config.get("max_steps")
    for batch in feeds.train_batches(config.get("data_mode", "paired"), io.dataset, config, epoch, rank, gen):
        if max_steps is not None and step >= max_steps:
            break
        lr.apply(step=step, epoch=epoch)
        out = model.train_step(_to_device(batch, device, config["channels_last"]), step)
        for k, v in out.losses.items():
            sums[k] += v.float()
        n_steps, step = n_steps + 1, step + 1
        n_images += next(iter(batch.values())).shape[0]
        if rank == 0 and step % config["log_every_steps"] == 0:
            elapsed = time.perf_counter() - t0
            losses = " ".join(f"{k}={v.item():.4f}" for k, v in out.losses.items())
            say(f"[i2i] {progress(config, epoch, step, n_steps / elapsed)}: {losses}, "
                f"{n_images / elapsed:.1f} img/s/rank")
    if n_steps == 0:  # else a run bounded in iterations only would loop over empty epochs for ever
        raise DatasetError(f"epoch {epoch} gave rank {rank} no full batch of {config['batch_size']}: lower the batch "
                           "or add training data")
    seconds = time.perf_counter() - t0
    names = [t.name for t in model.loss_terms]
    totals = _all_reduce(torch.stack([sums[k] for k in names] + [torch.tensor(float(n_steps), device=device),
                                                                   torch.tensor(float(n_images), device=device)]))
    losses = {f"loss_{k}": float(totals[i]) / max(float(totals[-2]), 1.0) for i, k in enumerate(names)}
    return {**losses, "images_per_s": float(totals[-1]) / max(seconds, 1e-9)}, step, seconds


def _all_gather(obj) -> list:
    """``obj`` of every rank, by rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, obj)
        return parts
    return [obj]


def _this_node() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""


def _validate(model: I2IModel, config: dict, io: LoopIO, device) -> tuple[dict, list[torch.Tensor] | None]:
    """Validation on this rank's share of the val split, combined across ranks; the first batch's sample-grid
    columns.

    paired: L1/PSNR/SSIM against the target (+ KID with ``kid_weight``); unpaired and labeled: KID of the
    translations against real images of the target domain; single: KID of samples from the prior (as many as real
    images, seeded per rank and batch) against the val images, and the reconstruction's MSE/PSNR where the family
    encodes. ``objective`` (what tuning minimises) is ``val_l1 + kid_weight · val_kid`` for paired data and
    ``val_kid`` otherwise. Each rank feeds its own images into its own feature statistics (on its device); ranks
    then all-reduce the sums and gather the bounded KID samples (``metrics.Distribution.combine``): no rank ever
    holds another rank's images."""
    mode = config.get("data_mode", "paired")
    sums, first, kid = torch.zeros(4, device=device), None, None
    recon = torch.zeros(3, device=device, dtype=torch.float64)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config["seed"])  # the same test-time noise every epoch; training's RNG stream untouched
        if mode != "paired" or config.get("kid_weight"):
            kid = metrics.Distribution(config.get("feature_net", "tiny"), config.get("inception_weights"),
                                       kid_subset_size=1000, seed=config["seed"], device=device)
        for i, batch in enumerate(feeds.val_batches(mode, io.dataset, config)):
            batch = _to_device(batch, device, config["channels_last"])
            if mode == "single":
                fake, real, columns = _single_val(model, config, batch, i, recon)
            else:
                fake, real, columns = _translate_val(model, mode, batch)
            if mode == "paired":
                sums += metrics.paired_sums(fake, real).to(device)
            if kid is not None:
                kid.update(fake, real=False)
                if real is not None:
                    kid.update(real, real=True)
            first = first or columns
    out = {}
    if mode == "paired":
        out = {f"val_{k}": v for k, v in metrics.paired_means(_all_reduce(sums).cpu()).items()}
    if mode == "single" and model.encodes:
        out.update({f"val_{k}": v for k, v in metrics.recon_means(_all_reduce(recon).cpu()).items()})
    if kid is not None:
        kid.combine(_all_reduce, _all_gather)
        out["val_kid"] = kid.compute()["kid"]
    out["objective"] = (out["val_l1"] + config.get("kid_weight", 0.0) * out.get("val_kid", 0.0)
                        if mode == "paired" else out["val_kid"])
    return out, first


@torch.no_grad()
def _single_val(model: I2IModel, config: dict, batch: dict, i: int, recon: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(samples, real images, sample-grid columns) of one val batch of a single-domain family: as many samples as
    real images, from a seed fixed per (run seed, rank, batch) — the same every epoch; the reconstruction's sums
    are added to ``recon`` where the family encodes. Grid: real | reconstruction | sample (sample alone for a
    family that does not encode)."""
    x = batch["image"]
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    fake = model.sample(x.shape[0], seed=config["seed"] * 1_000_003 + rank * 10_007 + i, device=x.device)
    if not model.encodes:
        return fake, x, [fake]
    rec = model.translate(x)
    recon += metrics.recon_sums(rec, x).to(recon)
    return fake, x, [x, rec, fake]


def _translate_val(model: I2IModel, mode: str, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None, list]:
    """(translations, the real images they are compared with, sample-grid columns) of one val batch."""
    if mode == "paired":
        fake = model.translate(batch["input"])
        return fake, batch["target"], [batch["input"], fake, batch["target"]]
    if mode == "unpaired":
        x = batch["real_a"]
        if model.multimodal:  # several random styles per input
            outs = [model.translate(x, seed=k) for k in range(3)]
            return outs[0], batch.get("real_b"), [x, *outs]
        fake = model.translate(x)
        back = [model.translate(fake, direction="b2a")] if "b2a" in model.directions else []  # DTN: a2b only
        return fake, batch.get("real_b"), [x, fake, *back]
    # labeled: every image into the next domain (latent-guided), plus a grid of all domains and a reference row
    x, y = batch["image"], batch["domain"]
    k = model.config.num_domains
    fake = model.translate(x, domain=(y + 1) % k, seed=0)
    per_domain = [model.translate(x, domain=d, seed=0) for d in range(k)]
    ref = x.roll(1, 0)
    guided = model.translate(x, domain=y.roll(1, 0), reference=ref)
    return fake, x, [x, *per_domain, ref, guided]


def finished(config: dict, epoch: int, step: int) -> bool:
    """Whether a run that has done epochs 0 … ``epoch`` − 1 and ``step`` iterations is over: ``epochs`` epochs or
    ``max_steps`` iterations (whichever is set and reached first)."""
    epochs, max_steps = config.get("epochs"), config.get("max_steps")
    if epochs is None and max_steps is None:
        raise ValueError("the loop config bounds neither epochs nor max_steps")
    return (epochs is not None and epoch >= epochs) or (max_steps is not None and step >= max_steps)


def set_threads(rank: int) -> int:
    """torch's intra-op threads = the CPUs this worker (or trial) holds, rounded (Ray sets ``OMP_NUM_THREADS`` to
    the whole CPUs only, so a worker holding 1.75 CPU would otherwise run torch on one thread); logged."""
    import ray

    try:  # a Ray worker (Train worker, Tune trial) holds CPUs; a driver running the loop itself (tests) holds none
        held = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0) if ray.is_initialized() else 0.0
    except AssertionError:
        held = 0.0
    threads = max(1, round(held)) if held else torch.get_num_threads()
    torch.set_num_threads(threads)
    say(f"[i2i] rank {rank}: torch on {threads} thread{'s' * (threads > 1)} (the worker holds {held:g} CPU)")
    return threads


def run_loop(config: dict, io: LoopIO, *, rank: int, world: int, device: torch.device) -> None:
    """Epochs of train → validate → report (+ checkpoint from rank 0), resuming from a handed-over checkpoint,
    until :func:`finished`."""
    set_threads(rank)
    model = build_model(config, device, world, rank)
    lr = LrSchedule(model)
    start_epoch, step, restored_from, restored_weights = _restore(model, io)
    nodes = _all_gather(_this_node())  # where each rank runs, by rank: the run's own record of its placement
    tracker = _Tracker(config) if rank == 0 else None
    if tracker:
        tracker.tag("i2i.worker_nodes", ",".join(nodes))
    t_start, step_start = time.perf_counter(), step
    for epoch in itertools.count(start_epoch):
        if finished(config, epoch, step):
            break
        train_metrics, step, seconds = _train_epoch(model, config, io, epoch, step, rank, device, lr)
        val_metrics, grid = _validate(model, config, io, device)
        last_lr = model.lr_factor(step=max(step - 1, 0), epoch=epoch)  # the rate of the epoch's last iteration
        m = {"epoch": epoch, "step": step, "start_epoch": start_epoch, "epoch_seconds": seconds,
             "lr_factor": last_lr, "num_nodes": len(set(nodes)), **train_metrics, **val_metrics,
             **{f"weight_{k}": v for k, v in model.loss_weights.items()}}  # what this epoch trained with
        if rank == 0:
            rate = (step - step_start) / max(time.perf_counter() - t_start, 1e-9)  # validation included
            say(f"[i2i] {progress(config, epoch, step, rate)} — epoch done: "
                + " ".join(f"{k}={v:.4g}" for k, v in m.items()))
            tracker.log(m, epoch, grid)
        checkpoint, folder = None, None
        if rank == 0:
            folder = tempfile.mkdtemp(prefix="i2i-checkpoint-")
            _save(model, epoch, step, folder, config.get("run_id", ""))
            checkpoint = io.checkpoint_from_directory(folder)
        extra = {"worker_nodes": ",".join(nodes)}
        if restored_from:  # a PBT exploit: whose checkpoint this trial continues, and the weights it had
            extra.update({"restored_from": restored_from,
                          **{f"restored_weight_{k}": v for k, v in restored_weights.items()}})
        if config.get("run_id"):
            extra["run_id"] = config["run_id"]  # a Tune trial: who wrote the checkpoint it may hand over
        io.report({**m, **extra}, checkpoint)  # every rank reports; rank 0's checkpoint is kept
        if folder and not io.async_upload:
            shutil.rmtree(folder, ignore_errors=True)
    if tracker:
        tracker.close()


def train_loop(config: dict) -> None:
    """The Ray Train worker function: data from the trainer's dataset shards, reports to Ray Train."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    upload = config.get("checkpoint_upload", "sync")
    mode = ray.train.CheckpointUploadMode.ASYNC if upload == "async" else ray.train.CheckpointUploadMode.SYNC
    io = LoopIO(dataset=ray.train.get_dataset_shard, get_checkpoint=ray.train.get_checkpoint,
                report=lambda m, c: ray.train.report(m, checkpoint=c, checkpoint_upload_mode=mode),
                checkpoint_from_directory=ray.train.Checkpoint.from_directory, async_upload=upload == "async")
    run_loop(config, io, rank=ctx.get_world_rank(), world=ctx.get_world_size(), device=ray.train.torch.get_device())


class _Tracker:
    """Rank 0's MLflow logging: per-epoch metrics and the input | output | target sample grid."""

    def __init__(self, config: dict):
        import mlflow

        self.mlflow = mlflow
        self.enabled = bool(config.get("mlflow_run_id"))
        if self.enabled:
            from pipelines.storage import redact

            if redact(config["mlflow_tracking_uri"]) != config["mlflow_tracking_uri"]:  # user:password@host
                os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # end_run prints the URI as is
            mlflow.set_tracking_uri(config["mlflow_tracking_uri"])
            mlflow.start_run(run_id=config["mlflow_run_id"])

    def tag(self, key: str, value: str) -> None:
        if self.enabled:
            self.mlflow.set_tag(key, value)

    def log(self, m: dict, epoch: int, grid: list[torch.Tensor] | None) -> None:
        if not self.enabled:
            return
        self.mlflow.log_metrics({k: float(v) for k, v in m.items() if k not in ("epoch",)}, step=epoch)
        if grid is not None:
            self.mlflow.log_image(metrics.sample_grid(grid), key="samples", step=epoch)

    def close(self) -> None:
        if self.enabled:
            self.mlflow.end_run()
