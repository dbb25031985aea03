"""What a command would do, without doing it: ``--dry-run`` of shard / train / evaluate / tune / nightly / translate,
and ``i2i config show``.

A plan reads the config, lists the source, and reads the manifests, success markers and finished-run records that
already exist. It starts no Ray cluster, trains, writes and registers nothing, and shows secrets redacted.
"""

from __future__ import annotations

import argparse
from datetime import date as _date

from i2i_models.registry import get_model_class
from pipelines import storage
from pipelines.config import PipelineConfig
from pipelines.manifest import load_manifest

STEPS = ("shard", "tune", "train", "evaluate", "register", "promote")


def resolved(cfg: PipelineConfig) -> dict:
    """The config every step would run with: defaults filled in, relative paths absolute, secrets redacted."""
    return storage.redact_values(cfg.model_dump(mode="json"))


def shard(cfg: PipelineConfig) -> dict:
    from pipelines.shard import plan_shard

    return plan_shard(cfg.require("shard"))


def _gpu(use_gpu: bool | None) -> str:
    return {None: "auto: one per worker where the cluster has GPUs", True: "one per worker", False: "none"}[use_gpu]


def train(cfg: PipelineConfig) -> dict:
    """Run name and folder, the data it reads, the workers and resources it asks for, steps per epoch and in all,
    and whether it would train, resume or do nothing."""
    from pipelines.train import batch_plan, epoch_images, finished_run, paired_fraction, plan_run, run_plan

    t = cfg.require("train")
    family = get_model_class(cfg.model.name)
    batch = batch_plan(t)
    out: dict = {"model": cfg.model.name, "data_mode": family.data_mode,
                 "resources": {"num_workers": t.num_workers, "cpus_per_worker": t.cpus_per_worker,
                               "gpu": _gpu(t.use_gpu), "placement_strategy": t.placement_strategy},
                 "global_batch_size": batch.global_batch_size, "per_worker_batch_size": batch.per_worker_batch_size,
                 "dataset": storage.describe(t.dataset)}
    if load_manifest(t.dataset) is None:
        return {**out, "action": "train once the dataset is sharded (no manifest there yet): its size names and "
                                 "sizes the run"}
    name, run_dir, manifest = plan_run(**cfg.train_args())
    split = manifest.splits.get(t.train_split)
    images = epoch_images(split, family.data_mode, t.domain,  # single-domain: train.domain's; semi-paired: unpaired
                          paired_fraction=paired_fraction(cfg.model.name, cfg.model.args)) if split else 0
    run = run_plan(cfg.model.name, cfg.model.args, t, images) if split else None
    if finished_run(**cfg.train_args()) is not None:
        action = "nothing: this run has finished"
    elif any(e.relpath.startswith("checkpoint_") for e in storage.list_files(run_dir)):
        action = "resume from its last checkpoint"
    else:
        action = "train from scratch"
    return {**out, "run_name": name, "run_dir": storage.describe(run_dir), "dataset_id": manifest.id,
            "samples": {k: v.samples for k, v in manifest.splits.items()},
            "length_unit": run.length_unit if run else None, "epochs": run.epochs if run else None,
            "steps_per_epoch": run.steps_per_epoch if run else None,
            "total_steps": run.total_iterations if run else None, "action": action}


def evaluate(cfg: PipelineConfig, model: str | None = None) -> dict:
    e = cfg.evaluate
    dataset = e.dataset or cfg.require("train").dataset
    out = {"model": model or "the config's training run", "dataset": storage.describe(dataset),
           "workers": e.workers, "cpus_per_worker": e.cpus_per_worker, "feature_net": e.feature_net,
           "settings": storage.redact_values(e.model_dump(mode="json"))}
    manifest = load_manifest(dataset)
    if manifest is None:
        return {**out, "action": "evaluate once the dataset is sharded"}
    from pipelines.evaluate import pick_split

    split = pick_split(dataset, e.split)
    return {**out, "split": split, "samples": manifest.splits[split].samples, "action": "evaluate"}


def tune(cfg: PipelineConfig) -> dict:
    s = cfg.tune
    return {"search_space": s.search_space, "scheduler": s.scheduler, "search_alg": s.search_alg,
            "trials": s.num_samples, "epochs_per_trial": s.epochs,
            "max_concurrent_trials": s.max_concurrent_trials or "as many as the cluster places",
            "resources_per_trial": {"workers": s.workers_per_trial, "cpus_per_worker": s.cpus_per_trial},
            "storage": storage.describe(s.storage_path), "train": train(cfg)}


def nightly(cfg: PipelineConfig, dated: tuple[str, str] | None = None, markers: str | None = None) -> dict:
    """Every step of one pipeline config; ``dated`` (model, date): as a schedule's model on that date — the shards
    of the date's dataset version, the run named as the nightly names it, and which steps a re-run would skip."""
    from pipelines.nightly import config_key, run_hash

    key = config_key(cfg)
    plan: dict = {}
    if cfg.shard is not None:
        if dated:
            cfg = cfg.with_values({"shard.version": dated[1]})
        plan["shard"] = shard(cfg)
        if dated:  # the nightly trains on the version the shard step writes (or the unchanged earlier one)
            cfg = cfg.with_values({"train.dataset": storage.join(cfg.shard.output, plan["shard"]["version"])})
    if dated and load_manifest(cfg.require("train").dataset) is not None:
        cfg = cfg.with_values({"train.run_name": f"{dated[0]}-{dated[1]}-{run_hash(cfg)}"})
    if cfg.tune.enabled:
        plan["tune"] = tune(cfg)
    plan["train"] = train(cfg)
    plan["evaluate"] = evaluate(cfg)
    plan["promote"] = {"metric": cfg.promote.metric, "alias": cfg.promote.champion_alias}
    if markers is not None:
        done = []
        for step in STEPS:
            marker = storage.read_json(storage.join(markers, f"{step}.json"))
            if isinstance(marker, dict) and marker.get("config") == key:
                done.append(step)
        plan["steps_skipped"] = done  # succeeded under this config already: a re-run of the date skips them
    return plan


def schedule(path: str, date: str | None, overrides: list[str], only: list[str]) -> dict:
    from pipelines.nightly import load_schedule, model_config

    sched = load_schedule(path)
    date = date or _date.today().isoformat()
    models = {}
    for entry in sched.models:
        if not entry.enabled or (only and entry.name not in only):
            continue
        cfg = model_config(sched, entry, overrides)
        models[entry.name] = {"config": resolved(cfg), "plan": nightly(
            cfg, (entry.name, date), storage.join(sched.state, date, entry.name))}
    return {"date": date, "state": storage.describe(sched.state), "models": models}


def translate(cfg: PipelineConfig, args: argparse.Namespace) -> dict:
    out = {"model": args.model, "output": storage.describe(args.output),
           "replicas": cfg.translate.concurrency, "batch_size": cfg.translate.batch_size}
    if getattr(args, "sample", None) is not None:
        return {**out, "samples": args.sample, "seed": args.seed if args.seed is not None else cfg.translate.seed}
    if args.input is None:
        return out
    manifest = load_manifest(args.input)
    if manifest is not None:
        from pipelines.evaluate import pick_split

        split = pick_split(args.input, cfg.translate.split)
        return {**out, "input": storage.describe(args.input), "split": split,
                "images": manifest.splits[split].samples}
    from pipelines.importers import IMAGE_EXTS

    files = [f for f in storage.list_files(args.input) if f.relpath.lower().endswith(tuple(IMAGE_EXTS))]
    return {**out, "input": storage.describe(args.input), "images": len(files)}


def dry_run(step: str, args: argparse.Namespace) -> dict:
    """The plan of ``i2i <step> --dry-run``: the resolved config (for a config) and what the step would do."""
    from pipelines.config import load_config

    if step == "nightly" and not args.config:
        return {"dry_run": True, **schedule(args.schedule or "jobs/configs/nightly.yaml", args.date,
                                            args.overrides, args.only)}
    cfg = load_config(args.config, args.overrides)
    what = {"shard": lambda: shard(cfg), "train": lambda: train(cfg), "tune": lambda: tune(cfg),
            "evaluate": lambda: evaluate(cfg, getattr(args, "model", None)), "nightly": lambda: nightly(cfg),
            "translate": lambda: translate(cfg, args)}[step]
    return {"dry_run": True, "config": resolved(cfg), "plan": what()}
