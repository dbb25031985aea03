"""Tuning on a cluster that starts with no CPU at all (the shipped KubeRay / `ray up` shape: a head that takes no work,
workers added later): a `ray job submit`ted tuning job waits, saying for what, until a worker node joins, and its
trials run there. A trial larger than every node type the autoscaler reports is refused at once."""

import json
import time
import urllib.request

import pytest
import yaml

from pipelines.errors import I2IError
from pipelines.shard import ShardConfig, run_shard
from pipelines.tracking import MlflowConfig
from pipelines.tune import TuneSection, run_tune
from tests.conftest import ray_cli, ray_start, server, submit
from tests.jobs.test_multinode import alive_nodes
from tests.pipelines.test_tune import SPACE, TINY, train_cfg, trial_rows

# a second node on this machine: Ray refuses it unless told the cluster may span "hosts" (tests/jobs/test_multinode)
MULTI = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}


@pytest.fixture(scope="module")
def empty_head(s3_endpoint, tmp_path_factory):
    """(dashboard address, GCS address, temp dir) of a `ray start --head --num-cpus 0` cluster, stopped by PID."""
    temp = tmp_path_factory.mktemp("ray-empty")
    cmd, env, ports = ray_start(temp, num_cpus=0, object_store_memory=300_000_000)
    dashboard = f"http://127.0.0.1:{ports['dashboard-port']}"
    with server([*cmd, "--node-ip-address=127.0.0.1"], env={**env, **MULTI}, ready_url=f"{dashboard}/api/version",
                log_path=temp / "head.log", timeout=90):
        yield dashboard, f"127.0.0.1:{ports['port']}", temp


@pytest.fixture(scope="module")
def pairs(ray_cluster, demo_root, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("autoscale-pairs"))
    run_shard(ShardConfig(source=f"{demo_root}/edges2photo", output=out, load_size=32, num_shards=2))
    return out


def job_status(dashboard: str, submission_id: str) -> str:
    with urllib.request.urlopen(f"{dashboard}/api/jobs/{submission_id}", timeout=10) as r:
        return json.load(r)["status"]


def job_config(path, pairs: str, tmp_path, **tune) -> str:
    train = train_cfg(pairs, tmp_path).model_copy(update={"iterations": 4})  # a few steps: placement is the point
    path.write_text(yaml.safe_dump({
        "model": {"name": "pix2pix", "args": TINY}, "train": train.model_dump(),
        "tune": {"search_space": SPACE, "scheduler": "fifo", "epochs": 1, "storage_path": str(tmp_path / "tune"),
                 **tune},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/m.db"}}))
    return str(path)


def test_trials_wait_for_a_worker_that_joins_after_submission(empty_head, pairs, tmp_path, tmp_path_factory):
    dashboard, gcs, temp = empty_head
    cfg = job_config(tmp_path / "tune.yaml", pairs, tmp_path, num_samples=1, name="autoscale", resource_wait_s=240)
    job = submit(dashboard, "python", "-m", "jobs.tune", "--config", cfg,
                 options=("--submission-id", "tune-autoscale", "--no-wait"))
    assert job.returncode == 0, job.stderr[-2000:]
    # before any worker exists the job waits for one trial's resources (0.5 CPU trial + 0.5 CPU of Ray Data tasks)
    deadline = time.time() + 90
    waiting = "waiting for the cluster to offer {CPU: 1}"
    while waiting not in (logs := ray_cli(dashboard, "logs", "tune-autoscale").stdout):
        status = job_status(dashboard, "tune-autoscale")
        assert status in ("PENDING", "RUNNING"), f"the job ended ({status}) before a worker joined:\n{logs}"
        assert time.time() < deadline, f"the job never said what it waits for:\n{logs[-3000:]}"
        time.sleep(1)
    assert "it has {CPU: 0} now" in logs, logs[-3000:]
    # its own temp dir: a node starting in the head's would clear the job's unpacked working dir there
    wcmd, wenv, _ = ray_start(tmp_path_factory.mktemp("ray-worker"), head=gcs, num_cpus=2,
                              object_store_memory=300_000_000)
    with server([*wcmd, "--node-ip-address=127.0.0.1"], env={**wenv, **MULTI},
                ready=lambda: len(alive_nodes(dashboard)) == 2, log_path=temp / "worker.log", timeout=90):
        (worker,) = [n["node_id"] for n in alive_nodes(dashboard) if not n["is_head_node"]]
        deadline = time.time() + 300
        while (status := job_status(dashboard, "tune-autoscale")) in ("PENDING", "RUNNING"):
            assert time.time() < deadline, "the tuning job did not finish in time"
            time.sleep(2)
        logs = ray_cli(dashboard, "logs", "tune-autoscale").stdout
    assert status == "SUCCEEDED", logs[-4000:]
    result = json.JSONDecoder().raw_decode(logs[logs.index('{\n "status"'):])[0]
    assert result["trials"] == 1 and all(not t["error"] for t in result["trial_summaries"]), result
    # the trial ran on the node that joined (the training loop's own record of its node), none on the head
    rows = trial_rows(str(tmp_path / "tune" / "autoscale"))
    assert len(rows) == 1 and all(rows), rows
    assert {row["worker_nodes"] for trial in rows for row in trial} == {worker}


def test_trial_larger_than_every_node_type_is_refused_at_once(ray_cluster, pairs, tmp_path):
    """With node types known (the cluster config an autoscaler reports to the GCS: here one group of 2-CPU nodes,
    at most 3), a trial with a 4-CPU worker can never be placed: refused before any wait or MLflow run."""
    from ray._raylet import GcsClient
    from ray.core.generated.autoscaler_pb2 import ClusterConfig, NodeGroupConfig

    client = GcsClient(address=ray_cluster)  # what an autoscaler reports (ReportClusterConfig), read back by the job
    client.report_cluster_config(ClusterConfig(node_group_configs=[
        NodeGroupConfig(name="cpu", resources={"CPU": 2}, max_count=3)]).SerializeToString())
    cfg = TuneSection(search_space=SPACE, num_samples=1, cpus_per_trial=4, resource_wait_s=240,
                      storage_path=str(tmp_path / "tune"))
    started = time.monotonic()
    try:
        with pytest.raises(I2IError, match=r"^one trial \(1 worker\(s\) × 4 CPU \+ 0.5 CPU for its Ray Data tasks\) "
                                           r"asks for \{CPU: 4\} on one node, more than any node type of this "
                                           r"cluster offers \(\{CPU: 2\}\)"):
            run_tune(model="pix2pix", model_args=TINY, loss_weights={}, train=train_cfg(pairs, tmp_path), cfg=cfg,
                     mlflow=MlflowConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"))
    finally:
        client.report_cluster_config(ClusterConfig().SerializeToString())  # node types unknown again
    assert time.monotonic() - started < 30  # not the 240 s wait
    assert not (tmp_path / "m.db").exists()  # no MLflow run was started
