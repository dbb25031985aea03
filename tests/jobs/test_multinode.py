"""Multi-node, shown: a head and a worker node (separate `ray start` processes on 127.0.0.1, stopped by PID), a
CycleGAN training job submitted with `ray job submit` whose two Ray Train workers land on different nodes (as the
run itself reports), reading unpaired shards (the larger domain split between them, the other read whole by each)
from the test S3 server and checkpointing there."""

import contextlib
import json
import shutil
import urllib.request

import pytest
import torch

from pipelines import storage
from pipelines.metrics import TinyFeatures
from pipelines.register import load_model
from pipelines.shard import ShardConfig, run_shard
from tests.conftest import BUCKET, kid_all_samples, ray_start, server, shard_domain_images, submit


def alive_nodes(dashboard: str) -> list[dict]:
    with urllib.request.urlopen(f"{dashboard}/api/v0/nodes?limit=100", timeout=5) as r:
        nodes = json.load(r)["data"]["result"]["result"]
    return [n for n in nodes if n["state"] == "ALIVE"]


@pytest.fixture(scope="module")
def two_nodes(s3_endpoint, tmp_path_factory):
    """(dashboard address, {node id: is head}) of a 2-node cluster with one CPU per node."""
    temp = tmp_path_factory.mktemp("ray2")
    # Ray refuses a second node on this machine type unless told the cluster may span "hosts" here; every node
    # binds 127.0.0.1 (the recipe's single-node setting, =0, only picks that address implicitly)
    multi = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
    cmd, env, ports = ray_start(temp, num_cpus=1, object_store_memory=300_000_000)
    dashboard = f"http://127.0.0.1:{ports['dashboard-port']}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(server([*cmd, "--node-ip-address=127.0.0.1"], env={**env, **multi},
                                   ready_url=f"{dashboard}/api/version", log_path=temp / "head.log", timeout=90))
        wcmd, wenv, _ = ray_start(temp, head=f"127.0.0.1:{ports['port']}", num_cpus=1,
                                  object_store_memory=300_000_000)
        stack.enter_context(server([*wcmd, "--node-ip-address=127.0.0.1"], env={**wenv, **multi},
                                   ready=lambda: len(alive_nodes(dashboard)) == 2, log_path=temp / "worker.log",
                                   timeout=90))
        yield dashboard, {n["node_id"]: n["is_head_node"] for n in alive_nodes(dashboard)}


def test_two_workers_train_on_two_nodes_and_checkpoint_to_s3(two_nodes, ray_cluster, mlflow_server, demo_root,
                                                             tmp_path):
    import mlflow

    dashboard, nodes = two_nodes
    shards = f"s3://{BUCKET}/multinode/shards"
    src = tmp_path / "photo2winter"  # 2 + 2 held-out images: one of each per worker, none dropped by the equal split
    shutil.copytree(f"{demo_root}/photo2winter", src)
    for folder in ("testA", "testB"):
        for extra in sorted((src / folder).iterdir())[2:]:
            extra.unlink()
    run_shard(ShardConfig(source=str(src), output=shards, load_size=32, num_shards=2))
    runs = f"s3://{BUCKET}/multinode/runs"
    sets = {"train.dataset": shards, "train.storage_path": runs, "train.num_workers": 2, "train.cpus_per_worker": 0.5,
            "train.placement_strategy": "STRICT_SPREAD", "train.crop_size": 32, "train.epochs": 1,
            "train.shuffle_buffer": 8, "train.run_name": "multinode", "mlflow.tracking_uri": mlflow_server,
            "mlflow.experiment": "multinode",
            "model.args": "{image_size: 32, ngf: 8, ndf: 8, n_blocks: 2, n_epochs: 1, n_epochs_decay: 1}"}
    r = submit(dashboard, "python", "-m", "jobs.train", "--config", "jobs/configs/cyclegan_demo.yaml",
               *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    summary = json.JSONDecoder().raw_decode(r.stdout[r.stdout.index('{\n "status"'):])[0]

    placed = summary["metrics"]["worker_nodes"].split(",")  # node of rank 0, rank 1: the run's own report
    assert len(placed) == 2 and set(placed) == set(nodes)  # one worker on the head, one on the worker node
    assert summary["metrics"]["num_nodes"] == 2
    assert summary["checkpoint"].startswith(f"{runs}/multinode/checkpoint_")  # rank 0 wrote it to S3
    assert "train_state.pt" in {f.relpath for f in storage.list_files(summary["checkpoint"])}
    metrics = summary["metrics"]
    trained = load_model(summary["checkpoint"])  # downloaded from S3
    assert all(f"loss_{t.name}" in metrics for t in trained.loss_terms)
    # validation gathered both ranks' halves: val_kid (and the objective) is the KID of the final checkpoint's a→b
    # translations of every held-out A image against every held-out B image, recomputed here from S3
    real_a, real_b = (shard_domain_images(shards, "test", d) for d in ("A", "B"))
    expected = kid_all_samples(real_b, trained.translate(real_a, direction="a2b"), TinyFeatures())
    assert metrics["val_kid"] == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert metrics["objective"] == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert torch.isfinite(trained.translate(torch.rand(2, 3, 32, 32) * 2 - 1, direction="b2a")).all()
    run = mlflow.MlflowClient(mlflow_server).get_run(summary["mlflow_run_id"])
    assert run.data.tags["i2i.worker_nodes"] == summary["metrics"]["worker_nodes"]
    assert run.data.metrics["num_nodes"] == 2
