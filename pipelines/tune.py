"""Tune loss weights (and lr, batch size, epochs) with Ray Tune: ASHA or PBT, tracked in MLflow, resumable.

Search space, from YAML, over names the rest of the project uses::

    tune:
      search_space:
        loss_weights.l1: {loguniform: [1, 300]}
        loss_weights.gan: {uniform: [0.5, 2]}
        model.args.lr: {loguniform: [1.0e-5, 1.0e-3]}
        train.batch_size: {choice: [2, 4]}

* **ASHA** stops bad trials early. Each trial is a Tune function that builds and fits a (multi-worker) Ray Train
  ``TorchTrainer``; ``TuneReportCallback`` forwards its per-epoch metrics to Tune.
* **PBT** exploits and explores loss weights during training. It clones *Tune* checkpoints, which a nested Ray
  Train run does not hand to Tune, so PBT trials run the same training loop (``run_loop``) directly in the Tune
  function and report their own checkpoints. A trial that exploited another reports ``restored_from``.

**Resources**: a trial asks for what its config declares (``workers_per_trial`` × ``cpus_per_trial`` (+1 GPU each)
and ``DATA_CPUS`` for its own Ray Data tasks), never a share of the cluster's current nodes, so a cluster whose
workers scale from zero works: the job waits (``resource_wait_s``, logging what for) until one trial can be placed,
then Tune queues trials beyond ``max_concurrent_trials`` and the autoscaler adds nodes for the pending ones. A trial
larger than every node type the autoscaler reports is refused at once.

**Objective** (reported by every trial every epoch, minimised): ``val_l1 + kid_weight · val_KID``. Validation L1
alone rewards blur — it drives the GAN weight to zero — so the default adds KID (unbiased on small sets) on the
configured feature network. Results live under ``tune.storage_path``; re-submitting the same job resumes the
experiment with ``Tuner.restore`` (finished trials are not re-run). MLflow gets one parent run per tuning job and
one child run per trial.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from i2i_models.registry import get_model_class
from pipelines import cluster, storage, tracking
from pipelines.data import TASK_CPUS
from pipelines.errors import ConfigError, I2IError
from pipelines.pretrained import ship_files
from pipelines.schema import StrictModel, check_name
from pipelines.train import TrainConfig, loop_config, plan_run

log = logging.getLogger(__name__)
TUNABLE_TRAIN = ("batch_size", "epochs")
SAMPLERS = ("uniform", "loguniform", "choice", "randint", "grid")  # grid: every value (× num_samples)
DATA_CPUS = 2 * TASK_CPUS  # a trial's own Ray Data tasks, in its placement group: one read and one decode at a time


class TuneSection(StrictModel):
    enabled: bool = False  # nightly: tune first, then train the final model with the best values
    search_space: dict[str, dict[str, list]] = {}
    scheduler: Literal["asha", "pbt", "fifo"] = "asha"  # fifo: every trial runs all its epochs (a plain search)
    search_alg: Literal["random", "optuna"] = "random"  # optuna: ASHA only, needs the [tune] extra (optuna)
    num_samples: int = Field(default=4, gt=0)
    # None: every sample (PBT: always the whole population). Tune starts those the cluster can place and queues
    # the rest; on an autoscaling cluster the queued trials are the demand it adds nodes for
    max_concurrent_trials: int | None = Field(default=None, gt=0)
    epochs: int = Field(default=4, gt=0)  # per trial (ASHA's max_t)
    grace_period: int = Field(default=1, gt=0)
    reduction_factor: int = Field(default=2, gt=1)
    perturbation_interval: int = Field(default=1, gt=0)  # PBT: epochs between exploit/explore
    workers_per_trial: int = Field(default=1, gt=0)  # ASHA trials are Ray Train runs; PBT trials are 1 process
    cpus_per_trial: float = Field(default=0.5, gt=0)  # per worker (a trial's Ray Data tasks get their own DATA_CPUS)
    # how long to wait for the cluster to place one trial (PBT: the population) before failing: an autoscaler
    # starting a GPU node and pulling the image takes minutes
    resource_wait_s: float = Field(default=1200, gt=0)
    kid_weight: float = Field(default=1.0, ge=0)
    feature_net: Literal["inception", "tiny"] = "tiny"
    storage_path: str = "data/tune"
    name: str | None = None  # the experiment's folder under storage_path; trial runs are <name>-<trial id>
    seed: int = 0
    # ASHA/FIFO: the first trial runs the untuned values (the config's weights, args, train fields), so the
    # result says whether tuning beat them
    evaluate_baseline: bool = True

    _safe_name = field_validator("name")(check_name)

    @field_validator("search_alg")
    @classmethod
    def _optuna_installed(cls, v: str) -> str:
        if v == "optuna":  # a config error before anything runs, not an ImportError in the tuning job
            from pipelines.errors import require_extra

            require_extra("tune", "optuna", what="tune.search_alg: optuna")
        return v


@dataclass(frozen=True)
class TuneResult:
    name: str
    path: str
    best_config: dict[str, float]  # search-space keys → values
    best_objective: float
    best_metrics: dict
    trials: int
    trial_epochs: int  # compute spent: Σ epochs over trials
    mlflow_run_id: str
    resumed: bool
    baseline: dict  # the untuned values' trial: config, objective, epochs ({} when not evaluated)
    trial_summaries: list[dict]  # per trial: id, error, epochs, objective, config, restored_from, restored_config


def validate_space(model: str, space: dict[str, dict[str, list]]) -> None:
    """Every key must name a weight / model arg / train field the model has; every sampler must be known."""
    import dataclasses

    family = get_model_class(model)
    fields = {f.name for f in dataclasses.fields(family.Config)}
    for key, spec in space.items():
        section, _, name = key.partition(".")
        if section == "loss_weights" and name not in family.default_weights():
            raise ConfigError(f"tune.search_space: '{key}' is not a loss term of '{model}'; valid: "
                              + ", ".join(f"loss_weights.{k}" for k in sorted(family.default_weights())))
        if section == "model" and (not name.startswith("args.") or name[5:] not in fields):
            raise ConfigError(f"tune.search_space: '{key}' is not a field of '{model}'; valid: model.args.<one of "
                              f"{', '.join(sorted(fields))}>")
        if section == "train" and name not in TUNABLE_TRAIN:
            raise ConfigError(f"tune.search_space: '{key}' cannot be tuned; train keys: {', '.join(TUNABLE_TRAIN)}")
        if section not in ("loss_weights", "model", "train"):
            raise ConfigError(f"tune.search_space: '{key}' must start with loss_weights., model.args. or train.")
        if len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
            raise ConfigError(f"tune.search_space.{key}: use one of {', '.join(SAMPLERS)}, e.g. {{loguniform: [1, 300]}}")


def _sampler(spec: dict[str, list]):
    from ray import tune

    kind, args = next(iter(spec.items()))
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint,
            "choice": lambda *a: tune.choice(list(a)), "grid": lambda *a: tune.grid_search(list(a))}[kind](*args)


def apply(base: dict, values: dict) -> dict:
    """The loop config of one trial: the base config with the trial's search-space values put in place."""
    out = {**base, "model_args": dict(base["model_args"]), "loss_weights": dict(base["loss_weights"])}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if section == "loss_weights":
            out["loss_weights"][name] = float(value)
        elif section == "model":
            out["model_args"][name[len("args."):]] = value
        elif section == "train":
            out[name] = int(value)
    return out


def _child_run(base: dict, values: dict) -> dict:
    """Create (or find, when a trial restarts) the trial's MLflow child run and log its config there."""
    from ray import tune

    ctx = tune.get_context()
    cfg = tracking.MlflowConfig(tracking_uri=base["mlflow_tracking_uri"], experiment=base["mlflow_experiment"])
    run_id = tracking.run_for(cfg, f"{base['tune_name']}-{ctx.get_trial_id()}",
                              {"mlflow.parentRunId": base["mlflow_parent"], "i2i.trial": ctx.get_trial_name()})
    client = tracking.client(cfg)
    for k, v in values.items():
        client.set_tag(run_id, f"trial.{k}", str(v))  # tags: PBT changes them when it explores
    return {**apply(base, values), "mlflow_run_id": run_id, "run_id": ctx.get_trial_id()}


def ray_train_trial(values: dict, base: dict) -> None:
    """A multi-worker trial = one Ray Train run; its metrics reach Tune through the callback (no Tune checkpoints)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from pipelines.train import trainer_for

    config = _child_run(base, values)
    _data_in_trial_group()
    train = TrainConfig.model_validate(base["train_section"])
    trainer = trainer_for(config, train, name=f"train-{tune.get_context().get_trial_id()}",
                          storage_path=base["trial_storage"], callbacks=[TuneReportCallback()])
    trainer.fit()


def loop_trial(values: dict, base: dict) -> None:
    """A one-worker trial (and every PBT trial): the training loop in this process, reporting Tune checkpoints
    that PBT can clone and that resume an interrupted trial."""
    import torch
    from ray import tune

    from pipelines.train import datasets_for
    from pipelines.train_loop import LoopIO, run_loop

    config = _child_run(base, values)
    _data_in_trial_group()
    datasets = datasets_for(TrainConfig.model_validate(base["train_section"]), base.get("paired_fraction"))
    io = LoopIO(dataset=datasets.__getitem__, get_checkpoint=tune.get_checkpoint,
                report=lambda m, c: tune.report(m, checkpoint=c),
                checkpoint_from_directory=tune.Checkpoint.from_directory)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run_loop(config, io, rank=0, world=1, device=device)


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks for, as its config declares it (never sized from the cluster's current nodes)."""

    tune: list[dict]  # Tune's placement group: the trial process, then the CPUs of its Ray Data tasks
    train: list[dict]  # a nested Ray Train run's workers: Ray Train places them itself ([] for in-process trials)
    concurrent: int  # trials at once (Tune queues the rest until the cluster can place them)
    described: str

    @property
    def whole(self) -> list[dict]:
        return self.tune + self.train


def trial_resources(cfg: TuneSection, use_gpu: bool) -> TrialResources:
    in_process = cfg.scheduler == "pbt" or cfg.workers_per_trial == 1
    worker = {"CPU": cfg.cpus_per_trial, **({"GPU": 1} if use_gpu else {})}
    data = {"CPU": DATA_CPUS}
    concurrent = cfg.num_samples if cfg.scheduler == "pbt" else cfg.max_concurrent_trials or cfg.num_samples
    workers = 1 if in_process else cfg.workers_per_trial
    described = (f"one trial ({workers} worker(s) × {cfg.cpus_per_trial:g} CPU{' + 1 GPU' if use_gpu else ''}"
                 f" + {DATA_CPUS:g} CPU for its Ray Data tasks)")
    if in_process:
        return TrialResources(tune=[worker, data], train=[], concurrent=concurrent, described=described)
    # a Ray Train trial's process only drives the run: no CPU (it may sit on a head that takes no work)
    return TrialResources(tune=[{"memory": 64 * 2**20}, data], train=[worker] * workers, concurrent=concurrent,
                          described=described)


def _data_in_trial_group() -> None:
    """Send this trial's Ray Data tasks into the trial's own placement group (its DATA_CPUS bundle) instead of onto
    whatever CPU is free: concurrent trials then cannot starve each other's input pipelines (Ray Data's default
    SPREAD strategy would leave the group), whatever max_concurrent_trials is."""
    import ray
    import ray.data
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = ray.util.get_current_placement_group()
    if pg is not None:
        ctx = ray.data.DataContext.get_current()
        with warnings.catch_warnings():  # deprecated (to go after January 2027) with no replacement yet in 2.60
            warnings.simplefilter("ignore")
            ctx.scheduling_strategy = ctx.scheduling_strategy_large_args = PlacementGroupSchedulingStrategy(
                pg, placement_group_capture_child_tasks=True)


def experiment_name(cfg: TuneSection, model: str, train_run: str) -> str:
    spec = json.dumps({"space": cfg.search_space, **cfg.model_dump(exclude={"enabled", "name", "storage_path",
                                                                              "max_concurrent_trials",
                                                                              "resource_wait_s"})},
                      sort_keys=True)
    return cfg.name or f"tune-{train_run}-{cfg.scheduler}-{hashlib.sha256(spec.encode()).hexdigest()[:8]}"


def run_tune(*, model: str, model_args: dict, loss_weights: dict, train: TrainConfig, cfg: TuneSection,
             mlflow: tracking.MlflowConfig, ray_config=None) -> TuneResult:
    from ray import tune

    from pipelines.cluster import init_ray

    if not cfg.search_space:
        raise ConfigError("tune.search_space is empty: name at least one weight, e.g. loss_weights.l1")
    validate_space(model, cfg.search_space)
    if cfg.scheduler == "pbt" and cfg.search_alg != "random":
        raise ConfigError("tune.search_alg: PBT explores by itself; use search_alg: random with scheduler: pbt")
    run_name, _, manifest = plan_run(model, model_args, loss_weights, train)
    name = experiment_name(cfg, model, run_name)
    init_ray(ray_config)
    use_gpu = cluster.use_gpu(train.use_gpu)  # decided once: trials do not look at the cluster again
    res = trial_resources(cfg, use_gpu)
    population = cfg.num_samples if cfg.scheduler == "pbt" else 1  # synchronous PBT runs its population at once
    what = res.described if population == 1 else f"the PBT population ({population} × {res.described})"
    cluster.refuse_impossible(res.whole * population, what)
    cluster.wait_for(res.whole * population, timeout_s=cfg.resource_wait_s, what=what, setting="tune.resource_wait_s")
    parent = tracking.run_for(mlflow, name, {"i2i.model": model, "i2i.dataset_id": manifest.id, "i2i.kind": "tune"})
    client = tracking.client(mlflow)
    if not client.get_run(parent).data.params:
        client.log_param(parent, "search_space", json.dumps(cfg.search_space))
        for k, v in {"scheduler": cfg.scheduler, "search_alg": cfg.search_alg, "num_samples": cfg.num_samples,
                     "epochs_per_trial": cfg.epochs, "objective": f"val_l1 + {cfg.kid_weight} * val_kid "
                     f"({cfg.feature_net})"}.items():
            client.log_param(parent, k, v)
    trial_train = train.model_copy(update={  # trials run in their own working directories: absolute paths
        "epochs": cfg.epochs, "num_workers": cfg.workers_per_trial, "cpus_per_worker": cfg.cpus_per_trial,
        "use_gpu": use_gpu,
        "max_failures": 0, "dataset": storage.absolute(train.dataset)})
    base = {**loop_config(model, model_args, loss_weights, trial_train, mlflow_uri=mlflow.uri(),
                          objective={"kid_weight": cfg.kid_weight, "feature_net": cfg.feature_net}),
            "train_section": trial_train.model_dump(), "tune_name": name, "mlflow_parent": parent,
            "mlflow_experiment": mlflow.experiment, "trial_storage": storage.join(storage.absolute(cfg.storage_path), name, "_train"),
            "files": ship_files(model, model_args, cfg.storage_path, mlflow)[0]}  # DTN's f, for every trial's workers
    baseline = _baseline_point(model, model_args, loss_weights, trial_train, cfg)
    in_process = cfg.scheduler == "pbt" or cfg.workers_per_trial == 1
    trainable = tune.with_resources(tune.with_parameters(loop_trial if in_process else ray_train_trial, base=base),
                                    tune.PlacementGroupFactory(res.tune))
    fs, path = storage.resolve(cfg.storage_path)
    exp_dir = storage.join(cfg.storage_path, name)
    resumed = tune.Tuner.can_restore(storage.resolve(exp_dir)[1], storage_filesystem=fs)
    if resumed:
        log.info("resuming tuning experiment %s from %s", name, exp_dir)
        tuner = tune.Tuner.restore(storage.resolve(exp_dir)[1], trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
    else:
        tuner = tune.Tuner(trainable, param_space={k: _sampler(v) for k, v in cfg.search_space.items()},
                           tune_config=_tune_config(cfg, res.concurrent, baseline), run_config=tune.RunConfig(
                               name=name, storage_path=path, storage_filesystem=fs,
                               checkpoint_config=tune.CheckpointConfig(num_to_keep=4),
                               # stopping at the last epoch comes before the scheduler: PBT never exploits a
                               # trial that has finished (it would restart it with nothing left to run)
                               stop={"training_iteration": cfg.epochs}))
    grid = tuner.fit()
    if not any(r.metrics and "objective" in r.metrics for r in grid):
        errors = [str(r.error).strip().splitlines()[-1][:300] for r in grid if r.error]
        raise I2IError(f"tuning {name}: no trial reported an objective; {len(errors)} failed, e.g. {errors[:2]}")
    # the best final objective among trials that ran every epoch (ASHA's survivors): an objective after fewer
    # epochs is not comparable
    reported = [r for r in grid if r.metrics and "objective" in r.metrics]
    full = [r for r in reported if r.metrics.get("training_iteration", 0) >= cfg.epochs]
    best = min(full or reported, key=lambda r: r.metrics["objective"])
    trial_epochs = sum(len(r.metrics_dataframe) for r in grid if r.metrics_dataframe is not None)
    best_values = {k: best.config[k] for k in cfg.search_space}
    client.log_metric(parent, "best_objective", float(best.metrics["objective"]))
    client.set_tag(parent, "best_config", json.dumps(best_values))
    log.info("best of %d trials (%d trial-epochs): objective %.5g with %s", len(grid), trial_epochs,
             best.metrics["objective"], best_values)
    base_result = _baseline_result(grid, baseline, list(cfg.search_space), cfg.epochs) if baseline else {}
    if base_result:
        client.log_metric(parent, "baseline_objective", float(base_result["objective"]))
        log.info("untuned values %s: objective %.5g after %d epochs", baseline, base_result["objective"],
                 base_result["epochs"])
    return TuneResult(name=name, path=exp_dir, best_config=best_values, baseline=base_result,
                      best_objective=float(best.metrics["objective"]),
                      best_metrics={k: v for k, v in best.metrics.items() if isinstance(v, (int, float, str))},
                      trials=len(grid), trial_epochs=trial_epochs, mlflow_run_id=parent, resumed=resumed,
                      trial_summaries=[_summary(r, list(cfg.search_space)) for r in grid])


def _baseline_point(model: str, model_args: dict, loss_weights: dict, train: TrainConfig,
                    cfg: TuneSection) -> dict | None:
    """The search-space keys at their untuned values (ASHA/FIFO, random or optuna, no grid axes)."""
    import dataclasses

    if not cfg.evaluate_baseline or cfg.scheduler == "pbt" or any("grid" in v for v in cfg.search_space.values()):
        return None
    family = get_model_class(model)
    args = {**{f.name: f.default for f in dataclasses.fields(family.Config)}, **model_args}
    weights = family.resolve_weights(loss_weights)
    point = {}
    for key in cfg.search_space:
        section, _, name = key.partition(".")
        point[key] = (weights[name] if section == "loss_weights" else args[name[len("args."):]]
                      if section == "model" else getattr(train, name))
    return point


def _baseline_result(grid, baseline: dict, keys: list[str], epochs: int) -> dict:
    for r in grid:
        if r.config and all(r.config.get(k) == v for k, v in baseline.items()):
            s = _summary(r, keys)
            # stopped_early: ASHA cut it at a rung, i.e. it was already worse than the trials that went on
            return {"config": baseline, "objective": s["objective"], "epochs": s["epochs"],
                    "stopped_early": s["epochs"] < epochs}
    return {}


def _summary(result, keys: list[str]) -> dict:
    """One trial, from what its training loop itself reported: the weights it trained with last and, after a PBT
    exploit, whose checkpoint it continued and the weights that checkpoint was trained with."""
    df = result.metrics_dataframe
    rows = df.to_dict("records") if df is not None and len(df) else []
    last = rows[-1] if rows else (result.metrics or {})
    own = last.get("run_id", "")

    def values(row: dict, prefix: str) -> dict:
        out = {}
        for k in keys:
            section, _, name = k.partition(".")
            col = f"{prefix}{name}" if section == "loss_weights" else f"config/{k}"
            if col in row and row[col] == row[col]:  # not NaN
                out[k] = row[col]
        return out

    source = last.get("restored_from") if isinstance(last.get("restored_from"), str) else ""
    return {"trial_id": own, "error": str(result.error).strip().splitlines()[-1] if result.error else "",
            "epochs": len(rows), "objective": last.get("objective"), "config": values(last, "weight_"),
            "restored_from": source if source != own else "",
            "restored_config": values(last, "restored_weight_") if source and source != own else {}}


def _tune_config(cfg: TuneSection, concurrent: int, baseline: dict | None):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if cfg.scheduler == "pbt":
        scheduler = PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=cfg.perturbation_interval,
            hyperparam_mutations={k: _sampler(v) for k, v in cfg.search_space.items()},
            quantile_fraction=0.5, resample_probability=0.25, synch=True)
        return tune.TuneConfig(metric="objective", mode="min", scheduler=scheduler, num_samples=cfg.num_samples,
                               max_concurrent_trials=cfg.num_samples)  # synchronous PBT: the whole population
    scheduler = None if cfg.scheduler == "fifo" else ASHAScheduler(
        time_attr="training_iteration", max_t=cfg.epochs, grace_period=cfg.grace_period,
        reduction_factor=cfg.reduction_factor)
    search = None
    points = [baseline] if baseline else None
    if points and cfg.search_alg == "random":
        from ray.tune.search import BasicVariantGenerator

        # an explicit generator must carry the concurrency limit itself (Tune does not impose it on one it is given)
        search = BasicVariantGenerator(points_to_evaluate=points, random_state=cfg.seed, max_concurrent=concurrent)
    if cfg.search_alg == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as err:
            raise ConfigError(f"tune.search_alg=optuna needs optuna installed ({err})") from None
        search = OptunaSearch(seed=cfg.seed, points_to_evaluate=points)
    return tune.TuneConfig(metric="objective", mode="min", scheduler=scheduler, search_alg=search,
                           num_samples=cfg.num_samples, max_concurrent_trials=concurrent)
