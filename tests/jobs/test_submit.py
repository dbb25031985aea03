"""The jobs as users run them: `ray job submit` to a real head started on 127.0.0.1."""

import json
import os
import shutil
import subprocess
import sys

from pipelines.manifest import read_manifest, verify
from tests.conftest import BUCKET, REPO, submit, upload_dir


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


def test_ray_job_submit_nightly_then_champion_serves_and_gate_holds(ray_head, ray_cluster, mlflow_server, demo_root,
                                                                   tmp_path):
    import mlflow
    import torch

    from i2i_models.registry import get_model
    from pipelines.evaluate import EvaluateConfig, evaluate_model
    from pipelines.promote import PromoteConfig, run_promote
    from pipelines.register import run_register
    from pipelines.tracking import MlflowConfig

    shards = f"s3://{BUCKET}/nightly/shards/edges2photo"
    sets = {"shard.source": f"{demo_root}/edges2photo", "shard.output": shards, "shard.load_size": 36,
            "shard.num_shards": 2, "model.args": "{image_size: 32, ngf: 8, ndf: 8, norm: instance, n_epochs: 1, "
            "n_epochs_decay: 1}", "train.dataset": shards, "train.crop_size": 32,
            "train.storage_path": f"s3://{BUCKET}/nightly/ray-results", "mlflow.tracking_uri": mlflow_server,
            "mlflow.experiment": "nightly-test", "evaluate.batch_size": 8}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    r = submit(ray_head, "python", "-m", "jobs.nightly", "--config", "jobs/configs/quickstart.yaml", *args)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    summary = json.loads(r.stdout[r.stdout.index('{\n "status"'): r.stdout.rindex("}") + 1])
    assert summary["promote"]["decision"] == "promoted" and summary["promote"]["reason"] == "no champion yet"
    name = summary["register"]["name"]
    assert name == "i2i-pix2pix-edges2photo" and summary["champion_uri"] == f"models:/{name}@champion"
    assert {"l1", "psnr", "ssim", "fid", "kid"} <= set(summary["evaluate"]["metrics"])

    # a fresh process loads the champion from the registry and translates a folder
    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(os.listdir(f"{demo_root}/edges2photo/val"))[:3]:
        shutil.copy(f"{demo_root}/edges2photo/val/{f}", src / f)
    out = subprocess.run([sys.executable, "-m", "jobs.translate", "--set", f"mlflow.tracking_uri={mlflow_server}",
                          "--model", f"models:/{name}@champion", str(src), str(tmp_path / "out")],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout[out.stdout.index("{"):])["written"] == 3
    assert len(os.listdir(tmp_path / "out")) == 3

    # the promotion gate: a deliberately worse model (outputs all black) is registered but not promoted
    tracking = MlflowConfig(tracking_uri=mlflow_server, experiment="nightly-test")
    worse = get_model("pix2pix", image_size=32, ngf=8, ndf=8, norm="instance", n_epochs=1, n_epochs_decay=1)
    with torch.no_grad():
        worse.nets["G"].model.model[3].bias.fill_(-10.0)  # outermost transposed conv → tanh → -1
    worse.save_pretrained(str(tmp_path / "worse"))
    eval_cfg = EvaluateConfig(feature_net="tiny", batch_size=8)
    evaluation = evaluate_model(worse, shards, eval_cfg.model_copy(update={"split": "val"}))
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    run_id = client.create_run(client.get_experiment_by_name("nightly-test").experiment_id).info.run_id
    reg = run_register(checkpoint=str(tmp_path / "worse"), model="pix2pix", dataset="edges2photo", mlflow=tracking,
                       run_id=run_id, eval_result=evaluation)
    champion_before = client.get_model_version_by_alias(name, "champion").version
    decision = run_promote(name=name, mlflow=tracking, cfg=PromoteConfig(metric="l1"), eval_cfg=eval_cfg)
    assert decision.decision == "kept" and decision.challenger_version == reg.version
    assert decision.challenger_score > decision.champion_score
    assert client.get_model_version_by_alias(name, "champion").version == champion_before
    tags = client.get_model_version(name, reg.version).tags
    assert tags["promotion.decision"] == "kept" and "l1" in tags["promotion.reason"]


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
