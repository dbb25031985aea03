"""The promotion gate: ``champion`` moves to a challenger only if it beats the champion on the configured metric,
measured on the same eval shards; otherwise the champion stays and the decision and its reason are recorded on
the challenger version (tags ``promotion.*``)."""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pydantic import Field, field_validator

from pipelines import tracking
from pipelines.evaluate import EvaluateConfig, evaluate_model, lower_is_better
from pipelines.register import load_model
from pipelines.schema import StrictModel

log = logging.getLogger(__name__)
HISTORY_TAG = "i2i.champion_history"  # registered-model tag: JSON list of every champion change, oldest first
HISTORY_KEEP = 200  # entries kept (a tag value holds at most 100 kB)


class PromoteConfig(StrictModel):
    metric: str = "l1"  # any key of evaluate.LOWER_IS_BETTER, or fid_<domain> / kid_<domain>
    min_improvement: float = Field(default=0.0, ge=0)  # required margin, in the metric's units
    challenger_alias: str = "challenger"
    champion_alias: str = "champion"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        try:
            lower_is_better(v)
        except KeyError as err:
            raise ValueError(err.args[0]) from None
        return v


@dataclass(frozen=True)
class PromoteResult:
    name: str
    decision: Literal["promoted", "kept"]
    champion_version: str
    challenger_version: str
    reason: str
    challenger_score: float | None
    champion_score: float | None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "unknown"


def record_champion(c, name: str, version: str, reason: str, kind: str, at: str | None = None) -> dict:
    """Append one champion change ``{version, at, reason, kind, by}`` to the model's ``i2i.champion_history`` tag.
    ``kind``: promoted (the gate), forced, rollback."""
    entry = {"version": str(version), "at": at or utc_now(), "reason": reason, "kind": kind, "by": whoami()}
    history = json.loads(c.get_registered_model(name).tags.get(HISTORY_TAG) or "[]")
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps((history + [entry])[-HISTORY_KEEP:]))
    return entry


def _alias(c, name: str, alias: str):
    try:
        return c.get_model_version_by_alias(name, alias)
    except Exception:  # noqa: BLE001 - MLflow raises a generic RestException when the alias is unset
        return None


def _score(c, name: str, mv, metric: str, eval_cfg: EvaluateConfig, dataset: str, dataset_id: str,
           mlflow: tracking.MlflowConfig) -> float:
    """The version's metric on ``dataset``: its recorded value if it was measured on those shards, else measured."""
    tags = mv.tags
    if tags.get("eval.dataset_id") == dataset_id and f"eval.{metric}" in tags:
        return float(tags[f"eval.{metric}"])
    log.info("re-evaluating %s v%s on %s (its recorded metrics are from other shards)", name, mv.version, dataset)
    result = evaluate_model(load_model(f"models:/{name}/{mv.version}", mlflow), dataset, eval_cfg)
    if metric not in result.metrics:
        raise ValueError(f"promote.metric '{metric}' is not measured for {name} v{mv.version} with this evaluate "
                         f"config; it reports: {', '.join(result.metrics)}")
    return result.metrics[metric]


def run_promote(*, name: str, mlflow: tracking.MlflowConfig, cfg: PromoteConfig, eval_cfg: EvaluateConfig,
                version: str | None = None) -> PromoteResult:
    c = tracking.client(mlflow)
    challenger = c.get_model_version(name, version) if version else _alias(c, name, cfg.challenger_alias)
    if challenger is None:
        raise ValueError(f"registered model '{name}' has no version aliased '{cfg.challenger_alias}'")
    champion = _alias(c, name, cfg.champion_alias)
    metric, lower = cfg.metric, lower_is_better(cfg.metric)
    dataset, dataset_id = challenger.tags.get("eval.dataset"), challenger.tags.get("eval.dataset_id")
    if champion is None:
        decision, reason, ch_score, cur_score = "promoted", "no champion yet", None, None
    elif champion.version == challenger.version:
        decision, reason, ch_score, cur_score = "kept", "the challenger already is the champion", None, None
    else:
        if not dataset:
            raise ValueError(f"{name} v{challenger.version} has no eval.dataset tag: evaluate it before promoting")
        eval_cfg = eval_cfg.model_copy(update={"split": challenger.tags.get("eval.split")})
        ch_score = _score(c, name, challenger, metric, eval_cfg, dataset, dataset_id, mlflow)
        cur_score = _score(c, name, champion, metric, eval_cfg, dataset, dataset_id, mlflow)
        gain = (cur_score - ch_score) if lower else (ch_score - cur_score)
        better = gain > cfg.min_improvement
        decision = "promoted" if better else "kept"
        reason = (f"{metric} {ch_score:.6g} vs champion v{champion.version} {cur_score:.6g} on dataset "
                  f"{dataset_id[:12]} ({'lower' if lower else 'higher'} is better, margin {cfg.min_improvement})")
    if decision == "promoted":
        c.set_registered_model_alias(name, cfg.champion_alias, challenger.version)
        record_champion(c, name, challenger.version, reason, kind="promoted")
    for k, v in {"promotion.decision": decision, "promotion.reason": reason, "promotion.metric": metric,
                 "promotion.compared_to": str(champion.version) if champion else ""}.items():
        c.set_model_version_tag(name, challenger.version, k, v)
    champion_version = str(challenger.version if decision == "promoted" else champion.version)
    log.info("%s v%s: %s (%s)", name, challenger.version, decision, reason)
    return PromoteResult(name, decision, champion_version, str(challenger.version), reason, ch_score, cur_score)
