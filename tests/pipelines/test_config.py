import os
import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError

BASE = ["shard.source=data/x", "shard.output=out/x"]


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("shard:\n  source: a\n  output: b\n  num_shards: 2\n")
    cfg = load_config(f, ["shard.num_shards=8", "shard.direction=BtoA", "ray.num_cpus=2"])
    assert cfg.shard.num_shards == 8 and cfg.shard.direction == "BtoA" and cfg.ray.num_cpus == 2
    assert cfg.shard.load_size == 286  # the pix2pix default


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        load_config(None, BASE + ["shard.num_shard=8"])
    msg = str(e.value)
    assert "unknown key 'shard.num_shard'" in msg and "did you mean 'num_shards'" in msg
    assert "samples_per_shard" in msg and "load_size" in msg


def test_unknown_section():
    with pytest.raises(ConfigError, match=r"unknown key 'shrad' \(did you mean 'shard'\?\); valid keys here: .*ray, "
                                          r"registry, shard, train, translate, tune"):
        load_config(None, ["shrad.source=x"])


def test_wrong_type_and_bad_choice():
    with pytest.raises(ConfigError, match=r"'shard.load_size': .*integer.*'big'"):
        load_config(None, BASE + ["shard.load_size=big"])
    with pytest.raises(ConfigError, match=r"'shard.layout': Input should be 'auto', 'aligned', 'unaligned'"):
        load_config(None, BASE + ["shard.layout=zigzag"])
    with pytest.raises(ConfigError, match=r"'shard.num_shards': .*greater than 0"):
        load_config(None, BASE + ["shard.num_shards=0"])


def test_missing_required_value():
    with pytest.raises(ConfigError, match=r"missing required value 'shard.output'"):
        load_config(None, ["shard.source=x"])


def test_bad_override_syntax_and_files(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["shard.source"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        load_config(None, BASE + ["shard.source.x=1"])


def test_configs_shipped_with_jobs_validate():
    import pathlib

    from pipelines.nightly import load_schedule, model_config

    configs = pathlib.Path(__file__).parents[2] / "jobs" / "configs"
    for f in configs.glob("*.yaml"):
        if not f.name.startswith("nightly"):
            load_config(f)
    for name in ("nightly.yaml", "nightly_cluster.yaml"):  # the schedules, and every model config they resolve to
        schedule = load_schedule(str(configs / name))
        for entry in schedule.models:
            cfg = model_config(schedule, entry)
            assert cfg.promote.metric == entry.promote_metric and cfg.mlflow.experiment == "i2i-nightly"


def test_relative_local_paths_become_absolute_uris_stay(tmp_path, monkeypatch):
    """Ray tasks and Train workers run in other directories than the job: with --base-dir the config they get
    holds absolute paths, resolved there; without it, the config is used as written."""
    from pipelines import config

    sets = ["shard.source=data/src", "shard.output=s3://bucket/shards", "train.dataset=shards/x",
            "evaluate.inception_weights=~/w.pth", "model.name=munit", "model.args.vgg_weights=vgg.pth"]
    monkeypatch.setattr(config, "_base_dir", None)
    assert config.load_config(None, sets).shard.source == "data/src"
    monkeypatch.chdir(tmp_path / "..")  # restored after the test, as is the base dir
    config.set_base_dir(str(tmp_path))
    assert os.getcwd() == str(tmp_path)
    cfg = config.load_config(None, sets)
    assert cfg.shard.source == str(tmp_path / "data" / "src") and cfg.shard.output == "s3://bucket/shards"
    assert cfg.train.dataset == str(tmp_path / "shards" / "x")
    assert cfg.train.storage_path == str(tmp_path / "data" / "ray_results")  # defaults too
    assert cfg.tune.storage_path == str(tmp_path / "data" / "tune")
    assert cfg.evaluate.inception_weights == os.path.expanduser("~/w.pth")
    assert cfg.model.args["vgg_weights"] == str(tmp_path / "vgg.pth")


def test_a_missing_optional_extra_is_named_with_its_install_command(monkeypatch, tmp_path):
    import sys

    from pipelines.demo_data import build_demo
    from pipelines.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"tune.search_alg: optuna needs .*'tune' extra .*pip install 'i2i\[tune\]'"):
        load_config(None, ["tune.search_alg=optuna"])
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MissingExtraError, match=r"demo datasets .*\(sklearn not installed\): pip install 'i2i\[demo\]'"):
        build_demo(str(tmp_path / "demo"))
    assert not (tmp_path / "demo").exists()
