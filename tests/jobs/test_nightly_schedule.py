"""The scheduled nightly as users run it: the cron entry `i2i schedule print` emits, fired twice for one date against
a real `ray job submit` head; then the morning after: the champion serves, the gate holds, a re-run resumes."""

import json
import os
import shutil
import subprocess
import sys
import time

import yaml

from jobs import translate as translate_job
from pipelines import storage
from tests.conftest import BUCKET, REPO, ray_cli, submit

TINY_P2P = {"shard.load_size": 36, "shard.num_shards": 2, "train.crop_size": 32, "train.num_workers": 1,
            "model.args": {"image_size": 32, "ngf": 8, "ndf": 8, "norm": "instance", "n_epochs": 1,
                           "n_epochs_decay": 0}}


def summary_of(stdout: str) -> dict:
    """The job's JSON summary inside `ray job submit`'s output (the job's log lines come before, Ray's after)."""
    return json.JSONDecoder().raw_decode(stdout[stdout.index('{\n "status"'):])[0]


def test_double_triggered_nightly_trains_each_model_once_then_champion_serves_and_gate_holds(
        ray_head, ray_cluster, mlflow_server, demo_root, tmp_path, capsys):
    import mlflow

    late = tmp_path / "late"  # the second model's data has not arrived yet: its shard step fails tonight
    schedule = {
        "state": f"s3://{BUCKET}/sched/state",
        "set": {"mlflow.tracking_uri": mlflow_server, "mlflow.experiment": "sched",
                "train.storage_path": f"s3://{BUCKET}/sched/runs", "evaluate.batch_size": 8, **TINY_P2P},
        "models": [
            {"name": "p2p-edges", "config": f"{REPO}/jobs/configs/quickstart.yaml", "promote_metric": "l1",
             "set": {"shard.source": f"{demo_root}/edges2photo", "shard.output": f"s3://{BUCKET}/sched/edges2photo"}},
            {"name": "p2p-late", "config": f"{REPO}/jobs/configs/quickstart.yaml", "promote_metric": "l1",
             "set": {"shard.source": str(late), "shard.output": str(tmp_path / "shards-late")}},
        ],
    }
    (tmp_path / "nightly.yaml").write_text(yaml.safe_dump(schedule))
    printed = subprocess.run([sys.executable, "-m", "jobs.schedule", "--schedule", str(tmp_path / "nightly.yaml"),
                              "--address", ray_head], cwd=REPO, capture_output=True, text=True, check=True).stdout
    fire = printed.splitlines()[-1].split(" ", 5)[5].replace("\\%", "%")  # what cron runs
    date = subprocess.run(["date", "+%F"], capture_output=True, text=True).stdout.strip()

    first = subprocess.Popen(["sh", "-c", fire], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while ray_cli(ray_head, "status", f"nightly-{date}").returncode != 0:  # until the Jobs API has the job
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
    assert (edges["outcome"], edges["reason"], edges["registered"]) == ("promoted", "no champion yet",
                                                                        "i2i-pix2pix-edges2photo")
    assert edges["dataset_version"] == date and edges["run"] == f"p2p-edges-{date}"

    client = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server)
    versions = client.search_model_versions("name='i2i-pix2pix-edges2photo'")
    assert len(versions) == 1  # trained once
    tags = versions[0].tags
    assert (tags["i2i.nightly_date"], tags["i2i.dataset_version"], tags["i2i.run_name"]) == (
        date, date, f"p2p-edges-{date}")
    run = client.get_run(versions[0].run_id)
    assert run.info.run_name == f"p2p-edges-{date}" and run.data.tags["i2i.nightly_date"] == date

    # the late data arrives; a deliberate re-run of the date (another submission id) skips every step that
    # succeeded and runs the rest
    shutil.copytree(f"{demo_root}/edges2photo", late)
    again = submit(ray_head, "python", "-m", "jobs.nightly", "--schedule", str(tmp_path / "nightly.yaml"), "--date",
                   date, options=("--submission-id", f"nightly-{date}-rerun"))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    rows = {r["model"]: r for r in summary_of(again.stdout)["models"]}
    assert rows["p2p-edges"]["steps_skipped"] == ["shard", "train", "evaluate", "register", "promote"]
    assert rows["p2p-edges"]["version"] == edges["version"]
    assert rows["p2p-late"]["outcome"] == "promoted" and rows["p2p-late"]["steps_skipped"] == []
    assert len(client.search_model_versions("name='i2i-pix2pix-edges2photo'")) == 1
    assert len(client.search_model_versions("name='i2i-pix2pix-late'")) == 1
    # the date's summary, with every step's result, is kept in the state folder
    stored = json.loads(storage.read_bytes(f"s3://{BUCKET}/sched/state/{date}/summary.json"))
    assert stored["status"] == "succeeded" and stored["details"]["p2p-late"]["promote"]["decision"] == "promoted"
    assert {"l1", "psnr", "ssim", "fid", "kid"} <= set(stored["details"]["p2p-edges"]["evaluate"]["metrics"])

    champion_serves(mlflow_server, demo_root, tmp_path, capsys)
    gate_holds(client, mlflow_server, f"s3://{BUCKET}/sched/edges2photo/{date}", tmp_path)


def champion_serves(mlflow_server: str, demo_root: str, tmp_path, capsys) -> None:
    """`i2i translate` of a folder with `@champion` into object storage: the Ray Data replicas (fresh processes)
    load the champion's version from the registry."""
    import mlflow

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(os.listdir(f"{demo_root}/edges2photo/val"))[:3]:
        shutil.copy(f"{demo_root}/edges2photo/val/{f}", src / f)
    capsys.readouterr()
    out = f"s3://{BUCKET}/sched/translated"
    assert translate_job.main(["--set", f"mlflow.tracking_uri={mlflow_server}", "--model",
                               "models:/i2i-pix2pix-edges2photo@champion", str(src), out]) == 0
    summary = json.loads(capsys.readouterr().out)
    champion = mlflow.MlflowClient(mlflow_server, registry_uri=mlflow_server).get_model_version_by_alias(
        "i2i-pix2pix-edges2photo", "champion").version
    assert summary["written"] == 3 and summary["model_version"] == f"models:/i2i-pix2pix-edges2photo/{champion}"
    assert len([f for f in storage.list_files(out) if f.relpath.endswith(".png")]) == 3


def gate_holds(client, mlflow_server: str, shards: str, tmp_path) -> None:
    """A deliberately worse model (outputs all black) is registered but not promoted."""
    import torch

    from i2i_models.registry import get_model
    from pipelines.evaluate import EvaluateConfig, evaluate_model
    from pipelines.promote import PromoteConfig, run_promote
    from pipelines.register import run_register
    from pipelines.tracking import MlflowConfig

    name = "i2i-pix2pix-edges2photo"
    tracking = MlflowConfig(tracking_uri=mlflow_server, experiment="sched")
    worse = get_model("pix2pix", image_size=32, ngf=8, ndf=8, norm="instance", n_epochs=1, n_epochs_decay=0)
    with torch.no_grad():
        worse.nets["G"].model.model[3].bias.fill_(-10.0)  # outermost transposed conv → tanh → -1
    worse.save_pretrained(str(tmp_path / "worse"))
    eval_cfg = EvaluateConfig(feature_net="tiny", batch_size=8)
    evaluation = evaluate_model(worse, shards, eval_cfg.model_copy(update={"split": "val"}))
    run_id = client.create_run(client.get_experiment_by_name("sched").experiment_id).info.run_id
    reg = run_register(checkpoint=str(tmp_path / "worse"), model="pix2pix", dataset="edges2photo", mlflow=tracking,
                       run_id=run_id, eval_result=evaluation)
    champion_before = client.get_model_version_by_alias(name, "champion").version
    decision = run_promote(name=name, mlflow=tracking, cfg=PromoteConfig(metric="l1"), eval_cfg=eval_cfg)
    assert decision.decision == "kept" and decision.challenger_version == reg.version
    assert decision.challenger_score > decision.champion_score
    assert client.get_model_version_by_alias(name, "champion").version == champion_before
    tags = client.get_model_version(name, reg.version).tags
    assert tags["promotion.decision"] == "kept" and "l1" in tags["promotion.reason"]
