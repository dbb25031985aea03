"""The `i2i` command as a user meets it: `--help` and `--version` on stdout (exit 0), an example in every command's
`--help`, exit 2 on a usage error; and stdout carries the JSON summary and nothing else — a Ray worker's prints, a
write to file descriptor 1, a child process's output all go to stderr — also when a user error raised inside a Ray
task (a `StorageError` in a Ray Data map task, as when the S3 endpoint stays down during `i2i shard`) fails the job:
one `error:` line, no traceback, and `{"status": "failed", …}` on stdout."""

import json
import os
import subprocess
import sys

import pytest

from jobs.cli import COMMANDS
from jobs.cli import main as i2i
from tests.conftest import REPO

I2I = os.path.join(os.path.dirname(sys.executable), "i2i")


def test_help_and_version_on_stdout_and_usage_errors_exit_2():
    top = subprocess.run([I2I, "--help"], capture_output=True, text=True, timeout=60)
    assert top.returncode == 0 and top.stderr == ""
    listed = {line.split("  ")[1].strip(): line for line in top.stdout.splitlines() if line.startswith("  ")}
    for words, _, about in COMMANDS:
        assert " ".join(words) in listed and about in listed[" ".join(words)]  # each with its one-line description
    version = subprocess.run([I2I, "--version"], capture_output=True, text=True, timeout=60)
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("i2i 0.")
    assert commit.returncode != 0 or f"commit {commit.stdout.strip()}" in version.stdout, version.stdout
    for argv in (["bogus"], []):
        wrong = subprocess.run([I2I, *argv], capture_output=True, text=True, timeout=60)
        assert wrong.returncode == 2 and wrong.stdout == "" and wrong.stderr.strip().splitlines()[-1].startswith(
            "error: ")


@pytest.mark.parametrize("words", [words for words, _, _ in COMMANDS], ids=" ".join)
def test_every_command_help_shows_an_example(words, capsys):
    with pytest.raises(SystemExit) as exited:
        i2i([*words, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower() and f"i2i {' '.join(words)}" in out.split("example", 1)[1], out


# a job whose step makes noise on stdout the ways a real run does, then (argv[1] == "fail") meets a StorageError in a
# Ray Data map task
JOB = r'''
import os, subprocess, sys, time
import ray, ray.data
from jobs._run import run
from pipelines.cluster import init_ray
from pipelines.errors import StorageError

@ray.remote
def noisy():
    print("worker-print-on-stdout", flush=True)

def write_shard(batch):
    raise StorageError("cannot reach object storage while trying to write s3://b/shard-000000.tar "
                       "(endpoint http://127.0.0.1:9)")

def step():
    init_ray()
    ray.get(noisy.remote())
    time.sleep(3)  # Ray's log monitor copies the worker's line to this driver
    os.write(1, b"fd-1-write\n")
    subprocess.run(["echo", "child-process-output"])
    print("step-print")
    if sys.argv[1] == "fail":
        ray.data.range(4, override_num_blocks=2).map_batches(write_shard).materialize()
    return {"answer": 42}

sys.exit(run(step))
'''


@pytest.mark.parametrize("outcome", ["ok", "fail"])
def test_stdout_is_the_json_summary_alone(ray_cluster, outcome):
    r = subprocess.run([sys.executable, "-c", JOB, outcome], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "RAY_ADDRESS": ray_cluster})
    summary = json.loads(r.stdout)  # the whole of stdout is one JSON document
    for noise in ("worker-print-on-stdout", "fd-1-write", "child-process-output", "step-print"):
        assert noise in r.stderr, f"{noise} was not printed at all: the test proves nothing\n{r.stderr[-3000:]}"
    if outcome == "ok":
        assert r.returncode == 0 and summary == {"status": "succeeded", "answer": 42}
        return
    error = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and error == ("error: cannot reach object storage while trying to write "
                                           "s3://b/shard-000000.tar (endpoint http://127.0.0.1:9)"), r.stderr[-3000:]
    assert summary == {"status": "failed", "error": error[len("error: "):]}  # (Ray Data's log of the task may
    # come before the error line, with its traceback; the job's last word is the one-line error)


def test_a_user_error_inside_a_failed_ray_train_run_is_the_error_shown():
    """Ray Train reports a worker's error inside its WorkerGroupError, which the training step wraps with the run's
    name: the user error raised in the worker is what the job prints (one line), not Ray's report of it."""
    from ray.train.v2.api.exceptions import WorkerGroupError

    from pipelines.errors import I2IError, StorageError, user_error

    cause = StorageError("cannot reach object storage while trying to read s3://b/train/shard-000001.tar")
    report = WorkerGroupError("Training failed due to worker errors:\n[Rank 1]\nTraceback (most recent call last):\n"
                              "  ...", {0: RuntimeError("rank 0 stopped with its peer"), 1: cause})
    try:
        try:
            raise report
        except WorkerGroupError as err:  # as pipelines.train.run_train re-raises it
            raise I2IError(f"training run r failed after 2 restarts: {err}") from err
    except I2IError as raised:
        assert user_error(raised) is cause
    plain = I2IError("no files found under data/x")
    assert user_error(plain) is plain and user_error(RuntimeError("a bug")) is None
