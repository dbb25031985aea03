"""Ray Train with 2 CPU workers: shards and checkpoints on the S3 server, MLflow on a real tracking server, then the
standalone evaluate / register / promote steps on the finished run. (Faults — a worker or the driver killed, S3 or
MLflow down — are in tests/faults/.)"""

import json
import uuid

import mlflow
import pytest

from pipelines import storage
from pipelines.errors import DatasetError
from pipelines.shard import ShardConfig, run_shard
from pipelines.tracking import MlflowConfig
from pipelines.train import TrainConfig, finished_run, run_train
from tests.conftest import BUCKET

TINY = {"image_size": 32, "ngf": 8, "ndf": 8, "norm": "instance", "n_epochs": 2, "n_epochs_decay": 1}
EPOCHS = 3


@pytest.fixture(scope="module")
def s3_pairs(ray_cluster, demo_root):
    out = f"s3://{BUCKET}/train/edges2photo"
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=36, num_shards=2))
    return out


def test_two_workers_from_s3_tracked_then_evaluated_registered_promoted(s3_pairs, mlflow_server, tmp_path, capsys):
    storage_path = f"s3://{BUCKET}/ray-results"
    train = TrainConfig(dataset=s3_pairs, epochs=EPOCHS, batch_size=4, crop_size=32, num_workers=2,
                        storage_path=storage_path, max_failures=2, log_every_steps=5)
    tracking = MlflowConfig(tracking_uri=mlflow_server, experiment="test-train")
    result = run_train(model="pix2pix", model_args=TINY, loss_weights={"l1": 50}, train=train, mlflow=tracking)
    m = result.metrics
    assert m["epoch"] == EPOCHS - 1 and m["start_epoch"] == 0  # every epoch, in one go
    assert result.checkpoint.startswith(f"s3://{BUCKET}/ray-results/") and storage.exists(
        storage.join(result.checkpoint, "train_state.pt"))
    # MLflow: params incl. every loss weight, per-epoch metrics, sample grids, the data it saw
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["loss_weights.l1"] == "50.0" and run.data.params["loss_weights.gan"] == "1.0"
    assert run.data.tags["i2i.dataset_id"] == result.dataset_id
    # … and as the run's MLflow datasets (the run page's "Datasets"): each split, its manifest, id and role
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"edges2photo/train", "edges2photo/val"}
    for split, d in inputs.items():
        assert d.dataset.digest == result.dataset_id[:36] and d.dataset.source_type == "s3"
        assert json.loads(d.dataset.source) == {"uri": f"{s3_pairs}/manifest.json"}
        assert {t.key: t.value for t in d.tags}["mlflow.data.context"] == split.split("/")[1]
    found = client.search_runs([run.info.experiment_id], f"attributes.run_id = '{result.mlflow_run_id}'")
    assert {d.dataset.name for d in found[0].inputs.dataset_inputs} == set(inputs)
    history = client.get_metric_history(result.mlflow_run_id, "val_l1")
    assert {h.step for h in history} == set(range(EPOCHS))
    for term in ("loss_gan", "loss_l1", "loss_d_real", "loss_d_fake", "images_per_s", "val_psnr", "val_ssim"):
        assert term in run.data.metrics
    images = [a.path for a in client.list_artifacts(result.mlflow_run_id, "images")]
    assert images, "no sample grids logged"
    # re-running the same config is a no-op that returns the finished run
    again = run_train(model="pix2pix", model_args=TINY, loss_weights={"l1": 50}, train=train, mlflow=tracking)
    assert again.already_done and again.checkpoint == result.checkpoint
    assert finished_run("pix2pix", TINY, {"l1": 50}, train).run_name == result.run_name

    # the standalone steps on the finished run, as `i2i evaluate|register|promote --config …` run them
    import yaml

    from jobs import evaluate, promote, register

    name = f"i2i-test-train-{uuid.uuid4().hex[:8]}"  # this test's own registered model: no other test's champion
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name": "pix2pix", "args": TINY}, "loss_weights": {"l1": 50},
        "train": train.model_dump(), "evaluate": {"feature_net": "tiny", "batch_size": 8},
        "registry": {"name": name}, "mlflow": {"tracking_uri": mlflow_server, "experiment": "test-train"}}))
    assert evaluate.main(["--config", str(cfg)]) == 0
    assert storage.exists(storage.join(storage_path, result.run_name, "eval.json"))
    assert "eval_fid" in client.get_run(result.mlflow_run_id).data.metrics
    assert register.main(["--config", str(cfg)]) == 0
    assert register.main(["--config", str(cfg)]) == 0  # once per run: the same version again
    versions = client.search_model_versions(f"name='{name}'")
    assert [v.run_id for v in versions] == [result.mlflow_run_id]
    version = versions[0].version
    assert client.get_model_version_by_alias(name, "challenger").version == version
    capsys.readouterr()
    assert promote.main(["--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    decision = json.JSONDecoder().raw_decode(out[out.index('{\n "status"'):])[0]
    # the first version of a model: promoted because there is no champion, and the alias says so
    assert (decision["decision"], decision["reason"], decision["champion_version"]) == ("promoted", "no champion yet",
                                                                                          version)
    assert client.get_model_version_by_alias(name, "champion").version == version
    tags = client.get_model_version(name, version).tags
    assert (tags["promotion.decision"], tags["promotion.reason"]) == ("promoted", "no champion yet")


def test_model_and_data_mode_must_match(s3_pairs, tmp_path, demo_root):
    run_shard(ShardConfig(source=f"{demo_root}/photo2winter", output=str(tmp_path / "u"), load_size=32))
    with pytest.raises(DatasetError, match="trains on paired data, but dataset 'photo2winter' is unpaired"):
        run_train(model="pix2pix", model_args=TINY, loss_weights={}, train=TrainConfig(dataset=str(tmp_path / "u")),
                  mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
