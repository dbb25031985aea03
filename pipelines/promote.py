"""The promotion gate: ``champion`` moves to a challenger only if it beats the champion on the configured metric
*measured under the same evaluation fingerprint* (``evaluate`` module docstring); otherwise the champion stays. The
decision and its reason are recorded on the challenger version (tags ``promotion.*``).

* **Like with like.** The challenger's recorded ``eval.<metric>`` defines the fingerprint of the comparison. The
  champion's recorded score is used only when its ``eval.fingerprint`` is the same; otherwise the champion is
  re-evaluated with the challenger's evaluation config (recovered from ``eval.fingerprint_json``) on the
  challenger's dataset and split. The promote config's ``evaluate`` section only says where the weights files are
  on this machine; if they are not the files the challenger was measured with (another sha256, so another
  fingerprint), the challenger is re-evaluated too and both are compared under the fingerprint measured here.
* **Fail closed.** A challenger without an evaluation fingerprint (never evaluated, or registered before
  fingerprints) is refused, never promoted. Only an unset champion alias means "no champion yet"; any error
  reading or writing the registry fails the step (``RegistryError``, exit non-zero) with the champion unchanged,
  and the reason is recorded on the challenger (``promotion.decision`` ``refused`` / ``error``) when MLflow can be
  reached.
* **One winner.** The alias moves by compare-and-set under a lease (``champion`` module): a promoter that finds the
  champion changed while it judged moves nothing and records that it lost the race; run it again to judge against
  the new champion.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, field_validator

from pipelines import champion as champ
from pipelines import tracking
from pipelines.champion import utc_now, whoami
from pipelines.errors import I2IError, RegistryError
from pipelines.evaluate import EvaluateConfig, config_from_spec, evaluate_model, lower_is_better
from pipelines.register import load_model
from pipelines.schema import StrictModel

log = logging.getLogger(__name__)


class PromoteConfig(StrictModel):
    metric: str = "l1"  # any key of evaluate.LOWER_IS_BETTER (single-domain families: fid, kid, mse, psnr), or
    #                    fid_<domain> / kid_<domain>
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
    fingerprint: str = ""  # the evaluation fingerprint both scores were measured under
    reevaluated: list[str] = field(default_factory=list)  # versions this gate measured (not their recorded score)


class Refused(RegistryError):
    """The gate will not judge this challenger (recorded as ``promotion.decision`` ``refused``)."""


@dataclass(frozen=True)
class _Judgement:
    challenger_score: float
    champion_score: float
    fingerprint: str
    reevaluated: list[str]


def _measure(name: str, version: str, dataset: str, cfg: EvaluateConfig, metric: str,
             mlflow: tracking.MlflowConfig):
    log.info("evaluating %s v%s on %s (%s)", name, version, dataset, cfg.model_dump(exclude_defaults=True))
    result = evaluate_model(load_model(f"models:/{name}/{version}", mlflow), dataset, cfg)
    if metric not in result.metrics:
        raise Refused(f"promote.metric '{metric}' is not measured for {name} v{version} with this evaluate config; "
                      f"it reports: {', '.join(result.metrics)}")
    return result


def _judge(c, name: str, challenger, champion: str, metric: str, eval_cfg: EvaluateConfig,
           mlflow: tracking.MlflowConfig) -> _Judgement:
    """Both scores under one fingerprint: the challenger's (see the module docstring)."""
    tags, key = challenger.tags, f"eval.{metric}"
    if key not in tags:
        measured = sorted(k[5:] for k in tags if k.startswith("eval.") and k[5:] not in _EVAL_META)
        raise Refused(f"{name} v{challenger.version} was evaluated without {metric} (it has: {', '.join(measured)}); "
                      "set promote.metric to one of those, or evaluate it with a config that measures it")
    fp, ch_score = tags["eval.fingerprint"], float(tags[key])
    current = c.get_model_version(name, champion)
    if current.tags.get("eval.fingerprint") == fp and key in current.tags:
        return _Judgement(ch_score, float(current.tags[key]), fp, [])
    dataset = tags.get("eval.dataset")
    if not dataset:
        raise Refused(f"{name} v{challenger.version} has no eval.dataset tag: the champion cannot be measured on "
                      "its data")
    log.info("%s: champion v%s was not measured under the challenger's fingerprint %s (its own: %s): "
             "re-evaluating it", name, champion, fp, current.tags.get("eval.fingerprint") or "none")
    spec = json.loads(tags["eval.fingerprint_json"])
    try:
        cfg = config_from_spec(spec, eval_cfg)
    except ValueError as err:
        raise Refused(f"{name} v{challenger.version}: {err}; evaluate it again") from None
    champion_run = _measure(name, champion, dataset, cfg, metric, mlflow)
    if champion_run.fingerprint == fp:
        return _Judgement(ch_score, champion_run.metrics[metric], fp, [champion])
    log.info("%s: measured here the fingerprint is %s, not the challenger's %s (other weights files); "
             "re-evaluating the challenger too", name, champion_run.fingerprint, fp)
    challenger_run = _measure(name, str(challenger.version), dataset, cfg, metric, mlflow)
    if challenger_run.fingerprint != champion_run.fingerprint:
        differ = sorted(k for k in champion_run.fingerprint_spec
                        if champion_run.fingerprint_spec[k] != challenger_run.fingerprint_spec.get(k))
        raise Refused(f"{name}: measured with the same config, v{challenger.version} and champion v{champion} still "
                      f"differ in {', '.join(differ)}: they cannot be compared")
    return _Judgement(challenger_run.metrics[metric], champion_run.metrics[metric], champion_run.fingerprint,
                      [champion, str(challenger.version)])


_EVAL_META = ("dataset", "dataset_id", "split", "fingerprint", "fingerprint_json")


def _challenger(c, name: str, cfg: PromoteConfig, version: str | None):
    if version is None:
        version = champ.champion_version(c, name, cfg.challenger_alias)
        if version is None:
            raise RegistryError(f"registered model '{name}' has no version aliased '{cfg.challenger_alias}'")
    return c.get_model_version(name, str(version))


def _record(c, name: str, version: str, tags: dict[str, str]) -> None:
    for k, v in {**tags, "promotion.at": utc_now(), "promotion.by": whoami()}.items():
        c.set_model_version_tag(name, version, k, v)


def run_promote(*, name: str, mlflow: tracking.MlflowConfig, cfg: PromoteConfig, eval_cfg: EvaluateConfig,
                version: str | None = None) -> PromoteResult:
    """Judge the challenger (``version``, else the one aliased ``challenger``) against the champion."""
    c = tracking.client(mlflow)
    try:
        challenger = _challenger(c, name, cfg, version)
    except I2IError:
        raise
    except Exception as err:  # noqa: BLE001 - the registry could not be read: nothing is decided
        raise RegistryError(f"promote {name}: could not read the challenger from MLflow: {err}") from err
    try:
        return _gate(c, name, challenger, cfg, eval_cfg, mlflow)
    except Exception as err:  # noqa: BLE001 - fail closed: every error fails the step and is recorded
        kind = "refused" if isinstance(err, Refused) else "error"
        try:
            _record(c, name, str(challenger.version), {"promotion.decision": kind, "promotion.reason": str(err)})
        except Exception as record_err:  # noqa: BLE001 - MLflow unreachable: the error is the step's result
            log.warning("could not record the failed promotion on %s v%s: %s", name, challenger.version, record_err)
        if isinstance(err, I2IError):
            raise
        raise RegistryError(f"promote {name} v{challenger.version} failed: {type(err).__name__}: {err}") from err


def _decide(c, name: str, challenger, champion: str | None, cfg: PromoteConfig, eval_cfg: EvaluateConfig,
            mlflow: tracking.MlflowConfig) -> tuple[str, str, _Judgement | None]:
    """(decision, reason, the judgement when there was one) — nothing is moved here."""
    ch_version, metric, lower = str(challenger.version), cfg.metric, lower_is_better(cfg.metric)
    if champion is None:
        return "promoted", "no champion yet", None
    if champion == ch_version:  # e.g. a re-run after a crash between moving the alias and recording the decision
        history = champ.read_history(c.get_registered_model(name).tags) or [{}]
        last = history[-1] if history[-1].get("version") == ch_version else {}
        if not last:
            return "kept", "the challenger already is the champion", None
        return ("promoted" if last["kind"] == "promoted" else "kept",
                f"already the champion ({last['kind']} at {last['at']}: {last['reason']})", None)
    judged = _judge(c, name, challenger, champion, metric, eval_cfg, mlflow)
    ch_score, cur_score = judged.challenger_score, judged.champion_score
    gain = (cur_score - ch_score) if lower else (ch_score - cur_score)
    how = f"; re-evaluated: v{', v'.join(judged.reevaluated)}" if judged.reevaluated else ""
    reason = (f"{metric} {ch_score:.6g} vs champion v{champion} {cur_score:.6g} on dataset "
              f"{challenger.tags.get('eval.dataset_id', '')[:12]} ({'lower' if lower else 'higher'} is better, "
              f"margin {cfg.min_improvement}; eval fingerprint {judged.fingerprint}{how})")
    return ("promoted" if gain > cfg.min_improvement else "kept"), reason, judged


def _gate(c, name: str, challenger, cfg: PromoteConfig, eval_cfg: EvaluateConfig,
          mlflow: tracking.MlflowConfig) -> PromoteResult:
    ch_version, tags = str(challenger.version), challenger.tags
    if not tags.get("eval.fingerprint") or not tags.get("eval.fingerprint_json"):
        raise Refused(f"{name} v{ch_version} has no evaluation fingerprint (eval.fingerprint): it was not evaluated, "
                      "or was registered before fingerprints existed. The gate never promotes an un-evaluated "
                      "version: evaluate and register it, or use `i2i models promote --force`")
    champion = champ.champion_version(c, name, cfg.champion_alias)
    decision, reason, judged = _decide(c, name, challenger, champion, cfg, eval_cfg, mlflow)
    now = champion
    if decision == "promoted" and champion != ch_version:
        move = champ.move(c, name, cfg.champion_alias, ch_version,
                          champ.history_entry(ch_version, champion, reason, "promoted"), expected=champion)
        now = move.champion
        if not move.moved:
            decision = "kept"
            reason = (f"lost a race: the champion changed from {_v(champion)} to {_v(now)} while this gate judged "
                      f"against {_v(champion)} ({reason}); run promote again to judge against {_v(now)}")
    scores = {"promotion.fingerprint": judged.fingerprint if judged else "",  # "" clears an earlier gate's
              "promotion.reevaluated": ",".join(judged.reevaluated) if judged else "",
              "promotion.challenger_score": repr(judged.challenger_score) if judged else "",
              "promotion.champion_score": repr(judged.champion_score) if judged else ""}
    _record(c, name, ch_version, {"promotion.decision": decision, "promotion.reason": reason,
                                  "promotion.metric": cfg.metric, "promotion.compared_to": champion or "", **scores})
    log.info("%s v%s: %s (%s)", name, ch_version, decision, reason)
    return PromoteResult(name, decision, now or "", ch_version, reason,
                         judged.challenger_score if judged else None, judged.champion_score if judged else None,
                         judged.fingerprint if judged else tags["eval.fingerprint"],
                         judged.reevaluated if judged else [])


def _v(version: str | None) -> str:
    return f"v{version}" if version else "none"
