"""The pipeline's steps on one ``PipelineConfig``, the nightly run that chains them, and the nightly *schedule*:
shard (a no-op when the manifest matches) → [tune] → train (resumes; a no-op when done) → evaluate → register (once
per training run) → promote. The step functions only wire configs into the step modules; the jobs call them.

A schedule (``jobs/configs/nightly.yaml``) lists models × datasets, each a pipeline config. ``run_schedule`` runs
them for one date, which names everything it makes: the dataset version (``<shard.output>/<date>``, written only when
the source changed), the Ray Train run (``<model>-<date>-<config hash>``: the hash ``train.plan_run`` names runs by, so
a date re-run under a changed config trains a new run, never resumes the old one's checkpoints), and MLflow tags
(``i2i.nightly_date``, ``i2i.dataset_version``). Each finished step leaves a success marker
``<state>/<date>/<model>/<step>.json`` holding its result and the hash of the config it ran under, so a re-run of the
date skips what is done under the same config and continues the rest; a marker of another config (or one that does
not parse) is not a result: that step runs again. One model failing does not stop the others; the summary lists each
model's outcome and the run fails if any model did. A date runs once at a time: ``run_schedule`` holds the lease
``<state>/<date>/_lease.json`` (an exclusive create, on S3 too) while it runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from pipelines import lease, storage, tracking
from pipelines.config import PipelineConfig, absolute_path, absolute_paths, apply_override, load_dict, set_path
from pipelines.errors import I2IError, user_error
from pipelines.evaluate import EvalResult, run_evaluate
from pipelines.promote import PromoteConfig, PromoteResult, run_promote
from pipelines.register import RegisterResult, registered_name, run_register
from pipelines.schema import StrictModel, validate
from pipelines.manifest import manifest_uri
from pipelines.shard import ShardResult, run_shard
from pipelines.train import TrainResult, finished_run, plan_run, run_train
from pipelines.tune import TuneResult, run_tune

log = logging.getLogger(__name__)
EVAL_FILE = "eval.json"


def step_train(cfg: PipelineConfig, tags: dict[str, str] | None = None, *, shard_missing: bool = False
               ) -> TrainResult:
    """Train; with ``shard_missing`` (``i2i train``), a config whose ``train.dataset`` has no shards yet is sharded
    first from its ``shard`` section (so a recipe plus ``--set shard.source=…`` is one command)."""
    if shard_missing and cfg.shard is not None:
        from pipelines.manifest import manifest_uri

        if not storage.exists(manifest_uri(cfg.require("train").dataset)):
            log.info("no shards at %s yet: sharding %s first", cfg.require("train").dataset, cfg.shard.source)
            shard = run_shard(cfg.shard, ray_config=cfg.ray, resolved_config=cfg.model_dump())
            cfg = cfg.with_values({"train.dataset": shard.output})
    return run_train(**cfg.train_args(), mlflow=cfg.mlflow, ray_config=cfg.ray, resolved_config=cfg.model_dump(),
                     tags=tags)


def step_tune(cfg: PipelineConfig) -> TuneResult:
    return run_tune(**cfg.tune_args())


def finished(cfg: PipelineConfig) -> TrainResult:
    done = finished_run(**cfg.train_args())
    if done is None:
        raise I2IError("this config's training run has not finished: run `i2i train` (or `i2i nightly`) first")
    return done


def step_evaluate(cfg: PipelineConfig, train: TrainResult) -> EvalResult:
    """Evaluate a finished run's final checkpoint; the result is logged to its MLflow run and kept beside it."""
    _, run_dir, _ = plan_run(**cfg.train_args())
    return run_evaluate(model_uri=train.checkpoint, dataset=cfg.require("train").dataset, cfg=cfg.evaluate,
                        mlflow=cfg.mlflow, mlflow_run_id=train.mlflow_run_id, output=storage.join(run_dir, EVAL_FILE))


def stored_evaluation(cfg: PipelineConfig) -> EvalResult:
    _, run_dir, _ = plan_run(**cfg.train_args())
    ev = storage.read_json(storage.join(run_dir, EVAL_FILE))  # one cut short by a crash: not evaluated
    if not isinstance(ev, dict):
        raise I2IError("the run has not been evaluated: run `i2i evaluate` first (the promotion gate needs it)")
    if not ev.get("fingerprint"):  # measured before evaluations carried their fingerprint: the gate refuses it
        raise I2IError("the run was evaluated without an evaluation fingerprint (an older i2i): run `i2i evaluate` "
                       "again (the promotion gate compares only like with like)")
    return EvalResult(**{f.name: ev[f.name] for f in dataclasses.fields(EvalResult) if f.name in ev})


def step_register(cfg: PipelineConfig, train: TrainResult, evaluation: EvalResult,
                  tags: dict[str, str] | None = None) -> RegisterResult:
    """Register the run's model once (``run_register`` reuses the version this MLflow run created, re-tagging it)."""
    _, _, manifest = plan_run(**cfg.train_args())
    return run_register(checkpoint=train.checkpoint, model=cfg.model.name, dataset=manifest.dataset,
                        mlflow=cfg.mlflow, run_id=train.mlflow_run_id, eval_result=evaluation,
                        cfg=_registry(cfg, manifest.dataset),
                        tags={"i2i.run_name": train.run_name, "i2i.dataset_id": manifest.id, **(tags or {})})


def _registry(cfg: PipelineConfig, dataset: str):
    """The registry section; a model of one domain of a dataset (``train.domain``) is registered under its own name,
    ``i2i-<model>-<dataset>-<domain>``, unless ``registry.name`` says otherwise: models of domain A and of domain B
    are different models, with a champion each."""
    domain = cfg.require("train").domain
    if cfg.registry.name or not domain:
        return cfg.registry
    return cfg.registry.model_copy(update={"name": f"i2i-{cfg.model.name}-{dataset}-{domain}"})


def step_promote(cfg: PipelineConfig, name: str | None = None, version: str | None = None) -> PromoteResult:
    if name is None:
        _, _, manifest = plan_run(**cfg.train_args())
        name = registered_name(cfg.model.name, manifest.dataset, _registry(cfg, manifest.dataset))
    return run_promote(name=name, mlflow=cfg.mlflow, cfg=cfg.promote, eval_cfg=cfg.evaluate, version=version)


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
LEASE_FILE = "_lease.json"  # <state>/<date>/_lease.json (model names cannot start with "_")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


def _is_date(text: str) -> bool:
    import datetime

    try:
        datetime.date.fromisoformat(text)
        return True
    except ValueError:
        return False


def config_key(cfg: PipelineConfig) -> str:
    """Hash of everything a dated model's steps read: its config as scheduled, less ``ray`` and ``translate`` (which
    change no step's result). Its success markers hold it; a marker of another key is not this config's result."""
    doc = cfg.model_dump(mode="json", exclude={"ray", "translate"})
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_hash(cfg: PipelineConfig) -> str:
    """The config hash ``train.plan_run`` names a training run by (``run_name_for``'s last part: model, its args,
    loss weights, the train section's data and schedule), for the dated run name."""
    name, _, _ = plan_run(**cfg.with_values({"train.run_name": None}).train_args())
    return name.rsplit("-", 1)[1]


@dataclass
class Steps:
    """Success markers of one dated model run: a finished step's result is kept at ``<markers>/<step>.json`` with the
    ``config`` key it ran under, and read back instead of running the step again when the key matches. A marker of
    another config, or one that does not parse (cut short by a crash), is not a result: the step runs again (every
    step is idempotent). ``markers`` None: no markers (every step runs)."""

    markers: str | None = None
    current: str = ""
    config: str = ""
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)  # step → config key of the marker it replaced

    def run(self, step: str, result_type: type, fn):
        self.current = step
        uri = storage.join(self.markers, f"{step}.json") if self.markers else None
        if uri and (stored := self._stored(uri, step, result_type)) is not None:
            log.info("step %s already succeeded (%s): skipped", step, storage.describe(uri))
            self.skipped.append(step)
            return stored
        result = fn()
        if uri:  # atomic (temp + rename, one PUT on S3); no credentials in it
            marker = {"config": self.config, "result": storage.redact_values(asdict(result))}
            storage.write_bytes(uri, json.dumps(marker, indent=1, default=str).encode())
        self.done.append(step)
        return result

    def _stored(self, uri: str, step: str, result_type: type):
        marker = storage.read_json(uri)
        if not isinstance(marker, dict):
            return None
        if marker.get("config") != self.config:
            self.replaced[step] = str(marker.get("config"))
            log.warning("step %s: its marker %s was written under another config (%s; this run's is %s): not this "
                        "config's result, the step runs again", step, storage.describe(uri), marker.get("config"),
                        self.config)
            return None
        try:
            return result_type(**marker["result"])
        except (KeyError, TypeError) as err:
            log.warning("step %s: marker %s does not hold a %s (%s): the step runs again", step,
                        storage.describe(uri), result_type.__name__, err)
            return None


@dataclass(frozen=True)
class Dated:
    """One model's run of one nightly date."""

    date: str
    model: str  # the schedule's name for it
    markers: str | None  # folder of its success markers

    def tags(self) -> dict[str, str]:
        return {"i2i.nightly_date": self.date, "i2i.nightly_model": self.model}


def run_nightly(cfg: PipelineConfig, dated: Dated | None = None, steps: Steps | None = None) -> dict:
    """Run every step of one pipeline config; ``dated``: as a nightly schedule's model on its date."""
    steps = steps or Steps(dated.markers if dated else None)
    if dated:
        steps.config = config_key(cfg)
    summary: dict = {}
    tags = dated.tags() if dated else {}
    if cfg.shard is not None:
        if dated:
            cfg = cfg.with_values({"shard.version": dated.date})
        shard_cfg = cfg.shard
        shard = steps.run("shard", ShardResult,
                          lambda: run_shard(shard_cfg, ray_config=cfg.ray, resolved_config=cfg.model_dump()))
        shard = _located(shard, shard_cfg)
        summary["shard"] = asdict(shard)
        if dated:  # train on the version this date sharded (or the unchanged earlier one it found)
            cfg = cfg.with_values({"train.dataset": shard.output})
            tags["i2i.dataset_version"] = shard.version or ""
    if dated:
        steps.current = "tune" if cfg.tune.enabled else "train"  # naming the run reads its dataset's manifest
        cfg = cfg.with_values({"train.run_name": f"{dated.model}-{dated.date}-{run_hash(cfg)}"})
    if cfg.tune.enabled:  # tune first; the final model trains with the best values, and says who chose them
        tuned = steps.run("tune", TuneResult, lambda: step_tune(cfg))
        summary["tune"] = asdict(tuned)
        cfg = cfg.with_values(tuned.best_config)
        if dated:  # the run is named by what it trains with
            cfg = cfg.with_values({"train.run_name": f"{dated.model}-{dated.date}-{run_hash(cfg)}"})
        tags.update({"i2i.tune_run": tuned.name, "i2i.tune_mlflow_run": tuned.mlflow_run_id,
                     "i2i.tuned_values": json.dumps(tuned.best_config)})
    if steps.replaced:
        log.warning("%s: the config changed since this date last ran (config %s → %s): the steps run again, and "
                    "training is the run %s (a run of another config is never resumed)", dated.model if dated else
                    "nightly", next(iter(steps.replaced.values())), steps.config, cfg.require("train").run_name)
    final = cfg
    train = steps.run("train", TrainResult, lambda: step_train(final, tags))
    evaluation = steps.run("evaluate", EvalResult, lambda: step_evaluate(final, train))
    reg = steps.run("register", RegisterResult, lambda: step_register(final, train, evaluation, tags))
    promo = steps.run("promote", PromoteResult, lambda: step_promote(final, reg.name, reg.version))
    summary.update(train=asdict(train), evaluate=asdict(evaluation), register=asdict(reg), promote=asdict(promo))
    summary["champion_uri"] = f"models:/{reg.name}@{cfg.promote.champion_alias}"
    summary["sample_grid"] = _final_grid(cfg, train.mlflow_run_id)
    summary["mlflow_ui"] = f"mlflow ui --backend-store-uri {storage.redact_uri(cfg.mlflow.uri())}"
    return summary


def _final_grid(cfg: PipelineConfig, run_id: str) -> str | None:
    """The training run's last sample grid (inputs, outputs and targets of the first val images), to look at."""
    from pipelines.report import final_sample_grid

    try:
        return storage.redact(final_sample_grid(cfg.mlflow, run_id) or "") or None
    except Exception as err:  # noqa: BLE001 — a pointer in the summary; the run itself succeeded
        log.warning("could not find the run's sample grid: %s", err)
        return None


def _located(shard: ShardResult, cfg) -> ShardResult:
    """``shard`` with its folder named by ``cfg.output`` again: a marker's copy of a URI is redacted, the
    config's is the one that works (credentials and all)."""
    output = storage.join(cfg.output, shard.version) if shard.version else cfg.output
    return dataclasses.replace(shard, output=output, manifest=manifest_uri(output))


class ScheduledModel(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)  # names its runs, markers and summary row, e.g. pix2pix-edges2photo
    config: str  # a pipeline config file; a relative path is relative to the schedule file's folder
    set: dict[str, Any] = {}  # dotted overrides of that config, e.g. {train.epochs: 4}
    promote_metric: str | None = None  # the gate's metric (promote.metric), e.g. l1, kid, fid_cartoon
    tune: bool | None = None  # tune.enabled: tune the loss weights before the final training (None: as configured)
    enabled: bool = True

    @field_validator("promote_metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        return v if v is None else PromoteConfig(metric=v).metric


class Schedule(StrictModel):
    """``jobs/configs/nightly.yaml``: what the nightly retrains, and where its markers and summaries go."""

    state: str = "data/nightly"  # folder or URI: <state>/<date>/<model>/<step>.json and <state>/<date>/summary.json
    time: str = Field(default="02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local time `i2i schedule print` uses
    # the date's lease expires this long after a run took it, if that run died without releasing it: longer than a
    # nightly can run (the KubeRay RayJob's activeDeadlineSeconds is 6 h)
    lease_hours: float = Field(default=12, gt=0)
    set: dict[str, Any] = {}  # overrides for every model (shared MLflow, Ray, storage settings)
    models: list[ScheduledModel] = Field(min_length=1)
    _folder: str = PrivateAttr(default=".")  # where the schedule file is: model configs are relative to it

    @field_validator("models")
    @classmethod
    def _unique(cls, v: list[ScheduledModel]) -> list[ScheduledModel]:
        names = [m.name for m in v]
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"model names must be unique; repeated: {', '.join(dup)}")
        return v


def load_schedule(path: str) -> Schedule:
    schedule = validate(Schedule, load_dict(path))
    schedule = schedule.model_copy(update={"state": absolute_path(schedule.state)})
    schedule._folder = os.path.dirname(os.path.abspath(path))
    return schedule


def model_config(schedule: Schedule, entry: ScheduledModel, overrides: list[str] = ()) -> PipelineConfig:
    """The pipeline config of one scheduled model: its file, the schedule's and its own ``set``, then ``overrides``
    (``--set`` on the command line), then its promotion metric and tuning switch."""
    data = load_dict(os.path.join(schedule._folder, entry.config))
    for key, value in {**schedule.set, **entry.set}.items():
        set_path(data, key, value)
    for assignment in overrides:
        apply_override(data, assignment)
    if entry.promote_metric is not None:
        set_path(data, "promote.metric", entry.promote_metric)
    if entry.tune is not None:
        set_path(data, "tune.enabled", entry.tune)
    return absolute_paths(validate(PipelineConfig, data))


def _outcome(name: str, result: dict, steps: Steps) -> dict:
    promo, reg = result["promote"], result["register"]
    row = {"model": name, "outcome": promo["decision"], "reason": promo["reason"], "registered": reg["name"],
           "version": reg["version"], "champion": promo["champion_version"],
           "dataset_version": result.get("shard", {}).get("version"), "run": result["train"]["run_name"],
           "steps_skipped": steps.skipped, "config": steps.config}
    if steps.replaced:  # the date ran before under another config: say so
        row["config_before"] = sorted(set(steps.replaced.values()))
    return row


def run_schedule(schedule: Schedule, date: str, overrides: list[str] = (), only: list[str] = ()) -> dict:
    """Every enabled model of ``schedule`` for ``date``, one after another; a failure is recorded, not raised.
    Holds the date's lease while it runs: a second run of the same date meanwhile is refused (LeaseHeldError)."""
    import re

    if not re.fullmatch(DATE_PATTERN, date) or not _is_date(date):
        raise I2IError(f"--date must be a calendar date YYYY-MM-DD, got {date!r}")
    if unknown := sorted(set(only) - {m.name for m in schedule.models}):
        raise I2IError(f"unknown model(s) {unknown}; the schedule has: {', '.join(m.name for m in schedule.models)}")
    with lease.held(storage.join(schedule.state, date, LEASE_FILE), ttl_s=schedule.lease_hours * 3600,
                    what=f"the nightly of {date}") as held:
        summary = _run_models(schedule, date, overrides, only)
        if held.took_over:
            summary["lease_took_over"] = held.took_over
        storage.write_bytes(summary["summary_uri"], json.dumps(storage.redact_values(summary), indent=1,
                                                               default=str).encode())
    summary.pop("details")
    return storage.redact_values(summary)


def _run_models(schedule: Schedule, date: str, overrides: list[str], only: list[str]) -> dict:
    chosen = [m for m in schedule.models if m.enabled and (not only or m.name in only)]
    configs: dict[str, PipelineConfig | Exception] = {}
    for entry in chosen:  # every config is checked before anything trains
        try:
            configs[entry.name] = model_config(schedule, entry, overrides)
        except I2IError as err:
            configs[entry.name] = err
    rows, details = [], {}
    for entry in chosen:
        steps = Steps(storage.join(schedule.state, date, entry.name), current="config")
        try:
            cfg = configs[entry.name]
            if isinstance(cfg, Exception):
                raise cfg
            details[entry.name] = run_nightly(cfg, Dated(date, entry.name, steps.markers), steps)
            rows.append(_outcome(entry.name, details[entry.name], steps))
        except Exception as err:  # noqa: BLE001 — isolate: one model failing must not stop the others
            log.error("nightly %s: model %s failed at step %s:\n%s", date, entry.name, steps.current,
                      storage.redact("".join(traceback.format_exception(err))))
            reason = storage.redact(str(user_error(err) or f"{type(err).__name__}: {err}"))
            rows.append({"model": entry.name, "outcome": "failed", "reason": f"{steps.current}: {reason}",
                         "steps_skipped": steps.skipped})
    failed = [r["model"] for r in rows if r["outcome"] == "failed"]
    return {"status": "failed" if failed else "succeeded", "date": date, "failed": failed, "models": rows,
            "summary_uri": storage.join(schedule.state, date, "summary.json"), "details": details}
