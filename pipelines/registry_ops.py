"""Day-to-day registry operations behind ``i2i models``: list the registered ``i2i-*`` models, pick the best version
by a metric, promote (through the gate, or forced), roll the champion back, and show who was champion when and why.

Every champion change (the gate in ``promote.run_promote``, a forced promotion, a rollback) moves the alias by
compare-and-set under the champion lease and is appended to the registered-model tag ``i2i.champion_history``
(``champion`` module: bounded tags, archived, never dropped); models promoted before that tag existed fall back to
the ``promotion.*`` tags of their versions. ``best`` ranks only versions measured under the same evaluation
fingerprint (``evaluate`` module) as the champion (else the latest version); ``best_across`` does the same across the
families trained on one dataset (``i2i-pix2pix-edges2photo`` against ``i2i-bicyclegan-edges2photo`` …).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import ParamSpec, TypeVar

from pipelines import champion as champ
from pipelines import tracking
from pipelines.champion import HISTORY_TAG
from pipelines.errors import RegistryError
from pipelines.evaluate import EvaluateConfig, lower_is_better
from pipelines.promote import PromoteConfig, PromoteResult, run_promote

P, T = ParamSpec("P"), TypeVar("T")
PREFIX = "i2i-"
_EVAL_META = ("eval.dataset", "eval.dataset_id", "eval.split", "eval.fingerprint", "eval.fingerprint_json")


@dataclass(frozen=True)
class VersionRow:
    model: str
    version: str
    aliases: list[str]
    judged_on: str  # "promotion.metric=value", else the eval.* metrics
    dataset_id: str  # eval.dataset_id, shortened
    trained_on: str  # the dataset version it trained on (i2i.dataset_version, set by the nightly), else its data id


@dataclass(frozen=True)
class BestResult:
    name: str
    metric: str
    lower_is_better: bool
    dataset_id: str  # the eval data every ranked version was measured on
    dataset_from: str  # whose evaluation that is: "champion vN" or "latest vN"
    best_version: str
    best_value: float
    ranked: list[dict] = field(default_factory=list)  # {version, value, aliases}, best first
    skipped: list[dict] = field(default_factory=list)  # {version, reason}
    fingerprint: str = ""  # the evaluation fingerprint every ranked version was measured under


@dataclass(frozen=True)
class BestAcrossResult:
    dataset: str
    metric: str
    lower_is_better: bool
    fingerprint: str  # the evaluation fingerprint every compared version was measured under
    best_model_uri: str  # models:/NAME/VERSION
    best_value: float
    families: list[str]  # the families compared (i2i.model of their versions)
    compared: list[dict] = field(default_factory=list)  # {model_uri, name, family, version, value, aliases}, best first
    skipped: list[dict] = field(default_factory=list)  # {model_uri, name, family, version, reason}


@dataclass(frozen=True)
class ChampionChange:
    name: str
    champion_version: str
    previous_version: str | None
    kind: str  # forced | rollback
    reason: str
    by: str
    at: str


@dataclass(frozen=True)
class HistoryResult:
    name: str
    source: str  # HISTORY_TAG, or "promotion.* tags" for models promoted before the history tag existed
    current_champion: str | None
    entries: list[dict]  # {version, previous, at, reason, kind, by, id} (older entries: fewer keys), oldest first


_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # no such name / version (or not a valid one)


def _missing(err: BaseException) -> bool:
    return getattr(err, "error_code", None) in _MISSING


def _fails_closed(fn: Callable[P, T]) -> Callable[P, T]:
    """An operation whose MLflow errors (server unreachable, 5xx, denied) fail it as a ``RegistryError`` (one line,
    exit 2 at the job edge) instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except (MlflowException, OSError) as err:
            first = (str(err).strip().splitlines() or [""])[0]
            raise RegistryError(f"{fn.__name__.replace('_', ' ')}: MLflow failed ({type(err).__name__}): {first}"
                                ) from err
    return wrapper


def _model_names(c) -> list[str]:
    names, token = [], None
    while True:
        page = c.search_registered_models(filter_string=f"name LIKE {tracking.quote(PREFIX + '%')}",
                                          page_token=token)
        names += [m.name for m in page if not m.name.endswith(champ.LEASE_SUFFIX)]
        token = page.token
        if not token:
            return sorted(names)


def _model(c, name: str):
    try:
        return c.get_registered_model(name)
    except Exception as err:  # noqa: BLE001 - only "does not exist" is answered here; the rest fails the operation
        if not _missing(err):
            raise
        known = ", ".join(_model_names(c)) or "none"
        raise RegistryError(f"no registered model '{name}' (registered: {known})") from None


def _versions(c, name: str) -> list:
    return sorted(c.search_model_versions(f"name={tracking.quote(name)}"), key=lambda mv: int(mv.version))


def _v(mv) -> str:
    return str(mv.version)  # an int from some stores (sqlite), a str from others


def _version(c, name: str, version: str):
    _model(c, name)
    try:
        return c.get_model_version(name, str(version))
    except Exception as err:  # noqa: BLE001
        if not _missing(err):
            raise
        known = ", ".join(_v(mv) for mv in _versions(c, name)) or "none"
        raise RegistryError(f"{name} has no version '{version}' (versions: {known})") from None


def _champion(model, alias: str) -> str | None:
    version = model.aliases.get(alias)
    return None if version is None else str(version)


def _judged_on(tags: dict[str, str]) -> str:
    metric = tags.get("promotion.metric")
    if metric:
        return f"{metric}={tags.get(f'eval.{metric}', '?')}"
    return " ".join(f"{k[5:]}={float(v):.4g}" for k, v in sorted(tags.items())
                    if k.startswith("eval.") and k not in _EVAL_META)


@_fails_closed
def list_versions(mlflow: tracking.MlflowConfig, name: str | None = None) -> list[VersionRow]:
    """Every version of ``name`` (or of every ``i2i-*`` model): aliases, the metric it was judged on, its eval data."""
    c = tracking.client(mlflow)
    rows = []
    for model in [_model(c, name)] if name else [c.get_registered_model(n) for n in _model_names(c)]:
        by_version: dict[str, list[str]] = {}
        for alias, version in model.aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        rows += [VersionRow(model.name, _v(mv), sorted(by_version.get(_v(mv), [])), _judged_on(mv.tags),
                            mv.tags.get("eval.dataset_id", "")[:12],
                            mv.tags.get("i2i.dataset_version") or mv.tags.get("i2i.dataset_id", "")[:12])
                 for mv in _versions(c, model.name)]
    return rows


@_fails_closed
def best_version(mlflow: tracking.MlflowConfig, name: str, metric: str, champion_alias: str = "champion"
                 ) -> BestResult:
    """The best version by ``eval.<metric>`` among those measured under the champion's (else the latest's)
    evaluation fingerprint: same data, same metric config, same weights. The others are listed as skipped."""
    try:
        lower = lower_is_better(metric)
    except KeyError as err:
        raise RegistryError(err.args[0]) from None
    c = tracking.client(mlflow)
    model, versions = _model(c, name), _versions(c, name)
    if not versions:
        raise RegistryError(f"{name} has no versions")
    champion = _champion(model, champion_alias)
    basis = next((mv for mv in versions if _v(mv) == champion), versions[-1])
    dataset_from = f"{'champion' if _v(basis) == champion else 'latest'} v{_v(basis)}"
    fingerprint, dataset_id = basis.tags.get("eval.fingerprint"), basis.tags.get("eval.dataset_id", "")
    if not fingerprint:
        raise RegistryError(f"{name} {dataset_from} has no eval.fingerprint tag: evaluate and register it first")
    ranked, skipped = [], []
    for mv in versions:
        if not mv.tags.get("eval.fingerprint"):
            skipped.append({"version": _v(mv), "reason": "no eval fingerprint (not evaluated)"})
        elif mv.tags.get("eval.dataset_id") != dataset_id:
            skipped.append({"version": _v(mv), "reason": "evaluated on other data"})
        elif mv.tags["eval.fingerprint"] != fingerprint:
            skipped.append({"version": _v(mv), "reason": f"other eval config (fingerprint "
                                                         f"{mv.tags['eval.fingerprint']}, not {fingerprint})"})
        elif f"eval.{metric}" not in mv.tags:
            skipped.append({"version": _v(mv), "reason": f"no eval.{metric}"})
        else:
            aliases = sorted(a for a, v in model.aliases.items() if str(v) == _v(mv))
            ranked.append({"version": _v(mv), "value": float(mv.tags[f"eval.{metric}"]), "aliases": aliases})
    if not ranked:
        raise RegistryError(f"no version of {name} measured under eval fingerprint {fingerprint} has eval.{metric}")
    ranked.sort(key=lambda r: r["value"] if lower else -r["value"])
    return BestResult(name, metric, lower, dataset_id, dataset_from, ranked[0]["version"], ranked[0]["value"],
                      ranked, skipped, fingerprint)


@_fails_closed
def best_across(mlflow: tracking.MlflowConfig, dataset: str, metric: str, champion_alias: str = "champion", *,
                fingerprint: str | None = None, champions_only: bool = False) -> BestAcrossResult:
    """The best registered version by ``eval.<metric>`` among every ``i2i-*`` model trained on ``dataset`` (their
    ``i2i.dataset`` tag), whatever the family — only versions measured under one evaluation fingerprint are compared:
    ``fingerprint``, or (None) the one under which the most families, then champions, then versions have the metric.
    The others are listed as skipped, with why (not evaluated, metric missing, which fingerprint fields differ)."""
    try:
        lower = lower_is_better(metric)
    except KeyError as err:
        raise RegistryError(err.args[0]) from None
    c = tracking.client(mlflow)
    found = [mv for mv in c.search_model_versions(f"tags.`i2i.dataset` = {tracking.quote(dataset)}")
             if mv.name.startswith(PREFIX)]
    if not found:
        trained = sorted({mv.tags.get("i2i.dataset", "?") for n in _model_names(c) for mv in _versions(c, n)})
        raise RegistryError(f"no registered i2i model was trained on dataset '{dataset}' "
                            f"(datasets with registered models: {', '.join(trained) or 'none'})")
    aliases: dict[tuple[str, str], list[str]] = {}
    for name in sorted({mv.name for mv in found}):
        for alias, version in c.get_registered_model(name).aliases.items():
            aliases.setdefault((name, str(version)), []).append(alias)
    rows, skipped = [], []
    for mv in sorted(found, key=lambda mv: (mv.name, int(mv.version))):
        row = {"model_uri": f"models:/{mv.name}/{_v(mv)}", "name": mv.name, "family": mv.tags.get("i2i.model", "?"),
               "version": _v(mv), "aliases": sorted(aliases.get((mv.name, _v(mv)), []))}
        if champions_only and champion_alias not in row["aliases"]:
            continue
        if not mv.tags.get("eval.fingerprint"):
            skipped.append({**row, "reason": "not evaluated (no eval fingerprint)"})
        elif f"eval.{metric}" not in mv.tags:
            skipped.append({**row, "reason": f"no eval.{metric} (its evaluation does not measure it)"})
        else:
            rows.append((row, mv.tags, float(mv.tags[f"eval.{metric}"])))
    if not rows:
        why = "; ".join(f"{s['model_uri']}: {s['reason']}" for s in skipped) or "no champions"
        raise RegistryError(f"no {'champion' if champions_only else 'version'} of a model trained on '{dataset}' "
                            f"has eval.{metric} ({why})")
    basis = fingerprint or _widest_fingerprint(rows, champion_alias)
    basis_spec = next((_spec(t) for _, t, _ in rows if t["eval.fingerprint"] == basis), None)
    if basis_spec is None:
        known = ", ".join(sorted({t["eval.fingerprint"] for _, t, _ in rows}))
        raise RegistryError(f"no version of a model trained on '{dataset}' with eval.{metric} was measured under "
                            f"eval fingerprint {basis} (these were: {known})")
    compared = []
    for row, tags, value in rows:
        if tags["eval.fingerprint"] == basis:
            compared.append({**row, "value": value})
        else:
            differs = _differs(basis_spec, _spec(tags))
            skipped.append({**row, "reason": f"other eval fingerprint {tags['eval.fingerprint']}, not {basis}"
                                             + (f" (differs in {differs})" if differs else "")})
    compared.sort(key=lambda r: (r["value"] if lower else -r["value"], r["name"], int(r["version"])))
    skipped.sort(key=lambda r: (r["name"], int(r["version"])))
    return BestAcrossResult(dataset, metric, lower, basis, compared[0]["model_uri"], compared[0]["value"],
                            sorted({r["family"] for r in compared}), compared, skipped)


def _widest_fingerprint(rows: list[tuple[dict, dict, float]], champion_alias: str) -> str:
    """The fingerprint under which the comparison covers the most families, then champions, then versions (ties:
    the smallest fingerprint, so the answer does not depend on listing order)."""
    groups: dict[str, list[dict]] = {}
    for row, tags, _ in rows:
        groups.setdefault(tags["eval.fingerprint"], []).append(row)
    return min(groups, key=lambda fp: (-len({r["name"] for r in groups[fp]}),
                                       -sum(champion_alias in r["aliases"] for r in groups[fp]), -len(groups[fp]), fp))


def _spec(tags: dict[str, str]) -> dict:
    try:
        spec = json.loads(tags.get("eval.fingerprint_json", "{}"))
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _differs(a: dict, b: dict) -> str:
    """The fingerprint fields whose values differ, ``key a→b``; empty when either spec is unreadable."""
    if not a or not b:
        return ""
    return ", ".join(f"{k} {a.get(k)}→{b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


@_fails_closed
def promote_version(mlflow: tracking.MlflowConfig, name: str, version: str, cfg: PromoteConfig,
                    eval_cfg: EvaluateConfig) -> PromoteResult:
    """``version`` through the promotion gate (``run_promote``)."""
    _version(tracking.client(mlflow), name, version)
    try:
        return run_promote(name=name, mlflow=mlflow, cfg=cfg, eval_cfg=eval_cfg, version=str(version))
    except ValueError as err:  # e.g. no eval.dataset tag: something the user fixes, not a crash
        raise RegistryError(str(err)) from None


@_fails_closed
def force_champion(mlflow: tracking.MlflowConfig, name: str, version: str, reason: str,
                   champion_alias: str = "champion") -> ChampionChange:
    """Make ``version`` the champion without the gate; the version records ``promotion.forced`` and who/when/why."""
    c = tracking.client(mlflow)
    version = _v(_version(c, name, version))
    entry = champ.history_entry(version, None, reason, "forced")
    previous = champ.move(c, name, champion_alias, version, entry, expected=None, check=False).previous
    for k, v in {"promotion.decision": "forced", "promotion.forced": "true", "promotion.reason": reason,
                 "promotion.by": entry["by"], "promotion.at": entry["at"], "promotion.compared_to": previous or ""
                 }.items():
        c.set_model_version_tag(name, version, k, v)
    return ChampionChange(name, version, previous, "forced", reason, entry["by"], entry["at"])


def _champion_stack(entries: list[dict]) -> list[str]:
    """The champions in force, oldest first: a rollback entry pops the version it rolled back from."""
    stack: list[str] = []
    for e in entries:
        if e.get("kind") == "rollback" and stack:
            stack.pop()
        if not stack or stack[-1] != e["version"]:
            stack.append(e["version"])
    return stack


@_fails_closed
def rollback(mlflow: tracking.MlflowConfig, name: str, reason: str | None = None,
             champion_alias: str = "champion") -> ChampionChange:
    """Move the champion back to the one before it (by the champion history)."""
    c = tracking.client(mlflow)
    current = _champion(_model(c, name), champion_alias)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    stack = _champion_stack(champion_history(mlflow, name).entries)
    if stack and stack[-1] == current:
        stack.pop()
    if not stack:
        raise RegistryError(f"{name}: champion v{current} has no previous champion to roll back to")
    previous = _v(_version(c, name, stack[-1]))
    reason = reason or f"rollback from v{current}"
    entry = champ.history_entry(previous, current, reason, "rollback")
    move = champ.move(c, name, champion_alias, previous, entry, expected=current)
    if not move.moved:
        raise RegistryError(f"{name}: the champion changed from v{current} to v{move.champion} during the rollback; "
                            "nothing was rolled back (look at `i2i models history` and try again)")
    return ChampionChange(name, previous, current, "rollback", reason, entry["by"], entry["at"])


@_fails_closed
def champion_history(mlflow: tracking.MlflowConfig, name: str, champion_alias: str = "champion") -> HistoryResult:
    """Who was champion when, and why: the history tag, else the ``promotion.*`` tags of the versions."""
    c = tracking.client(mlflow)
    model = _model(c, name)
    current = _champion(model, champion_alias)
    entries = champ.read_history(model.tags)
    if entries is not None:
        return HistoryResult(name, HISTORY_TAG, current, entries)
    entries = []
    for mv in _versions(c, name):
        t = mv.tags
        if t.get("promotion.decision") in ("promoted", "forced"):
            at = t.get("promotion.at") or datetime.fromtimestamp(mv.last_updated_timestamp / 1000, timezone.utc
                                                                   ).isoformat(timespec="seconds")
            entries.append({"version": _v(mv), "at": at, "reason": t.get("promotion.reason", ""),
                            "kind": t["promotion.decision"], "by": t.get("promotion.by", "")})
    return HistoryResult(name, "promotion.* tags", current, entries)
