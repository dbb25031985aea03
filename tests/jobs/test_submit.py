"""The jobs as users run them: `ray job submit` to a real head started on 127.0.0.1."""

import json
import os
import shutil
import subprocess
import sys

from pipelines.manifest import read_manifest, verify
from tests.conftest import BUCKET, upload_dir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def submit(address: str, *entrypoint: str, timeout: int = 600) -> subprocess.CompletedProcess:
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    return subprocess.run([ray_bin, "job", "submit", "--address", address, "--runtime-env", "infra/runtime_env.yaml",
                           "--working-dir", ".", "--", *entrypoint],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_ray_job_submit_shard_to_s3(ray_head, demo_root):
    upload_dir(f"{demo_root}/styles", BUCKET, "submit/raw/styles")
    out = f"s3://{BUCKET}/submit/shards/styles"
    r = submit(ray_head, "python", "-m", "jobs.shard", "--config", "jobs/configs/quickstart.yaml",
               "--set", f"shard.source=s3://{BUCKET}/submit/raw/styles", "--set", f"shard.output={out}",
               "--set", "shard.layout=auto", "--set", "shard.load_size=32")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads(r.stdout[r.stdout.index('{\n "status"'): r.stdout.rindex("}") + 1])
    assert summary["status"] == "succeeded" and summary["samples"]["train"] > 0
    m = read_manifest(out)
    verify(m, out, "train")
    assert set(m.domains) == {"cartoon", "photo", "winter"}
    # a bad config fails the submitted job with the message, not a traceback
    bad = submit(ray_head, "python", "-m", "jobs.shard", "--config", "jobs/configs/quickstart.yaml",
                 "--set", "shard.load_size=huge")
    assert bad.returncode != 0 and "'shard.load_size'" in bad.stdout + bad.stderr
