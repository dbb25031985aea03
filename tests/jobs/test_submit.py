"""The jobs as users run them: `ray job submit` to a real head started on 127.0.0.1."""

import json

from pipelines.manifest import read_manifest, verify
from tests.conftest import BUCKET, submit, upload_dir


def test_ray_job_submit_shard_to_s3(ray_head, demo_root):
    upload_dir(f"{demo_root}/styles", BUCKET, "submit/raw/styles")
    out = f"s3://{BUCKET}/submit/shards/styles"
    r = submit(ray_head, "python", "-m", "jobs.shard", "--config", "jobs/configs/quickstart.yaml",
               "--set", f"shard.source=s3://{BUCKET}/submit/raw/styles", "--set", f"shard.output={out}",
               "--set", "shard.layout=auto", "--set", "shard.load_size=32")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads(r.stdout[r.stdout.index('{\n "status"'): r.stdout.rindex("}") + 1])
    assert summary["status"] == "succeeded" and summary["samples"]["train"] > 0
    m = read_manifest(out)
    verify(m, out, "train")
    assert set(m.domains) == {"cartoon", "photo", "winter"}
    # a bad config fails the submitted job with the message, not a traceback
    bad = submit(ray_head, "python", "-m", "jobs.shard", "--config", "jobs/configs/quickstart.yaml",
                 "--set", "shard.load_size=huge")
    assert bad.returncode != 0 and "'shard.load_size'" in bad.stdout + bad.stderr


def test_ray_job_submit_nightly_with_tuning_trains_the_chosen_weights(ray_head, mlflow_server, demo_root, tmp_path):
    """`tune.enabled`: nightly tunes first, trains and registers the final model with the best weights, and the
    registered version says which tuning run chose them."""
    import mlflow

    shards = str(tmp_path / "shards")
    sets = {"shard.source": f"{demo_root}/edges2photo", "shard.output": shards, "shard.load_size": 32,
            "shard.num_shards": 2, "model.args": "{image_size: 32, ngf: 8, ndf: 8, norm: instance, n_epochs: 1, "
            "n_epochs_decay: 0}", "train.dataset": shards, "train.crop_size": 32, "train.num_workers": 1,
            "train.storage_path": str(tmp_path / "runs"), "mlflow.tracking_uri": mlflow_server,
            "mlflow.experiment": "nightly-tuned", "registry.name": "i2i-tuned-test", "evaluate.batch_size": 8,
            "tune.enabled": "true", "tune.scheduler": "fifo", "tune.num_samples": 2, "tune.epochs": 1,
            "tune.storage_path": str(tmp_path / "tune"),
            "tune.search_space": "{loss_weights.l1: {loguniform: [1, 300]}, loss_weights.gan: {uniform: [0.5, 2]}}"}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    r = submit(ray_head, "python", "-m", "jobs.nightly", "--config", "jobs/configs/quickstart.yaml", *args)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    summary = json.loads(r.stdout[r.stdout.index('{\n "status"'): r.stdout.rindex("}") + 1])
    tuned = summary["tune"]
    assert tuned["trials"] == 2 and set(tuned["best_config"]) == {"loss_weights.l1", "loss_weights.gan"}
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    version = client.get_model_version(summary["register"]["name"], summary["register"]["version"])
    assert version.tags["i2i.tune_run"] == tuned["name"]
    assert version.tags["i2i.tune_mlflow_run"] == tuned["mlflow_run_id"]
    trained = client.get_run(summary["train"]["mlflow_run_id"]).data
    for key, value in tuned["best_config"].items():  # the final model trained with the chosen weights
        assert float(trained.params[key]) == value
        assert trained.metrics[f"weight_{key.split('.')[1]}"] == value
    parent = client.get_run(tuned["mlflow_run_id"])
    assert json.loads(parent.data.tags["best_config"]) == tuned["best_config"]
