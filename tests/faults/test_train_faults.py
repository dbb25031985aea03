"""Training jobs (`ray job submit` to a real head) under faults from outside the run: S3 down during a checkpoint
upload and during MLflow's artifact logging, a Ray Train worker SIGKILLed mid-epoch, the job driver SIGKILLed and
the job submitted again. Each time the run finishes (resuming from its last checkpoint), redoes at most one
epoch, and every checkpoint it left loads."""

import os
import re
import signal
import tempfile
import time
import uuid

import mlflow
import pytest
import torch

from i2i_models.base import I2IModel
from pipelines import storage
from pipelines.shard import ShardConfig, run_shard
from pipelines.train_loop import STATE_FILE
from tests.conftest import BUCKET, ray_cli, submit
from tests.faults.conftest import (
    job_summary, jobs_client, runtime_env_through, small_pairs, submit_through, wait_job,
)

TINY = "{image_size: 32, ngf: 8, ndf: 8, norm: instance, n_epochs: 2, n_epochs_decay: 2}"
EPOCHS = 4
SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it committed


@pytest.fixture(scope="module")
def pairs(ray_cluster, demo_root, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("fault-pairs")
    out = str(root / "shards")
    run_shard(ShardConfig(source=small_pairs(demo_root, root / "src"), output=out, load_size=32, num_shards=2))
    return out


def train_job(dataset: str, runs: str, tracking_uri: str, experiment: str) -> tuple[str, ...]:
    sets = {"model.args": TINY, "train.dataset": dataset, "train.crop_size": 32, "train.batch_size": 2,
            "train.epochs": EPOCHS, "train.num_workers": 2, "train.storage_path": runs, "train.max_failures": 3,
            "train.log_every_steps": 1000, "mlflow.tracking_uri": tracking_uri, "mlflow.experiment": experiment}
    return ("python", "-m", "jobs.train", "--config", "jobs/configs/quickstart.yaml",
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")])


def committed(run_dir: str) -> list[str]:
    """The checkpoint folders Ray Train has committed (its snapshot in the run folder), oldest first."""
    snap = storage.read_json(storage.join(run_dir, SNAPSHOT))
    if not snap:
        return []
    return [r["checkpoint_dir_name"] for r in snap.get("checkpoint_results", [])]


def run_dirs(runs: str) -> list[str]:
    return [storage.join(runs, d) for d in storage.list_dirs(runs)]


def wait_for(predicate, timeout: float, what: str, alive=lambda: True):
    deadline = time.time() + timeout
    while not (value := predicate()):
        assert alive(), f"the job ended before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)
    return value


def load_checkpoint(run_dir: str, folder: str) -> int:
    """Load one checkpoint folder as a model and as training state (downloaded file by file); its epoch."""
    with tempfile.TemporaryDirectory() as d:
        files = storage.list_files(storage.join(run_dir, folder))
        for e in files:
            os.makedirs(os.path.dirname(os.path.join(d, e.relpath)), exist_ok=True)
            with open(os.path.join(d, e.relpath), "wb") as f:
                f.write(storage.read_bytes(storage.join(run_dir, folder, e.relpath)))
        try:
            I2IModel.from_pretrained(d)  # config + generator/discriminator weights
            state = torch.load(os.path.join(d, STATE_FILE), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as err:
            raise AssertionError(f"{folder} does not load ({[e.relpath for e in files]}): {err}") from None
    assert {"nets", "optimizers", "epoch", "step"} <= set(state), f"{folder}: {set(state)}"
    return state["epoch"]


def assert_every_checkpoint_loads(run_dir: str) -> list[int]:
    """Every checkpoint Ray Train committed for the run loads, and no other checkpoint folder is left in storage
    (a partial upload cut by the fault); the committed checkpoints' epochs."""
    folders = sorted({e.relpath.split("/")[0] for e in storage.list_files(run_dir)
                      if re.match(r"checkpoint_\d{4}-[^/]+/", e.relpath)})
    kept = committed(run_dir)
    assert kept and set(kept) <= set(folders), (kept, folders)
    epochs = [load_checkpoint(run_dir, folder) for folder in kept]
    partial = {f: sorted(e.relpath for e in storage.list_files(storage.join(run_dir, f)))
               for f in folders if f not in kept}
    assert not partial, f"checkpoint folders left beside the committed ones {kept}: {partial}"
    return epochs


def restarts(logs: str) -> int:
    """Worker-group (re)starts that resumed from a checkpoint: every rank of such a group, a new process, prints
    "[i2i] resumed from checkpoint" once (Ray prefixes its lines with the worker's pid)."""
    pids = set(re.findall(r"pid=(\d+)[^)]*\)(?:\x1b\[[0-9;]*m)?\s*\[i2i\] resumed from checkpoint", logs))
    return len(pids) // 2


def redone_epochs(client, run_id: str) -> tuple[int, list[int]]:
    """(epochs logged more than once, the epochs logged) from the run's own per-epoch MLflow history."""
    steps = [m.step for m in client.get_metric_history(run_id, "epoch_seconds")]
    return sum(steps.count(s) > 1 for s in set(steps)), sorted(set(steps))


def test_s3_down_during_checkpoint_upload_and_mlflow_logging(ray_head, s3_proxy, proxied_mlflow, pairs, tmp_path,
                                                            figures):
    env = runtime_env_through(s3_proxy, tmp_path / "env.yaml")
    runs = f"s3://{BUCKET}/faults/train-{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    def second_checkpoint_upload(line: str) -> bool:  # the first request writing the 2nd checkpoint's files
        m = re.match(r"(PUT|POST) \S*/(checkpoint_[^/?]+)/", line)
        if m and m.group(2) not in seen:
            seen.append(m.group(2))
        return bool(m) and len(seen) == 2

    s3_proxy.arm(second_checkpoint_upload, seconds=10)
    s3_proxy.arm(r"(PUT|POST) /\S*/faults/mlflow-artifacts/", seconds=10)  # then: the next artifact MLflow stores
    job = train_job(pairs, runs, proxied_mlflow.uri, "faults-s3")
    attempts = []
    figures["gave_up_with"] = []
    for _ in range(3):  # an attempt may give up during an outage: the operator (or the nightly) submits it again
        wait_for(lambda: all(o["end"] for o in s3_proxy.outages), 30, "end of the outage")
        attempts.append(submit_through(ray_head, env, *job, timeout=500))
        if attempts[-1].returncode == 0:
            break
        out = attempts[-1].stdout + attempts[-1].stderr
        figures["gave_up_with"].append([line[:300] for line in out.splitlines()
                                        if re.search(r"^error: |Error: ", line)][-3:])
    figures["outages"] = [{k: o[k] for k in ("trigger", "seconds")} for o in s3_proxy.outages]
    figures["attempts_rc"] = [a.returncode for a in attempts]
    assert len(s3_proxy.outages) == 2, f"the outages did not both happen: {s3_proxy.outages}"
    assert attempts[-1].returncode == 0, attempts[-1].stdout[-4000:] + attempts[-1].stderr[-2000:]
    summary = job_summary(attempts[-1].stdout)
    assert summary["metrics"]["epoch"] == EPOCHS - 1
    (run_dir,) = run_dirs(runs)
    figures["checkpoint_epochs"] = assert_every_checkpoint_loads(run_dir)
    figures["restarts"] = restarts("".join(a.stdout for a in attempts))
    # an attempt that gave up: its controller died (Ray Train does not retry that), possibly before it recorded the
    # checkpoints its workers had written, so the resubmission may redo up to what that attempt had done
    done = r"\[i2i\] epoch (\d+)\S* step [^\n—]*— epoch done"
    gave_up_epochs = sum(len(set(re.findall(done, a.stdout))) for a in attempts[:-1])
    figures["epochs_done_by_attempts_that_gave_up"] = gave_up_epochs
    client = mlflow.MlflowClient(proxied_mlflow.uri)
    redone, logged = redone_epochs(client, summary["mlflow_run_id"])
    figures["epochs_redone"] = redone
    assert logged == list(range(EPOCHS))
    assert redone <= figures["restarts"] + gave_up_epochs  # a restart redoes the epoch in flight
    grids = [a.path for a in client.list_artifacts(summary["mlflow_run_id"], "images")]
    assert grids, "no sample grid reached the artifact store"


def test_worker_sigkilled_mid_epoch_resumes_from_the_last_checkpoint(ray_head, pairs, mlflow_server, tmp_path,
                                                                     figures):
    runs = f"s3://{BUCKET}/faults/kill-worker-{uuid.uuid4().hex[:8]}"
    job_id = f"kill-worker-{uuid.uuid4().hex[:6]}"
    r = submit(ray_head, *train_job(pairs, runs, mlflow_server, "faults-kill"),
               options=("--submission-id", job_id, "--no-wait"))
    assert r.returncode == 0, r.stderr[-2000:]
    client = jobs_client(ray_head)
    alive = lambda: str(client.get_job_status(job_id).value) in ("PENDING", "RUNNING")  # noqa: E731
    run_dir = wait_for(lambda: (run_dirs(runs) or [None])[0], 300, "run folder", alive)
    wait_for(lambda: len(committed(run_dir)) >= 1, 300, "committed checkpoint", alive)
    job = client.get_job_info(job_id)
    pid = train_worker_pid(ray_head, job.job_id)
    os.kill(pid, signal.SIGKILL)  # from outside the run, right after a checkpoint was committed: mid-epoch
    killed_after = committed(run_dir)
    status = wait_job(ray_head, job_id, timeout=400)
    logs = ray_cli(ray_head, "logs", job_id).stdout
    assert status == "SUCCEEDED", logs[-4000:]
    summary = job_summary(logs)
    m = summary["metrics"]
    mclient = mlflow.MlflowClient(mlflow_server)
    redone, logged = redone_epochs(mclient, summary["mlflow_run_id"])
    figures.update(killed_pid=pid, committed_at_kill=len(killed_after), resume_epoch=m["start_epoch"],
                   epochs_redone=redone)
    assert m["epoch"] == EPOCHS - 1 and m["start_epoch"] >= len(killed_after) >= 1  # resumed, not from scratch
    assert "[i2i] resumed from checkpoint" in logs
    assert logged == list(range(EPOCHS)) and redone <= 1
    figures["checkpoint_epochs"] = assert_every_checkpoint_loads(run_dir)


def train_worker_pid(dashboard: str, job_id: str) -> int:
    """The PID of a live Ray Train worker of the job, from the cluster's state API (as an operator finds it)."""
    from ray.util.state import list_actors

    actors = list_actors(address=dashboard, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE"),
                                                     ("job_id", "=", job_id)], raise_on_missing_output=False)
    assert actors, "no live RayTrainWorker"
    return int(actors[0].pid)


def test_driver_sigkilled_and_resubmitted_resumes(ray_head, pairs, mlflow_server, figures):
    runs = f"s3://{BUCKET}/faults/kill-driver-{uuid.uuid4().hex[:8]}"
    job = train_job(pairs, runs, mlflow_server, "faults-driver")
    first_id = f"kill-driver-{uuid.uuid4().hex[:6]}"
    r = submit(ray_head, *job, options=("--submission-id", first_id, "--no-wait"))
    assert r.returncode == 0, r.stderr[-2000:]
    client = jobs_client(ray_head)
    alive = lambda: str(client.get_job_status(first_id).value) in ("PENDING", "RUNNING")  # noqa: E731
    run_dir = wait_for(lambda: (run_dirs(runs) or [None])[0], 300, "run folder", alive)
    wait_for(lambda: len(committed(run_dir)) >= 1, 300, "committed checkpoint", alive)
    driver = client.get_job_info(first_id).driver_info
    os.kill(int(driver.pid), signal.SIGKILL)
    at_kill = committed(run_dir)
    status = wait_job(ray_head, first_id, timeout=60)
    assert status in ("FAILED", "STOPPED"), status
    t0 = time.time()
    again = submit(ray_head, *job, options=("--submission-id", f"{first_id}-again"), timeout=500)
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    m = job_summary(again.stdout)["metrics"]
    figures.update(driver_pid=int(driver.pid), committed_at_kill=len(at_kill), resume_epoch=m["start_epoch"],
                   resubmitted_run_s=round(time.time() - t0, 1))
    assert m["epoch"] == EPOCHS - 1 and m["start_epoch"] >= len(at_kill) >= 1
    assert "[i2i] resumed from checkpoint" in again.stdout
    figures["checkpoint_epochs"] = assert_every_checkpoint_loads(run_dir)
