"""Credentials in URIs (user-info ``s3://KEY:SECRET@bucket/x``, ``http://user:password@mlflow``, secret query values)
are used, but never written: not to manifests, success markers, summaries, MLflow params and tags, nor the job's
output and error messages. Checked by grepping everything a run wrote for the test secret. Cheap: nothing trains
(the scheduled model stops when its run is named: a CycleGAN cannot train on the paired shards it just made)."""

import json
import os
import subprocess
import sys
import uuid

import yaml

from jobs import _run
from pipelines import storage, tracking
from pipelines.errors import StorageError
from pipelines.nightly import load_schedule, model_config, run_schedule
from tests.conftest import BUCKET, REPO, s3_client, upload_dir

SECRET = "TESTSECRET123"
DATE = "2031-07-08"


def test_redaction_of_uris_in_text_values_and_messages():
    assert storage.redact_uri(f"s3://AKID:{SECRET}@bucket/x") == "s3://***@bucket/x"
    assert storage.redact_uri(f"https://s3/x?X-Amz-Signature={SECRET}&region=eu") == \
        "https://s3/x?X-Amz-Signature=***&region=eu"
    nested = {"a": [f"see http://u:{SECRET}@mlflow:5000/x", 3], "b": {"c": f"gs://b/x?token={SECRET}"}}
    assert SECRET not in json.dumps(storage.redact_values(nested))
    assert SECRET not in str(StorageError(f"cannot read s3://k:{SECRET}@b/x"))
    # a reference that is read back (a version's eval.dataset) stays usable with the environment's keys
    assert storage.strip_credentials(f"s3://AKID:{SECRET}@bucket/x?region=eu&token={SECRET}") == \
        "s3://bucket/x?region=eu"
    assert storage.strip_credentials("s3://***@bucket/x") == "s3://bucket/x"
    for clean in ("sqlite:////abs/mlflow.db", "file:///abs/x", "/abs/x", "s3://bucket/x?region=eu"):  # as given:
        assert storage.redact_uri(clean) == storage.strip_credentials(clean) == clean  # the printed mlflow ui works
    params = tracking.flatten({"shard": {"source": f"s3://k:{SECRET}@b/src"}, "n": 1})
    assert params == {"shard.source": "s3://***@b/src", "n": "1"}


def test_the_job_edge_redacts_an_unexpected_error_and_everything_printed(capfd):
    def step():
        print(f"reading s3://k:{SECRET}@b/x", flush=True)
        raise RuntimeError(f"boom at s3://k:{SECRET}@b/x")

    assert _run.run(step) == 1  # a bug still exits 1 with its traceback …
    out, err = capfd.readouterr()
    assert "RuntimeError: boom at s3://***@b/x" in err and "reading s3://***@b/x" in err  # stdout: the summary
    assert SECRET not in out + err  # … without the credentials


def grep_s3(prefix: str) -> list[str]:
    """Keys under ``prefix`` in the test bucket whose content holds the secret."""
    client, hits = s3_client(), []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            if SECRET.encode() in client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read():
                hits.append(obj["Key"])
    return hits


def grep_files(root) -> list[str]:
    hits = []
    for folder, _, files in os.walk(root):
        for f in files:
            with open(os.path.join(folder, f), "rb") as fh:
                if SECRET.encode() in fh.read():
                    hits.append(os.path.join(folder, f))
    return hits


def test_credentials_in_uris_are_used_but_never_written(ray_cluster, s3_endpoint, mlflow_server, demo_root,
                                                        tmp_path):
    prefix = f"redact-{uuid.uuid4().hex[:8]}"
    upload_dir(f"{demo_root}/edges2photo", BUCKET, f"{prefix}/src")
    keyed = f"s3://testing:{SECRET}@{BUCKET}/{prefix}"  # moto takes any secret: the URI's own keys are used
    mlflow_keyed = mlflow_server.replace("http://", f"http://i2i:{SECRET}@")  # basic auth in the URI
    inputs, state = tmp_path / "in", tmp_path / "state"
    inputs.mkdir()
    (inputs / "model.yaml").write_text(yaml.safe_dump({
        "shard": {"source": f"{keyed}/src", "output": f"{keyed}/shards", "layout": "aligned", "load_size": 36,
                  "num_shards": 1},
        "model": {"name": "cyclegan", "args": {"image_size": 32, "ngf": 8, "ndf": 8}},
        "train": {"dataset": "set-by-the-nightly", "storage_path": str(tmp_path / "runs")},
        "mlflow": {"tracking_uri": mlflow_keyed, "experiment": prefix}}))
    (inputs / "nightly.yaml").write_text(yaml.safe_dump({"state": str(state), "models": [
        {"name": "keyed", "config": "model.yaml"},
        {"name": "absent", "config": "model.yaml", "set": {"shard.source": f"{keyed}/absent"}}]}))

    # the job, as a process of its own on the session's Ray cluster: its stdout and stderr are what it printed
    job = subprocess.run([sys.executable, "-m", "jobs.nightly", "--schedule", str(inputs / "nightly.yaml"), "--date",
                          DATE], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RAY_ADDRESS": ray_cluster})
    assert job.returncode == 1, job.stdout[-3000:] + job.stderr[-3000:]
    rows = {r["model"]: r for r in json.loads(job.stdout)["models"]}
    # the keyed URIs worked: sharded through them, then stopped where a CycleGAN meets paired data …
    assert "trains on unpaired data" in rows["keyed"]["reason"], rows
    # … and the missing source is named, redacted
    assert f"no files found under s3://***@{BUCKET}/{prefix}/absent" in rows["absent"]["reason"]
    manifest = storage.read_json(f"{keyed}/shards/{DATE}/manifest.json")
    assert manifest["source"]["uri"] == f"s3://***@{BUCKET}/{prefix}/src"

    # the date's re-run reads the shard step's (redacted) marker, and still trains from the keyed URI
    again = run_schedule(load_schedule(str(inputs / "nightly.yaml")), DATE, only=["keyed"])
    assert again["models"][0]["steps_skipped"] == ["shard"] and "unpaired" in again["models"][0]["reason"]

    # MLflow: the run's params and tags, as training logs them (no training needed for that)
    from pipelines import train as train_mod

    cfg = model_config(load_schedule(str(inputs / "nightly.yaml")), load_schedule(
        str(inputs / "nightly.yaml")).models[0]).with_values({"model.name": "pix2pix",
                                                              "train.dataset": f"{keyed}/shards/{DATE}"})
    _, _, m = train_mod.plan_run(**cfg.train_args())
    run_id = tracking.run_for(cfg.mlflow, f"{prefix}-run", {"i2i.source": cfg.shard.source})
    train_mod._log_params(cfg.mlflow, run_id, **cfg.train_args(), resolved_config=cfg.model_dump(), manifest=m)
    run = tracking.client(tracking.MlflowConfig(tracking_uri=mlflow_server)).get_run(run_id)
    assert run.data.params["shard.source"] == f"s3://***@{BUCKET}/{prefix}/src"
    assert run.data.params["mlflow.tracking_uri"].startswith("http://***@127.0.0.1:")
    assert run.data.tags["i2i.source"] == f"s3://***@{BUCKET}/{prefix}/src"

    assert SECRET not in job.stdout + job.stderr
    assert grep_files(state) == [] and grep_files(tmp_path / "runs") == []  # markers, summary, lease
    assert grep_s3(f"{prefix}/shards") == []  # manifests (and shards)
    assert SECRET not in json.dumps({"params": run.data.params, "tags": run.data.tags})
    assert run.inputs.dataset_inputs and SECRET not in json.dumps([d.dataset.source for d in run.inputs.dataset_inputs])
    assert SECRET not in json.dumps(again)
