"""A file cut short (a crash or a full disk before writes were atomic) is absent, never a permanent failure: the
manifest, the nightly's success markers, the training run's done-marker and eval.json are each done again."""

import json
from dataclasses import dataclass

import pytest

from pipelines import storage
from pipelines.config import PipelineConfig
from pipelines.errors import I2IError, ShardIntegrityError
from pipelines.manifest import manifest_uri, read_manifest
from pipelines.nightly import EVAL_FILE, Steps, stored_evaluation
from pipelines.shard import ShardConfig, run_shard
from pipelines.train import DONE_MARKER, finished_run, plan_run

DATE = "2031-05-06"


def cut_short(path: str) -> None:
    """Keep the first half of the file at ``path`` (what a crash during a non-atomic write leaves)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def test_a_manifest_cut_short_is_no_manifest_and_the_dated_version_is_sharded_again(ray_cluster, demo_root, tmp_path):
    cfg = ShardConfig(source=f"{demo_root}/edges2photo", output=str(tmp_path / "shards"), layout="aligned",
                      load_size=36, num_shards=1, version=DATE)
    first = run_shard(cfg)
    cut_short(first.manifest)
    with pytest.raises(ShardIntegrityError, match="no manifest .*cut short"):
        read_manifest(first.output)
    again = run_shard(cfg)  # the date's re-run: not "versions are never rewritten", not "not a valid manifest"
    assert not again.up_to_date and again.dataset_id == first.dataset_id and again.output == first.output
    assert read_manifest(again.output).id == first.dataset_id

    # the training run's done-marker and its eval.json, cut short: not finished, not evaluated
    pipeline = PipelineConfig.model_validate({
        "shard": cfg.model_dump(), "train": {"dataset": again.output, "storage_path": str(tmp_path / "runs")},
        "model": {"name": "pix2pix", "args": {"image_size": 32, "ngf": 8, "ndf": 8}}})
    _, run_dir, _ = plan_run(**pipeline.train_args())
    done = {"run_name": "r", "checkpoint": "c", "metrics": {}, "mlflow_run_id": "m", "dataset_id": "d"}
    storage.write_bytes(storage.join(run_dir, DONE_MARKER), json.dumps(done).encode())
    assert finished_run(**pipeline.train_args()).run_name == "r"
    cut_short(storage.join(run_dir, DONE_MARKER))
    assert finished_run(**pipeline.train_args()) is None  # resumes from its checkpoints instead of failing

    evaluation = {"metrics": {"l1": 0.5}, "dataset": "d", "dataset_id": "d", "split": "val", "samples": 4}
    storage.write_bytes(storage.join(run_dir, EVAL_FILE), json.dumps(evaluation).encode())
    with pytest.raises(I2IError, match="without an evaluation fingerprint"):  # an older i2i's: the gate refuses it
        stored_evaluation(pipeline)
    evaluation.update(fingerprint="f" * 16, fingerprint_spec={"dataset_id": "d"})
    storage.write_bytes(storage.join(run_dir, EVAL_FILE), json.dumps(evaluation).encode())
    assert stored_evaluation(pipeline).metrics == {"l1": 0.5}
    cut_short(storage.join(run_dir, EVAL_FILE))
    with pytest.raises(I2IError, match="has not been evaluated"):
        stored_evaluation(pipeline)
    assert manifest_uri(again.output) == again.manifest


@dataclass(frozen=True)
class Result:
    value: int


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_success_marker_cut_short_or_of_another_config_is_no_result(where, s3_endpoint, tmp_path):
    from tests.conftest import BUCKET

    markers = str(tmp_path / "m") if where == "local" else f"s3://{BUCKET}/atomic-{tmp_path.name}/m"
    calls = []

    def step():
        calls.append(1)
        return Result(len(calls))

    steps = Steps(markers, config="config-a")
    assert steps.run("train", Result, step) == Result(1)
    assert Steps(markers, config="config-a").run("train", Result, step) == Result(1)  # done: skipped
    assert len(calls) == 1

    uri = storage.join(markers, "train.json")
    storage.write_bytes(uri, storage.read_bytes(uri)[:10])  # cut short
    again = Steps(markers, config="config-a")
    assert again.run("train", Result, step) == Result(2) and again.skipped == []
    assert storage.read_json(uri) == {"config": "config-a", "result": {"value": 2}}  # whole again

    changed = Steps(markers, config="config-b")  # the date re-run under another config: not its result
    assert changed.run("train", Result, step) == Result(3)
    assert changed.replaced == {"train": "config-a"} and storage.read_json(uri)["config"] == "config-b"
