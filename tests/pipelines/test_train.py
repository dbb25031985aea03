"""Ray Train with 2 CPU workers: shards and checkpoints on the S3 server, MLflow on a real tracking server, and a
worker killed mid-run."""

import re
import threading
import time

import mlflow
import psutil
import pytest

from pipelines import storage
from pipelines.errors import DatasetError
from pipelines.shard import ShardConfig, run_shard
from pipelines.tracking import MlflowConfig
from pipelines.train import TrainConfig, finished_run, run_train
from tests.conftest import BUCKET

TINY = {"image_size": 32, "ngf": 8, "ndf": 8, "norm": "instance", "n_epochs": 3, "n_epochs_decay": 3}


def kill_one_train_worker() -> int:
    """SIGKILL one RayTrainWorker of *this* session's Ray cluster (found under its raylet)."""
    import ray

    session = ray._private.worker._global_node.get_session_dir_path()
    raylets = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
               and "raylet" in p.info["cmdline"][0] and any(session in a for a in p.info["cmdline"])]
    for raylet in raylets:
        for child in raylet.children(recursive=True):
            try:
                if "RayTrainWorker" in " ".join(child.cmdline()):
                    child.kill()
                    return child.pid
            except psutil.NoSuchProcess:
                continue
    raise AssertionError("no RayTrainWorker process found")


@pytest.fixture(scope="module")
def s3_pairs(ray_cluster, demo_root):
    out = f"s3://{BUCKET}/train/edges2photo"
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=36, num_shards=2))
    return out


def test_two_workers_from_s3_with_a_killed_worker(s3_pairs, mlflow_server, tmp_path):
    storage_path = f"s3://{BUCKET}/ray-results"
    train = TrainConfig(dataset=s3_pairs, epochs=6, batch_size=4, crop_size=32, num_workers=2,
                        storage_path=storage_path, max_failures=2, log_every_steps=5)
    tracking = MlflowConfig(tracking_uri=mlflow_server, experiment="test-train")
    killed: list[int] = []

    def killer():  # once a checkpoint is surely committed (the next one is being written), kill a worker
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            ckpts = {e.relpath.split("/")[1] for e in storage.list_files(storage_path)
                     if re.search(r"/checkpoint_\d{4}-", e.relpath)}
            if len(ckpts) >= 2:
                time.sleep(3)  # let the controller register the first one (under load it lags the upload)
                killed.append(kill_one_train_worker())
            time.sleep(0.2)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    result = run_train(model="pix2pix", model_args=TINY, loss_weights={"l1": 50}, train=train, mlflow=tracking)
    t.join(timeout=1)
    assert killed, "the worker was never killed"
    m = result.metrics
    assert m["epoch"] == 5 and m["start_epoch"] > 0  # finished, resumed from a checkpoint after the kill
    assert result.checkpoint.startswith(f"s3://{BUCKET}/ray-results/") and storage.exists(
        storage.join(result.checkpoint, "nets.pt"))
    # MLflow: params incl. every loss weight, per-epoch metrics, sample grids, the data it saw
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["loss_weights.l1"] == "50.0" and run.data.params["loss_weights.gan"] == "1.0"
    assert run.data.tags["i2i.dataset_id"] == result.dataset_id
    history = client.get_metric_history(result.mlflow_run_id, "val_l1")
    assert {h.step for h in history} >= set(range(6))
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

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name": "pix2pix", "args": TINY}, "loss_weights": {"l1": 50},
        "train": train.model_dump(), "evaluate": {"feature_net": "tiny", "batch_size": 8},
        "mlflow": {"tracking_uri": mlflow_server, "experiment": "test-train"}}))
    assert evaluate.main(["--config", str(cfg)]) == 0
    assert storage.exists(storage.join(storage_path, result.run_name, "eval.json"))
    assert "eval_fid" in client.get_run(result.mlflow_run_id).data.metrics
    assert register.main(["--config", str(cfg)]) == 0
    assert register.main(["--config", str(cfg)]) == 0  # once per run: the same version again
    versions = client.search_model_versions("name='i2i-pix2pix-edges2photo'")
    assert len([v for v in versions if v.run_id == result.mlflow_run_id]) == 1
    assert promote.main(["--config", str(cfg)]) == 0


def test_model_and_data_mode_must_match(s3_pairs, tmp_path, demo_root):
    run_shard(ShardConfig(source=f"{demo_root}/photo2winter", output=str(tmp_path / "u"), load_size=32))
    with pytest.raises(DatasetError, match="trains on paired data, but dataset 'photo2winter' is unpaired"):
        run_train(model="pix2pix", model_args=TINY, loss_weights={}, train=TrainConfig(dataset=str(tmp_path / "u")),
                  mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
