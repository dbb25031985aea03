"""The scheduled nightly as users run it: the cron entry `i2i schedule print` emits, fired twice for one date against
a real `ray job submit` head; then the morning after: a re-run resumes, a re-run under a changed config trains anew,
nothing written holds the credentials the URIs carried, the champion serves, the gate holds."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from jobs import translate as translate_job
from pipelines import storage
from pipelines.nightly import load_schedule, run_schedule
from tests.conftest import BUCKET, REPO, ray_cli, s3_client, submit, upload_dir

DATE = "2031-09-10"  # the night the test plays: fixed, so crossing midnight changes nothing
SECRET = "TESTSECRET123"  # in the URIs the schedule is given; nothing written may hold it

TINY_P2P = {"shard.load_size": 36, "shard.num_shards": 2, "train.crop_size": 32, "train.num_workers": 1,
            "model.args": {"image_size": 32, "ngf": 8, "ndf": 8, "norm": "instance", "n_epochs": 1,
                           "n_epochs_decay": 0}}


def summary_of(stdout: str) -> dict:
    """The job's JSON summary inside `ray job submit`'s output (the job's log lines come before, Ray's after)."""
    return json.JSONDecoder().raw_decode(stdout[stdout.index('{\n "status"'):])[0]


def test_double_triggered_nightly_trains_each_model_once_then_champion_serves_and_gate_holds(
        ray_head, ray_cluster, mlflow_server, demo_root, tmp_path, capsys, caplog, monkeypatch):
    import mlflow

    tag = uuid.uuid4().hex[:8]  # this test's own names: nothing shared with other tests on the session's servers
    prefix, edges_name = f"sched-{tag}", f"i2i-pix2pix-edges2photo-{tag}"
    upload_dir(f"{demo_root}/edges2photo", BUCKET, f"{prefix}/src/edges2photo")
    keyed = f"s3://testing:{SECRET}@{BUCKET}/{prefix}"  # URIs that carry credentials: used, never written
    late = tmp_path / "late"  # the second model's data has not arrived yet: its shard step fails tonight
    schedule = {
        "state": f"{keyed}/state",
        "set": {"mlflow.tracking_uri": mlflow_server.replace("http://", f"http://i2i:{SECRET}@"),
                "mlflow.experiment": prefix, "train.storage_path": f"s3://{BUCKET}/{prefix}/runs",
                "evaluate.batch_size": 8, **TINY_P2P},
        "models": [
            {"name": "p2p-edges", "config": f"{REPO}/jobs/configs/quickstart.yaml", "promote_metric": "l1",
             "set": {"shard.source": f"{keyed}/src/edges2photo", "shard.output": f"{keyed}/edges2photo",
                     "shard.name": f"edges2photo-{tag}"}},
            {"name": "p2p-late", "config": f"{REPO}/jobs/configs/quickstart.yaml", "promote_metric": "l1",
             "set": {"shard.source": str(late), "shard.output": str(tmp_path / "shards-late"),
                     "shard.name": f"late-{tag}"}},
        ],
    }
    (tmp_path / "nightly.yaml").write_text(yaml.safe_dump(schedule))
    printed = subprocess.run([sys.executable, "-m", "jobs.schedule", "--schedule", str(tmp_path / "nightly.yaml"),
                              "--address", ray_head], cwd=REPO, capture_output=True, text=True, check=True).stdout
    cron = printed.splitlines()[-1].split(" ", 5)[5].replace("\\%", "%")  # what cron runs …
    assert "d=$(date +%F)" in cron
    fire = cron.replace("d=$(date +%F)", f"d={DATE}")  # … on the night of DATE (the wall clock plays no part)

    first = subprocess.Popen(["sh", "-c", fire], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while ray_cli(ray_head, "status", f"nightly-{DATE}").returncode != 0:  # until the Jobs API has the job
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(2)
    second = subprocess.run(["sh", "-c", fire], capture_output=True, text=True, timeout=300)
    assert second.returncode != 0 and "already exists" in second.stdout + second.stderr  # the double trigger
    out, err = first.communicate(timeout=900)
    assert first.returncode != 0, out[-3000:] + err[-3000:]  # one model failed → the job fails …
    summary = summary_of(out)
    by_model = {r["model"]: r for r in summary["models"]}
    assert summary["failed"] == ["p2p-late"] and by_model["p2p-late"]["reason"].startswith("shard: no files found")
    edges = by_model["p2p-edges"]  # … but the other model trained, was registered and promoted
    assert (edges["outcome"], edges["reason"], edges["registered"]) == ("promoted", "no champion yet", edges_name)
    assert edges["dataset_version"] == DATE and re.fullmatch(f"p2p-edges-{DATE}-[0-9a-f]{{8}}", edges["run"])

    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    versions = client.search_model_versions(f"name='{edges_name}'")
    assert len(versions) == 1  # trained once
    tags = versions[0].tags
    assert (tags["i2i.nightly_date"], tags["i2i.dataset_version"], tags["i2i.run_name"]) == (DATE, DATE,
                                                                                           edges["run"])
    run = client.get_run(versions[0].run_id)
    edges_run_id = run.info.run_id
    assert run.info.run_name == edges["run"] and run.data.tags["i2i.nightly_date"] == DATE

    # the late data arrives; a deliberate re-run of the date (another submission id) skips every step that
    # succeeded and runs the rest
    shutil.copytree(f"{demo_root}/edges2photo", late)
    again = submit(ray_head, "python", "-m", "jobs.nightly", "--base-dir", REPO, "--schedule",
                   str(tmp_path / "nightly.yaml"), "--date", DATE, options=("--submission-id",
                                                                         f"nightly-{DATE}-{tag}-rerun"))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    rows = {r["model"]: r for r in summary_of(again.stdout)["models"]}
    assert rows["p2p-edges"]["steps_skipped"] == ["shard", "train", "evaluate", "register", "promote"]
    assert rows["p2p-edges"]["version"] == edges["version"]
    assert rows["p2p-late"]["outcome"] == "promoted" and rows["p2p-late"]["steps_skipped"] == []
    assert len(client.search_model_versions(f"name='{edges_name}'")) == 1
    assert len(client.search_model_versions(f"name='i2i-pix2pix-late-{tag}'")) == 1
    # the date's summary, with every step's result, is kept in the state folder
    stored = storage.read_json(f"{keyed}/state/{DATE}/summary.json")
    assert stored["status"] == "succeeded" and stored["details"]["p2p-late"]["promote"]["decision"] == "promoted"
    assert {"l1", "psnr", "ssim", "fid", "kid"} <= set(stored["details"]["p2p-edges"]["evaluate"]["metrics"])
    grid = stored["details"]["p2p-edges"]["sample_grid"]  # the last sample grid the training run logged
    assert grid.startswith(f"runs:/{edges_run_id}/images/samples+step+0+") and grid.endswith(".png")

    # the dry run of the date now: every step of p2p-edges would be skipped, the run is the one trained
    from jobs import nightly as nightly_job
    from pipelines import config

    capsys.readouterr()
    monkeypatch.chdir(REPO)  # --base-dir moves the process: the directory and the base dir are restored after
    monkeypatch.setattr(config, "_base_dir", None)
    with pytest.raises(SystemExit) as exit_:
        nightly_job.main(["--base-dir", REPO, "--schedule", str(tmp_path / "nightly.yaml"), "--date", DATE,
                          "--dry-run"])
    printed_plan = capsys.readouterr().out
    assert exit_.value.code == 0 and SECRET not in printed_plan
    plan = json.loads(printed_plan)["models"]["p2p-edges"]["plan"]
    assert plan["steps_skipped"] == ["shard", "train", "evaluate", "register", "promote"]
    assert plan["train"]["run_name"] == edges["run"] and plan["train"]["action"] == "nothing: this run has finished"
    assert plan["shard"]["action"] == "nothing: the dataset there is up to date"

    config_changed_trains_a_new_run(tmp_path / "nightly.yaml", edges, client, edges_name, caplog)
    secret_never_written(prefix, client, [out, err, second.stdout, second.stderr, again.stdout, again.stderr])
    champion_serves(mlflow_server, demo_root, tmp_path, capsys, edges_name, prefix)
    gate_holds(client, mlflow_server, f"s3://{BUCKET}/{prefix}/edges2photo/{DATE}", tmp_path, edges_name, prefix)


def config_changed_trains_a_new_run(schedule_file, edges: dict, client, name: str, caplog) -> None:
    """The date re-run under a changed config: a new training run (named by the new config's hash), never the old
    run's checkpoints or markers, and the run says why."""
    caplog.clear()
    changed = run_schedule(load_schedule(str(schedule_file)), DATE, overrides=["train.seed=1"], only=["p2p-edges"])
    row = changed["models"][0]
    assert row["outcome"] != "failed", row
    assert row["run"] != edges["run"] and row["run"].startswith(f"p2p-edges-{DATE}-")
    assert row["steps_skipped"] == [] and row["config_before"] == [edges["config"]]
    assert any("config changed since this date last ran" in r.getMessage() and row["run"] in r.getMessage()
               for r in caplog.records)
    new = client.get_run(client.get_model_version(name, row["version"]).run_id)
    assert new.info.run_name == row["run"] and new.data.params["train.seed"] == "1"
    assert new.data.metrics["start_epoch"] == 0  # trained from scratch, not resumed from the old run
    assert len(client.search_model_versions(f"name='{name}'")) == 2


def secret_never_written(prefix: str, client, outputs: list[str]) -> None:
    """Everything the runs wrote — job output, markers, summaries, manifests, checkpoints, MLflow params, tags and
    artifacts — holds no credential of the URIs they were given."""
    assert not [o for o in outputs if SECRET in o]
    s3 = s3_client()
    experiment = client.get_experiment_by_name(prefix).experiment_id
    keys = [o["Key"] for p in (f"{prefix}/state", f"{prefix}/edges2photo", f"{prefix}/runs",
                               f"mlflow-artifacts/{experiment}")
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=p)
            for o in page.get("Contents", [])]
    assert any(k.endswith("manifest.json") for k in keys) and any(k.endswith("summary.json") for k in keys)
    assert [k for k in keys if SECRET.encode() in s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()] == []
    runs = client.search_runs([experiment])
    assert f"s3://***@{BUCKET}/{prefix}/src/edges2photo" in {r.data.params.get("shard.source") for r in runs}
    mlflow_text = json.dumps([[r.data.params, r.data.tags] for r in runs] + [
        v.tags for r in client.search_registered_models(f"name LIKE '%{prefix[6:]}'")
        for v in client.search_model_versions(f"name='{r.name}'")])
    assert SECRET not in mlflow_text


def champion_serves(mlflow_server: str, demo_root: str, tmp_path, capsys, name: str, prefix: str) -> None:
    """`i2i translate` of a folder with `@champion` into object storage: the Ray Data replicas (fresh processes)
    load the champion's version from the registry."""
    import mlflow

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(os.listdir(f"{demo_root}/edges2photo/val"))[:3]:
        shutil.copy(f"{demo_root}/edges2photo/val/{f}", src / f)
    capsys.readouterr()
    out = f"s3://{BUCKET}/{prefix}/translated"
    assert translate_job.main(["--set", f"mlflow.tracking_uri={mlflow_server}", "--model",
                               f"models:/{name}@champion", str(src), out]) == 0
    summary = json.loads(capsys.readouterr().out)
    champion = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server).get_model_version_by_alias(
        name, "champion").version
    assert summary["written"] == 3 and summary["model_version"] == f"models:/{name}/{champion}"
    assert len([f for f in storage.list_files(out) if f.relpath.endswith(".png")]) == 3


def gate_holds(client, mlflow_server: str, shards: str, tmp_path, name: str, prefix: str) -> None:
    """A deliberately worse model (outputs all black) is registered but not promoted."""
    import torch

    from i2i_models.registry import get_model
    from pipelines.evaluate import EvaluateConfig, evaluate_model
    from pipelines.promote import PromoteConfig, run_promote
    from pipelines.register import run_register
    from pipelines.tracking import MlflowConfig

    tracking = MlflowConfig(tracking_uri=mlflow_server, experiment=prefix)
    worse = get_model("pix2pix", image_size=32, ngf=8, ndf=8, norm="instance", n_epochs=1, n_epochs_decay=0)
    with torch.no_grad():
        worse.nets["G"].model.model[3].bias.fill_(-10.0)  # outermost transposed conv → tanh → -1
    worse.save_pretrained(str(tmp_path / "worse"))
    eval_cfg = EvaluateConfig(feature_net="tiny", batch_size=8)
    evaluation = evaluate_model(worse, shards, eval_cfg.model_copy(update={"split": "val"}))
    run_id = client.create_run(client.get_experiment_by_name(prefix).experiment_id).info.run_id
    reg = run_register(checkpoint=str(tmp_path / "worse"), model="pix2pix", dataset=name.removeprefix("i2i-pix2pix-"),
                       mlflow=tracking, run_id=run_id, eval_result=evaluation)
    assert reg.name == name
    champion_before = client.get_model_version_by_alias(name, "champion").version
    decision = run_promote(name=name, mlflow=tracking, cfg=PromoteConfig(metric="l1"), eval_cfg=eval_cfg)
    assert decision.decision == "kept" and decision.challenger_version == reg.version
    assert decision.challenger_score > decision.champion_score
    assert client.get_model_version_by_alias(name, "champion").version == champion_before
    tags = client.get_model_version(name, reg.version).tags
    assert tags["promotion.decision"] == "kept" and "l1" in tags["promotion.reason"]


def test_shipped_schedule_runs_from_its_printed_cron_command(ray_head, demo_root, tmp_path):
    """`jobs/configs/nightly.yaml` as shipped (relative data paths), fired through the exact command `i2i schedule
    print` emits for a checkout: the job runs in Ray's copy of the working dir, yet shards the checkout's data into
    the checkout's state folder. (The run is stopped once its first step has succeeded: training is tested above.)"""
    checkout = tmp_path / "checkout"  # a user's checkout: the project's files and the demo data in data/demo
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".venv", ".git", "data", "__pycache__", "*.egg-info",
                                                                  ".pytest_cache", "mlruns"))
    shutil.copytree(demo_root, checkout / "data" / "demo")
    printed = subprocess.run([sys.executable, "-m", "jobs.schedule", "--address", ray_head], cwd=checkout,
                             capture_output=True, text=True, check=True).stdout
    cron = printed.splitlines()[-1].split(" ", 5)[5].replace("\\%", "%")
    assert cron.startswith(f"cd {checkout} && ") and "--schedule jobs/configs/nightly.yaml" in cron
    date = "2031-09-11"
    job = subprocess.Popen(["sh", "-c", cron.replace("d=$(date +%F)", f"d={date}")], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    marker = checkout / "data" / "nightly" / date / "pix2pix-facades" / "shard.json"
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert job.poll() is None, job.communicate()[0][-4000:]  # the job ended before its shard step succeeded
            assert time.time() < deadline, "the shard step did not finish in 240 s"
            time.sleep(2)
    finally:
        ray_cli(ray_head, "stop", f"nightly-{date}")
        job.communicate(timeout=120)
    shard = json.loads(marker.read_text())["result"]
    assert shard["output"] == str(checkout / "data" / "nightly" / "shards" / "facades" / date)
    assert shard["samples"]["train"] > 0
    assert (checkout / "data" / "nightly" / "shards" / "facades" / date / "manifest.json").exists()


def test_a_job_run_by_a_python_without_the_project_says_how_to_start_the_head():
    """A head started from `.venv/bin/ray` without the venv on PATH runs entrypoints with the system `python`:
    the job fails at once, saying so (here: the project's Python without its site-packages)."""
    out = subprocess.run([sys.executable, "-S", "-m", "jobs.nightly", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "cannot run i2i jobs: it lacks" in out.stderr and "ray start --head" in out.stderr


def test_base_dir_must_exist_where_the_job_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "jobs.nightly", "--base-dir", str(tmp_path / "nope"), "--config",
                          "jobs/configs/quickstart.yaml"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and f"--base-dir {tmp_path / 'nope'}: no such folder" in out.stderr
