"""Ray Tune over loss weights: ASHA with nested Ray Train trials, PBT that exploits, interrupt + resume, errors."""

import json
import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError, I2IError
from pipelines.shard import ShardConfig, run_shard
from pipelines.tracking import MlflowConfig
from pipelines.train import TrainConfig
from pipelines.tune import TuneSection, run_tune

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = {"image_size": 32, "ngf": 8, "ndf": 8, "norm": "instance", "n_epochs": 1, "n_epochs_decay": 1}
SPACE = {"loss_weights.l1": {"loguniform": [1, 300]}, "loss_weights.gan": {"uniform": [0.25, 4]}}


@pytest.fixture(scope="module")
def pairs(ray_cluster, demo_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("tune-pairs"))
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=32, num_shards=2))
    return out


def train_cfg(pairs: str, tmp_path) -> TrainConfig:
    return TrainConfig(dataset=pairs, batch_size=4, crop_size=32, shuffle_buffer=8,
                       storage_path=str(tmp_path / "runs"), log_every_steps=1000)


def test_asha_four_trials_with_mlflow_parent_and_children(pairs, tmp_path, mlflow_server):
    tracking = MlflowConfig(tracking_uri=mlflow_server, experiment="tune-asha")
    cfg = TuneSection(search_space=SPACE, scheduler="asha", num_samples=4, epochs=2, grace_period=1,
                      storage_path=str(tmp_path / "tune"))
    r = run_tune(model="pix2pix", model_args=TINY, loss_weights={}, train=train_cfg(pairs, tmp_path), cfg=cfg,
                 mlflow=tracking)
    assert r.trials == 4 and set(r.best_config) == set(SPACE) and r.best_objective > 0
    assert all(not t["error"] for t in r.trial_summaries), r.trial_summaries
    assert 4 <= r.trial_epochs <= 8  # ASHA may stop some trials after 1 epoch
    assert {"val_l1", "val_kid", "objective"} <= set(r.best_metrics)
    client = mlflow.MlflowClient(mlflow_server)
    children = client.search_runs([client.get_experiment_by_name("tune-asha").experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{r.mlflow_run_id}'")
    assert len(children) == 4 and all("val_l1" in c.data.metrics for c in children)
    parent = client.get_run(r.mlflow_run_id)
    assert json.loads(parent.data.tags["best_config"]) == r.best_config
    assert "loss_weights.l1" in parent.data.params["search_space"] and parent.data.params["scheduler"] == "asha"


def test_pbt_exploits_with_perturbed_weights(pairs, tmp_path):
    cfg = TuneSection(search_space=SPACE, scheduler="pbt", num_samples=2, epochs=3, perturbation_interval=1,
                      storage_path=str(tmp_path / "tune"), cpus_per_trial=0.5)
    r = run_tune(model="pix2pix", model_args=TINY, loss_weights={}, train=train_cfg(pairs, tmp_path), cfg=cfg,
                 mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
    exploited = [t for t in r.trial_summaries if t["restored_from"] and t["restored_from"] != t["trial_id"]]
    assert exploited, f"no trial restored another trial's checkpoint: {r.trial_summaries}"
    t = exploited[0]
    other = next(o for o in r.trial_summaries if o["trial_id"] == t["restored_from"])
    assert t["last_config"] != t["first_config"]  # explored: its weights were perturbed after cloning
    assert other["trial_id"] != t["trial_id"]


def test_interrupted_tuning_resumes_without_rerunning_finished_trials(pairs, tmp_path, ray_cluster):
    cfg_file = tmp_path / "tune.yaml"
    import yaml

    cfg_file.write_text(yaml.safe_dump({
        "model": {"name": "pix2pix", "args": TINY}, "train": train_cfg(pairs, tmp_path).model_dump(),
        "tune": {"search_space": SPACE, "scheduler": "asha", "num_samples": 4, "epochs": 2,
                 "storage_path": str(tmp_path / "tune"), "name": "resume-me"},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/m.db"}}))
    env = {**os.environ, "RAY_ADDRESS": ray_cluster}
    proc = subprocess.Popen([sys.executable, "-m", "jobs.tune", "--config", str(cfg_file)], cwd=REPO, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exp = tmp_path / "tune" / "resume-me"

    def finished_trials() -> dict[str, int]:
        out = {}
        for f in exp.glob("*/result.json"):
            rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            if rows and rows[-1].get("done"):
                out[f.parent.name] = len(rows)
        return out

    deadline = time.time() + 400
    while not finished_trials():
        assert proc.poll() is None and time.time() < deadline, "tuning ended or stalled before a trial finished"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished_trials()
    assert len(before) < 4, "the whole experiment finished before the interruption"
    cfg = load_config(cfg_file)
    r = run_tune(**cfg.tune_args())
    assert r.resumed and r.trials == 4 and all(not t["error"] for t in r.trial_summaries)
    after = finished_trials()
    assert set(after) == {p.name for p in exp.iterdir() if (p / "result.json").exists()} and len(after) == 4
    for trial, rows in before.items():
        assert after[trial] == rows, f"finished trial {trial} was run again"


def test_unknown_weight_and_impossible_resources(pairs, tmp_path):
    with pytest.raises(ConfigError, match=r"'loss_weights.l2' is not a loss term of 'pix2pix'; valid: "
                                          r"loss_weights.d_fake, loss_weights.d_real, loss_weights.gan"):
        load_config(None, ["tune.search_space={loss_weights.l2: {uniform: [1, 2]}}"])
    cfg = TuneSection(search_space=SPACE, workers_per_trial=4, cpus_per_trial=1, storage_path=str(tmp_path / "t"))
    with pytest.raises(I2IError, match=r"one trial needs 4 CPU .* but the cluster has 2 CPU"):
        run_tune(model="pix2pix", model_args=TINY, loss_weights={}, train=train_cfg(pairs, tmp_path), cfg=cfg,
                 mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
