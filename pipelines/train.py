"""Train a model on Ray Train (V2) from the shards, with checkpoints, fault tolerance and MLflow tracking.

``run_train`` builds ``ScalingConfig`` / ``RunConfig`` / ``TorchTrainer(train_loop, ...)`` the way Ray's docs do.
The run name is deterministic (model, dataset id, config hash), so re-submitting the same job resumes from its
latest checkpoint, and a finished run is a no-op. Workers that die are replaced (``FailureConfig.max_failures``)
and resume from the latest checkpoint.

Batch and length (:func:`run_plan`). ``train.global_batch_size`` is the batch of one optimizer step over all
workers — the unit the authors' batch sizes are in (1 for pix2pix/CycleGAN/UNIT/MUNIT, 8 for StarGAN v2); each
worker then reads ``global / num_workers`` images per step, and a global batch that does not split evenly is an
error. (``train.batch_size`` instead fixes the per-worker batch, the global one then being ``batch_size ·
num_workers``.) A run lasts the model's ``run_length`` in the authors' unit — epochs (pix2pix, CycleGAN) or
iterations (UNIT, MUNIT, StarGAN v2) — unless ``train.epochs`` / ``train.iterations`` bound it (whichever comes
first). Iterations are optimizer steps at the global batch, so with a fixed global batch a different number of
workers trains the same schedule: the same steps per epoch (⌊epoch images / global batch⌋), the same rate at every
step (no rate scaling is applied, none is needed). With a per-worker ``batch_size`` a change of world size changes
the global batch, the steps per epoch and what an iteration-counted schedule sees, and again nothing is rescaled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from i2i_models.registry import get_model_class
from pipelines import cluster, storage, tracking
from pipelines.errors import ConfigError, DatasetError, I2IError
from pipelines.manifest import SplitEntry, read_manifest
from pipelines.pretrained import ship_files
from pipelines.schema import StrictModel, check_name

log = logging.getLogger(__name__)
DONE_MARKER = "i2i_train_done.json"


class TrainConfig(StrictModel):
    dataset: str  # the shard output folder (with manifest.json) or the manifest's URI
    # Run length: both None = the model's run length in its authors' unit (pix2pix, CycleGAN: 200 epochs; UNIT,
    # MUNIT: 1M iterations; StarGAN v2: 100k); set = a bound (with both set, whichever is reached first)
    epochs: int | None = Field(default=None, gt=0)
    iterations: int | None = Field(default=None, gt=0)  # optimizer steps, each over one global batch
    # Batch: set one of the two. global_batch_size = images per optimizer step over all workers (the authors'
    # batch; split evenly over num_workers); batch_size = per worker. Neither: 1 per worker.
    global_batch_size: int | None = Field(default=None, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    crop_size: int | None = Field(default=None, gt=0)  # None: the model's image_size
    flip: bool = True
    shuffle_buffer: int = Field(default=64, ge=0)
    num_workers: int = Field(default=2, gt=0)
    use_gpu: bool | None = None  # None: use GPUs when the cluster has them
    cpus_per_worker: float = Field(default=0.5, gt=0)  # < 1 leaves CPUs for Ray Data's readers
    # Ray placement group strategy of the workers: PACK fills a node first; SPREAD / STRICT_SPREAD put them on
    # different nodes (STRICT: one per node, or the run waits for nodes)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    bf16: bool = True  # autocast to bfloat16 on GPU (no effect on CPU)
    channels_last: bool = False
    compile: bool = False  # torch.compile each trained network (Module.compile: same weights and checkpoint keys)
    storage_path: str = "data/ray_results"  # local folder or s3://bucket/prefix
    run_name: str | None = None  # None: <model>-<dataset>-<data id>-<config hash>
    max_failures: int = Field(default=2, ge=-1)
    num_to_keep: int = Field(default=2, gt=0)
    # "async": Ray Train uploads each checkpoint in the background while the next epoch trains. Off by default: with
    # Ray 2.60 a worker failure soon after an async report restarted from an older checkpoint than the last one
    # reported (measured: 1–3 epochs redone instead of at most one); use it where uploads are slow and failures rare
    checkpoint_upload: Literal["sync", "async"] = "sync"
    seed: int = 0
    train_split: str = "train"
    val_split: str = "val"
    # single-domain families (AE, VAE, GAN, …): the one domain of an unpaired / labeled dataset they learn (A, B, or a
    # domain folder's name); unset for an ``images`` dataset, and for every other family
    domain: str | None = None
    log_every_steps: int = Field(default=50, gt=0)

    _safe_run_name = field_validator("run_name")(check_name)  # the run's folder under storage_path

    @model_validator(mode="after")
    def _batch_splits(self):
        batch_plan(self)  # raises ConfigError (not a ValueError: it passes pydantic unchanged) on a bad split
        return self


@dataclass(frozen=True)
class BatchPlan:
    global_batch_size: int  # images per optimizer step, all workers together
    per_worker_batch_size: int
    num_workers: int


def batch_plan(train: TrainConfig) -> BatchPlan:
    """The global and per-worker batch of ``train``; a global batch that does not split evenly is an error."""
    n = train.num_workers
    if train.global_batch_size is not None and train.batch_size is not None:
        raise ConfigError("set train.global_batch_size (images per step over all workers) or train.batch_size "
                          f"(per worker), not both (got {train.global_batch_size} and {train.batch_size})")
    if train.global_batch_size is None:
        per_worker = train.batch_size or 1
        return BatchPlan(per_worker * n, per_worker, n)
    if train.global_batch_size % n:
        raise ConfigError(f"train.global_batch_size={train.global_batch_size} cannot be split evenly over "
                          f"train.num_workers={n}: use a number of workers that divides it, or a global batch that "
                          f"is a multiple of {n} (which changes the recipe)")
    return BatchPlan(train.global_batch_size, train.global_batch_size // n, n)


@dataclass(frozen=True)
class RunPlan:
    """What a run will do, in the units the authors count in (logged as ``plan.*`` MLflow params)."""

    global_batch_size: int
    per_worker_batch_size: int
    num_workers: int
    length_unit: str  # the model's: "epochs" or "iterations"
    epochs: int | None  # the bounds the loop stops at (whichever is reached first)
    iterations: int | None
    epoch_images: int  # images one epoch passes over (unpaired: the larger domain)
    steps_per_epoch: int  # ⌊⌊epoch_images / workers⌋ / per-worker batch⌋ (equal shards, last partial batch dropped)
    total_iterations: int  # optimizer steps the run takes


def run_plan(model: str, model_args: dict, train: TrainConfig, epoch_images: int) -> RunPlan:
    """The batch split, the bounds and the iteration count of this run over ``epoch_images`` images per epoch."""
    family = get_model_class(model)
    batch = batch_plan(train)
    length = family.run_length(family.Config(**model_args))
    epochs, iterations = train.epochs, train.iterations
    if epochs is None and iterations is None:
        epochs, iterations = (length.value, None) if length.unit == "epochs" else (None, length.value)
    steps = epoch_images // batch.num_workers // batch.per_worker_batch_size
    bounds = [b for b in (epochs * steps if epochs is not None else None, iterations) if b is not None]
    return RunPlan(global_batch_size=batch.global_batch_size, per_worker_batch_size=batch.per_worker_batch_size,
                   num_workers=batch.num_workers, length_unit=length.unit,
                   epochs=epochs, iterations=iterations, epoch_images=epoch_images, steps_per_epoch=steps,
                   total_iterations=min(bounds))


def epoch_images(entry: SplitEntry, data_mode: str, domain: str | None = None, *,
                 paired_fraction: float | None = None) -> int:
    """Images one epoch passes over ``entry`` (a manifest split): its samples; for unpaired data the larger
    domain's (the other one cycles); for a single-domain family its ``domain``'s; for a semi-paired family the
    expected size of the unpaired part (the pairs cycle; the manifest does not list keys, so not the exact count)."""
    from pipelines import feeds

    if paired_fraction is not None and paired_fraction < 1:
        return round(entry.samples * (1 - paired_fraction))
    if data_mode == "single" and domain is not None:
        return entry.domains.get(domain, 0)
    if data_mode == "unpaired":
        return entry.domains.get(feeds.lead_domain(entry.domains).upper(), 0)
    return entry.samples


@dataclass(frozen=True)
class TrainResult:
    run_name: str
    checkpoint: str  # URI of the final checkpoint folder (loadable with I2IModel.from_pretrained)
    metrics: dict
    mlflow_run_id: str
    dataset_id: str
    already_done: bool


def run_name_for(model: str, dataset: str, dataset_id: str, spec: dict) -> str:
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{model}-{dataset}-{dataset_id[:8]}-{digest}"


def plan_run(model: str, model_args: dict, loss_weights: dict, train: TrainConfig):
    """(run name, run folder URI, manifest) of the training run this config describes — without running it."""
    from pipelines import feeds

    family = get_model_class(model)
    manifest = read_manifest(train.dataset)
    if family.data_mode == "single":
        feeds.single_domain(manifest, train.domain, f"model '{model}'")
    elif train.domain is not None:
        raise DatasetError(f"train.domain picks the one domain a single-domain family learns; model '{model}' trains "
                           f"on {family.data_mode} data: unset train.domain")
    elif manifest.data_mode != family.data_mode:
        raise DatasetError(f"model '{model}' trains on {family.data_mode} data, but dataset '{manifest.dataset}' "
                           f"is {manifest.data_mode}")
    # canonical: every weight and model field spelled out, so "default" and "set to the default" name one run; the
    # batch as the global batch, so the same training on another number of workers is the same (resumable) run
    spec = {"model_args": dataclass_dict(family, model_args), "loss_weights": family.resolve_weights(loss_weights),
            "train": {**train.model_dump(exclude={"num_workers", "use_gpu", "cpus_per_worker", "placement_strategy",
                                                  "storage_path", "run_name", "max_failures", "log_every_steps",
                                                  "num_to_keep", "batch_size", "global_batch_size",
                                                  *(["domain"] if train.domain is None else [])}),
                      "global_batch_size": batch_plan(train).global_batch_size}}
    name = train.run_name or run_name_for(model, manifest.dataset, manifest.id, spec)
    return name, storage.join(train.storage_path, name), manifest


def finished_run(model: str, model_args: dict, loss_weights: dict, train: TrainConfig) -> TrainResult | None:
    """The result of this config's training run if it has finished, else None."""
    _, run_dir, _ = plan_run(model, model_args, loss_weights, train)
    done = storage.read_json(storage.join(run_dir, DONE_MARKER))  # cut short by a crash: not finished (resumes)
    try:
        return TrainResult(**{**done, "already_done": True}) if isinstance(done, dict) else None
    except TypeError:  # a marker that is not a TrainResult: not a finished run of this code
        log.warning("%s does not hold a training result: the run is not finished", storage.describe(run_dir))
        return None


def loop_config(model: str, model_args: dict, loss_weights: dict, train: TrainConfig, *, mlflow_uri: str = "",
                mlflow_run_id: str = "", objective: dict | None = None) -> dict:
    """The plain dict ``train_loop`` / ``run_loop`` read (it travels to the workers): ``batch_size`` per worker
    (derived from the global batch), ``epochs`` / ``max_steps`` bounds (None: unbounded in that unit)."""
    from pipelines import feeds

    family = get_model_class(model)
    config = family.Config(**model_args)
    manifest = read_manifest(train.dataset)
    domain = feeds.single_domain(manifest, train.domain, f"model '{model}'") if family.data_mode == "single" else None
    fraction = paired_fraction(model, model_args)
    plan = run_plan(model, model_args, train, epoch_images(_split(manifest, train.train_split), family.data_mode,
                                                           domain, paired_fraction=fraction))
    extra = {} if fraction is None else {"paired_fraction": fraction}  # a semi-paired family's feed
    if family.data_mode == "unpaired":  # an epoch is one pass over the larger domain
        extra["lead_domain"] = feeds.lead_domain(manifest.splits[train.train_split].domains)
    if domain is not None:
        extra["domain"] = domain
    return {
        "model": model, "model_args": model_args, "loss_weights": loss_weights, "data_mode": family.data_mode,
        **extra,
        "epochs": plan.epochs, "max_steps": plan.iterations, "total_steps": plan.total_iterations,
        "global_batch_size": plan.global_batch_size, "batch_size": plan.per_worker_batch_size, "crop_size": train.crop_size or config.image_size,
        "flip": train.flip, "shuffle_buffer": train.shuffle_buffer, "bf16": train.bf16,
        "channels_last": train.channels_last, "compile": train.compile, "checkpoint_upload": train.checkpoint_upload,
        "seed": train.seed, "log_every_steps": train.log_every_steps,
        "mlflow_tracking_uri": mlflow_uri, "mlflow_run_id": mlflow_run_id, **(objective or {}),
    }


def _split(manifest, split: str) -> SplitEntry:
    if split not in manifest.splits:
        raise DatasetError(f"dataset '{manifest.dataset}' has no split '{split}' to train on; it has: "
                           f"{', '.join(sorted(manifest.splits))} (set train.train_split)")
    return manifest.splits[split]


def paired_fraction(model: str, model_args: dict) -> float | None:
    """A semi-paired family's ``paired_fraction`` (None for every other family)."""
    family = get_model_class(model)
    return family.Config(**model_args).paired_fraction if family.semi_paired else None


def datasets_for(train: TrainConfig, paired_fraction: float | None = None) -> dict:
    """The run's Ray Datasets. A dataset of one domain, or ``train.domain`` set (which only a single-domain family
    accepts, see :func:`plan_run`), is read as single-domain data; ``paired_fraction``: a semi-paired family's."""
    from pipelines import feeds

    m = read_manifest(train.dataset)
    if train.domain is not None or m.data_mode == "single":
        return feeds.datasets("single", train.dataset, train_split=train.train_split, val_split=train.val_split,
                              seed=train.seed, domain=feeds.single_domain(m, train.domain))
    return feeds.datasets(m.data_mode, train.dataset, train_split=train.train_split, val_split=train.val_split,
                          seed=train.seed, paired_fraction=paired_fraction)


def trainer_for(config: dict, train: TrainConfig, *, name: str, storage_path: str, callbacks=(), datasets=None):
    """The ``TorchTrainer`` for one run: workers, resources (fractional CPUs leave room for Ray Data), storage."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipelines.train_loop import train_loop

    from pipelines import feeds

    use_gpu = cluster.use_gpu(train.use_gpu)
    fs, path = storage.resolve(storage_path)
    datasets = datasets if datasets is not None else datasets_for(train, config.get("paired_fraction"))
    # one worker reads every dataset whole, in its own process (no split coordinator actor between it and the data)
    whole = list(datasets) if train.num_workers == 1 else feeds.unsplit(
        config["data_mode"], config.get("lead_domain", "a"), semi_paired=config.get("paired_fraction") is not None)
    return TorchTrainer(
        train_loop, train_loop_config=config, datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=[k for k in datasets if k not in whole]),
        scaling_config=ray.train.ScalingConfig(
            num_workers=train.num_workers, use_gpu=use_gpu, placement_strategy=train.placement_strategy,
            resources_per_worker={"CPU": train.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=path, storage_filesystem=fs, callbacks=list(callbacks),
            failure_config=ray.train.FailureConfig(max_failures=train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=train.num_to_keep)),
    )


def run_train(*, model: str, model_args: dict, loss_weights: dict, train: TrainConfig,
              mlflow: tracking.MlflowConfig, ray_config=None, resolved_config: dict | None = None,
              tags: dict[str, str] | None = None) -> TrainResult:
    import ray.train

    from pipelines.cluster import init_ray

    name, run_dir, manifest = plan_run(model, model_args, loss_weights, train)
    if (done := finished_run(model, model_args, loss_weights, train)) is not None:
        log.info("training run %s already finished: nothing to do", name)
        return done
    from pipelines import feeds

    mode = get_model_class(model).data_mode
    domain = feeds.single_domain(manifest, train.domain) if mode == "single" else None
    fraction = paired_fraction(model, model_args)
    plan = run_plan(model, model_args, train, epoch_images(_split(manifest, train.train_split), mode, domain,
                                                           paired_fraction=fraction))
    init_ray(ray_config)
    datasets = datasets_for(train, fraction)  # every shard checked against the manifest before any run exists
    files, origins = ship_files(model, model_args, train.storage_path, mlflow)  # DTN's f: resolved once, here
    mlflow_run = tracking.run_for(mlflow, name, {"i2i.model": model, "i2i.dataset": manifest.dataset,
                                                 "i2i.dataset_id": manifest.id,
                                                 **({"i2i.domain": domain} if domain else {}),
                                                 **{f"i2i.{k}": v for k, v in origins.items()}, **(tags or {})})
    # the resolved batch split and length as MLflow params plan.*, beside the train.* fields they come from
    _log_params(mlflow, mlflow_run, model, model_args, loss_weights, train,
                {**(resolved_config or {}), "plan": asdict(plan)}, manifest)
    config = loop_config(model, model_args, loss_weights, train, mlflow_uri=mlflow.uri(), mlflow_run_id=mlflow_run)
    config["files"] = files
    trainer = trainer_for(config, train, name=name, storage_path=train.storage_path, datasets=datasets)
    log.info("training %s on %s as run %s -> %s: global batch %d = %d workers × %d, %d steps per epoch, %d "
             "iterations", model, manifest.dataset, name, run_dir, plan.global_batch_size, plan.num_workers,
             plan.per_worker_batch_size, plan.steps_per_epoch, plan.total_iterations)
    try:
        result = trainer.fit()
    except ray.train.ControllerError as err:  # e.g. its run state could not be written: not retried by Ray Train
        raise I2IError(f"training run {name} stopped: Ray Train's controller failed ({err}); submit the same run "
                       "again to resume from its last committed checkpoint") from err
    except ray.train.TrainingFailedError as err:
        raise I2IError(f"training run {name} failed after {train.max_failures} restarts: {err}") from err
    _prune_checkpoints(run_dir, result)
    out = TrainResult(run_name=name, checkpoint=_uri_of(result.checkpoint, train.storage_path),
                      metrics=_plain(result.metrics), mlflow_run_id=mlflow_run, dataset_id=manifest.id,
                      already_done=False)
    storage.write_bytes(storage.join(run_dir, DONE_MARKER), json.dumps(
        {k: v for k, v in asdict(out).items() if k != "already_done"}, default=str).encode())
    return out


def _prune_checkpoints(run_dir: str, result) -> None:
    """Delete the checkpoint folders Ray Train did not commit: an upload cut by a fault, or one written by a worker
    group that died before reporting it. They are never resumed from, and a reader must not mistake them for the
    run's checkpoints."""
    kept = {posixpath.basename(c.path.rstrip("/")) for c, _ in (result.best_checkpoints or [])}
    if result.checkpoint is not None:
        kept.add(posixpath.basename(result.checkpoint.path.rstrip("/")))
    for folder in storage.list_dirs(run_dir):
        if folder.startswith("checkpoint_") and folder not in kept:
            log.info("removing checkpoint folder %s that Ray Train did not commit", folder)
            storage.delete_tree(storage.join(run_dir, folder))


def _uri_of(checkpoint, storage_path: str) -> str:
    """The checkpoint's location as a URI of the same kind as ``storage_path``."""
    if "://" in storage_path and not storage_path.startswith("file://"):
        return f"{storage_path.split('://', 1)[0]}://{checkpoint.path}"
    return checkpoint.path


def _plain(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}


def _log_params(mlflow: tracking.MlflowConfig, run_id: str, model: str, model_args: dict, loss_weights: dict,
                train: TrainConfig, resolved_config: dict | None, manifest) -> None:
    c = tracking.client(mlflow)
    family = get_model_class(model)
    weights = family.resolve_weights(loss_weights)
    params = {"model": model, **tracking.flatten({"model_args": dataclass_dict(family, model_args)}),
              **{f"loss_weights.{k}": str(v) for k, v in weights.items()},
              **tracking.flatten({"train": train.model_dump()})}
    if resolved_config:
        params.update({k: v for k, v in tracking.flatten(resolved_config).items() if k not in params})
    existing = c.get_run(run_id).data.params
    fresh = {k: v for k, v in params.items() if k not in existing}
    from mlflow.entities import Param

    for i in range(0, len(fresh), 100):
        c.log_batch(run_id, params=[Param(k, v) for k, v in list(fresh.items())[i:i + 100]])
    c.set_tag(run_id, "i2i.dataset_id", manifest.id)
    c.set_tag(run_id, "i2i.dataset_manifest", manifest.source.uri)
    from pipelines.manifest import manifest_uri

    # the shards as the run's MLflow datasets (the run page's "Datasets"; run.inputs.dataset_inputs in a search)
    roles = {train.train_split: "train", train.val_split: "val"}
    tracking.log_dataset_inputs(mlflow, run_id, dataset=manifest.dataset, manifest_uri=manifest_uri(train.dataset),
                                manifest_id=manifest.id,
                                splits={split: role for split, role in roles.items() if split in manifest.splits})


def dataclass_dict(family, model_args: dict) -> dict:
    return asdict(family.Config(**model_args))
