"""A shard job (`ray job submit` to a real head) whose every S3 request goes through a proxy that is taken down in
the middle of the job — for 10 s, and until the job gives up. Either way the job ends clearly and the final shards
hold exactly the source's samples; a job that failed completes when it is run again."""

import re
import time
import uuid

import pytest

from pipelines import storage
from tests.conftest import BUCKET, ray_cli, shard_pairs, source_pairs, upload_dir
from tests.faults.conftest import job_summary, jobs_client, runtime_env_through, submit_through, wait_job

LOAD_SIZE = 32


def shard_job(source: str, output: str) -> tuple[str, ...]:
    return ("python", "-m", "jobs.shard", "--config", "jobs/configs/quickstart.yaml", "--set", f"shard.source={source}",
            "--set", f"shard.output={output}", "--set", f"shard.load_size={LOAD_SIZE}", "--set", "shard.num_shards=6")


def nth_shard_upload(n: int):
    """A proxy rule: the request that starts uploading the n-th distinct shard (the earlier ones are written)."""
    seen: list[str] = []

    def rule(line: str) -> bool:
        m = re.match(r"(PUT|POST) (\S*/shard-\d{6}\.tar)", line)
        if m and m.group(2).split("?")[0] not in seen:
            seen.append(m.group(2).split("?")[0])
            return len(seen) == n
        return False

    return rule


def assert_failed_clearly(output: str) -> None:
    """The job ends with the storage error (what it was doing, the URI, the endpoint) and its failed summary, not a
    traceback (Ray Data's own log of the failed task may come before)."""
    error = output[output.rindex("error: "):] if "error: " in output else ""
    assert re.match(r"error: cannot reach object storage while trying to \w[^:]* s3://\S+ \(endpoint http://127",
                    error), output[-3000:]
    assert "Traceback" not in error and '{"status": "failed", "error": "cannot reach object storage' in error, error


def assert_exact(output: str, demo_root: str) -> dict:
    """The committed shards hold exactly the source's samples: each once, pixel for pixel, sha256 = manifest."""
    counts = {}
    for split in ("train", "val"):
        got, keys = shard_pairs(output, split)
        want = source_pairs(f"{demo_root}/edges2photo/{split}", LOAD_SIZE)
        assert got == want, f"{split}: {len(got)} samples in the shards, {len(want)} in the source (or pixels differ)"
        counts[split] = len(keys)
    return counts


@pytest.fixture
def raw_on_s3(s3_endpoint, demo_root) -> str:
    prefix = f"faults/shard-{uuid.uuid4().hex[:8]}"
    upload_dir(f"{demo_root}/edges2photo", BUCKET, f"{prefix}/raw")
    return f"s3://{BUCKET}/{prefix}"


def test_shard_job_through_a_10s_s3_outage(ray_head, s3_proxy, raw_on_s3, demo_root, tmp_path, figures):
    env = runtime_env_through(s3_proxy, tmp_path / "env.yaml")
    out = f"{raw_on_s3}/shards"
    s3_proxy.arm(nth_shard_upload(2), seconds=10)
    job_id = f"shard-outage-{uuid.uuid4().hex[:6]}"
    t0 = time.time()
    first = submit_through(ray_head, env, *shard_job(f"{raw_on_s3}/raw", out), options=("--submission-id", job_id),
                           timeout=300)
    figures.update(outage=s3_proxy.outages[:1],
                   first_run={"rc": first.returncode, "seconds": round(time.time() - t0, 1)})
    assert len(s3_proxy.outages) == 1 and s3_proxy.outages[0]["seconds"] >= 10, s3_proxy.outages
    if first.returncode != 0:  # failed: clearly, and nothing committed; the re-run completes
        assert_failed_clearly(ray_cli(ray_head, "logs", job_id).stdout)
        assert not storage.exists(f"{out}/manifest.json")
        t1 = time.time()
        again = submit_through(ray_head, env, *shard_job(f"{raw_on_s3}/raw", out), timeout=300)
        figures["rerun"] = {"rc": again.returncode, "seconds": round(time.time() - t1, 1)}
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    else:
        assert job_summary(first.stdout)["status"] == "succeeded"
    figures["samples"] = assert_exact(out, demo_root)


def test_shard_job_fails_clearly_while_s3_stays_down_and_the_rerun_is_exact(ray_head, s3_proxy, raw_on_s3, demo_root,
                                                                            tmp_path, figures):
    env = runtime_env_through(s3_proxy, tmp_path / "env.yaml")
    out = f"{raw_on_s3}/shards"
    s3_proxy.arm(nth_shard_upload(2), seconds=None)  # down until the job has given up
    job_id = f"shard-outage-{uuid.uuid4().hex[:6]}"
    r = submit_through(ray_head, env, *shard_job(f"{raw_on_s3}/raw", out), options=("--submission-id", job_id,
                                                                                    "--no-wait"))
    assert r.returncode == 0, r.stderr[-2000:]
    try:
        deadline = time.time() + 180
        while not s3_proxy.outages:
            assert time.time() < deadline and str(jobs_client(ray_head).get_job_status(job_id).value) in (
                "PENDING", "RUNNING"), "the job ended before the outage"
            time.sleep(0.2)
        status = wait_job(ray_head, job_id, timeout=120)
        info = jobs_client(ray_head).get_job_info(job_id)
    finally:
        s3_proxy.up()
    down_at = s3_proxy.outages[0]["start"]
    figures["time_to_fail_s"] = round(info.end_time / 1000 - down_at, 1)
    figures["status"] = status
    assert status == "FAILED", f"the job {status} with S3 unreachable"
    assert "exit code 2" in info.message, info.message  # a user-facing error, not a crash
    assert_failed_clearly(ray_cli(ray_head, "logs", job_id).stdout)
    assert not storage.exists(f"{out}/manifest.json")  # nothing committed
    t1 = time.time()
    again = submit_through(ray_head, env, *shard_job(f"{raw_on_s3}/raw", out), timeout=300)
    figures["rerun"] = {"rc": again.returncode, "seconds": round(time.time() - t1, 1)}
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    figures["samples"] = assert_exact(out, demo_root)


def test_a_flipped_byte_names_the_shard_and_nothing_trains(ray_cluster, demo_root, mlflow_server, tmp_path, figures):
    """One byte of a committed shard flipped on storage: `i2i train` refuses the dataset with the shard's name
    (exit 2, no traceback) before any training: no checkpoint, no run folder, no MLflow run."""
    import hashlib
    import os
    import subprocess
    import sys

    import mlflow

    from pipelines.shard import ShardConfig, run_shard
    from tests.conftest import REPO
    from tests.faults.conftest import small_pairs

    shards = str(tmp_path / "shards")
    run_shard(ShardConfig(source=small_pairs(demo_root, tmp_path / "src"), output=shards, load_size=32, num_shards=2))
    shard = tmp_path / "shards" / "train" / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    before = hashlib.sha256(data).hexdigest()
    data[len(data) // 2] ^= 0x01  # one bit of one byte, in the middle of a sample's PNG
    shard.write_bytes(bytes(data))
    figures["flipped"] = {"shard": "train/shard-000001.tar", "offset": len(data) // 2, "sha256_before": before[:12]}
    experiment = f"faults-flipped-{uuid.uuid4().hex[:6]}"
    sets = {"model.args": "{image_size: 32, ngf: 8, ndf: 8, norm: instance, n_epochs: 1, n_epochs_decay: 0}",
            "train.dataset": shards, "train.crop_size": 32, "train.epochs": 1, "train.num_workers": 1,
            "train.storage_path": str(tmp_path / "runs"), "mlflow.tracking_uri": mlflow_server,
            "mlflow.experiment": experiment}
    r = subprocess.run([sys.executable, "-m", "jobs.train", "--config", "jobs/configs/quickstart.yaml",
                        *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]], cwd=REPO,
                       env={**os.environ, "RAY_ADDRESS": ray_cluster}, capture_output=True, text=True, timeout=300)
    figures["exit_code"] = r.returncode
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-3000:]
    assert re.search(r"error: shard \S*train/shard-000001\.tar does not match the manifest", r.stderr), r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "a run folder was created"
    client = mlflow.MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    assert not runs, f"an MLflow run was created for training on a corrupted shard: {[r.info.run_name for r in runs]}"
