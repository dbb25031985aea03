"""The pipeline's config: typed sections composed into one document, read from YAML at the job edge.

``--config FILE`` plus dotted overrides ``--set shard.num_shards=8`` (values parsed as YAML). An unknown key, a wrong
type or a missing required value is rejected before any work starts, naming the key and the valid choices.

Local paths. ``ray job submit --working-dir .`` runs the job (and its Ray tasks and workers) in temporary copies of
the code, where ``data/`` is not. ``--base-dir DIR`` (the checkout the job was submitted from) makes the job work
from DIR, and every relative local path of a config it loads (``shard.source: data/demo/edges2photo``) absolute
there, so tasks and workers in other directories read the same files. ``i2i schedule print`` passes it. Without
``--base-dir`` a config is used as written (relative paths resolve against each process's current directory).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import yaml

import pydantic

from pipelines.cluster import RayConfig
from pipelines.errors import ConfigError
from pipelines.schema import StrictModel, validate
from pipelines.shard import ShardConfig
from pipelines.evaluate import EvaluateConfig
from pipelines.promote import PromoteConfig
from pipelines.register import RegisterConfig
from pipelines.tracking import MlflowConfig
from pipelines.train import TrainConfig
from pipelines.translate import TranslateConfig
from pipelines.tune import TuneSection


class ModelSection(StrictModel):
    name: str = "pix2pix"
    args: dict = {}  # the family's Config fields (e.g. image_size, ngf, norm); unknown ones are rejected


class PipelineConfig(StrictModel):
    ray: RayConfig = RayConfig()
    shard: ShardConfig | None = None
    model: ModelSection = ModelSection()
    loss_weights: dict[str, float] = {}  # by term name, e.g. {l1: 50}; unset terms keep the paper's default
    train: TrainConfig | None = None
    evaluate: EvaluateConfig = EvaluateConfig()
    registry: RegisterConfig = RegisterConfig()
    promote: PromoteConfig = PromoteConfig()
    tune: TuneSection = TuneSection()
    translate: TranslateConfig = TranslateConfig()
    mlflow: MlflowConfig = MlflowConfig()

    def with_values(self, values: dict) -> "PipelineConfig":
        """A copy with dotted ``values`` set (e.g. a tuning run's best ``loss_weights.l1``), validated again."""
        data = self.model_dump()
        for key, value in values.items():
            set_path(data, key, value)
        return validate(PipelineConfig, data)

    def tune_args(self) -> dict:
        return {**self.train_args(), "cfg": self.tune, "mlflow": self.mlflow, "ray_config": self.ray}

    def train_args(self) -> dict:
        """The keyword arguments that name one training run (model, its args, weights, train section)."""
        return {"model": self.model.name, "model_args": self.model.args, "loss_weights": self.loss_weights,
                "train": self.require("train")}

    @pydantic.model_validator(mode="before")
    @classmethod
    def _evaluate_domain(cls, data):
        """``evaluate.domain`` defaults to ``train.domain`` (a single-domain family is evaluated on what it learned)."""
        train, ev = (data.get(k) if isinstance(data, dict) else None for k in ("train", "evaluate"))
        if isinstance(train, dict) and train.get("domain") is not None and (ev is None or isinstance(ev, dict)) \
                and (ev or {}).get("domain") is None:
            data = {**data, "evaluate": {**(ev or {}), "domain": train["domain"]}}
        return data

    @pydantic.model_validator(mode="after")
    def _check_model_names(self):
        import dataclasses

        from i2i_models.registry import get_model_class

        try:
            family = get_model_class(self.model.name)
        except KeyError as err:
            raise ValueError(str(err).strip('"')) from None
        valid = {f.name for f in dataclasses.fields(family.Config)}
        if unknown := sorted(set(self.model.args) - valid):
            raise ValueError(f"unknown model.args {unknown} for '{self.model.name}'; valid: {', '.join(sorted(valid))}")
        if unknown := sorted(set(self.loss_weights) - set(family.default_weights())):
            raise ValueError(f"unknown loss_weights {unknown} for '{self.model.name}'; "
                             f"valid: {', '.join(sorted(family.default_weights()))}")
        try:
            family.Config(**self.model.args)
        except (TypeError, ValueError) as err:
            raise ValueError(f"model.args: {err}") from None
        if self.tune.search_space:
            from pipelines.tune import validate_space

            validate_space(self.model.name, self.tune.search_space)
        return self

    def require(self, section: str):
        value = getattr(self, section)
        if value is None:
            raise ConfigError(f"missing required section '{section}' in the config")
        return value


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` assignment to a nested dict (value parsed as YAML)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {assignment!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {assignment!r}: value is not valid YAML ({err})") from None
    set_path(data, key.strip(), value)


def set_path(data: dict, key: str, value) -> None:
    """Set the dotted ``key`` (``a.b.c``) of a nested dict to ``value``, creating sections on the way."""
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.setdefault(part, {})
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {key}={value!r}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def load_dict(path: str | Path | None, overrides: list[str] = ()) -> dict:
    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    for assignment in overrides:
        apply_override(data, assignment)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> PipelineConfig:
    return absolute_paths(validate(PipelineConfig, load_dict(path, overrides)))


# (section, field) of every config value that names a file or folder: a relative one is a local path
PATH_FIELDS = {"shard": ("source", "output"), "train": ("dataset", "storage_path"),
               "evaluate": ("dataset", "inception_weights", "lpips_weights", "domain_classifier"),
               "tune": ("storage_path",)}


_base_dir: str | None = None  # set by --base-dir (set_base_dir): relative paths of loaded configs resolve there


def set_base_dir(path: str | None) -> None:
    """Work from ``path`` (chdir) and make the relative local paths of configs loaded from now on absolute there;
    None: configs are used as written."""
    global _base_dir
    if path is not None:
        os.chdir(path)
        path = os.getcwd()
    _base_dir = path


def absolute_path(value: str | None) -> str | None:
    """``value`` made absolute against the base dir (:func:`set_base_dir`) when it is a relative local path
    (``~`` expanded); URIs (``s3://…``, ``file://…``), absolute paths, and everything without a base dir unchanged."""
    if not value or "://" in value or _base_dir is None:
        return value
    return os.path.normpath(os.path.join(_base_dir, os.path.expanduser(value)))


def absolute_paths(cfg: PipelineConfig) -> PipelineConfig:
    """``cfg`` with every relative local path of :data:`PATH_FIELDS` (and each ``model.args`` value named
    ``*_weights``) absolute under the base dir: Ray tasks and Train workers run in other directories than the
    driver, and read them as given. Unchanged without a base dir."""
    if _base_dir is None:
        return cfg
    update: dict = {}
    for section, fields in PATH_FIELDS.items():
        value = getattr(cfg, section)
        if value is not None:
            changed = {f: absolute_path(getattr(value, f)) for f in fields}
            update[section] = value.model_copy(update=changed)
    args = {k: absolute_path(v) if k.endswith("_weights") and isinstance(v, str) else v
            for k, v in cfg.model.args.items()}
    update["model"] = cfg.model.model_copy(update={"args": args})
    return cfg.model_copy(update=update)


class _BaseDir(argparse.Action):
    """``--base-dir DIR``: work from DIR (relative paths in the config, the schedule and ``--set`` resolve there)."""

    def __call__(self, parser, namespace, value, option_string=None):
        if not os.path.isdir(value):
            parser.error(f"--base-dir {value}: no such folder on this machine ({os.uname().nodename}); the job "
                         "resolves relative paths there — submit from a checkout this machine can read, or use "
                         "absolute or s3:// paths in the config and drop --base-dir")
        set_base_dir(value)
        setattr(namespace, self.dest, os.getcwd())


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (see jobs/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, e.g. --set shard.num_shards=8 (repeatable)")
    parser.add_argument("--base-dir", action=_BaseDir, metavar="DIR",
                        help="resolve relative paths (config file, its local paths, --set) against DIR: the "
                        "checkout a `ray job submit --working-dir .` came from (default: the current directory)")
