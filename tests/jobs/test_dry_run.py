"""`--dry-run` and `i2i config show`: the resolved config and what a step would do, with nothing started."""

import json
import subprocess
import sys

import pytest

from jobs import config as config_job
from jobs import shard as shard_job
from jobs import train as train_job
from pipelines.config import load_config
from pipelines.train import plan_run
from tests.conftest import REPO

SECRET = "DRYSECRET42"
TINY = "{image_size: 32, ngf: 8, ndf: 8, norm: instance, n_epochs: 1, n_epochs_decay: 1}"


def dry(main, args, capsys) -> dict:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--dry-run"])
    assert exit_.value.code == 0, capsys.readouterr().err[-2000:]
    return json.loads(capsys.readouterr().out)


def test_config_show_is_the_resolved_config_with_secrets_redacted(tmp_path, capsys, monkeypatch):
    from pipelines import config

    monkeypatch.chdir(tmp_path)  # --base-dir moves the job to REPO: the test's directory and base are restored after
    monkeypatch.setattr(config, "_base_dir", None)
    assert config_job.main(["--base-dir", REPO, "--config", "jobs/configs/quickstart.yaml", "--set",
                            "train.epochs=7", "--set", f"mlflow.tracking_uri=http://me:{SECRET}@mlflow:5000"]) == 0
    out = capsys.readouterr().out
    cfg = json.loads(out)["config"]
    assert cfg["train"]["epochs"] == 7 and cfg["train"]["num_to_keep"] == 2  # defaults filled in
    assert cfg["shard"]["source"] == f"{REPO}/data/demo/facades"  # paths absolute
    assert SECRET not in out and cfg["mlflow"]["tracking_uri"] == "http://***@mlflow:5000"


def test_shard_and_train_dry_runs_plan_without_doing(ray_cluster, demo_root, tmp_path, capsys):
    out = tmp_path / "shards"
    sets = ["--set", f"shard.source={demo_root}/edges2photo", "--set", f"shard.output={out}", "--set",
            "shard.load_size=36", "--set", f"train.dataset={out}", "--set", f"train.storage_path={tmp_path}/runs",
            "--set", "train.batch_size=2", "--set", "train.num_workers=2", "--set", f"model.args={TINY}"]
    args = ["--config", "jobs/configs/quickstart.yaml", *sets]
    plan = dry(shard_job.main, args, capsys)["plan"]
    assert plan["action"] == "write the shards, then the manifest" and plan["files"]["train"] > 0
    assert not out.exists()  # nothing written
    assert dry(train_job.main, args, capsys)["plan"]["action"].startswith("train once the dataset is sharded")

    assert shard_job.main(args) == 0
    assert dry(shard_job.main, args, capsys)["plan"]["action"] == "nothing: the dataset there is up to date"
    plan = dry(train_job.main, args, capsys)["plan"]
    name, _, manifest = plan_run(**load_config("jobs/configs/quickstart.yaml", sets[1::2]).train_args())
    assert plan["run_name"] == name and plan["action"] == "train from scratch"
    assert plan["steps_per_epoch"] == manifest.splits["train"].samples // 2 // 2  # per worker, batch 2
    assert plan["epochs"] == 2 and plan["total_steps"] == 2 * plan["steps_per_epoch"]
    assert plan["resources"]["num_workers"] == 2 and plan["global_batch_size"] == 4


def test_a_dry_run_starts_no_ray(tmp_path):
    """A cluster address nothing listens on: a dry run that tried to connect would fail."""
    r = subprocess.run([sys.executable, "-m", "jobs.nightly", "--config", "jobs/configs/quickstart.yaml", "--set",
                        f"shard.source={tmp_path}", "--set", "ray.address=127.0.0.1:1", "--dry-run"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    # an empty source folder: the plan says so, as the shard step would, and exits 2 — without touching Ray
    assert r.returncode == 2 and f"no files found under {tmp_path}" in r.stderr, r.stderr[-2000:]
    assert json.loads(r.stdout)["status"] == "failed"
