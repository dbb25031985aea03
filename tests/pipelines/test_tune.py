"""Ray Tune over loss weights: ASHA with nested Ray Train trials, PBT that exploits, interrupt + resume, errors."""

import json
import time

import mlflow
import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError, I2IError
from pipelines.shard import ShardConfig, run_shard
from pipelines.tracking import MlflowConfig
from pipelines.train import TrainConfig
from pipelines.tune import TuneSection, run_tune
from tests.conftest import ray_cli, submit

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


def trial_rows(experiment_dir: str) -> list[list[dict]]:
    """Every trial's reported results, as Tune wrote them (``<experiment>/<trial>/result.json``, JSON lines)."""
    from pathlib import Path

    return [[json.loads(line) for line in f.read_text().splitlines() if line.strip()]
            for f in sorted(Path(experiment_dir).glob("*/result.json"))]


def test_asha_with_optuna_four_trials_with_mlflow_parent_and_children(pairs, tmp_path, mlflow_server):
    tracking = MlflowConfig(tracking_uri=mlflow_server, experiment="tune-asha")
    cfg = TuneSection(search_space=SPACE, scheduler="asha", search_alg="optuna", num_samples=4, epochs=2,
                      grace_period=1, storage_path=str(tmp_path / "tune"))
    r = run_tune(model="pix2pix", model_args=TINY, loss_weights={}, train=train_cfg(pairs, tmp_path), cfg=cfg,
                 mlflow=tracking)
    assert r.trials == 4 and set(r.best_config) == set(SPACE) and r.best_objective > 0
    assert all(not t["error"] for t in r.trial_summaries), r.trial_summaries
    assert 4 <= r.trial_epochs <= 8  # ASHA may stop some trials after 1 epoch
    assert {"val_l1", "val_kid", "objective"} <= set(r.best_metrics)
    # the best, recomputed from what Tune itself recorded per trial (result.json): among the trials that ran every
    # epoch (ASHA stops others early), the lowest final objective; the result carries that trial's values
    trials = trial_rows(r.path)
    assert len(trials) == 4 and all(trials)
    finals = [rows[-1] for rows in trials]
    best = min([row for row in finals if row["training_iteration"] >= 2] or finals, key=lambda row: row["objective"])
    assert r.best_objective == pytest.approx(best["objective"], rel=1e-9)
    assert r.best_config == pytest.approx({k: best["config"][k] for k in SPACE}, rel=1e-9)
    # the first trial ran the untuned weights: the result reports that trial's own final objective and epochs
    assert r.baseline["config"] == {"loss_weights.l1": 100.0, "loss_weights.gan": 1.0}
    (untuned,) = [rows for rows in trials if {k: rows[-1]["config"][k] for k in SPACE} == r.baseline["config"]]
    assert r.baseline["objective"] == pytest.approx(untuned[-1]["objective"], rel=1e-9)
    assert r.baseline["epochs"] == len(untuned) and r.baseline["stopped_early"] == (len(untuned) < 2)
    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    children = client.search_runs([client.get_experiment_by_name("tune-asha").experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{r.mlflow_run_id}'")
    assert len(children) == 4 and all("val_l1" in c.data.metrics for c in children)
    # the best trial's MLflow child (its training loop logged it) ends at the same objective
    (best_child,) = [c for c in children if all(float(c.data.tags[f"trial.{k}"]) == pytest.approx(best["config"][k])
                                                for k in SPACE)]
    assert best_child.data.metrics["objective"] == pytest.approx(r.best_objective, rel=1e-9)
    parent = client.get_run(r.mlflow_run_id)
    assert json.loads(parent.data.tags["best_config"]) == r.best_config
    assert parent.data.metrics["baseline_objective"] == r.baseline["objective"]
    assert "loss_weights.l1" in parent.data.params["search_space"] and parent.data.params["scheduler"] == "asha"


def test_pbt_exploits_with_perturbed_weights(pairs, tmp_path):
    cfg = TuneSection(search_space=SPACE, scheduler="pbt", num_samples=2, epochs=3, perturbation_interval=1,
                      storage_path=str(tmp_path / "tune"), cpus_per_trial=0.5)
    r = run_tune(model="pix2pix", model_args=TINY, loss_weights={}, train=train_cfg(pairs, tmp_path), cfg=cfg,
                 mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
    ids = {t["trial_id"] for t in r.trial_summaries}
    assert len(ids) == 2 and "" not in ids, r.trial_summaries
    exploited = [t for t in r.trial_summaries if t["restored_from"]]
    assert exploited, f"no trial restored another trial's checkpoint: {r.trial_summaries}"
    t = exploited[0]
    assert t["restored_from"] in ids - {t["trial_id"]}
    # explored: it trained on with weights perturbed from those the cloned checkpoint was trained with
    assert set(t["config"]) == set(t["restored_config"]) == set(SPACE), t
    assert t["config"] != t["restored_config"], t


def test_interrupted_tuning_resumes_on_resubmit_without_rerunning_finished_trials(pairs, tmp_path, ray_head):
    """`ray job submit` the tuning job, `ray job stop` it mid-way, submit it again: Tuner.restore continues."""
    import yaml

    cfg_file = tmp_path / "tune.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "model": {"name": "pix2pix", "args": TINY}, "train": train_cfg(pairs, tmp_path).model_dump(),
        "tune": {"search_space": SPACE, "scheduler": "fifo", "num_samples": 3, "epochs": 1,
                 "max_concurrent_trials": 1, "storage_path": str(tmp_path / "tune"), "name": "resume-me"},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/m.db"}}))
    job = ("python", "-m", "jobs.tune", "--config", str(cfg_file))
    first = submit(ray_head, *job, options=("--submission-id", "tune-resume-1", "--no-wait"))
    assert first.returncode == 0, first.stderr[-2000:]
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
        status = ray_cli(ray_head, "status", "tune-resume-1").stdout
        assert "RUNNING" in status or "PENDING" in status, f"the job ended before a trial finished: {status}"
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(1)
    stop = ray_cli(ray_head, "stop", "tune-resume-1")
    assert stop.returncode == 0, stop.stdout + stop.stderr
    before = finished_trials()
    assert len(before) < 3, "the whole experiment finished before the interruption"
    again = submit(ray_head, *job, options=("--submission-id", "tune-resume-2"))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    r = json.loads(again.stdout[again.stdout.index('{\n "status"'): again.stdout.rindex("}") + 1])
    assert r["status"] == "succeeded" and r["resumed"] and r["trials"] == 3, r
    assert all(not t["error"] for t in r["trial_summaries"]), r["trial_summaries"]
    after = finished_trials()
    assert set(after) == {p.name for p in exp.iterdir() if (p / "result.json").exists()} and len(after) == 3
    for trial, rows in before.items():
        assert after[trial] == rows, f"finished trial {trial} was run again"
    # the same submission id cannot start a second copy of the job
    dup = submit(ray_head, *job, options=("--submission-id", "tune-resume-2", "--no-wait"))
    assert dup.returncode != 0 and "tune-resume-2" in dup.stdout + dup.stderr


def test_unknown_weight_and_impossible_resources(pairs, tmp_path):
    with pytest.raises(ConfigError, match=r"'loss_weights.l2' is not a loss term of 'pix2pix'; valid: "
                                          r"loss_weights.d_fake, loss_weights.d_real, loss_weights.gan"):
        load_config(None, ["tune.search_space={loss_weights.l2: {uniform: [1, 2]}}"])
    # a static cluster (no autoscaler reporting node types) may still get workers joining: a request larger than
    # it is waited for, up to tune.resource_wait_s, then refused naming the request and what the cluster offered
    cfg = TuneSection(search_space=SPACE, workers_per_trial=4, cpus_per_trial=1, storage_path=str(tmp_path / "t"),
                      resource_wait_s=3)
    started = time.monotonic()
    with pytest.raises(I2IError, match=r"one trial \(4 worker\(s\) × 1 CPU \+ 0.5 CPU for its Ray Data tasks\) needs "
                                       r"\{CPU: 4.5\} but the cluster offered only \{CPU: 2\} for "
                                       r"tune.resource_wait_s=3 s"):
        run_tune(model="pix2pix", model_args=TINY, loss_weights={}, train=train_cfg(pairs, tmp_path), cfg=cfg,
                 mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
    assert 3 <= time.monotonic() - started < 30
